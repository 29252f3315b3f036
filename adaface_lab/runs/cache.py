"""Runs trained once per config and then read from a cache; and the configs the teaching notebooks train.

The notebooks (``notebooks/0*.ipynb``) read their run through :func:`get_or_train`, so a run made by one
notebook is reused by the next (and by a second execution of the same notebook) without either relying on
the other having run::

    config = notebook_config("small", data="synthetic")          # the CPU teaching run
    run = get_or_train(config)                                   # trains on first use, then reads the cache
    run.records, run.steps, run.epochs                           # see adaface_lab.runs.Run

    run = get_or_train(notebook_config("full", data="../shared/data/lfw_min20"))

A cached run lives in ``<cache>/<head>-<key>/`` where ``key`` (:func:`run_key`) hashes every setting that
changes what the run records (the :class:`~adaface_lab.config.TrainConfig` fields except the runtime ones:
device, workers, output folder, ...) together with the source of the modules training depends on, so an
edit to the training code never serves a stale run. A run is trained into a temporary folder and moved into
place only when complete, so an interrupted run is never reused. ``<cache>`` is the ``cache_dir``
argument, else ``$ADAFACE_LAB_RUNS``, else ``runs/notebooks`` in the source checkout, else
``~/.cache/adaface_lab/runs``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ..config import TrainConfig
from .datasets import resolve_config
from .layout import Progress, RunFolder
from .run import Run

__all__ = [
    "MODES", "SMALL_SYNTHETIC", "FULL_SYNTHETIC", "FULL_FOLDER", "notebook_config", "default_cache_dir",
    "run_key", "get_or_train", "cached_run_path", "cached_progress",
]  # fmt: skip

Mode = Literal["small", "full"]
MODES: tuple[str, ...] = ("small", "full")

#: The small teaching run (CPU, a minute or two on two cores): SyntheticFaces, the demo backbone
#: (``ir_tiny`` at 32 px, :data:`adaface_lab.config.DEMO_BACKBONE_PARAMS`). Every training sample is a
#: probe (``probe="all"``), so the correlations rest on all of them; evaluation is left to notebook 5.
SMALL_SYNTHETIC: dict[str, Any] = dict(
    num_identities=150, images_per_identity=12, holdout_identities=30, eval_pairs=400,
    epochs=6, batch_size=64, probe="all", eval_each_epoch=False,
)

#: The full run on SyntheticFaces: the library's demo defaults (a few minutes on a CPU).
FULL_SYNTHETIC: dict[str, Any] = dict(probe="all")

#: The full run on an identity folder such as ``../shared/data/lfw_min20``: the crop, image size and backbone
#: the folder's images and the device imply (:func:`~adaface_lab.runs.folder_recipe`: LFW's 250 px images
#: centre-cropped to the face at 112 px; ``ir_tiny`` at its native 64 px on a CPU, ``ir_18`` at 112 px on CUDA).
FULL_FOLDER: dict[str, Any] = dict(holdout_identities=10, eval_pairs=400, epochs=20, batch_size=64, probe="all")

# Modules whose source decides what a run records: their text is part of the cache key.
_TRAINING_SOURCES: tuple[str, ...] = (
    "train.py", "config.py", "runs", "analysis.py", "heads.py", "margins.py", "backbones.py", "checkpoint.py",
    "data", "quality",
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
) -> TrainConfig:
    """The :class:`~adaface_lab.config.TrainConfig` a notebook trains in ``mode`` on ``data``.

    ``mode``: ``"small"`` (SyntheticFaces only: the fast CPU run the test suite executes) or
    ``"full"`` (:data:`FULL_SYNTHETIC`, or :data:`FULL_FOLDER` for a folder path). ``epochs``:
    ``None`` keeps the mode's. ``overrides`` (a notebook's ``TRAIN_OVERRIDES`` parameter) and
    ``more``: any further TrainConfig fields, applied last (unknown ones raise).
    """
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
    """Where cached runs are kept: ``$ADAFACE_LAB_RUNS``, ``runs/notebooks`` of the checkout, or ~/.cache."""
    env = os.environ.get("ADAFACE_LAB_RUNS")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "runs" / "notebooks"
    return Path.home() / ".cache" / "adaface_lab" / "runs"


def _code_fingerprint() -> str:
    """Hash of the source of every module that training depends on."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for name in _TRAINING_SOURCES:
        path = package / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                h.update(str(f.relative_to(package)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def run_key(config: TrainConfig) -> str:
    """16 hex digits naming ``config``'s run: its recorded settings plus the training code's source."""
    settings = {k: v for k, v in config.to_dict().items() if k not in type(config).RUNTIME_FIELDS}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(_code_fingerprint().encode())
    return h.hexdigest()[:16]


def get_or_train(config: TrainConfig, cache_dir: str | os.PathLike[str] | None = None,
                 retrain: bool = False) -> Run:  # fmt: skip
    """The finished run of ``config``: read from the cache, or trained now (then cached).

    ``config.out`` is ignored (the cache decides the folder); a folder's recipe is resolved first, so the key
    names the crop and backbone actually used. ``retrain=True`` trains again and
    replaces the cached run. Returns the :class:`~adaface_lab.runs.Run`; its ``path`` is the
    cached folder.
    """
    from ..train import pick_device, train  # not at the top: the loop writes its folder through this package

    config, _ = resolve_config(config, pick_device(config.device))  # a folder's choices depend on the device
    final = cached_run_path(config, cache_dir)
    root = final.parent
    if RunFolder(final).epochs.is_file() and not retrain:
        return Run.load(final)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=root))
    try:
        train(dataclasses.replace(config, out=str(work), resume=False, overwrite=False, stop_after=None))
        if retrain and final.exists():
            shutil.rmtree(final)
        try:
            os.replace(work, final)  # atomic: a reader sees no run or the whole run
        except OSError:  # another process finished the same run first: keep theirs
            if not RunFolder(final).epochs.is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return Run.load(final)


def cached_run_path(config: TrainConfig, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder :func:`get_or_train` keeps ``config``'s finished run in (whether or not it exists yet); a
    folder's recipe is resolved first, as :func:`get_or_train` does."""
    from ..train import pick_device

    config, _ = resolve_config(config, pick_device(config.device))
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"{config.head}-{run_key(config)}"


def cached_progress(path: str | os.PathLike[str]) -> Progress | None:
    """Where the cached run at ``path`` (:func:`cached_run_path`) stands: its progress file once finished,
    else that of the newest unfinished training of it under way in the cache (None when there is none).
    A progress file being replaced reads as None rather than failing."""
    final = Path(path)
    candidates = [final] if RunFolder(final).epochs.is_file() else sorted(
        final.parent.glob(f".{final.name}.*.partial"), key=lambda p: p.stat().st_mtime if p.exists() else 0.0)
    for folder in reversed(candidates):
        try:
            found = RunFolder(folder).read_progress()
        except (ValueError, OSError):
            found = None
        if found is not None:
            return found
    return None
