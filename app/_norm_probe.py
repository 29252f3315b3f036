"""A checkpoint's feature norm for the image quality inspector: the backbone a checkpoint holds, and what it
knows of AdaFace (h, m, s and the head's μ_z, σ_z), ready to give an image's ‖z‖.

No loading here: the backbone is rebuilt by :func:`adaface_lab.runs.load_backbone` (weights-only, a run's
``checkpoint.pt``, an authors' Lightning ``.ckpt`` or a plain state dict); the model input is
:func:`adaface_lab.backbones.preprocess`. What is here turns that into what the page shows.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st
import torch

from adaface_lab.backbones import preprocess
from adaface_lab.margins import build_margin
from adaface_lab.runs import load_backbone


@dataclass
class NormProbe:
    """A backbone from a checkpoint, ready to give an image's feature norm, and what it knows of AdaFace.

    ``stats``: (μ_z, σ_z) from the checkpointed head's EMA buffers, or None; ``margin``: AdaFace's
    ``h``, ``m``, ``s`` the run used (the official defaults for the authors' checkpoints), or None when
    the run's head was not AdaFace.
    """

    backbone: torch.nn.Module
    backbone_name: str
    channel_order: str
    input_size: int
    stats: tuple[float, float] | None
    margin: dict[str, float] | None
    description: str
    warnings: list[str] = field(default_factory=list)


def _adaface_defaults() -> dict[str, float]:
    params = build_margin("adaface").params()
    return {k: float(params[k]) for k in ("h", "m", "s")}


def _head_stats(head: Mapping[str, Any]) -> tuple[float, float] | None:
    """AdaFace's (μ_z, σ_z) from a head state, or None when it holds no such one-element tensors."""
    mean, std = head.get("batch_mean"), head.get("batch_std")
    if not all(isinstance(t, torch.Tensor) and t.numel() >= 1 and t.is_floating_point() for t in (mean, std)):
        return None
    return float(mean.reshape(-1)[0]), float(std.reshape(-1)[0])


def load_norm_probe(path: str | os.PathLike[str], backbone: str | None = None,
                    channel_order: str | None = None) -> NormProbe:  # fmt: skip
    """Read a checkpoint weights-only and rebuild its backbone.

    A run of ``adaface-lab train`` brings its backbone, input conversion, AdaFace's h/m/s and the head's
    μ_z/σ_z. An authors' Lightning ``.ckpt`` or a plain state dict needs ``backbone`` (default: guessed
    from the tensor shapes) and ``channel_order`` (default ``"bgr"``, the authors' models). Raises
    FileNotFoundError / ValueError (including UnsafeCheckpointError) with the loader's message.
    """
    found = load_backbone(path, backbone)
    order = channel_order or found.channel_order or "bgr"
    stats = _head_stats(found.head_state)
    model = found.model
    if found.config is None:  # an authors' checkpoint or a plain state dict
        probe = NormProbe(model, found.name, order, int(model.input_size), stats, _adaface_defaults(),
                          f"{found.format} checkpoint: {found.name} backbone ({found.tensors} tensors), "
                          f"{order.upper()} input")  # fmt: skip
        if stats is None:
            probe.warnings.append("The checkpoint holds no AdaFace head statistics (batch_mean, batch_std): "
                                  "the sliders give μ_z and σ_z.")  # fmt: skip
        return probe
    head, params = found.config.get("head"), found.config.get("head_params") or {}
    margin = None
    if head == "adaface":
        if not isinstance(params, Mapping) or not all(isinstance(params.get(k, 0.0), (int, float))
                                                      for k in ("h", "m", "s")):  # fmt: skip
            raise ValueError(f"{path}: the run's head_params are damaged ({str(params)[:100]})")
        margin = {**_adaface_defaults(), **{k: float(v) for k, v in params.items() if k in ("h", "m", "s")}}
    desc = (f"a run of adaface-lab train: {found.name} backbone, {head} head, epoch {found.epoch}, "
            f"{order.upper()} input")
    probe = NormProbe(model, found.name, order, int(model.input_size), stats, margin, desc)
    if margin is None:
        probe.warnings.append(f"The run's head is {head}, not AdaFace: its μ_z/σ_z and h are not defined; "
                              "the sliders give them.")  # fmt: skip
    return probe


@st.cache_resource(max_entries=4, show_spinner="Loading the checkpoint …")
def probe_from_path(path: str, modified: float, backbone: str | None, channel_order: str | None) -> NormProbe:
    """:func:`load_norm_probe` cached on the path and its modification time."""
    del modified
    return load_norm_probe(path, backbone, channel_order)


@st.cache_resource(max_entries=2, show_spinner="Loading the checkpoint …")
def probe_from_bytes(digest: str, _data: bytes, backbone: str | None, channel_order: str | None) -> NormProbe:
    """:func:`load_norm_probe` of uploaded bytes (through a temporary file), cached on their hash."""
    del digest
    fd, tmp = tempfile.mkstemp(suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_data)
        return load_norm_probe(tmp, backbone, channel_order)
    finally:
        os.unlink(tmp)


@torch.no_grad()
def feature_norms(probe: NormProbe, images: torch.Tensor) -> np.ndarray:
    """‖z‖ of uint8 RGB images (N, 3, H, W) under the probe's backbone (eval mode) -> float64 (N,)."""
    x = preprocess(images, channel_order=probe.channel_order, size=probe.input_size)  # (N, 3, S, S)
    _, norms = probe.backbone(x)
    return norms.reshape(-1).double().numpy()
