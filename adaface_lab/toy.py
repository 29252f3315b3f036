"""A toy trainer that runs in seconds on the CPU: watch features move under any registered head.

::

    run = train_toy("adaface", steps=300, dim=2, seed=0, degraded=0.3)
    run.features        # (T, N, 2): the features before normalisation at each recorded step
    run.norm_by_group()  # mean ‖z‖ of clean, degraded and unrecognisable samples per step
    runs = compare_toy(("arcface", "adaface"), steps=300)   # same data, same seed, two heads

**The inputs, and why.** Each of ``n_classes`` classes has a prototype μ_c; the prototypes are
orthonormal vectors in P = max(16, n_classes) dimensions, so every pair of classes is equally far
apart and no class is easier than another. A sample of class y with quality q ∈ [0, 1] is

    x = q · μ_y + σ_q · ε,    ε ~ N(0, I_P),    σ_q² = σ² + (1 − q²) / P,    σ = ``noise`` (0.2)

Quality takes the class signal away and the noise makes up for it, so E‖x‖² = 1 + P·σ² whatever q:
as blur or low resolution take the identity out of a face while the image keeps its energy, the
input's size says nothing about its quality, and any link between quality and the feature norm
must be *learned* (at step 0 the degraded samples' norms are, if anything, a little larger). Clean
samples have q = 1 (the signal is 5 σ along μ_y: nearly all recognisable). A fraction ``degraded``
of each class is degraded: of those, a share ``lost`` has q = 0 — pure noise, independent of the
class, so no classifier can recover it (beyond recognition) — and the rest have q drawn uniformly
in [0.1, 0.5] (partly recognisable). With ``fresh_noise`` (the default) ε is drawn anew at every
step, like an augmentation: a sample keeps its class, quality and signal, its features jitter, and
the network cannot memorise the label of a sample it cannot recognise. With ``fresh_noise=False``
the inputs are drawn once, and it does memorise them (try it).

Gaussian clusters rather than rendered faces: the model that sees them is small enough to train in
a second and to read whole, and the quality of every sample is known exactly, not estimated.

**The model.** An MLP P → 32 → 32 → ``dim`` with ReLUs, ending, like the IResNet, in a
BatchNorm1d(affine=False): each embedding coordinate has mean 0 and variance 1 over the batch, so
the mean squared norm is fixed and the network can only *share out* the norm between samples. The
output is multiplied by ``feature_scale`` (default √(512 / dim)) so that the norms sit where the
IResNet's 512-d output puts them (RMS ‖z‖ = √512 ≈ 22.6): the heads' constants were chosen for that
scale (AdaFace's EMA starts at μ_z = 20, σ_z = 100; MagFace clamps the norm to [10, 110]). The head
is the real one, made with :func:`adaface_lab.heads.build_head` (its ẑ, EMA and state included).
Every step is one full batch (all N samples) of SGD with momentum on backbone and head together.

**The scale s defaults to 4 here**, not the heads' 64 (pass ``s=`` to change it). Five classes on a
circle under full-batch training have no noise to leave a saddle where two classes share one
direction; a large s saturates P_y early and keeps them there. Measured over 6 seeds, 300 steps in
2-D: with s = 4 every head but the negative angular margin (0.79) ends with ≥ 98 % of the clean
samples nearest their own class weight; with s = 16, softmax 74 % and ArcFace 80 %; with s = 64,
60 % and 62 %. NormFace's bound s ≥ (C−1)/C · ln((C−1)·P/(1−P)) asks for s ≈ 4.8 to allow P_y = 0.99
with C = 5. In 3-D every head learns at s = 4, 8 or 16. A consequence to know when reading |g|: with
s = 4 no P_y reaches 1, so training pulls clean features onto their class weight until
cos θ > 1 − ε = 0.999, where the heads' clamp (the official code's) sets g to 0 — by step 300 about
half the samples sit there.

**What is recorded** at steps 0, k, 2k, … and the last step (k = ``record_every``), from the forward
pass of that step (before its update): the features, the unit class weights, and per sample the
head's diagnostics (target cosine, ẑ, margin applied), P_y and the gradient scaling term
g = ∂CE_i/∂cos θ_{y_i}, taken by autograd through the head (see :func:`_target_gst`; the tests check
it against :func:`adaface_lab.gst.target_gst`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .heads import MarginHead, build_head, list_heads

GROUPS: tuple[str, ...] = ("clean", "degraded", "unrecognisable")
"""Quality groups: q = 1, 0 < q < 1, q = 0 (pure noise: beyond recognition)."""

_PROTOTYPE_DIM = 16
_HIDDEN = 32
_DEGRADED_QUALITY = (0.1, 0.5)

TOY_HEAD_DEFAULTS: dict[str, Any] = {"s": 4.0}
"""Head parameters the toy sets unless given (module docstring: why s = 4)."""


@dataclass(frozen=True)
class ToyOptions:
    """The toy's own options (everything :func:`train_toy` takes that is not a head parameter).

    ``n_classes`` classes of ``n_per_class`` samples; ``degraded``: the fraction of each class that
    is degraded; ``lost``: the share of the degraded samples that are beyond recognition (q = 0);
    ``noise``: σ of the input noise; ``lr``, ``momentum``, ``weight_decay``: SGD's;
    ``record_every``: record every k-th step (and the last); ``feature_scale``: the factor on the
    BatchNorm output (None: √(512 / dim)); ``fresh_noise``: draw the input noise anew every step.
    """

    n_classes: int = 5
    n_per_class: int = 60
    degraded: float = 0.3
    lost: float = 0.5
    noise: float = 0.2
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    record_every: int = 1
    feature_scale: float | None = None
    fresh_noise: bool = True

    def check(self) -> None:
        """ValueError with a plain message for an option out of range."""
        _check_int("n_classes", self.n_classes, 2)
        _check_int("n_per_class", self.n_per_class, 2)
        _check_int("record_every", self.record_every, 1)
        for name in ("degraded", "lost"):
            _check_unit_interval(name, getattr(self, name))
        for name in ("noise", "lr"):
            _check_positive(name, getattr(self, name))
        if not _is_real(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {self.momentum!r}")
        if not _is_real(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a non-negative number, got {self.weight_decay!r}")
        if self.feature_scale is not None:
            _check_positive("feature_scale", self.feature_scale)
        if not isinstance(self.fresh_noise, (bool, np.bool_)):
            raise ValueError(f"fresh_noise must be True or False, got {self.fresh_noise!r}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _check_int(name: str, value: Any, lowest: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lowest:
        raise ValueError(f"{name} must be an integer ≥ {lowest}, got {value!r}")


def _check_unit_interval(name: str, value: Any) -> None:
    if not _is_real(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")


def _check_positive(name: str, value: Any) -> None:
    if not _is_real(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


# ----------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class ToyRun:
    """What :func:`train_toy` recorded. T recorded steps, N samples, C classes, D = ``dim``.

    ``step`` (T,) the step numbers; ``features`` (T, N, D) the features before normalisation (their
    norm is the radius); ``weights`` (T, C, D) the unit class weights (the head's kernel columns);
    ``labels`` (N,) each sample's class; ``quality`` (N,) its quality q ∈ [0, 1] (1 clean, 0 beyond
    recognition); ``g`` (T, N) the gradient scaling term ∂CE_i/∂cos θ_{y_i} (≤ 0 for every method
    here; |g| is what the figures show); ``p_y`` and ``cos_y`` (T, N); ``z_hat`` (T, N) AdaFace's ẑ
    (NaN for other heads); ``margin`` {name: (T, N)} the margin the head applied, as its diagnostics
    names them (``margin_angle`` in rad, ``margin_add``, ``margin_mult``); ``correct`` (T, N)
    whether the nearest unit class weight is the sample's class (no margin: recognition, not the
    loss); ``loss`` (T,) the batch loss the head trained on.
    ``head``, ``label``, ``color``: the head's registered name, its margin's display name and colour; ``params``: the margin's
    parameters; ``options``: the toy's options; ``seed``.
    """

    head: str
    label: str
    color: str
    params: dict[str, Any]
    options: ToyOptions
    seed: int
    step: np.ndarray
    features: np.ndarray
    weights: np.ndarray
    labels: np.ndarray
    quality: np.ndarray
    g: np.ndarray
    p_y: np.ndarray
    cos_y: np.ndarray
    z_hat: np.ndarray
    margin: dict[str, np.ndarray]
    correct: np.ndarray
    loss: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.features.shape[2])

    @property
    def norm(self) -> np.ndarray:
        """(T, N) ‖z‖ of every sample at every recorded step."""
        return np.linalg.norm(self.features, axis=2)

    @property
    def accuracy(self) -> np.ndarray:
        """(T,) fraction of samples whose nearest class weight is their class."""
        return self.correct.mean(axis=1)

    @property
    def group(self) -> np.ndarray:
        """(N,) each sample's quality group (one of :data:`GROUPS`)."""
        return np.where(self.quality >= 1.0, GROUPS[0], np.where(self.quality <= 0.0, GROUPS[2], GROUPS[1]))

    def norm_by_group(self) -> pd.DataFrame:
        """Per recorded step and quality group: ``mean``, ``q25``, ``q75`` of ‖z‖ and ``n`` samples.

        Groups with no sample are left out.
        """
        norm, group = self.norm, self.group
        parts = []
        for name in GROUPS:
            chosen = norm[:, group == name]  # (T, n)
            if chosen.shape[1] == 0:
                continue
            q25, q75 = np.percentile(chosen, [25, 75], axis=1)
            parts.append(pd.DataFrame({"step": self.step, "group": name, "mean": chosen.mean(axis=1),
                                       "q25": q25, "q75": q75, "n": chosen.shape[1]}))
        return pd.concat(parts, ignore_index=True)

    def to_frame(self) -> pd.DataFrame:
        """Tidy: one row per (recorded step, sample), T·N rows.

        Columns: ``step``, ``sample``, ``label``, ``quality``, ``group``, ``x``, ``y`` (and ``z`` in
        3-D), ``norm``, ``cos_y``, ``p_y``, ``g``, ``abs_g``, ``z_hat``, and the margin columns.
        """
        T, N, D = self.features.shape
        columns: dict[str, np.ndarray] = {
            "step": np.repeat(self.step, N),
            "sample": np.tile(np.arange(N), T),
            "label": np.tile(self.labels, T),
            "quality": np.tile(self.quality, T),
            "group": np.tile(self.group, T),
        }
        for axis, name in zip(range(D), "xyz"):
            columns[name] = self.features[:, :, axis].reshape(-1)
        columns["norm"] = self.norm.reshape(-1)
        for name in ("cos_y", "p_y", "g"):
            columns[name] = getattr(self, name).reshape(-1)
        columns["abs_g"] = np.abs(columns["g"])
        columns["z_hat"] = self.z_hat.reshape(-1)
        columns.update({name: values.reshape(-1) for name, values in self.margin.items()})
        return pd.DataFrame(columns)


# ----------------------------------------------------------------------------- data and model


@dataclass(frozen=True)
class ToyData:
    """The toy's inputs. N samples in P dimensions.

    ``signal`` (N, P) q·μ_y; ``noise_std`` (N, 1) σ_q; ``noise`` (N, P) one fixed draw of σ_q·ε;
    ``labels`` (N,) int; ``quality`` (N,) q. :attr:`inputs` = signal + noise, the fixed inputs.
    """

    signal: torch.Tensor
    noise_std: torch.Tensor
    noise: torch.Tensor
    labels: np.ndarray
    quality: np.ndarray

    @property
    def inputs(self) -> torch.Tensor:
        return self.signal + self.noise

    def fresh_inputs(self, generator: torch.Generator) -> torch.Tensor:
        """The same signals with a new draw of the noise."""
        return self.signal + self.noise_std * torch.randn(self.signal.shape, generator=generator)


def make_toy_data(options: ToyOptions, seed: int) -> ToyData:
    """The toy's samples (module docstring), N = n_classes · n_per_class of them.

    Samples are ordered class by class; within each class the degraded ones come last. The same
    ``seed`` and options give the same data whatever the head.
    """
    rng = np.random.default_rng([seed, 0])
    C, n = options.n_classes, options.n_per_class
    P = max(_PROTOTYPE_DIM, C)
    prototypes, _ = np.linalg.qr(rng.standard_normal((P, C)))  # (P, C) orthonormal columns
    n_degraded = int(round(options.degraded * n))
    n_lost = int(round(options.lost * n_degraded))
    quality = np.ones((C, n))
    quality[:, n - n_degraded:] = rng.uniform(*_DEGRADED_QUALITY, size=(C, n_degraded))
    quality[:, n - n_lost:] = 0.0
    labels = np.repeat(np.arange(C), n)
    quality = quality.reshape(-1)
    # the noise makes up for the signal taken away: E‖x‖² = 1 + P·σ² whatever q
    noise_std = np.sqrt(options.noise**2 + (1.0 - quality**2) / P)[:, None]  # (N, 1)
    noise = noise_std * rng.standard_normal((C * n, P))

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32))

    return ToyData(tensor(quality[:, None] * prototypes.T[labels]), tensor(noise_std), tensor(noise),
                   labels, quality)


def _backbone(in_dim: int, dim: int) -> nn.Sequential:
    """MLP ending in BatchNorm1d(affine=False), like the IResNet's output layer."""
    return nn.Sequential(
        nn.Linear(in_dim, _HIDDEN), nn.ReLU(),
        nn.Linear(_HIDDEN, _HIDDEN), nn.ReLU(),
        nn.Linear(_HIDDEN, dim), nn.BatchNorm1d(dim, affine=False),
    )


def _cosines(head: MarginHead, features: torch.Tensor) -> torch.Tensor:
    """(N, C) cos θ between each feature and each unit class weight, float64, detached."""
    unit = features.detach().double()
    unit = unit / unit.norm(dim=1, keepdim=True)
    kernel = head.kernel.detach().double()
    return unit @ (kernel / kernel.norm(dim=0))


def _target_gst(head: MarginHead, cos: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """g = ∂CE_i/∂cos θ_{y_i} per sample (N,), by autograd through the head's own margin.

    ``cos``: (N, C) from :func:`_cosines`; ``norms``: (N, 1). The head is put in eval mode so that
    its state (AdaFace's μ_z, σ_z; CurricularFace's t) is read, not updated again: the training
    forward of this step has already updated it, so these logits equal the training logits. MagFace's
    regulariser depends on the norm only, so it adds nothing to this derivative.
    """
    was_training = head.training
    head.eval()
    try:
        with torch.enable_grad():
            cos = cos.detach().clone().requires_grad_()
            logits = head.logits_from_cos(cos, norms.detach().double(), labels)
            (grad,) = torch.autograd.grad(head.loss(logits, labels, reduction="sum"), cos)
    finally:
        head.train(was_training)
    return grad[torch.arange(len(labels)), labels].float().numpy()


# ----------------------------------------------------------------------------- options


def head_parameters(head: str) -> set[str]:
    """The keyword parameters the head ``head`` takes (its margin's, plus ``detach_margin``)."""
    _check_head(head)
    with torch.random.fork_rng(devices=[]):  # building a head draws its kernel: leave the caller's RNG
        return set(build_head(head, 2, 2).margin.params()) | {"detach_margin"}


def _check_head(head: Any) -> None:
    if not isinstance(head, str) or head not in list_heads():
        raise ValueError(f"unknown head {head!r}; known: {', '.join(list_heads())}")


def _split_options(head: str, options: Mapping[str, Any]) -> tuple[ToyOptions, dict[str, Any]]:
    """Split keyword options into the toy's (checked) and the head's; ValueError for unknown ones."""
    toy_names = {f.name for f in fields(ToyOptions)}
    head_names = head_parameters(head)
    unknown = set(options) - toy_names - head_names
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for train_toy with head {head!r}; "
            f"toy options: {sorted(toy_names)}; head parameters: {sorted(head_names)}"
        )
    toy = ToyOptions(**{k: v for k, v in options.items() if k in toy_names})
    toy.check()
    head_params = {k: v for k, v in TOY_HEAD_DEFAULTS.items() if k in head_names}
    head_params.update({k: v for k, v in options.items() if k in head_names})
    return toy, head_params


def _check_run(steps: Any, dim: Any, seed: Any) -> None:
    if dim not in (2, 3) or isinstance(dim, bool):
        raise ValueError(f"dim must be 2 or 3 (a circle or a sphere), got {dim!r}")
    _check_int("steps", steps, 1)
    _check_int("seed", seed, 0)


def recorded_steps(steps: int, record_every: int) -> np.ndarray:
    """The steps :func:`train_toy` records: 0, k, 2k, … and the last one, (T,) int."""
    return np.unique(np.r_[np.arange(0, steps, record_every), steps - 1])


# ----------------------------------------------------------------------------- training


class _Recorder:
    """Preallocated (T, …) arrays, filled from the forward pass of each recorded step."""

    def __init__(self, steps: np.ndarray, n: int, n_classes: int, dim: int) -> None:
        T = len(steps)
        self.steps = steps
        self.index = {int(s): i for i, s in enumerate(steps)}
        self.features = np.zeros((T, n, dim), np.float32)
        self.weights = np.zeros((T, n_classes, dim), np.float32)
        self.per_sample = {k: np.full((T, n), np.nan, np.float32) for k in ("g", "p_y", "cos_y", "z_hat")}
        self.correct = np.zeros((T, n), bool)
        self.margin: dict[str, np.ndarray] = {}
        self.loss = np.zeros(T, np.float32)

    def record(self, step: int, head: MarginHead, features: torch.Tensor, logits: torch.Tensor,
               labels: torch.Tensor, loss: torch.Tensor) -> None:
        i = self.index[step]
        self.features[i] = features.detach().numpy()
        kernel = head.kernel.detach()
        self.weights[i] = (kernel / kernel.norm(dim=0)).T.numpy()  # (C, D)
        diagnostics = {k: v.numpy() for k, v in head.diagnostics.items()}  # read before the probe
        cos = _cosines(head, features)
        norms = features.detach().norm(dim=1, keepdim=True)
        self.per_sample["g"][i] = _target_gst(head, cos, norms, labels)
        rows = torch.arange(len(labels))
        self.per_sample["p_y"][i] = torch.softmax(logits.detach(), dim=1)[rows, labels].numpy()
        self.per_sample["cos_y"][i] = diagnostics["cos_y"]
        if "z_hat" in diagnostics:
            self.per_sample["z_hat"][i] = diagnostics["z_hat"]
        for name, values in diagnostics.items():
            if name.startswith("margin_"):
                if name not in self.margin:
                    self.margin[name] = np.zeros(self.correct.shape, np.float32)
                self.margin[name][i] = values
        self.correct[i] = (cos.argmax(dim=1) == labels).numpy()
        self.loss[i] = float(loss.detach())


def train_toy(head: str = "adaface", steps: int = 300, dim: int = 2, seed: int = 0, *,
              progress: Callable[[int, int], None] | None = None, **options: Any) -> ToyRun:
    """Train the toy (module docstring) with the registered head ``head`` and record it.

    ``steps`` ≥ 1 full-batch SGD steps; ``dim`` 2 (features on a circle) or 3 (a sphere); ``seed``
    fixes data, initialisation and hence the whole run (the caller's torch RNG is left untouched).
    ``options``: any :class:`ToyOptions` field and any parameter of the head (``s``, ``m``, ``h``,
    ``t_alpha``, …, ``detach_margin``). Bad input (unknown head or option, ``dim`` not 2 or 3,
    ``steps`` < 1, a fraction outside [0, 1], …) raises ValueError. ``progress(done, steps)`` is
    called about every 1 % of the steps and at the end (e.g. to move a progress bar). Runs on the
    CPU; with one torch thread, 300 steps of the defaults take about a second (``make bench``).
    """
    _check_head(head)
    _check_run(steps, dim, seed)
    toy, head_params = _split_options(head, options)
    data = make_toy_data(toy, seed)
    labels = torch.from_numpy(data.labels)
    scale = toy.feature_scale if toy.feature_scale is not None else math.sqrt(512 / dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _backbone(data.signal.shape[1], dim)
        margin_head = build_head(head, dim, toy.n_classes, **head_params)
    model.train()
    margin_head.train()
    optimizer = torch.optim.SGD([*model.parameters(), *margin_head.parameters()], lr=toy.lr,
                                momentum=toy.momentum, weight_decay=toy.weight_decay)
    recorder = _Recorder(recorded_steps(steps, toy.record_every), len(labels), toy.n_classes, dim)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        inputs = data.fresh_inputs(generator) if toy.fresh_noise else data.inputs
        features = model(inputs) * scale  # (N, D), before normalisation
        norms = features.norm(dim=1, keepdim=True)  # (N, 1)
        logits = margin_head(features / norms, norms, labels)  # (N, C)
        loss = margin_head.loss(logits, labels)
        if step in recorder.index:
            recorder.record(step, margin_head, features, logits, labels, loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None and ((step + 1) % max(1, steps // 100) == 0 or step + 1 == steps):
            progress(step + 1, steps)
    return ToyRun(
        head=head, label=margin_head.margin.label, color=margin_head.margin.color or "#444", params=margin_head.margin.params(), options=toy,
        seed=seed, step=recorder.steps, features=recorder.features, weights=recorder.weights,
        labels=data.labels, quality=data.quality, margin=recorder.margin, correct=recorder.correct,
        loss=recorder.loss, **recorder.per_sample,
    )


def compare_toy(heads: Sequence[str] = ("arcface", "adaface"), steps: int = 300, dim: int = 2, seed: int = 0, *,
                progress: Callable[[int, int], None] | None = None, **options: Any) -> dict[str, ToyRun]:
    """:func:`train_toy` under each of ``heads`` with the same data, initialisation and seed.

    ``options`` are shared: the toy's go to every run; a head parameter goes to each head that takes
    it (so ``m=0.4`` sets both ArcFace's and AdaFace's m, ``h=0.5`` only AdaFace's). An option that
    neither the toy nor any of the heads takes raises ValueError. ``progress(done, total)`` counts
    the steps of all runs together. Returns {head: run}, in order.
    """
    if isinstance(heads, str) or len(heads) < 1:
        raise ValueError(f"heads must be a sequence of head names, got {heads!r}")
    for name in heads:
        _check_head(name)
    if len(set(heads)) != len(heads):
        raise ValueError(f"heads must be distinct, got {list(heads)}")
    toy_names = {f.name for f in fields(ToyOptions)}
    taken = {name: head_parameters(name) for name in heads}
    unknown = set(options) - toy_names - set().union(*taken.values())
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}: not a toy option nor a parameter of "
                         f"{', '.join(heads)}")
    runs: dict[str, ToyRun] = {}
    for i, name in enumerate(heads):
        overall = None if progress is None else (
            lambda done, _, i=i: progress(i * steps + done, len(heads) * steps))
        runs[name] = train_toy(name, steps, dim, seed, progress=overall,
                               **{k: v for k, v in options.items() if k in toy_names or k in taken[name]})
    return runs


__all__ = [
    "GROUPS",
    "TOY_HEAD_DEFAULTS",
    "ToyOptions",
    "ToyRun",
    "compare_toy",
    "head_parameters",
    "ToyData",
    "make_toy_data",
    "recorded_steps",
    "train_toy",
]
