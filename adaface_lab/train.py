"""The short training loop: train a backbone with a margin head and record, for a fixed probe set of
training samples, what the paper's "norm versus quality" analyses read (DESIGN.md §2).

::

    from adaface_lab.train import TrainConfig, train
    result = train(TrainConfig(out="runs/demo"))             # SyntheticFaces, ir_tiny at 32 px, AdaFace
    result = train(TrainConfig(data="../shared/data/lfw_min20", out="runs/lfw"))  # crop and model from the data
    result = train(config, on_step=lambda s: print(s["step"], s["loss"], s["eta_s"]))
    adaface-lab train --out runs/demo                        # the same from the shell

Images: every sample is made at the config's ``image_size`` (112 px: the paper's aligned crops, or a
folder's own smaller side), augmented at that size on the training device, scored there with BRISQUE (the
probe samples), and only then resized to the network's input size on the device (bilinear with
antialiasing — the triangle filter widened to the scale when shrinking, as PIL's — rounded to uint8).
A folder's crop, image size and backbone, when not given, are chosen from its images and the device as the
run starts, and printed (:func:`adaface_lab.runs.folder_recipe`); ``config.json`` keeps the values used.

The run folder it writes (records, steps, epochs, config, checkpoint, progress) is described, written and
read by :mod:`adaface_lab.runs`; the config is :class:`~adaface_lab.config.TrainConfig`. A folder that
already holds a run is refused unless ``resume`` (continue it) or ``overwrite`` (replace it) says so.

Reproducibility: every random stream is derived from ``(seed, stream, epoch, rank)``
(:func:`adaface_lab.config.seed_for`) — the shuffle, the augmentations and dropout of epoch e do not depend
on what ran before — so a run resumed from a checkpoint (at an epoch boundary, or mid-epoch after an
interruption, whose RNG states the checkpoint holds) writes the same records as an uninterrupted run with
the same seed (bit for bit on the CPU).

Multi-GPU: ``torchrun --nproc-per-node N -m adaface_lab.cli train ...`` (the RANK/WORLD_SIZE variables
switch DistributedDataParallel on; nccl on CUDA, gloo on the CPU). ``batch_size`` is per process.
On CUDA: bf16 autocast where supported, channels-last, the training set held on the GPU when it fits.

CPU note: the ``adaface-lab`` command sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads; OpenMP's
default spin-waiting made the demo model ~10x slower on 2 threads whenever other processes shared the
cores. From Python, set it before importing torch, or pass ``threads=1``.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .analysis import quality_correlations
from .backbones import build_backbone, preprocess
from .config import (
    DEMO_BACKBONE_PARAMS,
    STREAM_AUG,
    STREAM_INIT,
    STREAM_MODEL,
    STREAM_ORDER,
    STREAM_PROBE,
    TrainConfig,
    seed_for,
)
from .data.augment import AugmentConfig, augment_batch
from .errors import LabError
from .heads import build_head
from .quality import brisque_torch, quality_from_brisque
from .runs import (
    HEAD_EXTRA_COLUMNS,
    RECORD_COLUMNS,
    FolderRecipe,
    HeldOut,
    Progress,
    RunFolder,
    TrainingState,
    resolve_config,
    training_data,
)

__all__ = ["TrainConfig", "RunResult", "OnStep", "train", "pick_device", "DEMO_BACKBONE_PARAMS", "TrainingDiverged",
           "TrainingInterrupted", "INPUT_RESIZE"]

#: How the augmented image becomes the network's input when the sizes differ (:func:`_resized`).
INPUT_RESIZE = "bilinear, antialiased, to uint8"

#: ``train(config, on_step=f)`` calls ``f(info)`` after every optimisation step (on rank 0) with
#: ``info = {"step", "total_steps", "epoch", "loss", "images_per_s", "eta_s"}``: the global step (from 1) of
#: the run's ``total_steps``, its epoch (from 1), the batch's margined loss over all processes, the step's
#: images per second, and the estimated seconds left.
OnStep = Callable[[dict[str, Any]], None]


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

    @classmethod
    def of(cls, folder: RunFolder, history: list[dict[str, Any]]) -> "RunResult":
        return cls(run_dir=folder.path, records=folder.records, steps=folder.steps, epochs=folder.epochs,
                   config=folder.config, checkpoint=folder.checkpoint, summary=dict(history[-1]) if history else {})


# ============================================================================ the loop


def train(config: TrainConfig, on_step: OnStep | None = None) -> RunResult:
    """Train as ``config`` says; write records, steps, epochs, config, checkpoints and progress under
    ``config.out`` (:mod:`adaface_lab.runs`); call ``on_step`` after every step (see :data:`OnStep`).

    Raises :class:`~adaface_lab.runs.RunExistsError` when ``config.out`` holds a run and neither ``resume``
    nor ``overwrite`` is set (nothing is written then); ValueError when ``resume`` finds a damaged run (nothing
    written either); :class:`TrainingDiverged` when the loss turns NaN or inf (the last good checkpoint is
    kept); and :class:`TrainingInterrupted` (a KeyboardInterrupt) after Ctrl-C or SIGTERM, once the last
    completed step is checkpointed (``resume=True`` continues from it; its message says how many steps a second
    Ctrl-C lost). A run that fails before its first checkpoint removes what it wrote (and the folder it made).
    """
    before = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, on_step)
    finally:
        torch.set_num_threads(before)


def _train(cfg: TrainConfig, on_step: OnStep | None) -> RunResult:
    """The loop itself, top to bottom (see :func:`train`)."""
    # -------------------------------------------------------------- processes, device, run folder
    env = _Env.setup(cfg)
    folder = RunFolder(Path(cfg.out))
    folder.check_writable(resume=cfg.resume, overwrite=cfg.overwrite)  # never replace a run by accident
    cfg, recipe = _resolve(cfg, env)  # a folder's crop, image size and backbone, unless given (printed)
    resume = _load_for_resume(cfg, folder) if cfg.resume else None  # every file it covers reads back whole
    env.barrier()  # every process has looked at the folder before rank 0 writes to it
    created = not folder.path.exists()  # a run that fails before its first checkpoint leaves no folder behind

    # -------------------------------------------------------------- data (made, augmented, scored at image_size)
    input_size = build_backbone(cfg.backbone, **cfg.backbone_params).input_size  # the network's, applied last
    train_set, holdout = training_data(cfg)
    data = _TrainData(train_set, cfg, env.device, env.show)
    probe_mask = _probe_mask(len(data), cfg.probe, cfg.seed)  # (N,) bool over training positions
    steps_per_epoch = _steps_per_epoch(len(data), env.world, cfg.batch_size)
    schedule = _Schedule.of(cfg, steps_per_epoch * cfg.epochs)
    eval_pairs = _make_eval_pairs(cfg, holdout, env.show) if (env.master and cfg.eval_each_epoch) else None
    start_epoch, step, history = (resume.epoch + 1, resume.step, list(resume.history)) if resume else (1, 0, [])
    progress = _Progress(folder, on_step, env.master, cfg.epochs, steps_per_epoch)
    if env.master:
        folder.prepare(overwrite=cfg.overwrite)
        folder.write_config(_config_record(cfg, env, data, probe_mask, input_size, steps_per_epoch, holdout, recipe))
        folder.drop_parts_after(start_epoch - 1)  # parts of epochs the checkpoint does not cover
        progress.write("preparing", start_epoch, step)

    stop = _StopRequest()
    stop.install()
    checkpointer: _Checkpointer | None = None
    try:
        # ---------------------------------------------------------- model, head, optimiser
        raw_model, model, optimizer = _build_model(cfg, env, data.num_classes, resume)
        augmenter = _Augmenter(cfg)
        recorder = _Recorder(raw_model.head, _BrisqueScorer(cfg.brisque, data, probe_mask, env.device, env.show),
                             probe_mask, env)  # fmt: skip
        checkpointer = _Checkpointer(folder.checkpoint, raw_model, optimizer, schedule, cfg, env, resume)

        # ---------------------------------------------------------- the loop
        progress.begin(step)
        for epoch in range(start_epoch, cfg.epochs + 1):
            model.train()
            # Every random stream of this epoch is derived from (seed, epoch, rank): resuming replays it.
            batches = _batches(*_epoch_order(len(data), cfg.seed, epoch, env.rank, env.world), cfg.batch_size)
            aug_gen = torch.Generator().manual_seed(seed_for(cfg.seed, STREAM_AUG, epoch, env.rank))  # on the CPU
            torch.manual_seed(seed_for(cfg.seed, STREAM_MODEL, epoch, env.rank))  # dropout
            first = recorder.start_epoch(epoch, len(batches), aug_gen, resume if epoch == start_epoch else None)
            lr = schedule.lr_at(step)
            bar = tqdm(total=len(batches), initial=first, desc=f"epoch {epoch}/{cfg.epochs}", unit="step",
                       disable=not env.show, leave=False, dynamic_ncols=True)  # fmt: skip
            for k, batch in enumerate(data.batches(batches[first:]), start=first):
                started = time.perf_counter()
                lr = schedule.apply(optimizer, step)
                # augment on the device at image_size (records what it did per sample), then the network's input
                images, aug = augmenter(batch.images, aug_gen)  # uint8 (B, 3, S, S) RGB, S = image_size
                x = _network_input(images, input_size, cfg.channel_order, env.channels_last)  # (B, 3, I, I) in [-1, 1]
                with env.autocast():
                    logits = model(x, batch.labels)  # (B, C) scaled, margined
                loss = raw_model.head.loss(logits, batch.labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1

                done = recorder.step(batch, images, aug, logits, step, lr, started, stop.requested is not None)
                if not math.isfinite(done.loss):  # the same in every process (summed over them)
                    raise TrainingDiverged(step, done.loss, cfg, checkpointer)
                bar.update(1)
                bar.set_postfix(loss=f"{done.loss:.3f}", acc=f"{done.acc:.3f}", img_s=f"{done.images_per_s:.0f}")
                progress.step(step, epoch, done)
                if done.stop:  # Ctrl-C or SIGTERM in some process: checkpoint this step, then stop
                    bar.close()
                    checkpointer.save_mid_epoch(epoch, step, k + 1, len(batches), history, recorder.rank_states(aug_gen))
                    raise KeyboardInterrupt(stop.requested)
            bar.close()

            # ---------------------------------------------------------- end of epoch: files, checkpoint
            records, steps_frame, summary = recorder.end_epoch(lr)  # records of every process, on rank 0
            if env.master:
                if eval_pairs is not None:
                    summary.update(_evaluate(raw_model.backbone, eval_pairs, cfg.channel_order))
                history.append(summary)
                folder.write_epoch(epoch, records, steps_frame, history)
                if env.show:
                    tqdm.write(_summary_line(summary, cfg.epochs))
            checkpointer.save(epoch, step, history)
            if cfg.stop_after is not None and epoch >= cfg.stop_after:
                break  # a planned pause: the checkpoint above resumes it
        progress.end("finished" if history and history[-1]["epoch"] == cfg.epochs else "paused")
        env.barrier()  # every process leaves together (see _Env.barrier)
    except BaseException as e:  # Ctrl-C, SIGTERM, divergence, a failure: say so, and say what is kept
        saved = checkpointer.saved if checkpointer else (resume.step if resume else None)
        _end_early(e, step, saved, progress, folder, env.master and created)
        raise
    finally:
        stop.restore()
        env.close()

    return RunResult.of(folder, history)


# ============================================================================ processes and device


@dataclass
class _Env:
    """Where this process trains: DistributedDataParallel when RANK/WORLD_SIZE say so, its device, and the
    precision and memory format used there."""

    ddp: bool
    rank: int
    world: int
    device: torch.device
    amp_dtype: torch.dtype | None  #: bf16 autocast on CUDA where supported, else None (fp32)
    channels_last: bool
    show: bool  #: progress bars and summaries (rank 0, when asked for)
    own_group: bool  #: this call started the process group (and ends it)

    @property
    def master(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, cfg: TrainConfig) -> "_Env":
        ddp = int(os.environ.get("RANK", -1)) != -1 and int(os.environ.get("WORLD_SIZE", 1)) > 1
        own_group = False
        if ddp:
            device = pick_device(cfg.device, local_rank=int(os.environ.get("LOCAL_RANK", 0)))
            if device.type == "cuda":
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
                own_group = True
            rank, world = dist.get_rank(), dist.get_world_size()
        else:
            device, rank, world = pick_device(cfg.device), 0, 1
        # bf16 only: fp16 would need a GradScaler (left out: fp32 then)
        bf16 = cfg.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()
        channels_last = device.type == "cuda" if cfg.channels_last is None else cfg.channels_last
        return cls(ddp, rank, world, device, torch.bfloat16 if bf16 else None, channels_last,
                   cfg.progress and rank == 0, own_group)  # fmt: skip

    def autocast(self) -> AbstractContextManager[Any]:
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()

    def wrap(self, model: nn.Module, compile: bool) -> nn.Module:
        """The model as the loop calls it: DDP-wrapped (one wrapper syncs backbone and head), compiled."""
        if self.ddp:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return torch.compile(model) if compile else model

    def barrier(self) -> None:
        """Wait for every process. At the end: a process that tears its gloo group down while rank 0 still
        writes the epoch's files can abort at exit ("terminate called without an active exception")."""
        if self.ddp:
            dist.barrier()

    def close(self) -> None:
        if self.own_group:
            dist.destroy_process_group()


def _resolve(cfg: TrainConfig, env: _Env) -> tuple[TrainConfig, FolderRecipe | None]:
    """``cfg`` with a folder's choices filled in for this device (:func:`adaface_lab.runs.resolve_config`);
    what was detected and chosen is printed where progress is shown."""
    cfg, recipe = resolve_config(cfg, env.device)
    if recipe is not None and env.show:
        tqdm.write(recipe.describe())
    return cfg, recipe


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



# ============================================================================ model and optimiser


def _build_model(cfg: TrainConfig, env: _Env, num_classes: int, resume: TrainingState | None,
                 ) -> tuple["_Model", nn.Module, torch.optim.Optimizer]:  # fmt: skip
    """(the model, the model as the loop calls it (DDP, compiled), its SGD optimiser), from a checkpoint
    when resuming."""
    torch.manual_seed(seed_for(cfg.seed, STREAM_INIT))
    backbone = build_backbone(cfg.backbone, **cfg.backbone_params)
    # No input checks: the loop's labels and shapes are right by construction, and a loss that turns NaN or
    # inf stops the run as diverged (the checks would report it as bad embeddings instead).
    head = build_head(cfg.head, backbone.embedding_size, num_classes, **cfg.head_params, validate=False)
    model = _Model(backbone, head).to(env.device)
    if env.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(_param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    if resume is not None:
        model.backbone.load_state_dict(resume.backbone)
        model.head.load_state_dict(resume.head)
        optimizer.load_state_dict(resume.optimizer)
    return model, env.wrap(model, cfg.compile), optimizer


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


@dataclass
class _Schedule:
    """The multi-step learning rate: ``base_lr · gamma^(milestones passed)``, milestones in optimiser steps."""

    base_lr: float
    gamma: float
    milestone_steps: list[int]

    @classmethod
    def of(cls, cfg: TrainConfig, total_steps: int) -> "_Schedule":
        return cls(cfg.lr, cfg.lr_gamma, [round(f * total_steps) for f in cfg.lr_milestones])

    def lr_at(self, step: int) -> float:
        """The learning rate of the optimiser step ``step`` (0-based)."""
        return self.base_lr * self.gamma ** sum(step >= m for m in self.milestone_steps)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "multistep", "milestone_steps": list(self.milestone_steps), "gamma": self.gamma,
                "base_lr": self.base_lr}  # fmt: skip


# ============================================================================ order of the samples


def _epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> tuple[np.ndarray, np.ndarray]:
    """This rank's training positions for ``epoch`` and whether each counts for the records.

    One permutation per epoch (from (seed, epoch)), padded to a multiple of ``world`` by repeating its
    head, then dealt round-robin to the ranks (as DistributedSampler). Padded repeats train but are not
    recorded, so every sample gives exactly one record row per epoch.
    """
    perm = np.random.default_rng(seed_for(seed, STREAM_ORDER, epoch)).permutation(n)
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
        chosen = np.random.default_rng(seed_for(seed, STREAM_PROBE)).choice(n, size=int(probe), replace=False)
        mask[torch.from_numpy(chosen)] = True
    return mask


# ============================================================================ data


class _Batch(NamedTuple):
    """One batch: ``images`` uint8 (B, 3, S, S) and ``labels`` (B,) on the device; ``sample_ids`` (B,),
    ``severity`` (B,) float64, training ``positions`` (B,) and ``recorded`` (B,) bool on the CPU (False for a
    padded repeat and for a sample read in place of one that could not be decoded)."""

    images: torch.Tensor
    labels: torch.Tensor
    sample_ids: torch.Tensor
    severity: torch.Tensor
    positions: torch.Tensor
    recorded: torch.Tensor


def _collate(batch: list[tuple[torch.Tensor, int, int, dict[str, Any]]]) -> tuple[torch.Tensor, ...]:
    """Samples -> (images uint8 (B, 3, S, S), labels (B,), sample_ids (B,), severity (B,) float64, substituted
    (B,) bool: a reader gave another sample in place of one it could not decode, ``meta["substituted_for"]``)."""
    images = torch.stack([b[0] for b in batch])
    labels = torch.tensor([b[1] for b in batch], dtype=torch.int64)
    ids = torch.tensor([b[2] for b in batch], dtype=torch.int64)
    severity = torch.tensor([float(b[3].get("severity", math.nan)) for b in batch], dtype=torch.float64)
    substituted = torch.tensor([int(b[3].get("substituted_for", -1)) >= 0 for b in batch], dtype=torch.bool)
    return images, labels, ids, severity, substituted


class _TrainData:
    """The training samples, preloaded into memory (small sets) or streamed through a DataLoader.

    ``batches(list of (positions, recorded))`` yields a :class:`_Batch` per batch. A sample the reader could
    not decode, and gave another in place of, trains but is not recorded (the other is recorded where it is).
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
            self.substituted = torch.cat([p[4] for p in parts])
            if device.type == "cuda":  # a small set fits on the GPU: no host-to-device copies per step
                self.images = self.images.to(device)

    def __len__(self) -> int:
        return len(self.dataset)

    def images_at(self, positions: torch.Tensor) -> torch.Tensor:
        """uint8 (P, 3, S, S) images at the given training positions (un-augmented)."""
        if self.images is not None:
            return self.images[positions.to(self.images.device)]
        return torch.stack([self.dataset[int(i)][0] for i in positions])

    def batches(self, batches: list[tuple[np.ndarray, np.ndarray]]) -> Iterator[_Batch]:
        dev = self.device
        if self.images is not None:
            for pos, rec in batches:
                p = torch.from_numpy(pos)
                yield _Batch(self.images[p.to(self.images.device)].to(dev), self.labels[p].to(dev),
                             self.sample_ids[p], self.severity[p], p, torch.from_numpy(rec) & ~self.substituted[p])  # fmt: skip
            return
        loader = DataLoader(self.dataset, batch_sampler=[pos.tolist() for pos, _ in batches],
                            num_workers=self.num_workers, collate_fn=_collate,
                            pin_memory=dev.type == "cuda")  # fmt: skip
        for (images, labels, ids, severity, substituted), (pos, rec) in zip(loader, batches):
            yield _Batch(images.to(dev, non_blocking=True), labels.to(dev), ids, severity, torch.from_numpy(pos),
                         torch.from_numpy(rec) & ~substituted)  # fmt: skip


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


def _network_input(images: torch.Tensor, size: int, channel_order: str, channels_last: bool) -> torch.Tensor:
    """uint8 (B, 3, S, S) augmented images -> float (B, 3, size, size) in [-1, 1], as the network takes them:
    resized (:func:`_resized`), converted (:func:`~adaface_lab.backbones.preprocess`), channels-last if asked."""
    x = preprocess(_resized(images, size), channel_order=channel_order)  # type: ignore[arg-type]
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> uint8 (B, 3, size, size): bilinear with antialiasing (the triangle filter widened
    to the scale when shrinking, as PIL's BILINEAR), rounded to uint8 as a stored image would be. On the CPU
    torch's uint8 kernel does it (about 10x faster than through float); elsewhere float, then rounded."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if images.device.type == "cpu":
        return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)


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


@dataclass
class _StepDone:
    """What a step gave, over all processes: the batch's mean margined loss and nearest-class accuracy,
    its images, its images per second, and whether some process was asked to stop."""

    loss: float
    acc: float
    images: int
    images_per_s: float
    stop: bool


class _Recorder:
    """The per-step side work of the loop: the probe samples' record rows, the step's row (loss, accuracy,
    lr, μ_z/σ_z, images/s), the sums over DDP processes, and an epoch's records gathered on rank 0.

    A mid-epoch checkpoint holds each process's rows so far (:meth:`rank_states`), so a resumed epoch
    writes the rows an uninterrupted one would.
    """

    def __init__(self, head: nn.Module, scorer: _BrisqueScorer, probe_mask: torch.Tensor, env: _Env) -> None:
        self.head, self.scorer, self.probe_mask, self.env = head, scorer, probe_mask, env
        self.epoch, self.n_steps, self.seen, self.started = 0, 0, 0.0, 0.0
        self.rows: list[dict[str, np.ndarray]] = []
        self.step_rows: list[dict[str, Any]] = []

    def start_epoch(self, epoch: int, n_steps: int, aug_gen: torch.Generator, resume: TrainingState | None) -> int:
        """Begin ``epoch`` (``n_steps`` steps); inside it when ``resume`` was saved mid-epoch (its RNG states
        and rows restored). Returns the index of the first step to run."""
        self.epoch, self.n_steps, self.rows, self.step_rows, first = epoch, n_steps, [], [], 0
        if resume is not None and resume.step_in_epoch:
            first = self._restore(resume, aug_gen)
        self.seen, self.started = 0.0, time.perf_counter()
        return first

    def step(self, batch: _Batch, images: torch.Tensor, aug: dict[str, torch.Tensor], logits: torch.Tensor,
             step: int, lr: float, started: float, stop_requested: bool) -> _StepDone:  # fmt: skip
        """Record the step ``step`` that began at ``started`` (perf_counter); ``images`` as the network saw
        them, ``aug`` what the augmentation did, ``logits`` (B, C) the head's output."""
        labels, device = batch.labels, batch.labels.device
        with torch.no_grad():
            ce = F.cross_entropy(logits.detach().float(), labels, reduction="none")  # (B,)
            plain = _plain_logits(logits.detach(), labels, self.head)  # (B, C) margin taken off
            ce_plain = F.cross_entropy(plain, labels, reduction="none")  # (B,)
            hit = (plain.argmax(1) == labels).float()  # (B,) nearest class is the true one
            probe = self.probe_mask[batch.positions] & batch.recorded  # (B,) bool, on the CPU
            if probe.any():
                self.rows.append(self._probe_rows(probe, batch, images, aug, ce, ce_plain, step))
            stats = torch.stack([ce.sum(), hit.sum(), torch.tensor(float(len(labels)), device=device),
                                 torch.tensor(float(stop_requested), device=device)])  # fmt: skip
            if self.env.ddp:
                dist.all_reduce(stats)  # loss and accuracy over all processes; any process asked to stop
            loss, acc, n, stop = (float(v) for v in stats.cpu())
        diag = self.head.diagnostics
        done = _StepDone(loss / n, acc / n, int(n), n / (time.perf_counter() - started), bool(stop))
        self.seen += n
        self.step_rows.append({
            "epoch": self.epoch, "step": step, "batch": done.images, "loss": done.loss, "acc": done.acc, "lr": lr,
            "batch_mean": float(diag["batch_mean"][0]) if "batch_mean" in diag else math.nan,
            "batch_std": float(diag["batch_std"][0]) if "batch_std" in diag else math.nan,
            "images_per_s": done.images_per_s,
        })  # fmt: skip
        return done

    def _probe_rows(self, probe: torch.Tensor, batch: _Batch, images: torch.Tensor, aug: dict[str, torch.Tensor],
                    ce: torch.Tensor, ce_plain: torch.Tensor, step: int) -> dict[str, np.ndarray]:  # fmt: skip
        """The record columns (:data:`adaface_lab.runs.RECORD_COLUMNS`) of the batch's P probe samples."""
        idx = torch.nonzero(probe).reshape(-1)  # (P,) on the CPU
        on_dev = idx.to(batch.labels.device)
        diag = self.head.diagnostics
        # (B,) each sample's loss: its cross-entropy plus the batch's auxiliary term (MagFace), as head.loss
        sample_loss = ce if self.head.aux_loss is None else ce + self.head.aux_loss.detach().float()

        def col(t: torch.Tensor) -> np.ndarray:
            return t.detach()[on_dev].double().cpu().numpy()

        def optional(name: str) -> np.ndarray:
            return col(diag[name]) if name in diag else np.full(len(idx), np.nan)

        untouched = ~(aug["crop_applied"].bool() | aug["resize_applied"].bool() | aug["photo_applied"].bool())
        brisque = self.scorer(images[on_dev], batch.positions[idx], untouched[idx.to(untouched.device)].cpu()).numpy()
        out: dict[str, np.ndarray] = {
            "sample_id": batch.sample_ids[idx].numpy().astype(np.int64),
            "label": batch.labels[on_dev].cpu().numpy().astype(np.int64),
            "epoch": np.full(len(idx), self.epoch, np.int64),
            "step": np.full(len(idx), step, np.int64),
            "norm": col(diag["norm"]),
            "p_y": np.exp(-col(ce)),
            "p_y_plain": np.exp(-col(ce_plain)),
            "cos_y": col(diag["cos_y"]),
            "z_hat": optional("z_hat"),
            "margin_angle": optional("margin_angle"),
            "margin_add": optional("margin_add"),
            "loss": col(sample_loss),
            "brisque": brisque,
            "quality": quality_from_brisque(brisque),
            "severity": batch.severity[idx].numpy().astype(np.float64),
        }
        for name, values in aug.items():
            v = values[idx.to(values.device)].cpu()
            out[name] = v.numpy() if v.dtype == torch.bool or not v.is_floating_point() else v.double().numpy()
        for name in HEAD_EXTRA_COLUMNS:
            if name in diag:
                out[name] = col(diag[name])
        return out

    def end_epoch(self, lr: float) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, Any] | None]:
        """(the epoch's records of every process, sorted by sample id; its steps; its ``epochs.csv`` row).
        Steps and row are None outside rank 0, records partial there. Every process must call this."""
        records = _concat_rows(self.rows)
        if self.env.ddp:
            parts: list[Any] = [None] * self.env.world if self.env.master else []
            dist.gather_object(records, parts if self.env.master else None, dst=0)
            if self.env.master:  # processes without probe rows this epoch send an empty frame: leave those out
                records = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
        records = records.sort_values("sample_id", kind="stable").reset_index(drop=True)
        if not self.env.master:
            return records, None, None
        elapsed = time.perf_counter() - self.started
        steps = pd.DataFrame(self.step_rows)
        n = steps["batch"].sum()
        summary = {"epoch": self.epoch, "steps": self.n_steps,
                   "loss": float((steps["loss"] * steps["batch"]).sum() / n),
                   "acc": float((steps["acc"] * steps["batch"]).sum() / n),
                   "lr": lr, "images_per_s": self.seen / elapsed, "time_s": elapsed,
                   **quality_correlations(records)}  # fmt: skip
        return records, steps, summary

    def rank_states(self, aug_gen: torch.Generator) -> list[dict[str, Any]]:
        """Every process's mid-epoch state (RNG states, the epoch's rows so far), on rank 0 (one entry per
        process, in rank order); empty elsewhere. Every process must call this."""
        columns = {k: np.concatenate([r[k] for r in self.rows]) for k in self.rows[0]} if self.rows else {}
        state: dict[str, Any] = {
            "torch_rng": torch.get_rng_state(),
            "aug_rng": aug_gen.get_state(),
            "rows": {k: torch.from_numpy(v) for k, v in columns.items()},
            "step_rows": list(self.step_rows),
        }
        if self.env.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.env.device)
        if not self.env.ddp:
            return [state]
        gathered: list[Any] = [None] * self.env.world if self.env.master else []
        dist.gather_object(state, gathered if self.env.master else None, dst=0)
        return gathered if self.env.master else []

    def _restore(self, checkpoint: TrainingState, aug_gen: torch.Generator) -> int:
        """Continue inside an epoch: this process's RNG states and rows; returns the next step's index."""
        if checkpoint.world_size != self.env.world:
            raise ValueError(f"the checkpoint was written mid-epoch by {checkpoint.world_size} processes; "
                             f"resume it with the same number (now {self.env.world})")  # fmt: skip
        state = checkpoint.ranks[self.env.rank]
        torch.set_rng_state(state["torch_rng"])
        aug_gen.set_state(state["aug_rng"])
        if self.env.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.env.device)
        self.rows = [{k: v.numpy() for k, v in state["rows"].items()}] if state["rows"] else []
        self.step_rows = list(state["step_rows"])
        return int(checkpoint.step_in_epoch)


def _concat_rows(rows: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in RECORD_COLUMNS})
    return pd.DataFrame({k: np.concatenate([r[k] for r in rows]) for k in rows[0]})


def _config_record(cfg: TrainConfig, env: _Env, data: _TrainData, probe_mask: torch.Tensor, input_size: int,
                   steps_per_epoch: int, holdout: HeldOut | None, recipe: FolderRecipe | None,
                   ) -> dict[str, Any]:  # fmt: skip
    """What ``config.json`` holds: the config (resolved), then under ``"run"`` what the run found: among it the
    side images were augmented at, the side BRISQUE scored (None without BRISQUE), the network's input size
    and the resize between them, and a folder's recipe in words (None when every choice was given)."""
    return {**cfg.to_dict(), "run": {
        "num_classes": data.num_classes, "num_train_samples": len(data), "num_probe": int(probe_mask.sum()),
        "image_size": cfg.image_size, "brisque_size": cfg.image_size if cfg.brisque else None,
        "input_size": input_size, "input_resize": INPUT_RESIZE if input_size != cfg.image_size else None,
        "recipe": recipe.describe() if recipe is not None else None, "world_size": env.world, "device": str(env.device),
        "amp": env.amp_dtype is not None, "channels_last": env.channels_last, "steps_per_epoch": steps_per_epoch,
        "holdout_labels": list(holdout.labels) if holdout else [], "torch": torch.__version__,
    }}  # fmt: skip


# ============================================================================ held-out verification


def _make_eval_pairs(cfg: TrainConfig, holdout: HeldOut | None, show: bool) -> tuple[Any, ...] | None:
    """Pairs from the held-out identities and their decoded images, or None (no holdout, or too few
    same-identity pairs in it)."""
    if holdout is None or min(cfg.eval_pairs, holdout.max_pairs) < 20:
        return None
    pairs = holdout.pairs(cfg.eval_pairs, cfg.seed)
    return pairs, pairs.load_images(progress=show)


def _evaluate(backbone: nn.Module, eval_pairs: tuple[Any, ...], channel_order: str) -> dict[str, float]:
    from .evaluate import evaluate_pairs

    pairs, images = eval_pairs
    result = evaluate_pairs(backbone, pairs, channel_order=channel_order, images=images, progress=False)
    out = {"eval_accuracy": float(result["accuracy"]), "eval_auc": float(result.get("auc", math.nan))}
    for far, tar in result.get("tar_at_far", {}).items():
        out[f"eval_tar@far={far:g}"] = float(tar)
    return out


def _summary_line(s: dict[str, Any], epochs: int) -> str:
    line = (f"epoch {s['epoch']}/{epochs} | loss {s['loss']:.3f} | acc {s['acc']:.3f} | "
            f"{s['images_per_s']:.0f} img/s | {s['time_s']:.0f} s | lr {s['lr']:.3g}")  # fmt: skip
    for key, label in (("r_norm_qseverity", "r(‖z‖,1−sev)"), ("r_p_y_qseverity", "r(P_y,1−sev)"),
                       ("r_norm_qbrisque", "r(‖z‖,q_brisque)"), ("eval_accuracy", "held-out acc")):  # fmt: skip
        if key in s and np.isfinite(s[key]):
            line += f" | {label} {s[key]:+.3f}" if key.startswith("r_") else f" | {label} {s[key]:.3f}"
    return line


# ============================================================================ checkpoints, progress, stopping


class _Checkpointer:
    """Writes ``checkpoint.pt`` (a :class:`~adaface_lab.runs.TrainingState`) from rank 0."""

    def __init__(self, path: Path, model: _Model, optimizer: torch.optim.Optimizer, schedule: _Schedule,
                 cfg: TrainConfig, env: _Env, resumed: TrainingState | None) -> None:  # fmt: skip
        self.path, self.model, self.optimizer, self.schedule, self.cfg, self.env = (
            path, model, optimizer, schedule, cfg, env)
        #: the step of the checkpoint on disk (None before the first) and the epochs it completes
        self.saved: int | None = resumed.step if resumed else None
        self.saved_epoch = resumed.epoch if resumed else 0

    def save(self, epoch: int, step: int, history: list[dict[str, Any]], step_in_epoch: int = 0,
             ranks: list[dict[str, Any]] | None = None) -> None:  # fmt: skip
        """After ``epoch`` complete epochs plus ``step_in_epoch`` steps of the next (atomic)."""
        if self.env.master:
            self._state(epoch, step, history, step_in_epoch, ranks).save(self.path)
        self.saved, self.saved_epoch = int(step), int(epoch)

    def _state(self, epoch: int, step: int, history: list[dict[str, Any]], step_in_epoch: int,
               ranks: list[dict[str, Any]] | None) -> TrainingState:  # fmt: skip
        return TrainingState(
            backbone=self.model.backbone.state_dict(), head=self.model.head.state_dict(),
            optimizer=self.optimizer.state_dict(), scheduler=self.schedule.to_dict(), epoch=int(epoch),
            step=int(step), config=self.cfg.to_dict(), step_in_epoch=int(step_in_epoch), world_size=self.env.world,
            ranks=list(ranks or []),
            history=[{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in h.items()}
                     for h in history],
        )  # fmt: skip

    def save_mid_epoch(self, epoch: int, step: int, done_in_epoch: int, n_steps: int, history: list[dict[str, Any]],
                       ranks: list[dict[str, Any]]) -> None:  # fmt: skip
        """After ``done_in_epoch`` of the ``n_steps`` steps of ``epoch``, when interrupted; says so."""
        self.save(epoch - 1, step, history, step_in_epoch=done_in_epoch, ranks=ranks)
        if self.env.show:
            tqdm.write(f"interrupted at step {step} (epoch {epoch}, step {done_in_epoch}/{n_steps}); "
                       f"checkpoint saved to {self.path}; continue with --resume")  # fmt: skip


def _end_early(error: BaseException, step: int, saved: int | None, progress: _Progress, folder: RunFolder,
               created: bool) -> None:  # fmt: skip
    """A run ended at ``step`` with ``error``, its checkpoint at step ``saved`` (None: none yet): the progress
    file says it stopped or failed, what a run that never reached its first checkpoint wrote is removed (on
    rank 0, the folder too when the run ``created`` it), and Ctrl-C becomes :class:`TrainingInterrupted`."""
    stopped = isinstance(error, KeyboardInterrupt)
    progress.end("stopped" if stopped else "failed", error=None if stopped else f"{type(error).__name__}: {error}")
    if progress.active:
        folder.discard_unstarted(created)
    if stopped:
        raise TrainingInterrupted(step, saved, folder.checkpoint) from None


class TrainingDiverged(LabError):
    """The loss turned NaN or inf: the run stops, its last good checkpoint and records kept as they were."""

    def __init__(self, step: int, loss: float, cfg: TrainConfig, checkpointer: _Checkpointer) -> None:
        self.step, self.loss = step, loss
        if checkpointer.saved is None:
            kept = "no checkpoint had been written yet: nothing to resume"
        else:
            kept = (f"the last good checkpoint, {checkpointer.path} (step {checkpointer.saved}, "
                    f"{checkpointer.saved_epoch} epochs), and the records of its epochs are kept")  # fmt: skip
        super().__init__(
            f"training diverged at step {step} (loss {loss}): {kept}. Try a smaller --lr (now {cfg.lr:g}) or "
            f"--weight-decay (now {cfg.weight_decay:g}), or a smaller scale s or margin m (--head-param)"
        )


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the run; the message says what the checkpoint holds and how many steps, if
    any, it does not (a second Ctrl-C stops at once, without checkpointing the last steps)."""

    def __init__(self, step: int, saved: int | None, checkpoint: Path) -> None:
        self.step, self.saved = step, saved
        if saved is None:
            lost = f" ({step} step{'s' * (step != 1)} done, none saved)" if step else ""
            text = (f"interrupted before the first checkpoint{lost}: nothing to resume; run the command again to "
                    "start over")  # fmt: skip
        elif saved >= step:
            text = f"interrupted; the last completed step ({step}) is checkpointed: add --resume to continue"
        else:
            text = (f"interrupted at once: the last {step - saved} step{'s' * (step - saved != 1)} (after step "
                    f"{saved}) were lost; {checkpoint} holds step {saved}: add --resume to continue from there")
        super().__init__(text)


def _load_for_resume(cfg: TrainConfig, folder: RunFolder) -> TrainingState:
    """The checkpoint to resume from, after checking that it belongs to the same run settings."""
    if not folder.checkpoint.is_file():
        raise FileNotFoundError(f"nothing to resume: {folder.checkpoint} does not exist (drop --resume to start the run)")
    state = folder.check_resumable()
    saved, now = state.config, cfg.to_dict()
    differ = [k for k in now if k not in TrainConfig.RUNTIME_FIELDS and saved.get(k) != now[k]]
    if differ:
        details = ", ".join(f"{k}: {saved.get(k)!r} in the run, {now[k]!r} now" for k in differ)
        raise ValueError(f"cannot resume {folder.path}: settings differ ({details})")
    return state


class _Progress:
    """Where the run is: ``on_step`` after every step, and ``progress.json`` (at most every ``interval``
    seconds while running, and at every change of state). Rank 0 only; a no-op elsewhere."""

    def __init__(self, folder: RunFolder, on_step: OnStep | None, active: bool, epochs: int, steps_per_epoch: int,
                 interval: float = 0.5) -> None:  # fmt: skip
        self.folder, self.on_step, self.active, self.interval = folder, on_step, active, interval
        self.last = Progress("preparing", epochs=epochs, total_steps=epochs * steps_per_epoch,
                             steps_per_epoch=steps_per_epoch)  # fmt: skip
        self.t0, self.step0, self.written = time.monotonic(), 0, -math.inf

    def write(self, state: str, epoch: int, step: int) -> None:
        self.last.epoch, self.last.step = epoch, step
        self._write(state)

    def begin(self, step: int) -> None:
        """The loop starts at global step ``step`` (the ETA counts from here)."""
        self.t0, self.step0 = time.monotonic(), step

    def step(self, step: int, epoch: int, done: _StepDone) -> None:
        if not self.active:
            return
        now, last = time.monotonic(), self.last
        eta = (last.total_steps - step) * (now - self.t0) / max(step - self.step0, 1)
        last.epoch, last.step, last.loss, last.images_per_s, last.eta_s = epoch, step, done.loss, done.images_per_s, eta
        if self.on_step is not None:
            self.on_step({"step": step, "total_steps": last.total_steps, "epoch": epoch, "loss": done.loss,
                          "images_per_s": done.images_per_s, "eta_s": eta})  # fmt: skip
        if now - self.written >= self.interval or step == last.total_steps:
            self._write("running")
            self.written = now

    def end(self, state: str, error: str | None = None) -> None:
        self.last.error = error
        if state == "finished":
            self.last.eta_s = 0.0
        self._write(state)

    def _write(self, state: str) -> None:
        if self.active and self.folder.path.is_dir():
            self.last.state, self.last.updated = state, time.time()  # type: ignore[assignment]
            self.folder.write_progress(self.last)


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
