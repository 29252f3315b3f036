"""Training runs for the teaching notebooks: one config per mode, trained once and cached by its settings.

The notebooks (``notebooks/0*.ipynb``) read their run through this module, so a run made by one notebook
is reused by the next (and by a second execution of the same notebook) without either relying on the
other having run::

    config = notebook_config("small", data="synthetic")          # the CPU teaching run
    run = get_or_train(config)                                   # trains on first use, then reads the cache
    run.records, run.steps, run.epochs                           # see adaface_lab.analysis.Run

    run = get_or_train(notebook_config("full", data="../shared/data/lfw_min20"))

A cached run lives in ``<cache>/<head>-<key>/`` where ``key`` hashes every setting that changes what
the run records (the :class:`~adaface_lab.train.TrainConfig` fields except the runtime ones: device,
workers, output folder, ...) together with the source of the modules training depends on, so an edit
to the training code never serves a stale run. A run is trained into a temporary folder and moved into
place only when complete, so an interrupted run is never reused. ``<cache>`` is the ``cache_dir``
argument, else ``$ADAFACE_LAB_RUNS``, else ``runs/notebooks`` in the source checkout, else
``~/.cache/adaface_lab/runs``.

Also here: what a notebook needs of a finished run besides its records — its trained backbone
(:func:`run_backbone`), the images of its samples (:func:`run_images`), the held-out identities'
verification pairs with a per-image quality (:func:`heldout_pairs`). To show those images, see
:func:`adaface_lab.plots.image_strip_figure`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from .analysis import Run, load_run

if TYPE_CHECKING:
    from .train import TrainConfig

__all__ = [
    "MODES",
    "SMALL_SYNTHETIC",
    "FULL_SYNTHETIC",
    "FULL_FOLDER",
    "notebook_config",
    "default_cache_dir",
    "run_key",
    "get_or_train",
    "run_backbone",
    "run_images",
    "HeldOutPairs",
    "heldout_pairs",
]

Mode = Literal["small", "full"]
MODES: tuple[str, ...] = ("small", "full")

#: The small teaching run (CPU, a minute or two on two cores): SyntheticFaces, the demo backbone
#: (``ir_tiny`` at 32 px, :data:`adaface_lab.train.DEMO_BACKBONE_PARAMS`). Every training sample is a
#: probe (``probe="all"``), so the correlations rest on all of them; evaluation is left to notebook 5.
SMALL_SYNTHETIC: dict[str, Any] = dict(
    num_identities=150, images_per_identity=12, holdout_identities=30, eval_pairs=400,
    epochs=6, batch_size=64, probe="all", eval_each_epoch=False,
)

#: The full run on SyntheticFaces: the library's demo defaults (a few minutes on a CPU).
FULL_SYNTHETIC: dict[str, Any] = dict(probe="all")

#: The full run on an identity folder such as ``../shared/data/lfw_min20``: LFW's 250 px images
#: centre-cropped to the face (112 px), ``ir_tiny`` at its native 64 px (real faces keep more detail
#: there than at the 32 px of the synthetic demo; BRISQUE is scored at this size too).
FULL_FOLDER: dict[str, Any] = dict(
    center_crop=112, backbone_params={}, holdout_identities=10, eval_pairs=400, epochs=20, batch_size=64,
    probe="all",
)

# Modules whose source decides what a run records: their text is part of the cache key.
_TRAINING_SOURCES: tuple[str, ...] = (
    "train.py", "heads.py", "margins.py", "backbones.py", "checkpoint.py", "data", "quality",
)


# --------------------------------------------------------------------------- configs


def notebook_config(
    mode: Mode = "small",
    data: str = "synthetic",
    epochs: int | None = None,
    device: str = "auto",
    head: str = "adaface",
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    **more: Any,
) -> "TrainConfig":
    """The :class:`~adaface_lab.train.TrainConfig` a notebook trains in ``mode`` on ``data``.

    ``mode``: ``"small"`` (SyntheticFaces only: the fast CPU run the test suite executes) or
    ``"full"`` (:data:`FULL_SYNTHETIC`, or :data:`FULL_FOLDER` for a folder path). ``epochs``:
    ``None`` keeps the mode's. ``overrides`` (a notebook's ``TRAIN_OVERRIDES`` parameter) and
    ``more``: any further TrainConfig fields, applied last (unknown ones raise).
    """
    from .train import TrainConfig

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(data, str) or not data:
        raise ValueError("data must be 'synthetic' or a folder path")
    synthetic = data == "synthetic"
    if mode == "small" and not synthetic:
        raise ValueError("small mode trains on SyntheticFaces only; use mode='full' for a folder")
    if not synthetic and not Path(data).is_dir():
        raise FileNotFoundError(f"data folder not found: {data} (expected root/<identity>/*.jpg)")
    base = SMALL_SYNTHETIC if mode == "small" else FULL_SYNTHETIC if synthetic else FULL_FOLDER
    values: dict[str, Any] = {**base, "data": data if synthetic else str(Path(data).resolve()),
                              "head": head, "seed": seed, "device": device, "progress": True}
    if epochs is not None:
        values["epochs"] = epochs
    values.update(dict(overrides or {}))
    values.update(more)
    return TrainConfig.from_overrides(values)


# --------------------------------------------------------------------------- the cache


def default_cache_dir() -> Path:
    """Where notebook runs are kept: ``$ADAFACE_LAB_RUNS``, ``runs/notebooks`` of the checkout, or ~/.cache."""
    env = os.environ.get("ADAFACE_LAB_RUNS")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout / "runs" / "notebooks"
    return Path.home() / ".cache" / "adaface_lab" / "runs"


def _code_fingerprint() -> str:
    """Hash of the source of every module that training depends on."""
    package = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in _TRAINING_SOURCES:
        path = package / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                h.update(str(f.relative_to(package)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def run_key(config: "TrainConfig") -> str:
    """16 hex digits naming ``config``'s run: its recorded settings plus the training code's source."""
    settings = {k: v for k, v in config.to_dict().items() if k not in type(config).RUNTIME_FIELDS}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(_code_fingerprint().encode())
    return h.hexdigest()[:16]


def get_or_train(config: "TrainConfig", cache_dir: str | os.PathLike[str] | None = None,
                 retrain: bool = False) -> Run:
    """The finished run of ``config``: read from the cache, or trained now (then cached).

    ``config.out`` is ignored (the cache decides the folder). ``retrain=True`` trains again and
    replaces the cached run. Returns the :class:`~adaface_lab.analysis.Run`; its ``path`` is the
    cached folder.
    """
    from .train import train

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root / f"{config.head}-{run_key(config)}"
    if final.is_dir() and (final / "epochs.csv").is_file() and not retrain:
        return load_run(final)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=root))
    try:
        train(dataclasses.replace(config, out=str(work), resume=False, stop_after=None))
        if retrain and final.exists():
            shutil.rmtree(final)
        try:
            os.replace(work, final)  # atomic: a reader sees no run or the whole run
        except OSError:  # another process finished the same run first: keep theirs
            if not (final / "epochs.csv").is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return load_run(final)


# --------------------------------------------------------------------------- what a run's folder implies


def _config_of(run: Run) -> "TrainConfig":
    from .train import TrainConfig

    if not run.config:
        raise ValueError(f"{run.path} has no config.json: cannot rebuild its data or model")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig.from_overrides({k: v for k, v in run.config.items() if k in fields})


def run_backbone(run: Run, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The run's trained backbone (from ``checkpoint.pt``, weights-only), in eval mode on ``device``."""
    from .backbones import build_backbone
    from .train import load_run_checkpoint

    cfg = _config_of(run)
    backbone = build_backbone(cfg.backbone, **cfg.backbone_params)
    state = load_run_checkpoint(run.path / "checkpoint.pt")
    backbone.load_state_dict(state["backbone"])
    return backbone.to(device).eval()


def _training_set(cfg: "TrainConfig", size: int) -> Any:
    """The run's full data set (training identities; sample ids as recorded) at ``size`` pixels."""
    if cfg.data == "synthetic":
        from .data.synthetic import SyntheticFaces

        return SyntheticFaces(cfg.num_identities, cfg.images_per_identity, size=size, seed=cfg.seed,
                              severity=cfg.severity)
    from .data.folders import ImageFolderFaces

    return ImageFolderFaces(cfg.data, size=size, center_crop=cfg.center_crop)


def run_images(run: Run, sample_ids: Sequence[int], size: int = 112) -> torch.Tensor:
    """The un-augmented images of ``sample_ids`` of the run's data: uint8 (K, 3, size, size) RGB.

    The records' BRISQUE was taken on the augmented image of that epoch, which may differ
    (crop, low resolution, photometric jitter; see the ``*_applied`` record columns).
    """
    dataset = _training_set(_config_of(run), size)
    return torch.stack([dataset[int(i)][0] for i in sample_ids]) if len(sample_ids) else (
        torch.empty(0, 3, size, size, dtype=torch.uint8))


@dataclass
class HeldOutPairs:
    """Verification pairs from a run's held-out identities, with a quality per image.

    ``pairs``: the :class:`~adaface_lab.data.verification.VerificationPairs`; ``quality``: (P, 2)
    per image, higher is better — ``1 - severity`` on SyntheticFaces (``source="severity"``), else
    ``1 - BRISQUE/100`` of the image (``source="brisque"``).
    """

    pairs: Any
    quality: np.ndarray
    source: str


def heldout_pairs(run: Run, n_pairs: int = 1000, seed: int = 0) -> HeldOutPairs:
    """Pairs drawn from the identities the run never trained on, at the backbone's input size.

    Raises ValueError when the run held no identities out.
    """
    from .backbones import build_backbone
    from .data.verification import pairs_from_identities

    cfg = _config_of(run)
    if cfg.holdout_identities < 2:
        raise ValueError(f"{run.path} held out {cfg.holdout_identities} identities: no verification pairs")
    size = int(run.config.get("run", {}).get("input_size") or build_backbone(cfg.backbone, **cfg.backbone_params).input_size)
    if cfg.data == "synthetic":
        from .data.synthetic import SyntheticFaces

        dataset = SyntheticFaces(cfg.holdout_identities, cfg.images_per_identity, size=size, seed=cfg.seed,
                                 severity=cfg.severity, first_identity=cfg.num_identities)
        labels = list(range(cfg.holdout_identities))
    else:
        dataset = _training_set(cfg, size)
        labels = [int(c) for c in run.config.get("run", {}).get("holdout_labels", [])]
        if len(labels) < 2:
            raise ValueError(f"{run.path}/config.json does not list the held-out labels")
    targets = np.asarray(dataset.targets)
    same_possible = sum(int(k) * (int(k) - 1) // 2 for k in np.bincount(targets[np.isin(targets, labels)]))
    pairs = pairs_from_identities(dataset, labels, n_pairs=min(n_pairs, 2 * same_possible), seed=seed)
    index = np.asarray(pairs.sources, dtype=np.int64).reshape(-1, 2)  # (P, 2) data-set indices
    if cfg.data == "synthetic":
        quality, source = 1.0 - np.asarray(dataset.severities)[index], "severity"
    else:
        from .quality import brisque

        images, _ = pairs.load_images(progress=False)
        quality, source = (1.0 - brisque(images) / 100.0).reshape(-1, 2), "brisque"
    return HeldOutPairs(pairs=pairs, quality=np.asarray(quality, dtype=np.float64), source=source)
