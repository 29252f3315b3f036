"""Glue for the image quality inspector: reading an uploaded image safely, and a checkpoint's norm.

No image maths here: decoding (and the 16-bit / CMYK / alpha conversions and the decompression-bomb
guard) is :func:`adaface_lab.data.images.decode_image`; the model input is
:func:`adaface_lab.backbones.preprocess`; checkpoints are read weights-only by
:mod:`adaface_lab.checkpoint`. What is here turns their outcomes into messages a page can show.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch

from adaface_lab.backbones import build_backbone, list_backbones, preprocess
from adaface_lab.checkpoint import load_backbone_checkpoint, load_checkpoint, split_lightning_state_dict
from adaface_lab.data.images import DEFAULT_MAX_PIXELS, CorruptImageError, ImageTooLargeError, decode_image, probe_image
from adaface_lab.margins import build_margin

SIZE = 112
MAX_PIXELS = DEFAULT_MAX_PIXELS
_TRAIN_FORMAT = "adaface_lab.train/"

# What the page says about a file's pixel format when it had to convert it.
_MODE_NOTES = {
    "CMYK": "CMYK image: converted to RGB.",
    "I;16": "16-bit image: converted to 8 bits (values × 255/65535).",
    "I;16B": "16-bit image: converted to 8 bits (values × 255/65535).",
    "I;16L": "16-bit image: converted to 8 bits (values × 255/65535).",
    "I": "32-bit integer image: converted to 8 bits.",
    "F": "floating-point image: converted to 8 bits.",
    "RGBA": "transparency composited over black.",
    "LA": "grey image with transparency: composited over black, repeated over three channels.",
    "PA": "palette image with transparency: composited over black.",
    "L": "grey image: repeated over three channels.",
    "1": "black-and-white image: repeated over three channels.",
    "P": "palette image: converted to RGB.",
    "YCbCr": "YCbCr image: converted to RGB.",
    "LAB": "Lab image: converted to RGB.",
    "HSV": "HSV image: converted to RGB.",
}


@dataclass
class Upload:
    """An uploaded image read for the inspector.

    ``image``: uint8 (3, 112, 112) RGB, or None when the file was refused; ``error``: why it was
    refused (for ``st.error``); ``conversion``: how an unusual pixel format (16-bit, CMYK, alpha, grey …)
    was made RGB (for ``st.warning``); ``resized``: how the image was cut to the face size.
    """

    name: str
    image: torch.Tensor | None = None
    error: str | None = None
    conversion: str | None = None
    resized: str | None = None
    width: int = 0
    height: int = 0
    mode: str = ""


def read_upload(name: str, data: bytes, size: int = SIZE, max_pixels: int = MAX_PIXELS) -> Upload:
    """Decode an uploaded file to a (3, size, size) face crop, or say plainly why not (never raises).

    The centre square is cut and resized to ``size``. Refused: empty files, files that are not
    images, truncated or damaged files, and images above ``max_pixels`` (a decompression bomb is
    refused from its header, before any pixel is decoded).
    """
    out = Upload(name=name)
    if not data:
        out.error = f"`{name}` is empty (0 bytes)."
        return out
    try:
        out.width, out.height, out.mode = probe_image(data, max_pixels=max_pixels)
    except ImageTooLargeError as e:
        out.error = (f"`{name}` was refused: {e.reason}. Images above {max_pixels / 1e6:.0f} megapixels are not "
                     "decoded (a guard against decompression bombs); downscale it first.")
        return out
    except CorruptImageError as e:
        reason = ("its content is not a known image format: JPEG, PNG, WebP, TIFF, BMP, GIF …"
                  if "cannot identify image file" in e.reason else e.reason)
        out.error = f"`{name}` is not an image this app can read ({reason})."
        return out
    try:
        out.image = decode_image(data, size=size, center_crop=min(out.width, out.height), max_pixels=max_pixels)
    except ImageTooLargeError as e:
        out.error = f"`{name}` was refused: {e.reason}."
        return out
    except CorruptImageError as e:
        out.error = f"`{name}` looks damaged or truncated: its pixels cannot be decoded ({e.reason})."
        return out
    out.conversion = _MODE_NOTES.get(out.mode)
    if out.conversion is None and out.mode != "RGB":
        out.conversion = f"{out.mode} image: converted to RGB."
    if out.width != out.height:
        out.resized = f"centre square of the {out.width}×{out.height} image, resized to {size}×{size}"
    elif out.width != size:
        out.resized = f"resized from {out.width}×{out.height} to {size}×{size}"
    return out


@st.cache_data(max_entries=4, show_spinner="Reading the image …")
def read_upload_cached(name: str, digest: str, _data: bytes) -> Upload:
    """:func:`read_upload` cached on the file's name and content hash."""
    del digest
    return read_upload(name, _data)


# --------------------------------------------------------------------------- checkpoints


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
    if "batch_mean" in head and "batch_std" in head:
        return float(torch.as_tensor(head["batch_mean"]).reshape(-1)[0]), float(torch.as_tensor(head["batch_std"]).reshape(-1)[0])
    return None


def _backbone_part(obj: Any) -> dict[str, torch.Tensor]:
    raw = obj["state_dict"] if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping) else obj
    if not isinstance(raw, Mapping):
        return {}
    keys = [k for k in raw if isinstance(k, str)]
    if any(k.startswith("model.") for k in keys):
        return split_lightning_state_dict(raw)[0]
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in raw.items()}
    return {k: v for k, v in raw.items() if isinstance(k, str) and not k.startswith("head.")}


@functools.lru_cache(maxsize=None)
def _backbone_shapes(name: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Tensor names and shapes of a registered backbone (built once, on the meta device: no memory)."""
    with torch.device("meta"):
        model = build_backbone(name)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def guess_backbone(obj: Any) -> str | None:
    """The registered backbone whose tensor names and shapes match the checkpoint's, or None."""
    sd = _backbone_part(obj)
    if not sd:
        return None
    shapes = {k: tuple(v.shape) for k, v in sd.items() if isinstance(v, torch.Tensor)}
    for name in list_backbones():
        if dict(_backbone_shapes(name)) == shapes:
            return name
    return None


def load_norm_probe(path: str | os.PathLike[str], backbone: str | None = None,
                    channel_order: str | None = None) -> NormProbe:
    """Read a checkpoint weights-only and rebuild its backbone.

    A run of ``adaface-lab train`` (its ``checkpoint.pt``) brings its backbone, input conversion,
    AdaFace's h/m/s and the head's μ_z/σ_z. An authors' Lightning ``.ckpt`` or a plain state dict needs
    ``backbone`` (default: guessed from the tensor shapes) and ``channel_order`` (default ``"bgr"``,
    the authors' models). Raises FileNotFoundError / ValueError (including UnsafeCheckpointError) with
    the loader's message.
    """
    obj = load_checkpoint(path)
    if isinstance(obj, Mapping) and str(obj.get("format", "")).startswith(_TRAIN_FORMAT):
        cfg = obj.get("config", {})
        name = str(cfg.get("backbone"))
        model = build_backbone(name, **dict(cfg.get("backbone_params") or {}))
        model.load_state_dict(obj["backbone"])
        head = cfg.get("head")
        margin = None
        if head == "adaface":
            margin = {**_adaface_defaults(), **{k: float(v) for k, v in (cfg.get("head_params") or {}).items()
                                                if k in ("h", "m", "s")}}
        order = channel_order or str(cfg.get("channel_order", "rgb"))
        desc = (f"a run of adaface-lab train: {name} backbone, {head} head, epoch {obj.get('epoch', '?')}, "
                f"{order.upper()} input")
        probe = NormProbe(model.eval(), name, order, int(model.input_size), _head_stats(obj.get("head", {})),
                          margin, desc)
        if margin is None:
            probe.warnings.append(f"The run's head is {head}, not AdaFace: its μ_z/σ_z and h are not defined; "
                                  "the sliders give them.")
        return probe
    name = backbone or guess_backbone(obj)
    if name is None:
        raise ValueError(f"{path}: no registered backbone ({', '.join(list_backbones())}) matches this "
                         "checkpoint's tensors; it is not an IResNet state dict")
    model = build_backbone(name)
    report = load_backbone_checkpoint(path, model, strict=True)
    order = channel_order or "bgr"
    stats = _head_stats(report.head_state_dict)
    probe = NormProbe(model.eval(), name, order, int(model.input_size), stats, _adaface_defaults(),
                      f"{report.format} checkpoint: {name} backbone ({len(report.loaded_keys)} tensors), "
                      f"{order.upper()} input")
    if stats is None:
        probe.warnings.append("The checkpoint holds no AdaFace head statistics (batch_mean, batch_std): "
                              "the sliders give μ_z and σ_z.")
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


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def find_checkpoints(root: Path) -> list[Path]:
    """``checkpoint.pt`` files of the run folders under ``root``, newest first."""
    if not root.is_dir():
        return []
    found = [p / "checkpoint.pt" for p in root.iterdir() if (p / "checkpoint.pt").is_file()]
    return sorted(found, key=lambda p: -p.stat().st_mtime)


@torch.no_grad()
def feature_norms(probe: NormProbe, images: torch.Tensor) -> np.ndarray:
    """‖z‖ of uint8 RGB images (N, 3, H, W) under the probe's backbone (eval mode) -> float64 (N,)."""
    x = preprocess(images, channel_order=probe.channel_order, size=probe.input_size)  # (N, 3, S, S)
    _, norms = probe.backbone(x)
    return norms.reshape(-1).double().numpy()
