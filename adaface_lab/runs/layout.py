"""The run folder's layout and schema, written once: its file names, the record columns, the checkpoint's
content, the progress file, and reading/writing each file with errors that name it.

A run folder (``adaface-lab train --out DIR``) holds:

- ``records.parquet/`` — a Parquet dataset folder, one part file per epoch (``pandas.read_parquet`` reads
  the folder): one row per probe sample and epoch, taken at the training step where that sample was
  seen (:data:`RECORD_COLUMNS`, the augmentation record :data:`AUGMENT_COLUMNS`, and a head's extras
  :data:`HEAD_EXTRA_COLUMNS`). ``p_y`` is the softmax probability of the target class under the margined
  logits, exp(−CE), and ``p_y_plain`` the same with the margin taken off (s·cos θ_y as the target logit);
  ``brisque`` is scored on the exact augmented image, at the run's ``image_size`` (112 px unless the
  data's faces are smaller; ``config.json``'s ``run.brisque_size``), before it is resized to the network's input;
  ``quality = 1 − brisque/100``; ``severity`` is SyntheticFaces' ground truth (NaN for real data).
- ``steps.parquet/`` — one row per optimiser step: loss, accuracy (nearest class, margin taken off), lr,
  the AdaFace EMA μ_z/σ_z, images/s.
- ``epochs.csv`` — one line per epoch (loss, accuracy, images/s, time, the correlations of
  :func:`adaface_lab.analysis.quality_correlations`, held-out verification).
- ``config.json`` — the :class:`~adaface_lab.config.TrainConfig` fields, and under ``"run"`` what the
  run found (classes, probe count, the image, BRISQUE and input sizes, a folder's recipe, device, ...).
- ``checkpoint.pt`` — the latest :class:`TrainingState`, written atomically each epoch and on
  Ctrl-C/SIGTERM, loadable with ``torch.load(weights_only=True)``.
- ``progress.json`` — where the run is (:class:`Progress`), rewritten atomically while it trains.

Epochs are numbered from 1; ``step`` is the global optimiser step, from 1. Every file is replaced
atomically, so a reader sees the old or the new file, never half of one; a file that is nevertheless
missing or cut short is reported by name.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import pandas as pd
import torch

from .._atomic import atomic_path, write_text_atomic
from ..checkpoint import load_checkpoint, save_checkpoint
from ..data.augment import RECORD_FIELDS

__all__ = [
    "RECORDS", "STEPS", "EPOCHS", "CONFIG", "CHECKPOINT", "PROGRESS", "RUN_FILES",
    "RECORD_COLUMNS", "AUGMENT_COLUMNS", "HEAD_EXTRA_COLUMNS", "CHECKPOINT_FORMAT",
    "RunFolder", "RunExistsError", "Progress", "TrainingState",
]  # fmt: skip

RECORDS = "records.parquet"  #: one row per probe sample and epoch (a folder of per-epoch parts)
STEPS = "steps.parquet"  #: one row per optimiser step (a folder of per-epoch parts)
EPOCHS = "epochs.csv"  #: one line per epoch
CONFIG = "config.json"  #: the TrainConfig and what the run found
CHECKPOINT = "checkpoint.pt"  #: the latest TrainingState
PROGRESS = "progress.json"  #: where the run is
#: Every file a run writes (what ``--overwrite`` replaces; other files in the folder are left alone).
RUN_FILES: tuple[str, ...] = (RECORDS, STEPS, EPOCHS, CONFIG, CHECKPOINT, PROGRESS)

#: Columns of ``records.parquet`` besides the augmentation record and head-specific extras.
RECORD_COLUMNS: tuple[str, ...] = (
    "sample_id", "label", "epoch", "step", "norm", "p_y", "p_y_plain", "cos_y", "z_hat", "margin_angle",
    "margin_add", "loss", "brisque", "quality", "severity",
)  # fmt: skip
#: The per-sample augmentation record columns (see :mod:`adaface_lab.data.augment`).
AUGMENT_COLUMNS: tuple[str, ...] = RECORD_FIELDS
#: Diagnostics a head records when it has them: SphereFace's multiplier, CurricularFace's t, MagFace's
#: regulariser.
HEAD_EXTRA_COLUMNS: tuple[str, ...] = ("margin_mult", "t", "regularizer")

#: The ``format`` entry of a training checkpoint (the text predates this module: old checkpoints load).
CHECKPOINT_FORMAT = "adaface_lab.train/1"


class RunExistsError(FileExistsError):
    """The output folder already holds a run and neither resuming nor replacing it was asked for."""


# ============================================================================ the progress file


State = Literal["preparing", "running", "paused", "stopped", "finished", "failed"]


@dataclass
class Progress:
    """Where a run is, as ``progress.json`` says: ``state`` is ``preparing`` (data, model, BRISQUE of the
    probe images), ``running``, ``paused`` (``stop_after``), ``stopped`` (Ctrl-C/SIGTERM, checkpointed),
    ``finished`` or ``failed`` (``error`` says why). ``step`` counts optimiser steps from 1 over the whole
    run (``total_steps``); ``eta_s`` is the estimated time left, in seconds; ``updated`` a Unix time."""

    state: State
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 0
    loss: float = math.nan
    images_per_s: float = math.nan
    eta_s: float = math.nan
    updated: float = field(default_factory=time.time)
    error: str | None = None

    @property
    def fraction(self) -> float:
        """Share of the run's steps done, in [0, 1]."""
        return min(max(self.step / self.total_steps, 0.0), 1.0) if self.total_steps else 0.0

    @property
    def step_in_epoch(self) -> int:
        """Steps done of the current epoch (its last step counts as all of them)."""
        if not self.steps_per_epoch or not self.step:
            return 0
        return self.step - (self.epoch - 1) * self.steps_per_epoch


# ============================================================================ the checkpoint


@dataclass
class TrainingState:
    """What ``checkpoint.pt`` holds: everything a run needs to continue, as tensors and plain containers
    (so ``torch.load(weights_only=True)`` reads it).

    ``epoch``: complete epochs; ``step``: optimiser steps done; ``step_in_epoch``: steps done of the next
    epoch (0 at an epoch boundary), in which case ``ranks`` holds each process's RNG states and the
    epoch's rows so far; ``history``: the rows of ``epochs.csv``; ``config``: the TrainConfig fields.
    """

    backbone: dict[str, Any]
    head: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    epoch: int
    step: int
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    step_in_epoch: int = 0
    world_size: int = 1
    ranks: list[dict[str, Any]] = field(default_factory=list)
    format: str = CHECKPOINT_FORMAT

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically with ``torch.save`` (a reader never sees half a file)."""
        return save_checkpoint({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "TrainingState":
        """Read a run's checkpoint weights-only. FileNotFoundError when it is missing, ValueError (naming
        the file) when it is cut short, damaged, or not a training checkpoint of this lab."""
        return cls.from_object(load_checkpoint(path), path)

    @classmethod
    def from_object(cls, obj: Any, source: str | os.PathLike[str]) -> "TrainingState":
        """The state in a loaded checkpoint object; ValueError (naming ``source``) when it is not one."""
        if not cls.is_one(obj):
            raise ValueError(f"{source} is not a training checkpoint of adaface_lab (no format {CHECKPOINT_FORMAT!r})")
        values = {f.name: obj[f.name] for f in dataclasses.fields(cls) if f.name in obj}
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        wrong = [f"{name} ({type(values[name]).__name__}, not {kind.__name__})" for name, kind in _STATE_TYPES.items()
                 if name in values and (not isinstance(values[name], kind) or isinstance(values[name], bool))]
        if missing or wrong:
            raise ValueError(f"{source} is a damaged training checkpoint: "
                             + "; ".join([f"missing {', '.join(missing)}"] * bool(missing)
                                         + [f"wrong type: {', '.join(wrong)}"] * bool(wrong)))  # fmt: skip
        for part in ("backbone", "head"):
            if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in values[part].items()):
                raise ValueError(f"{source} is a damaged training checkpoint: its {part} is not a dict of tensors")
        return cls(**values)

    @staticmethod
    def is_one(obj: Any) -> bool:
        """True when a loaded checkpoint object is a training state of this lab."""
        return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


#: The types of a training checkpoint's fields (checked when it is read; those without a default must be there).
_STATE_TYPES: dict[str, type] = {"backbone": dict, "head": dict, "optimizer": dict, "scheduler": dict, "epoch": int,
                                 "step": int, "config": dict, "history": list, "step_in_epoch": int,
                                 "world_size": int, "ranks": list}  # fmt: skip


# ============================================================================ the folder


class _File:
    """A file of the run folder, as an attribute of :class:`RunFolder` that gives its path."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, folder: None, owner: type) -> "_File": ...
    @overload
    def __get__(self, folder: "RunFolder", owner: type) -> Path: ...
    def __get__(self, folder: "RunFolder | None", owner: type) -> "Path | _File":
        return self if folder is None else folder.path / self.name


@dataclass(frozen=True)
class RunFolder:
    """A run folder's files: their paths, reading each with an error that names it, and writing them."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # -- paths (each a Path under ``path``) ---------------------------------------------------------
    records = _File(RECORDS)
    steps = _File(STEPS)
    epochs = _File(EPOCHS)
    config = _File(CONFIG)
    checkpoint = _File(CHECKPOINT)
    progress = _File(PROGRESS)

    def holds_run(self) -> bool:
        """True when a run has left something to lose here: a checkpoint or an epoch's files (a run that
        stopped before its first checkpoint left only its config and progress, which a new run replaces)."""
        return any((self.path / name).exists() for name in (CHECKPOINT, RECORDS, STEPS, EPOCHS))

    def has_records(self) -> bool:
        """True when the run has recorded at least its first epoch (its ``records.parquet`` exists)."""
        return self.records.exists()

    def modified(self) -> float:
        """Latest modification time of the run's files (part files included); 0 when there are none."""
        latest = 0.0
        for name in RUN_FILES:
            p = self.path / name
            for q in (p.iterdir() if p.is_dir() else ()):
                latest = max(latest, q.stat().st_mtime)
            if p.exists():
                latest = max(latest, p.stat().st_mtime)
        return latest

    # -- before writing -------------------------------------------------------------------------
    def check_writable(self, resume: bool, overwrite: bool) -> None:
        """Refuse (:class:`RunExistsError`) to start a new run over one already here, unless ``resume``
        (continue it) or ``overwrite`` (replace it) says what to do. Writes nothing."""
        if self.path.exists() and not self.path.is_dir():
            raise RunExistsError(f"{self.path} is a file, not a run folder; nothing was written. Choose another "
                                 "--out folder.")  # fmt: skip
        if resume or overwrite or not self.holds_run():
            return
        found = ", ".join(name for name in RUN_FILES if (self.path / name).exists())
        raise RunExistsError(
            f"{self.path} already holds a run ({found}); nothing was written. Add --resume to continue it "
            f"(resume=True), --overwrite to replace it (overwrite=True), or choose another --out folder."
        )

    def prepare(self, overwrite: bool) -> None:
        """Create the folder; with ``overwrite``, first remove the run files already in it (only those)."""
        if overwrite:
            for name in RUN_FILES:
                p = self.path / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        self.path.mkdir(parents=True, exist_ok=True)

    def settings_to_resume(self) -> dict[str, Any]:
        """The settings of the run here, to continue it: ``config.json``'s or, when that file is missing or
        damaged, the ones its checkpoint holds (with a warning; training rewrites the file).
        FileNotFoundError when there is no checkpoint; ValueError when neither file can be read."""
        if not self.checkpoint.is_file():
            raise FileNotFoundError(f"nothing to resume: {self.checkpoint} does not exist (drop --resume to "
                                    "start the run)")  # fmt: skip
        try:
            return self.read_config()
        except (FileNotFoundError, ValueError) as damaged:
            try:
                state = TrainingState.load(self.checkpoint)
            except (FileNotFoundError, ValueError) as e:
                raise ValueError(f"nothing to resume: {damaged}; and {e}") from None
            warnings.warn(f"{damaged}; continuing with the settings {self.checkpoint.name} holds", stacklevel=2)
            return dict(state.config)

    def check_resumable(self) -> TrainingState:
        """The checkpoint to continue from, once every file of the epochs it covers reads back whole (their
        record and step parts, ``epochs.csv``): ValueError naming the first that does not, and what to do,
        before anything is written (parts of later epochs are a run killed before its checkpoint: replaced)."""
        state = TrainingState.load(self.checkpoint)
        try:
            if state.epoch:
                for folder in (self.records, self.steps):
                    _read_parts(folder, self.path, up_to=state.epoch)
                if len(self.read_epochs()) < state.epoch:
                    raise ValueError(f"{self.epochs} lists fewer than the checkpoint's {state.epoch} epochs")
        except (FileNotFoundError, ValueError) as e:
            raise ValueError(f"cannot resume {self.path}: {e}. Nothing was written: restore the file, or start "
                             "the run again with --overwrite") from None  # fmt: skip
        return state

    def discard_unstarted(self, created: bool) -> None:
        """After a run failed or stopped before its first checkpoint or epoch files (:meth:`holds_run` is
        False): remove what it wrote (config, progress) and, when ``created`` (the run made the folder) and
        nothing else is left in it, the folder. A folder holding a run is left as it is."""
        if not self.path.is_dir() or self.holds_run():
            return
        for path in (self.config, self.progress):
            path.unlink(missing_ok=True)
        if created and not any(self.path.iterdir()):
            self.path.rmdir()

    # -- writing --------------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        write_text_atomic(self.config, json.dumps(config, indent=2, default=str) + "\n")

    def write_epoch(self, epoch: int, records: pd.DataFrame, steps: pd.DataFrame,
                    history: list[dict[str, Any]]) -> None:  # fmt: skip
        """An epoch's part files (records, then steps), then ``epochs.csv`` with every epoch so far."""
        for folder, frame in ((self.records, records), (self.steps, steps)):
            with atomic_path(folder / f"epoch_{epoch:04d}.parquet") as tmp:  # hidden temp names: readers skip them
                frame.to_parquet(tmp, index=False)
        with atomic_path(self.epochs) as tmp:
            pd.DataFrame(history).to_csv(tmp, index=False)

    def drop_parts_after(self, epoch: int) -> None:
        """Delete part files of epochs after ``epoch`` (left by a run killed between records and checkpoint)."""
        for folder in (self.records, self.steps):
            for part in folder.glob("epoch_*.parquet") if folder.is_dir() else []:
                if int(part.stem.split("_")[1]) > epoch:
                    part.unlink()

    def write_progress(self, progress: Progress) -> None:
        write_text_atomic(self.progress, json.dumps(dataclasses.asdict(progress)) + "\n")

    # -- reading --------------------------------------------------------------------------------
    def _need(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"{path.name} is missing from the run folder {self.path}")

    def read_config(self) -> dict[str, Any]:
        """``config.json`` as a dict."""
        self._need(self.config)
        try:
            config = json.loads(self.config.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{self.config} is truncated or damaged (not valid JSON: {e})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{self.config} is damaged: it holds a {type(config).__name__}, not the run's settings")
        return config

    def read_epochs(self) -> pd.DataFrame:
        """``epochs.csv``: one row per completed epoch."""
        self._need(self.epochs)
        text = self.epochs.read_text()
        rows = list(csv.reader(io.StringIO(text)))
        if not text.endswith("\n") or not rows or any(len(r) != len(rows[0]) for r in rows):
            raise ValueError(f"{self.epochs} is truncated or damaged: its lines do not all hold "
                             f"{len(rows[0]) if rows else 'the header'}'s fields")  # fmt: skip
        return pd.read_csv(io.StringIO(text))

    def read_records(self) -> pd.DataFrame:
        """Every part of ``records.parquet``, in part order."""
        return _read_parts(self.records, self.path)

    def read_steps(self) -> pd.DataFrame:
        """Every part of ``steps.parquet``, in part order."""
        return _read_parts(self.steps, self.path)

    def read_progress(self) -> Progress | None:
        """``progress.json``, or None when the run has not written one (yet)."""
        if not self.progress.is_file():
            return None
        try:
            values = json.loads(self.progress.read_text())
            return Progress(**values)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as e:
            raise ValueError(f"{self.progress} is truncated or damaged ({e})") from None


def _read_parts(path: Path, run_dir: Path, up_to: int | None = None) -> pd.DataFrame:
    """A Parquet file, or a dataset folder of part files read one by one (so a damaged part is named);
    ``up_to``: only the parts of epochs 1..up_to, each of which must be there."""
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is missing from the run folder {run_dir}")
    parts = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_")))
    if up_to is not None and path.is_dir():
        parts = [path / f"epoch_{e:04d}.parquet" for e in range(1, up_to + 1)]
        for part in parts:
            if not part.is_file():
                raise FileNotFoundError(f"{part} is missing (the checkpoint covers {up_to} epochs)")
    if not parts:
        raise ValueError(f"{path} holds no part files yet (a run writes one at the end of each epoch)")
    frames = []
    for part in parts:
        try:
            frames.append(pd.read_parquet(part))
        except Exception as e:  # pyarrow raises several types for a file cut short
            raise ValueError(f"{part} is truncated or damaged ({type(e).__name__}: {e})") from None
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
