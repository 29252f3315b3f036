"""The short training loop: train a backbone with a margin head and record, for a fixed probe set of
training samples, what the paper's "norm versus quality" analyses read (DESIGN.md §2).

::

    from adaface_lab.train import TrainConfig, train
    result = train(TrainConfig(out="runs/demo"))             # SyntheticFaces, ir_tiny at 32 px, AdaFace
    result = train(TrainConfig.from_overrides({"data": "../shared/data/lfw_min20", "center_crop": 112,
                                               "out": "runs/lfw"}))
    adaface-lab train --out runs/demo                        # the same from the shell

A run folder holds:

- ``records.parquet/`` — a Parquet dataset folder, one part file per epoch (``pandas.read_parquet`` reads
  the folder): one row per probe sample and epoch, taken at the training step where that sample was
  seen: ``sample_id, label, epoch, step, norm, p_y, cos_y, z_hat, margin_angle, margin_add, loss,
  brisque, quality, severity`` and the augmentation record (``crop_applied, crop_ratio, ...``).
  ``p_y`` is the softmax probability of the target class under the margined logits, exp(−CE), and
  ``p_y_plain`` the same with the margin taken off (s·cos θ_y as the target logit);
  ``brisque`` is scored on the exact augmented image the network saw, on the training device;
  ``quality = 1 − brisque/100``; ``severity`` is SyntheticFaces' ground truth (NaN for real data).
- ``steps.parquet/`` — one row per optimiser step: loss, accuracy (nearest class, margin taken off), lr,
  the AdaFace EMA μ_z/σ_z, images/s.
- ``epochs.csv`` — one line per epoch (loss, accuracy, images/s, time, held-out verification).
- ``config.json`` — the :class:`TrainConfig` fields, and under ``"run"`` what the run found (classes,
  probe count, device, world size, ...).
- ``checkpoint.pt`` — the latest state, written atomically each epoch and on Ctrl-C/SIGTERM, loadable
  with ``torch.load(weights_only=True)``.

Epochs are numbered from 1; ``step`` is the global optimiser step, from 1.

Reproducibility: every random stream is derived from ``(seed, stream, epoch, rank)`` — the shuffle, the
augmentations and dropout of epoch e do not depend on what ran before — so a run resumed from a
checkpoint (at an epoch boundary, or mid-epoch after an interruption, whose RNG states the checkpoint
holds) writes the same records as an uninterrupted run with the same seed (bit for bit on the CPU).

Multi-GPU: ``torchrun --nproc-per-node N -m adaface_lab.cli train ...`` (the RANK/WORLD_SIZE variables
switch DistributedDataParallel on; nccl on CUDA, gloo on the CPU). ``batch_size`` is per process.
On CUDA: bf16 autocast where supported, channels-last, the training set held on the GPU when it fits.

CPU note: the ``adaface-lab`` command sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads; OpenMP's
default spin-waiting made the demo model ~10x slower on 2 threads whenever other processes shared the
cores. From Python, set it before importing torch, or pass ``threads=1``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ._atomic import atomic_path

from .backbones import BACKBONES, DEFAULT_TEACHING_BACKBONE, build_backbone, preprocess
from .checkpoint import load_checkpoint, save_checkpoint
from .data.augment import RECORD_FIELDS, AugmentConfig, augment_batch
from .data.verification import pairs_from_identities
from .heads import HEADS, build_head

__all__ = [
    "TrainConfig", "RunResult", "train", "load_run_checkpoint", "pick_device",
    "RECORD_COLUMNS", "AUGMENT_COLUMNS", "DEMO_BACKBONE_PARAMS",
]  # fmt: skip

#: Columns of ``records.parquet`` besides the augmentation record and head-specific extras.
RECORD_COLUMNS: tuple[str, ...] = (
    "sample_id", "label", "epoch", "step", "norm", "p_y", "p_y_plain", "cos_y", "z_hat", "margin_angle",
    "margin_add", "loss", "brisque", "quality", "severity",
)  # fmt: skip

#: The per-sample augmentation record columns (see :mod:`adaface_lab.data.augment`).
AUGMENT_COLUMNS: tuple[str, ...] = RECORD_FIELDS

#: Backbone options the CPU demo uses when none are given: ir_tiny at 32 pixels (4x fewer pixels than its
#: native 64) trains about 4x faster, which is what lets the default run learn in a few minutes on 2 cores.
DEMO_BACKBONE_PARAMS: dict[str, dict[str, Any]] = {DEFAULT_TEACHING_BACKBONE: {"input_size": 32}}

_CHECKPOINT_FORMAT = "adaface_lab.train/1"
# Random streams: each is seeded from (seed, stream, epoch, rank), see _seed_for.
_STREAM_INIT, _STREAM_ORDER, _STREAM_AUG, _STREAM_MODEL, _STREAM_PROBE, _STREAM_HOLDOUT = range(6)


# ============================================================================ config


@dataclass
class TrainConfig:
    """Everything a run depends on. Build with ``TrainConfig(...)`` or :meth:`from_overrides`.

    The defaults are the CPU demo: 800 SyntheticFaces identities x 6 images (many identities, few
    images each, so that a short run learns features rather than memorising), ``ir_tiny`` at 32 px, the
    AdaFace head with its official parameters, 10 epochs — under 3 minutes on 2 shared CPU cores. The
    optimiser follows the official recipe (SGD, LR 0.1, momentum 0.9, weight decay 5e-4 except on
    BatchNorm, LR ×0.1 at epochs 12/20/24 of 26), with the milestones as fractions of the run so that
    they scale to short runs; the augmentations keep the official probabilities (0.2 each).
    """

    # -- data
    data: str = "synthetic"  #: "synthetic" (SyntheticFaces) or a folder root/<identity>/*.jpg
    num_identities: int = 800  #: SyntheticFaces: identities trained on
    images_per_identity: int = 6  #: SyntheticFaces: images per identity
    severity: str = "mixed"  #: SyntheticFaces: "mixed" (Beta(1.2, 2.5)) or "uniform"
    center_crop: int | None = None  #: folders: side of a centre square cut first (e.g. 112 of LFW's 250)
    holdout_identities: int = 20  #: identities kept out of training for verification pairs
    eval_pairs: int = 400  #: verification pairs drawn from the held-out identities
    # -- model
    backbone: str = DEFAULT_TEACHING_BACKBONE  #: a name from adaface_lab.backbones
    backbone_params: dict[str, Any] | None = None  #: None: DEMO_BACKBONE_PARAMS for its backbone, else {}
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
    resume: bool = False  #: continue from out/checkpoint.pt
    stop_after: int | None = None  #: end this session (checkpointed) after this epoch; resume later
    progress: bool = True  #: tqdm bars and the one-line epoch summaries

    # Fields that may differ between a run and its resumption (they do not change the records on a CPU).
    RUNTIME_FIELDS: typing.ClassVar[frozenset[str]] = frozenset(
        {"device", "num_workers", "threads", "preload", "out", "resume", "stop_after", "progress", "compile",
         "amp", "channels_last"}
    )

    def __post_init__(self) -> None:
        self.lr_milestones = tuple(float(m) for m in self.lr_milestones)
        self.head_params = dict(self.head_params)
        if self.backbone_params is None:
            self.backbone_params = dict(DEMO_BACKBONE_PARAMS.get(self.backbone, {}))
        self.backbone_params = dict(self.backbone_params)
        _validate(self)

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
    raise TypeError(f"TrainConfig.{name} must be {_type_name(hint)}, got {type(value).__name__} {value!r}")


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
    need(c.center_crop is None or c.center_crop >= 8, "center_crop must be None or ≥ 8 pixels")
    need(c.holdout_identities >= 0, "holdout_identities must be ≥ 0")
    need(c.holdout_identities == 0 or c.holdout_identities >= 2, "holdout_identities must be 0 or ≥ 2")
    need(c.eval_pairs >= 20, "eval_pairs must be ≥ 20 (ten folds of genuine and impostor pairs)")
    BACKBONES.require(c.backbone)
    HEADS.require(c.head)
    need(c.channel_order in ("rgb", "bgr"), "channel_order must be 'rgb' or 'bgr'")
    need(c.epochs >= 1, "epochs must be ≥ 1")
    need(c.batch_size >= 2, "batch_size must be ≥ 2 (BatchNorm needs two samples)")
    need(c.lr > 0 and 0 <= c.momentum < 1 and c.weight_decay >= 0,
         "need lr > 0, 0 ≤ momentum < 1, weight_decay ≥ 0")  # fmt: skip
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


@dataclass
class RunResult:
    """What :func:`train` wrote (paths) and a summary of the last epoch."""

    run_dir: Path
    records: Path
    steps: Path
    epochs: Path
    config: Path
    checkpoint: Path
    summary: dict[str, Any]


# ============================================================================ the loop


def train(config: TrainConfig) -> RunResult:
    """Train as ``config`` says; write records, steps, epochs, config and checkpoints under ``config.out``.

    Raises KeyboardInterrupt after Ctrl-C or SIGTERM, once the last completed step is checkpointed
    (``resume=True`` continues from it). Returns a :class:`RunResult`.
    """
    before = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _train(config)
    finally:
        torch.set_num_threads(before)


def _train(cfg: TrainConfig) -> RunResult:
    """The loop itself, top to bottom (see :func:`train`)."""
    # -------------------------------------------------------------- distributed setup, device
    ddp = int(os.environ.get("RANK", -1)) != -1 and int(os.environ.get("WORLD_SIZE", 1)) > 1
    own_group = False
    if ddp:
        device = pick_device(cfg.device, local_rank=int(os.environ.get("LOCAL_RANK", 0)))
        use_cuda = device.type == "cuda"
        if use_cuda:
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
            own_group = True
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        device, rank, world = pick_device(cfg.device), 0, 1
    master = rank == 0
    show = cfg.progress and master
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    use_amp = use_amp and amp_dtype == torch.bfloat16  # fp16 would need a GradScaler: left out, fp32 then
    channels_last = device.type == "cuda" if cfg.channels_last is None else cfg.channels_last

    run_dir = Path(cfg.out)
    ckpt_path = run_dir / "checkpoint.pt"
    checkpoint = _load_for_resume(cfg, ckpt_path) if cfg.resume else None
    if master:
        run_dir.mkdir(parents=True, exist_ok=True)

    # -------------------------------------------------------------- data
    input_size = build_backbone(cfg.backbone, **cfg.backbone_params).input_size  # data is made at this size
    train_set, holdout = _make_datasets(cfg, input_size)
    data = _TrainData(train_set, cfg, device, show)
    n_train = len(data)
    probe_mask = _probe_mask(n_train, cfg.probe, cfg.seed)  # (N,) bool over training positions
    steps_per_epoch = _steps_per_epoch(n_train, world, cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    milestone_steps = [round(f * total_steps) for f in cfg.lr_milestones]
    eval_pairs = _make_eval_pairs(cfg, holdout, show) if (master and cfg.eval_each_epoch) else None

    # -------------------------------------------------------------- model, head, optimiser
    torch.manual_seed(_seed_for(cfg.seed, _STREAM_INIT))
    backbone = build_backbone(cfg.backbone, **cfg.backbone_params)
    head = build_head(cfg.head, backbone.embedding_size, data.num_classes, **cfg.head_params,
                      validate=device.type == "cpu" and not cfg.compile)  # input checks cost a sync per step
    model = _Model(backbone, head).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(_param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    start_epoch, step, history = 1, 0, []
    if checkpoint is not None:
        model.backbone.load_state_dict(checkpoint["backbone"])
        model.head.load_state_dict(checkpoint["head"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_epoch, step, history = checkpoint["epoch"] + 1, checkpoint["step"], list(checkpoint["history"])
    raw_model = model
    if ddp:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)
    augmenter = _Augmenter(cfg)
    scorer = _BrisqueScorer(cfg.brisque, data, probe_mask, device, show)

    if master:
        _write_json(run_dir / "config.json", {**cfg.to_dict(), "run": {  # the config, then what the run found
            "num_classes": data.num_classes, "num_train_samples": n_train, "num_probe": int(probe_mask.sum()),
            "input_size": input_size, "world_size": world, "device": str(device), "amp": use_amp,
            "channels_last": channels_last, "steps_per_epoch": steps_per_epoch,
            "holdout_labels": list(holdout.labels) if holdout else [], "torch": torch.__version__,
        }})  # fmt: skip
        _drop_parts_after(run_dir, start_epoch - 1)  # parts of epochs the checkpoint does not cover

    stop = _StopRequest()
    stop.install()
    try:
        # ---------------------------------------------------------- the loop
        for epoch in range(start_epoch, cfg.epochs + 1):
            model.train()
            # Every random stream of this epoch is derived from (seed, epoch, rank): resuming replays it.
            order, recorded = _epoch_order(n_train, cfg.seed, epoch, rank, world)
            batches = _batches(order, recorded, cfg.batch_size)
            aug_gen = torch.Generator().manual_seed(_seed_for(cfg.seed, _STREAM_AUG, epoch, rank))  # on the CPU
            torch.manual_seed(_seed_for(cfg.seed, _STREAM_MODEL, epoch, rank))  # dropout
            first, rows, step_rows = 0, [], []
            if checkpoint is not None and checkpoint["step_in_epoch"] and epoch == start_epoch:
                first, rows, step_rows = _restore_mid_epoch(checkpoint, rank, world, aug_gen, device)
            checkpoint = None
            epoch_start, seen, lr = time.perf_counter(), 0.0, _lr_at(step, cfg.lr, milestone_steps, cfg.lr_gamma)
            bar = tqdm(total=len(batches), initial=first, desc=f"epoch {epoch}/{cfg.epochs}", unit="step",
                       disable=not show, leave=False, dynamic_ncols=True)  # fmt: skip
            for k, (images, labels, sample_ids, severity, pos, rec) in enumerate(
                data.batches(batches[first:]), start=first
            ):
                t0 = time.perf_counter()
                lr = _lr_at(step, cfg.lr, milestone_steps, cfg.lr_gamma)
                for group in optimizer.param_groups:
                    group["lr"] = lr

                # augment on the device (records what it did per sample), then the model's input conversion
                images, aug = augmenter(images, aug_gen)  # uint8 (B, 3, S, S) RGB
                x = preprocess(images, channel_order=cfg.channel_order)  # (B, 3, S, S) float in [-1, 1]
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)

                with torch.autocast(device.type, dtype=amp_dtype) if use_amp else nullcontext():
                    logits = model(x, labels)  # (B, C) scaled, margined
                loss = raw_model.head.loss(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1

                # per-sample records of the probe samples in this batch
                with torch.no_grad():
                    ce = F.cross_entropy(logits.detach().float(), labels, reduction="none")  # (B,)
                    plain = _plain_logits(logits.detach(), labels, raw_model.head)  # (B, C) margin taken off
                    ce_plain = F.cross_entropy(plain, labels, reduction="none")  # (B,)
                    hit = (plain.argmax(1) == labels).float()  # (B,) nearest class is the true one
                    probe = probe_mask[pos] & rec  # (B,) bool, on the CPU
                    if probe.any():
                        rows.append(_probe_rows(raw_model.head, logits, labels, ce, ce_plain, probe, pos,
                                                sample_ids, severity, aug, images, scorer, epoch, step))  # fmt: skip
                    stats = torch.stack([ce.sum(), hit.sum(), torch.tensor(float(len(labels)), device=device),
                                         torch.tensor(float(stop.requested is not None), device=device)])
                    if ddp:
                        dist.all_reduce(stats)  # loss and accuracy over all ranks; any rank asked to stop
                    b_loss, b_acc, b_n, b_stop = (float(v) for v in stats.cpu())
                diag = raw_model.head.diagnostics
                dt = time.perf_counter() - t0
                seen += b_n
                step_rows.append({
                    "epoch": epoch, "step": step, "batch": int(b_n), "loss": b_loss / b_n, "acc": b_acc / b_n, "lr": lr,
                    "batch_mean": float(diag["batch_mean"][0]) if "batch_mean" in diag else math.nan,
                    "batch_std": float(diag["batch_std"][0]) if "batch_std" in diag else math.nan,
                    "images_per_s": b_n / dt,
                })  # fmt: skip
                bar.update(1)
                bar.set_postfix(loss=f"{b_loss / b_n:.3f}", acc=f"{b_acc / b_n:.3f}", img_s=f"{b_n / dt:.0f}")
                if b_stop:
                    bar.close()
                    _save(ckpt_path, raw_model, optimizer, cfg, epoch - 1, step, k + 1, history,
                          milestone_steps, rows, step_rows, aug_gen, device, ddp, master)  # fmt: skip
                    if show:
                        tqdm.write(f"interrupted at step {step} (epoch {epoch}, step {k + 1}/{len(batches)}); "
                                   f"checkpoint saved to {ckpt_path}; continue with --resume")  # fmt: skip
                    raise KeyboardInterrupt(stop.requested)
            bar.close()

            # ---------------------------------------------------------- end of epoch: files, checkpoint
            records = _gather_records(rows, ddp, master)
            elapsed = time.perf_counter() - epoch_start
            if master:
                steps_frame = pd.DataFrame(step_rows)
                n_seen = steps_frame["batch"].sum()
                summary = {"epoch": epoch, "steps": len(batches),
                           "loss": float((steps_frame["loss"] * steps_frame["batch"]).sum() / n_seen),
                           "acc": float((steps_frame["acc"] * steps_frame["batch"]).sum() / n_seen),
                           "lr": lr, "images_per_s": seen / elapsed, "time_s": elapsed,
                           **_quick_correlations(records)}  # fmt: skip
                if eval_pairs is not None:
                    summary.update(_evaluate(raw_model.backbone, eval_pairs, cfg.channel_order))
                history.append(summary)
                _write_part(run_dir / "records.parquet", epoch, records)
                _write_part(run_dir / "steps.parquet", epoch, steps_frame)
                _write_csv(run_dir / "epochs.csv", pd.DataFrame(history))
                if show:
                    tqdm.write(_summary_line(summary, cfg.epochs))
            _save(ckpt_path, raw_model, optimizer, cfg, epoch, step, 0, history, milestone_steps,
                  None, None, None, device, ddp, master)  # fmt: skip
            if cfg.stop_after is not None and epoch >= cfg.stop_after:
                break  # a planned pause: the checkpoint above resumes it
        if ddp:
            # every rank leaves together: a rank that tears its gloo group down while rank 0 is still
            # writing the epoch's files can abort at exit ("terminate called without an active exception")
            dist.barrier()
    finally:
        stop.restore()
        if own_group:
            dist.destroy_process_group()

    # -------------------------------------------------------------- result
    return RunResult(
        run_dir=run_dir, records=run_dir / "records.parquet", steps=run_dir / "steps.parquet",
        epochs=run_dir / "epochs.csv", config=run_dir / "config.json", checkpoint=ckpt_path,
        summary=dict(history[-1]) if history else {},
    )  # fmt: skip


# ============================================================================ model and optimiser


class _Model(nn.Module):
    """Backbone + head as one module (one DDP wrapper syncs both): (x, labels) -> (B, C) logits."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embedding, norm = self.backbone(x)  # (B, E) unit, (B, 1)
        return self.head(embedding.float(), norm.float(), labels)


def _plain_logits(logits: torch.Tensor, labels: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """(B, C) logits with the margin taken off the target: s·cos θ_y in place of f(cos θ_y)."""
    plain = logits.float().clone()
    plain[torch.arange(len(labels), device=labels.device), labels] = head.s * head.diagnostics["cos_y"].float()
    return plain


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on everything but BatchNorm parameters (as the official recipe)."""
    bn_params = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for p in m.parameters(recurse=False)}  # fmt: skip
    decay = [p for p in model.parameters() if id(p) not in bn_params]
    no_decay = [p for p in model.parameters() if id(p) in bn_params]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(step: int, base: float, milestone_steps: Sequence[int], gamma: float) -> float:
    """Multi-step schedule: ``base · gamma^(milestones passed)`` for the optimiser step ``step`` (0-based)."""
    return base * gamma ** sum(step >= m for m in milestone_steps)


def pick_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """``"auto"``: cuda if available, else mps, else cpu; otherwise the named device (checked).

    ``local_rank`` (a DDP process): the process's own GPU, ``cuda:<local_rank>``, when the choice is
    CUDA, else the CPU (DDP runs here on CUDA with NCCL or on the CPU with gloo; not on MPS)."""
    if name == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda")
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
    else:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for but CUDA is not available here (use --device cpu or auto)")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {name!r} asked for but MPS is not available here")
    if local_rank is None:
        return device
    return torch.device("cuda", local_rank) if device.type == "cuda" else torch.device("cpu")


# ============================================================================ random streams and order


def _seed_for(seed: int, stream: int, *keys: int) -> int:
    """A 63-bit seed for (seed, stream, *keys): independent streams, the same anywhere."""
    state = np.random.SeedSequence([int(seed), int(stream), *(int(k) for k in keys)]).generate_state(2, np.uint64)
    return int(state[0]) & ((1 << 63) - 1)


def _epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> tuple[np.ndarray, np.ndarray]:
    """This rank's training positions for ``epoch`` and whether each counts for the records.

    One permutation per epoch (from (seed, epoch)), padded to a multiple of ``world`` by repeating its
    head, then dealt round-robin to the ranks (as DistributedSampler). Padded repeats train but are not
    recorded, so every sample gives exactly one record row per epoch.
    """
    perm = np.random.default_rng(_seed_for(seed, _STREAM_ORDER, epoch)).permutation(n)
    pad = (-n) % world
    full = np.concatenate([perm, perm[:pad]])
    recorded = np.concatenate([np.ones(n, bool), np.zeros(pad, bool)])
    return full[rank::world], recorded[rank::world]


def _batches(order: np.ndarray, recorded: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive batches of ``order``; a last batch of one sample joins the previous one (BatchNorm)."""
    cuts = list(range(0, len(order), batch_size))
    if len(cuts) > 1 and len(order) - cuts[-1] == 1:
        cuts.pop()
    edges = [*cuts, len(order)]
    return [(order[a:b], recorded[a:b]) for a, b in zip(edges[:-1], edges[1:])]


def _steps_per_epoch(n: int, world: int, batch_size: int) -> int:
    per_rank = math.ceil(n / world)
    steps = math.ceil(per_rank / batch_size)
    return steps - 1 if steps > 1 and per_rank - (steps - 1) * batch_size == 1 else steps


def _probe_mask(n: int, probe: int | str, seed: int) -> torch.Tensor:
    """(n,) bool: the fixed probe set (``probe`` random positions, or all)."""
    mask = torch.zeros(n, dtype=torch.bool)
    if probe == "all" or int(probe) >= n:
        mask[:] = True
    elif int(probe) > 0:
        chosen = np.random.default_rng(_seed_for(seed, _STREAM_PROBE)).choice(n, size=int(probe), replace=False)
        mask[torch.from_numpy(chosen)] = True
    return mask


# ============================================================================ data


class _Relabelled(Dataset):
    """A subset of a data set whose labels are renumbered 0..K-1 (held-out identities removed)."""

    def __init__(self, base: Dataset, indices: np.ndarray, label_map: dict[int, int]) -> None:
        self.base, self.indices, self.label_map = base, indices, label_map
        self.targets = np.array([label_map[int(t)] for t in np.asarray(base.targets)[indices]], dtype=np.int64)
        self.num_classes = len(label_map)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, dict[str, Any]]:
        image, label, sample_id, meta = self.base[int(self.indices[i])]
        return image, self.label_map[int(label)], sample_id, meta


@dataclass
class _Holdout:
    """Held-out identities: the data set they are in and their labels there."""

    dataset: Dataset
    labels: list[int]


def _make_datasets(cfg: TrainConfig, size: int) -> tuple[Dataset, _Holdout | None]:
    """The training set (images at ``size``) and the held-out identities for verification."""
    if cfg.data == "synthetic":
        from .data.synthetic import SyntheticFaces

        train_set = SyntheticFaces(cfg.num_identities, cfg.images_per_identity, size=size, seed=cfg.seed,
                                   severity=cfg.severity)  # fmt: skip
        holdout = None
        if cfg.holdout_identities:  # further identities of the same generator, never trained on
            held = SyntheticFaces(cfg.holdout_identities, cfg.images_per_identity, size=size, seed=cfg.seed,
                                  severity=cfg.severity, first_identity=cfg.num_identities)  # fmt: skip
            holdout = _Holdout(held, list(range(cfg.holdout_identities)))
        return train_set, holdout

    from .data.folders import ImageFolderFaces

    root = Path(cfg.data)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root} (give 'synthetic' or a root/<identity>/*.jpg folder)")
    base = ImageFolderFaces(root, size=size, center_crop=cfg.center_crop)
    if cfg.holdout_identities == 0:
        return base, None
    if base.num_classes - cfg.holdout_identities < 2:
        raise ValueError(f"{root} has {base.num_classes} identities: too few to hold out {cfg.holdout_identities}")
    rng = np.random.default_rng(_seed_for(cfg.seed, _STREAM_HOLDOUT))
    held = sorted(int(c) for c in rng.choice(base.num_classes, cfg.holdout_identities, replace=False))
    kept = [c for c in range(base.num_classes) if c not in set(held)]
    targets = np.asarray(base.targets)
    indices = np.flatnonzero(~np.isin(targets, held))
    return _Relabelled(base, indices, {c: i for i, c in enumerate(kept)}), _Holdout(base, held)


def _collate(batch: list[tuple[torch.Tensor, int, int, dict[str, Any]]]) -> tuple[torch.Tensor, ...]:
    """Samples -> (images uint8 (B, 3, S, S), labels (B,), sample_ids (B,), severity (B,) float64)."""
    images = torch.stack([b[0] for b in batch])
    labels = torch.tensor([b[1] for b in batch], dtype=torch.int64)
    ids = torch.tensor([b[2] for b in batch], dtype=torch.int64)
    severity = torch.tensor([float(b[3].get("severity", math.nan)) for b in batch], dtype=torch.float64)
    return images, labels, ids, severity


class _TrainData:
    """The training samples, preloaded into memory (small sets) or streamed through a DataLoader.

    ``batches(list of (positions, recorded))`` yields, per batch, ``(images uint8 on the device, labels on
    the device, sample_ids (B,), severity (B,), positions (B,), recorded (B,) bool)``.
    """

    def __init__(self, dataset: Dataset, cfg: TrainConfig, device: torch.device, show: bool) -> None:
        self.dataset, self.device, self.num_workers = dataset, device, cfg.num_workers
        self.num_classes = int(dataset.num_classes)
        first = dataset[0][0]
        nbytes = len(dataset) * first.numel()
        preload = nbytes <= 4 * 2**30 if cfg.preload is None else cfg.preload
        self.images: torch.Tensor | None = None
        if preload:
            loader = DataLoader(dataset, batch_size=256, num_workers=cfg.num_workers, collate_fn=_collate)
            parts = list(tqdm(loader, desc="loading training images", unit="batch", disable=not show, leave=False))
            self.images = torch.cat([p[0] for p in parts])  # (N, 3, S, S) uint8
            self.labels = torch.cat([p[1] for p in parts])
            self.sample_ids = torch.cat([p[2] for p in parts])
            self.severity = torch.cat([p[3] for p in parts])
            if device.type == "cuda":  # a small set fits on the GPU: no host-to-device copies per step
                self.images = self.images.to(device)

    def __len__(self) -> int:
        return len(self.dataset)

    def images_at(self, positions: torch.Tensor) -> torch.Tensor:
        """uint8 (P, 3, S, S) images at the given training positions (un-augmented)."""
        if self.images is not None:
            return self.images[positions.to(self.images.device)]
        return torch.stack([self.dataset[int(i)][0] for i in positions])

    def batches(self, batches: list[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[Any, ...]]:
        dev = self.device
        if self.images is not None:
            for pos, rec in batches:
                p = torch.from_numpy(pos)
                yield (self.images[p.to(self.images.device)].to(dev), self.labels[p].to(dev), self.sample_ids[p],
                       self.severity[p], p, torch.from_numpy(rec))  # fmt: skip
            return
        loader = DataLoader(self.dataset, batch_sampler=[pos.tolist() for pos, _ in batches],
                            num_workers=self.num_workers, collate_fn=_collate,
                            pin_memory=dev.type == "cuda")  # fmt: skip
        for (images, labels, ids, severity), (pos, rec) in zip(loader, batches):
            yield (images.to(dev, non_blocking=True), labels.to(dev), ids, severity, torch.from_numpy(pos),
                   torch.from_numpy(rec))  # fmt: skip


# ============================================================================ augmentation, BRISQUE, records


class _Augmenter:
    """The official augmentations (:mod:`adaface_lab.data.augment`) on the training device.

    Parameters are drawn from a CPU generator (cheap, and the same draws on every device); returns the
    augmented uint8 images and the per-sample record {field: (B,) CPU tensor}.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.config = AugmentConfig(crop_prob=cfg.crop_prob, low_res_prob=cfg.lowres_prob,
                                    photometric_prob=cfg.photometric_prob)  # fmt: skip

    def __call__(self, images: torch.Tensor, generator: torch.Generator,
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
        return augment_batch(images, generator, self.config)


class _BrisqueScorer:
    """BRISQUE of the augmented uint8 images the network saw, on the training device.

    An image the augmentation left untouched is the data set's own image, the same every epoch: those
    are scored once, up front, for every probe sample (in fixed batches, so a resumed run gets the very
    same numbers); each step scores only its augmented probe images.
    """

    def __init__(self, enabled: bool, data: "_TrainData", probe_mask: torch.Tensor, device: torch.device,
                 show: bool) -> None:  # fmt: skip
        self.enabled = enabled
        self.base = torch.full((len(probe_mask),), math.nan, dtype=torch.float64)  # (N,) by position
        self.degenerate = 0
        if not enabled:
            return
        positions = torch.nonzero(probe_mask).reshape(-1)
        chunks = positions.split(256)
        for chunk in tqdm(chunks, desc="BRISQUE of the probe images", unit="batch", disable=not show, leave=False):
            self.base[chunk] = self._score(data.images_at(chunk).to(device))

    def _score(self, images: torch.Tensor) -> torch.Tensor:
        from .quality import brisque_torch

        scores = brisque_torch(images, warn=False).double().cpu()
        self.degenerate += int(scores.isnan().sum())
        return scores

    def __call__(self, images: torch.Tensor, positions: torch.Tensor, untouched: torch.Tensor) -> torch.Tensor:
        """images (P, 3, S, S) uint8 as seen, their positions (P,) and untouched flags (P,) -> (P,) float64."""
        out = self.base[positions].clone()
        touched = ~untouched
        if self.enabled and touched.any():
            out[touched] = self._score(images[touched.to(images.device)])
        return out


def _probe_rows(
    head: nn.Module, logits: torch.Tensor, labels: torch.Tensor, ce: torch.Tensor, ce_plain: torch.Tensor,
    probe: torch.Tensor, positions: torch.Tensor, sample_ids: torch.Tensor, severity: torch.Tensor,
    aug: dict[str, torch.Tensor], images: torch.Tensor, scorer: _BrisqueScorer, epoch: int, step: int,
) -> dict[str, np.ndarray]:
    """The record columns for the probe samples of one batch (P rows); tensors are (B, ...) on the device."""
    idx = torch.nonzero(probe).reshape(-1)  # (P,) on the CPU
    on_dev = idx.to(labels.device)
    diag = head.diagnostics
    # (B,) each sample's loss: its cross-entropy plus the batch's auxiliary term (MagFace), as head.loss
    sample_loss = ce if head.aux_loss is None else ce + head.aux_loss.detach().float()

    def col(t: torch.Tensor) -> np.ndarray:
        return t.detach()[on_dev].double().cpu().numpy()

    p = len(idx)
    out: dict[str, np.ndarray] = {
        "sample_id": sample_ids[idx].numpy().astype(np.int64),
        "label": labels[on_dev].cpu().numpy().astype(np.int64),
        "epoch": np.full(p, epoch, np.int64),
        "step": np.full(p, step, np.int64),
        "norm": col(diag["norm"]),
        "p_y": np.exp(-col(ce)),
        "p_y_plain": np.exp(-col(ce_plain)),
        "cos_y": col(diag["cos_y"]),
        "z_hat": col(diag["z_hat"]) if "z_hat" in diag else np.full(p, np.nan),
        "margin_angle": col(diag["margin_angle"]) if "margin_angle" in diag else np.full(p, np.nan),
        "margin_add": col(diag["margin_add"]) if "margin_add" in diag else np.full(p, np.nan),
        "loss": col(sample_loss),
    }
    untouched = ~(aug["crop_applied"].bool() | aug["resize_applied"].bool() | aug["photo_applied"].bool())
    brisque = scorer(images[on_dev], positions[idx], untouched[idx.to(untouched.device)].cpu()).numpy()
    out["brisque"] = brisque
    out["quality"] = 1.0 - brisque / 100.0
    out["severity"] = severity[idx].numpy().astype(np.float64)
    for name, values in aug.items():
        v = values[idx.to(values.device)].cpu()
        out[name] = v.numpy() if v.dtype == torch.bool or not v.is_floating_point() else v.double().numpy()
    for name in ("margin_mult", "t", "regularizer"):  # head-specific extras
        if name in diag:
            out[name] = col(diag[name])
    return out


def _concat_rows(rows: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in RECORD_COLUMNS})
    return pd.DataFrame({k: np.concatenate([r[k] for r in rows]) for k in rows[0]})


def _gather_records(rows: list[dict[str, np.ndarray]], ddp: bool, master: bool) -> pd.DataFrame:
    """This epoch's record rows of every rank, on rank 0, sorted by sample id."""
    frame = _concat_rows(rows)
    if ddp:
        parts: list[Any] = [None] * dist.get_world_size() if master else []
        dist.gather_object(frame, parts if master else None, dst=0)
        if master:  # ranks without probe rows this epoch send an empty frame: leave those out
            frame = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    return frame.sort_values("sample_id", kind="stable").reset_index(drop=True)


def _quick_correlations(records: pd.DataFrame) -> dict[str, float]:
    """Pearson r of ‖z‖ and P_y with quality (1 − severity where known, else 1 − BRISQUE/100)."""
    nan = np.full(len(records), np.nan)
    qualities = {"severity": 1.0 - records.get("severity", nan), "brisque": records.get("quality", nan)}
    out: dict[str, float] = {}
    for qname, q in qualities.items():
        for feature in ("norm", "p_y"):
            x, y = np.asarray(records.get(feature, nan), np.float64), np.asarray(q, np.float64)
            ok = np.isfinite(x) & np.isfinite(y)
            varies = ok.sum() > 2 and x[ok].std() > 0 and y[ok].std() > 0
            out[f"r_{feature}_q{qname}"] = float(np.corrcoef(x[ok], y[ok])[0, 1]) if varies else math.nan
    return out


# ============================================================================ held-out verification


def _make_eval_pairs(cfg: TrainConfig, holdout: _Holdout | None, show: bool) -> tuple[Any, ...] | None:
    """Pairs from the held-out identities and their decoded images, or None (no holdout, or too few
    same-identity pairs in it)."""
    if holdout is None:
        return None
    sizes = np.bincount(np.asarray(holdout.dataset.targets)[np.isin(holdout.dataset.targets, holdout.labels)])
    possible_same = int(sum(k * (k - 1) // 2 for k in sizes))
    n_pairs = min(cfg.eval_pairs, 2 * possible_same)
    if n_pairs < 20:
        return None
    pairs = pairs_from_identities(holdout.dataset, holdout.labels, n_pairs=n_pairs, seed=cfg.seed)
    return pairs, pairs.load_images(progress=show)


def _evaluate(backbone: nn.Module, eval_pairs: tuple[Any, ...], channel_order: str) -> dict[str, float]:
    from .evaluate import evaluate_pairs

    pairs, images = eval_pairs
    result = evaluate_pairs(backbone, pairs, channel_order=channel_order, images=images, progress=False)
    out = {"eval_accuracy": float(result["accuracy"]), "eval_auc": float(result.get("auc", math.nan))}
    for far, tar in result.get("tar_at_far", {}).items():
        out[f"eval_tar@far={far:g}"] = float(tar)
    return out


# ============================================================================ files and checkpoints


def _write_atomic(path: Path, write: Any, suffix: str = ".tmp") -> None:
    """Call ``write(tmp_path)`` then move the temp file onto ``path`` (readers never see half a file)."""
    with atomic_path(path, suffix=suffix) as tmp:
        write(str(tmp))


def _write_json(path: Path, obj: Any) -> None:
    _write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    _write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def _write_part(folder: Path, epoch: int, frame: pd.DataFrame) -> None:
    """One part file of a Parquet dataset folder (hidden temp names are skipped by readers)."""
    _write_atomic(folder / f"epoch_{epoch:04d}.parquet", lambda tmp: frame.to_parquet(tmp, index=False))


def _drop_parts_after(run_dir: Path, epoch: int) -> None:
    """Delete part files of epochs after ``epoch`` (left by a run killed between records and checkpoint)."""
    for folder in (run_dir / "records.parquet", run_dir / "steps.parquet"):
        for part in folder.glob("epoch_*.parquet") if folder.is_dir() else []:
            if int(part.stem.split("_")[1]) > epoch:
                part.unlink()


def _summary_line(s: dict[str, Any], epochs: int) -> str:
    line = (f"epoch {s['epoch']}/{epochs} | loss {s['loss']:.3f} | acc {s['acc']:.3f} | "
            f"{s['images_per_s']:.0f} img/s | {s['time_s']:.0f} s | lr {s['lr']:.3g}")  # fmt: skip
    for key, label in (("r_norm_qseverity", "r(‖z‖,1−sev)"), ("r_p_y_qseverity", "r(P_y,1−sev)"),
                       ("r_norm_qbrisque", "r(‖z‖,q_brisque)"), ("eval_accuracy", "held-out acc")):  # fmt: skip
        if key in s and np.isfinite(s[key]):
            line += f" | {label} {s[key]:+.3f}" if key.startswith("r_") else f" | {label} {s[key]:.3f}"
    return line


def _rank_state(rows: list[dict[str, np.ndarray]] | None, step_rows: list[dict[str, Any]] | None,
                aug_gen: torch.Generator | None, device: torch.device) -> dict[str, Any]:
    """This rank's mid-epoch state: RNG states and the epoch's rows so far (tensors and plain types)."""
    columns = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]} if rows else {}
    state: dict[str, Any] = {
        "torch_rng": torch.get_rng_state(),
        "aug_rng": aug_gen.get_state() if aug_gen is not None else torch.empty(0, dtype=torch.uint8),
        "rows": {k: torch.from_numpy(v) for k, v in columns.items()},
        "step_rows": list(step_rows or []),
    }
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def _save(
    path: Path, model: _Model, optimizer: torch.optim.Optimizer, cfg: TrainConfig, epoch: int, step: int,
    step_in_epoch: int, history: list[dict[str, Any]], milestone_steps: list[int],
    rows: list[dict[str, np.ndarray]] | None, step_rows: list[dict[str, Any]] | None,
    aug_gen: torch.Generator | None, device: torch.device, ddp: bool, master: bool,
) -> None:
    """Checkpoint after ``epoch`` complete epochs plus ``step_in_epoch`` steps of the next (atomic)."""
    ranks = [_rank_state(rows, step_rows, aug_gen, device)] if step_in_epoch else []
    if ddp and step_in_epoch:
        gathered: list[Any] = [None] * dist.get_world_size() if master else []
        dist.gather_object(ranks[0], gathered if master else None, dst=0)
        ranks = gathered if master else ranks
    if not master:
        return
    save_checkpoint({
        "format": _CHECKPOINT_FORMAT,
        "backbone": model.backbone.state_dict(),
        "head": model.head.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {"kind": "multistep", "milestone_steps": list(milestone_steps), "gamma": cfg.lr_gamma,
                      "base_lr": cfg.lr},  # fmt: skip
        "epoch": int(epoch),
        "step": int(step),
        "step_in_epoch": int(step_in_epoch),
        "world_size": dist.get_world_size() if ddp else 1,
        "ranks": ranks,
        "history": [{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in h.items()}
                    for h in history],  # fmt: skip
        "config": cfg.to_dict(),
    }, path)


def load_run_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a run's ``checkpoint.pt`` weights-only; raises ValueError when it is not one of ours."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a training checkpoint of adaface_lab.train")
    return state


def _load_for_resume(cfg: TrainConfig, path: Path) -> dict[str, Any]:
    """The checkpoint to resume from, after checking that it belongs to the same run settings."""
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} does not exist (drop --resume to start the run)")
    state = load_run_checkpoint(path)
    saved, now = state["config"], cfg.to_dict()
    differ = [k for k in now if k not in TrainConfig.RUNTIME_FIELDS and saved.get(k) != now[k]]
    if differ:
        details = ", ".join(f"{k}: {saved.get(k)!r} in the run, {now[k]!r} now" for k in differ)
        raise ValueError(f"cannot resume {path.parent}: settings differ ({details})")
    return state


def _restore_mid_epoch(
    checkpoint: dict[str, Any], rank: int, world: int, aug_gen: torch.Generator, device: torch.device
) -> tuple[int, list[dict[str, np.ndarray]], list[dict[str, Any]]]:
    """Continue inside an epoch: restore this rank's RNG states and the rows recorded so far."""
    if checkpoint["world_size"] != world:
        raise ValueError(f"the checkpoint was written mid-epoch by {checkpoint['world_size']} processes; "
                         f"resume it with the same number (now {world})")  # fmt: skip
    state = checkpoint["ranks"][rank]
    torch.set_rng_state(state["torch_rng"])
    aug_gen.set_state(state["aug_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    rows = [{k: v.numpy() for k, v in state["rows"].items()}] if state["rows"] else []
    return int(checkpoint["step_in_epoch"]), rows, list(state["step_rows"])


class _StopRequest:
    """Ctrl-C / SIGTERM ask the loop to stop after the current step (a second Ctrl-C stops at once)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (e.g. not under Streamlit)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        print(f"\n{self.requested}: stopping after the current step (send it again to stop at once)",
              file=sys.stderr, flush=True)  # fmt: skip

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
