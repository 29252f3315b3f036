"""What a training run depends on: :class:`TrainConfig`, and how its seed becomes independent random streams.

::

    from adaface_lab.config import TrainConfig
    config = TrainConfig(out="runs/demo")                          # the CPU demo's defaults
    config = TrainConfig.from_overrides({"epochs": 2, "head": "arcface"})  # unknown keys and wrong types raise

:mod:`adaface_lab.train` runs a config; :mod:`adaface_lab.runs` reads the folder it wrote.

Random streams: every stream of a run (initialisation, the shuffle, the augmentations, dropout, the probe
set, the held-out identities) is seeded from ``(seed, stream, *keys)`` by :func:`seed_for`, e.g. the
augmentations of epoch e on rank r from ``(seed, STREAM_AUG, e, r)``, so an epoch does not depend on what
ran before it (which is what lets a resumed run write the same records).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .backbones import BACKBONES, DEFAULT_TEACHING_BACKBONE, build_backbone
from .errors import LabError
from .heads import HEADS, build_head

__all__ = [
    "TrainConfig", "ConfigTypeError", "DEMO_BACKBONE_PARAMS", "PAPER_IMAGE_SIZE", "seed_for",
    "STREAM_INIT", "STREAM_ORDER", "STREAM_AUG", "STREAM_MODEL", "STREAM_PROBE", "STREAM_HOLDOUT",
]  # fmt: skip

#: Backbone options the CPU demo uses when none are given: ir_tiny at 32 pixels (4x fewer pixels than its
#: native 64) trains about 4x faster, which is what lets the default run learn in a few minutes on 2 cores.
DEMO_BACKBONE_PARAMS: dict[str, dict[str, Any]] = {DEFAULT_TEACHING_BACKBONE: {"input_size": 32}}

#: The side, in pixels, at which images are made, augmented and scored with BRISQUE unless a run says otherwise:
#: the paper's 112 x 112 aligned crops. BRISQUE measures the degradation at this size and not at the
#: network's 32 px (Spearman r(BRISQUE, severity) on SyntheticFaces: +0.50 at 112 px, +0.04 at 32 px), so
#: the network gets its own input size only after augmentation (a resize on the device).
PAPER_IMAGE_SIZE = 112

#: The random streams of a run (see :func:`seed_for`).
STREAM_INIT, STREAM_ORDER, STREAM_AUG, STREAM_MODEL, STREAM_PROBE, STREAM_HOLDOUT = range(6)


def seed_for(seed: int, stream: int, *keys: int) -> int:
    """A 63-bit seed for (seed, stream, *keys): independent streams, the same anywhere."""
    state = np.random.SeedSequence([int(seed), int(stream), *(int(k) for k in keys)]).generate_state(2, np.uint64)
    return int(state[0]) & ((1 << 63) - 1)


@dataclass
class TrainConfig:
    """Everything a run depends on. Build with ``TrainConfig(...)`` or :meth:`from_overrides`.

    The defaults are the CPU demo: 800 SyntheticFaces identities x 6 images (many identities, few
    images each, so that a short run learns features rather than memorising) rendered, augmented and
    scored with BRISQUE at 112 px, ``ir_tiny`` fed at 32 px, the AdaFace head with its official
    parameters, 10 epochs — a few minutes on 2 CPU cores. The
    optimiser follows the official recipe (SGD, LR 0.1, momentum 0.9, weight decay 5e-4 except on
    BatchNorm, LR ×0.1 at epochs 12/20/24 of 26), with the milestones as fractions of the run so that
    they scale to short runs; the augmentations keep the official probabilities (0.2 each).

    On an identity folder, the fields left at None (``center_crop``, ``image_size``, ``backbone``,
    ``backbone_params``) are chosen from its images and the device when the run starts
    (:func:`adaface_lab.runs.folder_recipe`: a face crop, 112 px, ``ir_tiny`` at 64 px on a CPU and
    ``ir_18`` at 112 px on CUDA); on SyntheticFaces they are filled in at once (no crop, 112 px,
    ``ir_tiny`` at 32 px). Given values always win.
    """

    # -- data
    data: str = "synthetic"  #: "synthetic" (SyntheticFaces) or a folder root/<identity>/*.jpg
    num_identities: int = 800  #: SyntheticFaces: identities trained on
    images_per_identity: int = 6  #: SyntheticFaces: images per identity
    severity: str = "mixed"  #: SyntheticFaces: "mixed" (Beta(1.2, 2.5)) or "uniform"
    center_crop: int | None = None  #: folders: side of a centre square cut first (112 of LFW's 250); 0: none
    image_size: int | None = None  #: side (px) images are made, augmented and BRISQUE-scored at (see above)
    holdout_identities: int = 20  #: identities kept out of training for verification pairs
    eval_pairs: int = 400  #: verification pairs drawn from the held-out identities
    # -- model
    backbone: str | None = None  #: a name from adaface_lab.backbones; None: see above
    backbone_params: dict[str, Any] | None = None  #: None: DEMO_BACKBONE_PARAMS on SyntheticFaces; see above
    head: str = "adaface"  #: a name from adaface_lab.heads
    head_params: dict[str, Any] = field(default_factory=dict)  #: e.g. {"m": 0.4, "h": 0.333, "s": 64}
    channel_order: str = "rgb"  #: what the model is fed ("rgb"; "bgr" as the authors' models)
    # -- optimisation
    epochs: int = 10
    batch_size: int = 128  #: per process
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: tuple[float, ...] = (12 / 26, 20 / 26, 24 / 26)  #: fractions of all steps
    lr_gamma: float = 0.1
    # -- augmentation (official: each with probability 0.2)
    crop_prob: float = 0.2
    lowres_prob: float = 0.2
    photometric_prob: float = 0.2
    # -- records
    probe: int | str = 1536  #: number of probe samples, or "all"
    brisque: bool = True  #: score every probe sample's augmented image with BRISQUE
    eval_each_epoch: bool = True  #: verification on held-out identities after every epoch
    # -- run
    seed: int = 0
    device: str = "auto"  #: "auto" (cuda > mps > cpu), "cpu", "cuda", "cuda:1", "mps"
    amp: bool = True  #: bf16 autocast on CUDA where supported (ignored elsewhere)
    channels_last: bool | None = None  #: None: on for CUDA only
    compile: bool = False  #: torch.compile the model
    num_workers: int = 2  #: loader processes (decoding/rendering)
    threads: int | None = None  #: CPU threads for torch (None: torch's default, one per core)
    preload: bool | None = None  #: hold the decoded training set in memory; None: when it fits in 4 GiB
    out: str = "runs/default"
    resume: bool = False  #: continue the run in ``out`` from its checkpoint
    overwrite: bool = False  #: replace a run already in ``out`` (without it, or ``resume``, that is refused)
    stop_after: int | None = None  #: end this session (checkpointed) after this epoch; resume later
    progress: bool = True  #: tqdm bars and the one-line epoch summaries

    # Fields that may differ between a run and its resumption (they do not change the records on a CPU).
    RUNTIME_FIELDS: typing.ClassVar[frozenset[str]] = frozenset(
        {"device", "num_workers", "threads", "preload", "out", "resume", "overwrite", "stop_after", "progress",
         "compile", "amp", "channels_last"}
    )

    def __post_init__(self) -> None:
        self.lr_milestones = tuple(float(m) for m in self.lr_milestones)
        self.head_params = dict(self.head_params)
        if self.data == "synthetic":  # nothing to look at first: SyntheticFaces' choices are made now
            self.center_crop = 0 if self.center_crop is None else self.center_crop
            self.image_size = PAPER_IMAGE_SIZE if self.image_size is None else self.image_size
            self.backbone = DEFAULT_TEACHING_BACKBONE if self.backbone is None else self.backbone
            if self.backbone_params is None:
                self.backbone_params = dict(DEMO_BACKBONE_PARAMS.get(self.backbone, {}))
        if self.backbone_params is not None:
            self.backbone_params = dict(self.backbone_params)
        _validate(self)

    @property
    def chosen_from_data(self) -> tuple[str, ...]:
        """The fields still None: a folder's recipe chooses them when the run starts."""
        return tuple(name for name in _FROM_DATA if getattr(self, name) is None)

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> "TrainConfig":
        """Defaults updated by ``overrides`` (and ``kwargs``): unknown keys and wrong types raise.

        Ints are accepted for float fields, lists for tuple fields; nothing else is converted.
        """
        values = {**(overrides or {}), **kwargs}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; known keys: {', '.join(sorted(known))}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: _check_type(k, v, hints[k]) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists)."""
        d = asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        return d


#: The fields a folder's recipe fills in when left at None (:func:`adaface_lab.runs.folder_recipe`).
_FROM_DATA: tuple[str, ...] = ("center_crop", "image_size", "backbone", "backbone_params")


class ConfigTypeError(LabError, TypeError):
    """A TrainConfig value of the wrong type (from :meth:`TrainConfig.from_overrides`)."""


def _check_type(name: str, value: Any, hint: Any) -> Any:
    """``value`` if it matches the type ``hint`` (int for float, list for tuple allowed), else TypeError."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for t in options:
        origin = typing.get_origin(t) or t
        if t is type(None) and value is None:
            return None
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin in (str, bool, dict) and isinstance(value, origin):
            return value
        if origin is tuple and isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            return tuple(float(v) for v in value)
    raise ConfigTypeError(f"TrainConfig.{name} must be {_type_name(hint)}, got {type(value).__name__} {value!r}")


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _validate(c: TrainConfig) -> None:
    """Plain ValueErrors for values no run can use (types are checked by from_overrides)."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(message)

    need(c.data == "synthetic" or bool(c.data), "data must be 'synthetic' or a folder path")
    need(c.num_identities >= 2 and c.images_per_identity >= 1, "num_identities ≥ 2, images_per_identity ≥ 1")
    need(c.severity in ("mixed", "uniform"), f"severity must be 'mixed' or 'uniform', got {c.severity!r}")
    need(c.center_crop is None or c.center_crop == 0 or c.center_crop >= 8,
         "center_crop must be None (chosen from the data), 0 (none) or ≥ 8 pixels")  # fmt: skip
    need(c.image_size is None or c.image_size >= 16, "image_size must be None (chosen from the data) or ≥ 16 pixels")
    need(c.holdout_identities >= 0, "holdout_identities must be ≥ 0")
    need(c.holdout_identities == 0 or c.holdout_identities >= 2, "holdout_identities must be 0 or ≥ 2")
    need(c.eval_pairs >= 20, "eval_pairs must be ≥ 20 (ten folds of genuine and impostor pairs)")
    if c.backbone is not None:
        BACKBONES.require(c.backbone)
    HEADS.require(c.head)
    need(c.channel_order in ("rgb", "bgr"), "channel_order must be 'rgb' or 'bgr'")
    need(c.epochs >= 1, "epochs must be ≥ 1")
    need(c.batch_size >= 2, "batch_size must be ≥ 2 (BatchNorm needs two samples)")
    need(math.isfinite(c.lr) and c.lr > 0, f"lr must be a finite number > 0, got {c.lr}")
    need(0 <= c.momentum < 1, f"momentum must be in [0, 1), got {c.momentum}")
    need(math.isfinite(c.weight_decay) and c.weight_decay >= 0, f"weight_decay must be finite and ≥ 0, got {c.weight_decay}")
    # SGD with momentum μ on the decay term alone, w ← w − lr·wd·w, is stable only for lr·wd < 2(1 + μ)
    need(c.lr * c.weight_decay < 2 * (1 + c.momentum),
         f"lr × weight_decay = {c.lr * c.weight_decay:g} would make the weights grow at every step (SGD with "
         f"momentum {c.momentum:g} needs it below 2(1 + momentum) = {2 * (1 + c.momentum):g}): lower lr or weight_decay")  # fmt: skip
    need(all(0 < m < 1 for m in c.lr_milestones) and list(c.lr_milestones) == sorted(c.lr_milestones),
         "lr_milestones must be ascending fractions in (0, 1)")  # fmt: skip
    need(0 < c.lr_gamma <= 1, "lr_gamma must be in (0, 1]")
    for name in ("crop_prob", "lowres_prob", "photometric_prob"):
        need(0 <= getattr(c, name) <= 1, f"{name} must be a probability in [0, 1]")
    need(c.probe == "all" or (isinstance(c.probe, int) and c.probe >= 0), "probe must be an int ≥ 0 or 'all'")
    need(c.seed >= 0, "seed must be ≥ 0")
    need(c.device == "auto" or c.device.split(":")[0] in ("cpu", "cuda", "mps"),
         f"device must be auto, cpu, cuda[:N] or mps, got {c.device!r}")  # fmt: skip
    need(c.num_workers >= 0, "num_workers must be ≥ 0")
    need(c.threads is None or c.threads >= 1, "threads must be None or ≥ 1")
    need(c.stop_after is None or c.stop_after >= 1, "stop_after must be None or ≥ 1")
    need(bool(c.out), "out must name a run folder")
    need(not (c.resume and c.overwrite), "resume and overwrite exclude each other: continue the run or replace it")
    _check_model(c)


def _check_model(c: TrainConfig) -> None:
    """Make the backbone (on the meta device: no memory) and a small head as the config says, and run the head
    on a test batch, so that an option no run can use fails here, before any work, in one ValueError. A backbone
    a folder's recipe will choose is checked once chosen."""
    if c.backbone is not None:
        params = " ".join(f"{k}={v!r}" for k, v in (c.backbone_params or {}).items())
        try:
            with torch.device("meta"):
                build_backbone(c.backbone, **(c.backbone_params or {}))
        except (TypeError, ValueError) as e:
            raise ValueError(f"backbone {c.backbone} {params}: {e}") from None
    params = " ".join(f"{k}={v!r}" for k, v in c.head_params.items()) or "(its defaults)"
    try:
        head = build_head(c.head, 8, 4, **c.head_params)
        with torch.no_grad():  # four unit embeddings of norms 10..40, one per class
            embeddings = torch.nn.functional.normalize(torch.eye(4, 8) + 0.5, dim=1)
            labels = torch.arange(4)
            loss = float(head.loss(head(embeddings, torch.linspace(10, 40, 4)[:, None], labels), labels))
    except (ValueError, ArithmeticError) as e:
        raise ValueError(f"head {c.head} {params}: {e}") from None
    except TypeError as e:  # a value of the wrong kind reached the formulas
        raise ValueError(f"head {c.head} {params}: a parameter is not a number ({e})") from None
    if not math.isfinite(loss):
        raise ValueError(f"head {c.head} {params} gives a loss of {loss} on a test batch: no run can train with it "
                         "(check s, m and the other head parameters)")  # fmt: skip
