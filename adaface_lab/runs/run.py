"""A training run read back from its folder (:class:`Run`), and a backbone rebuilt from a checkpoint
(:func:`load_backbone`: a run's ``checkpoint.pt``, an authors' Lightning ``.ckpt`` or a plain state dict).

::

    run = load_run("runs/demo")
    run.records, run.steps, run.epochs, run.config      # frames and the run's settings
    run.records_at(-1)                                  # the last recorded epoch's rows
    model = run.backbone("cpu")                          # the trained backbone, in eval mode
    faces = run.images([0, 5])                          # the un-augmented images of two samples
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..analysis import REQUIRED_COLUMNS, require_columns, resolve_epoch, with_quality_columns
from ..backbones import build_backbone, list_backbones
from ..checkpoint import backbone_shapes, guess_backbone, load_backbone_state, load_checkpoint
from ..config import TrainConfig
from .datasets import source_dataset, training_data
from .layout import CONFIG, RECORDS, RunFolder, TrainingState

if TYPE_CHECKING:
    from ..data.verification import VerificationPairs

__all__ = ["Run", "load_run", "HeldOutPairs", "TrainedBackbone", "load_backbone"]


@dataclass
class HeldOutPairs:
    """Verification pairs from a run's held-out identities, with a quality per image.

    ``pairs``: the :class:`~adaface_lab.data.verification.VerificationPairs`; ``quality``: (P, 2)
    per image, higher is better — ``1 - severity`` on SyntheticFaces (``source="severity"``), else
    ``1 - BRISQUE/100`` of the image (``source="brisque"``).
    """

    pairs: "VerificationPairs"
    quality: np.ndarray
    source: str


@dataclass
class Run:
    """A training run read from its folder.

    Attributes:
        path: the run folder.
        records: one row per probe sample and epoch (with the quality columns added), sorted by epoch
            and sample id.
        steps: one row per optimiser step.
        epochs: one row per completed epoch.
        config: the run's ``config.json`` (the TrainConfig fields; under ``"run"`` what the run found).
    """

    path: Path
    records: pd.DataFrame
    steps: pd.DataFrame = field(default_factory=pd.DataFrame)
    epochs: pd.DataFrame = field(default_factory=pd.DataFrame)
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> "Run":
        """Read a run folder. FileNotFoundError names a missing folder or file; ValueError a file that
        is cut short or damaged, records without rows, or records without a required column."""
        folder = RunFolder(Path(run_dir))
        path = folder.path
        if not path.exists():
            raise FileNotFoundError(f"run folder not found: {path}")
        if not path.is_dir():
            raise ValueError(f"{path} is a file; expected a run folder (holding {RECORDS})")
        if not folder.has_records():
            contents = sorted(p.name for p in path.iterdir())[:8]
            raise FileNotFoundError(
                f"no {RECORDS} in {path} (contents: {contents or 'empty folder'}); a run writes it at the end "
                f"of its first epoch (`adaface-lab train --out {path}`)"
            )
        records = folder.read_records()
        if len(records) == 0:
            raise ValueError(f"{folder.records} holds no rows (did the run finish an epoch?)")
        require_columns(records, REQUIRED_COLUMNS, what=str(folder.records))
        records = with_quality_columns(records).sort_values(["epoch", "sample_id"], kind="stable")
        return cls(path=path, records=records.reset_index(drop=True), steps=folder.read_steps(),
                   epochs=folder.read_epochs(), config=folder.read_config())  # fmt: skip

    # -- what the folder says ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)

    @property
    def recorded_epochs(self) -> list[int]:
        """The epochs present in the records, ascending."""
        return sorted(int(e) for e in self.records["epoch"].unique())

    def records_at(self, epoch: int) -> pd.DataFrame:
        """The records of one epoch: its number, or a negative index from the end (-1: the last)."""
        return self.records[self.records["epoch"] == resolve_epoch(self.records, epoch)]

    @property
    def train_config(self) -> TrainConfig:
        """The run's settings as a :class:`~adaface_lab.config.TrainConfig` (fields it does not know are
        left out)."""
        if not self.config:
            raise ValueError(f"{self.path / CONFIG} holds no settings: cannot rebuild the run's data or model")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        values = {k: v for k, v in self.config.items() if k in known}
        if "image_size" not in self.config.get("run", {}):  # a run from before images were made at 112 px:
            found = self.config.get("run", {}).get("input_size")  # at the network's input size, uncropped by default
            values = {"center_crop": 0, "backbone": "ir_tiny", **{k: v for k, v in values.items() if v is not None}}
            values.setdefault("image_size", int(found) if found else None)
        return TrainConfig.from_overrides(values)

    @property
    def image_size(self) -> int:
        """The side, in pixels, of the images as made and augmented, and scored with BRISQUE."""
        found = self.config.get("run", {}).get("image_size")
        return int(found) if found else int(self.input_size)

    @property
    def input_size(self) -> int:
        """The side, in pixels, of the images the backbone was trained on."""
        found = self.config.get("run", {}).get("input_size")
        if found:
            return int(found)
        cfg = self.train_config
        return int(build_backbone(cfg.backbone, **cfg.backbone_params).input_size)

    # -- what it trained ------------------------------------------------------------------------
    def checkpoint(self) -> TrainingState:
        """The run's latest checkpoint (weights-only)."""
        return TrainingState.load(self.folder.checkpoint)

    def backbone(self, device: str | torch.device = "cpu") -> nn.Module:
        """The trained backbone, in eval mode on ``device``."""
        return load_backbone(self.folder.checkpoint, device=device).model

    # -- its data -------------------------------------------------------------------------------
    def images(self, sample_ids: list[int] | np.ndarray, size: int | None = None) -> torch.Tensor:
        """The un-augmented images of ``sample_ids``: uint8 (K, 3, size, size) RGB, by default at the run's
        :attr:`image_size`.

        The records' BRISQUE was taken on the augmented image of that epoch, which may differ
        (crop, low resolution, photometric jitter; see the ``*_applied`` record columns).
        """
        size = self.image_size if size is None else int(size)
        if not len(sample_ids):
            return torch.empty(0, 3, size, size, dtype=torch.uint8)
        dataset = source_dataset(self.train_config, size)
        return torch.stack([dataset[int(i)][0] for i in sample_ids])

    def heldout_pairs(self, n_pairs: int = 1000, seed: int = 0) -> HeldOutPairs:
        """Pairs drawn from the identities the run never trained on, at the run's :attr:`image_size` (a folder's
        quality is BRISQUE there; :func:`~adaface_lab.evaluate.evaluate_pairs` resizes to the network's input).

        Raises ValueError when the run held no identities out, or its data folder changed since.
        """
        from ..quality import brisque, quality_from_brisque

        cfg = self.train_config
        _, held = training_data(cfg, self.image_size)
        if held is None or len(held.labels) < 2:
            raise ValueError(f"{self.path} held out {cfg.holdout_identities} identities: no verification pairs")
        recorded = self.config.get("run", {}).get("holdout_labels")
        if cfg.data != "synthetic" and recorded is not None and [int(c) for c in recorded] != held.labels:
            raise ValueError(f"{cfg.data} changed since the run: its held-out identities are no longer "
                             f"the ones {self.path / CONFIG} lists")  # fmt: skip
        pairs = held.pairs(n_pairs, seed)
        index = np.asarray(pairs.sources, dtype=np.int64).reshape(-1, 2)  # (P, 2) data-set indices
        if cfg.data == "synthetic":
            return HeldOutPairs(pairs, 1.0 - np.asarray(held.dataset.severities, dtype=np.float64)[index], "severity")
        images, _ = pairs.load_images(progress=False)
        quality = quality_from_brisque(brisque(images)).reshape(-1, 2)
        return HeldOutPairs(pairs, np.asarray(quality, dtype=np.float64), "brisque")

    def __repr__(self) -> str:
        ep = self.recorded_epochs
        return (
            f"Run({str(self.path)!r}, records={len(self.records)} rows, epochs {ep[0]}..{ep[-1]} "
            f"({len(ep)} recorded), steps={len(self.steps)} rows)"
        )


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """Read a run folder (:meth:`Run.load`)."""
    return Run.load(run_dir)


# ============================================================================ backbones from checkpoints


@dataclass
class TrainedBackbone:
    """A backbone rebuilt from a checkpoint, in eval mode, and what the checkpoint says about it.

    ``format``: ``"run"`` (``checkpoint.pt`` of ``adaface-lab train``), ``"lightning"`` or ``"state_dict"``;
    ``channel_order``: the run's, or None when the file does not say (the authors' models take BGR);
    ``head_state``: the head's tensors (AdaFace's ``batch_mean``/``batch_std`` among them);
    ``config``: the run's TrainConfig fields (None for other checkpoints); ``tensors``: tensors loaded.
    """

    model: nn.Module
    name: str
    format: str
    channel_order: str | None
    head_state: dict[str, torch.Tensor]
    config: dict[str, Any] | None
    epoch: int | None
    tensors: int


def load_backbone(path: str | os.PathLike[str], backbone: str | None = None,
                  device: str | torch.device = "cpu") -> TrainedBackbone:  # fmt: skip
    """The backbone a checkpoint holds, read weights-only, in eval mode on ``device``.

    A run's ``checkpoint.pt`` says which backbone it is (``backbone`` is ignored). Another checkpoint needs
    ``backbone``, a registered name; by default the one whose tensor names and shapes match the file.
    Raises FileNotFoundError, or ValueError (naming the file) when it cannot be read or matches nothing.
    """
    obj = load_checkpoint(path)
    if TrainingState.is_one(obj):
        state = TrainingState.from_object(obj, path)
        cfg = state.config
        name, params = _run_backbone(state, path)
        model = build_backbone(name, **params)
        try:
            model.load_state_dict(state.backbone)
        except RuntimeError as e:
            raise _unloadable(path, e) from None
        return TrainedBackbone(model.to(device).eval(), name, "run", str(cfg.get("channel_order", "rgb")),
                               dict(state.head), cfg, state.epoch, len(state.backbone))  # fmt: skip
    name = backbone or guess_backbone(obj)
    if name is None:
        raise ValueError(f"{path}: no registered backbone ({', '.join(list_backbones())}) matches this "
                         "checkpoint's tensors; it is not an IResNet state dict")  # fmt: skip
    model = build_backbone(name)
    try:
        report = load_backbone_state(obj, model, strict=True, source=str(path))
    except RuntimeError as e:
        raise _unloadable(path, e) from None
    epoch = report.meta.get("epoch")
    return TrainedBackbone(model.to(device).eval(), name, report.format, None, report.head_state_dict, None,
                           epoch if isinstance(epoch, int) else None, len(report.loaded_keys))  # fmt: skip


def _unloadable(path: str | os.PathLike[str], error: RuntimeError) -> ValueError:
    """Tensors of the right names and shapes that torch cannot copy into the weights (a dtype it cannot
    convert), as a ValueError naming the file."""
    return ValueError(f"{path}: its backbone tensors cannot be loaded ({' '.join(str(error).split())[:200]})")


def _run_backbone(state: TrainingState, path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """The backbone a run's checkpoint names, once the shapes its config implies (found without memory) are
    those of the tensors the file holds: ValueError naming the file otherwise, before anything is made."""
    name, params = state.config.get("backbone"), state.config.get("backbone_params") or {}
    if not isinstance(name, str) or not isinstance(params, dict):
        raise ValueError(f"{path} is a damaged training checkpoint: its config names no backbone")
    try:
        expected = backbone_shapes(name, **params)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: its config asks for a backbone this lab does not make ({e})") from None
    found = {k: tuple(v.shape) for k, v in state.backbone.items()}
    if found != expected:
        differ = sorted(set(found) ^ set(expected)) or [k for k in expected if found[k] != expected[k]]
        k = differ[0]
        raise ValueError(f"{path} is a damaged training checkpoint: its config asks for {name} "
                         f"{' '.join(f'{a}={b}' for a, b in params.items())}, whose tensors differ from the file's "
                         f"in {len(differ)} place(s), e.g. {k}: {found.get(k, 'absent')} in the file, "
                         f"{expected.get(k, 'absent')} for the config")  # fmt: skip
    return name, dict(params)
