"""Loading the authors' released checkpoints safely, and saving checkpoints atomically.

The AdaFace checkpoints are PyTorch Lightning files: a dict whose ``state_dict`` maps
``model.<backbone key>`` to the IResNet weights and ``head.kernel`` / ``head.t`` /
``head.batch_mean`` / ``head.batch_std`` to the AdaFace head's state (DESIGN.md §3)::

    model = build_backbone("ir_101")
    report = load_backbone_checkpoint("adaface_ir101_webface12m.ckpt", model)
    print(report)                      # what matched, what did not
    head.load_state_dict(report.head_state_dict)

Every file is read with ``torch.load(..., weights_only=True)``: only tensors and plain
containers are rebuilt, never arbitrary objects, so a malicious file raises
:class:`UnsafeCheckpointError` instead of running code. A few container classes that
Lightning or argparse put into the metadata of real checkpoints are mapped to inert local
stand-ins (never imported), so such files load too.

What a file may cost is bounded by its size: only the zip archives ``torch.save`` writes (torch ≥ 1.6)
are read, each entry stored uncompressed as torch stores them (a compressed entry could inflate far
beyond the file); the legacy format of older torch, whose pickle states the size of every buffer before
it is read, is refused; and every tensor must lie within the bytes its file holds (a tensor viewing a
few bytes as billions of elements is refused before anything copies it). A file that is none of these
is refused without its content being shown.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._atomic import atomic_path
from .backbones import build_backbone, list_backbones

__all__ = [
    "LoadReport",
    "UnsafeCheckpointError",
    "NotACheckpointError",
    "load_checkpoint",
    "load_backbone_checkpoint",
    "load_backbone_state",
    "guess_backbone",
    "backbone_shapes",
    "split_lightning_state_dict",
    "save_checkpoint",
]

_BACKBONE_PREFIX = "model."
_HEAD_PREFIX = "head."


class UnsafeCheckpointError(ValueError):
    """A checkpoint needs something a weights-only load refuses to rebuild (code, unknown classes)."""


class NotACheckpointError(ValueError):
    """A file that is not a checkpoint at all (not a zip archive of torch.save); its content is not shown."""


class _BarePickleError(UnsafeCheckpointError, NotACheckpointError):
    """A bare pickle: refused unread, as unsafe, and not a checkpoint this loader reads."""


# --------------------------------------------------------------------------- inert stand-ins


class _InertDict:
    """Stand-in for dict subclasses (Lightning's AttributeDict): unpickles as a plain dict."""

    def __new__(cls, *args: Any, **kwargs: Any) -> dict:  # type: ignore[misc]
        return {}


class _InertNamespace:
    """Stand-in for ``argparse.Namespace``: keeps the attributes as data, nothing else."""

    def __repr__(self) -> str:
        return f"Namespace({self.__dict__!r})"


# Globals that appear in the metadata (hyper-parameters) of real Lightning checkpoints. They are
# not imported: the weights-only unpickler gets the stand-ins above under these names.
_BENIGN_GLOBALS: tuple[tuple[type, str], ...] = (
    (_InertDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (_InertDict, "lightning_fabric.utilities.data.AttributeDict"),
    (_InertDict, "lightning.fabric.utilities.data.AttributeDict"),
    (_InertNamespace, "argparse.Namespace"),
)
_BENIGN_NAMES = {name for _, name in _BENIGN_GLOBALS}


# --------------------------------------------------------------------------- loading


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Any:
    """Load any ``.ckpt/.pt/.pth`` file weights-only (tensors and plain containers only).

    Raises ``FileNotFoundError`` for a missing file, :class:`UnsafeCheckpointError` when the
    file asks for code or classes a weights-only load refuses (e.g. a pickle that would call a
    function) or is a bare pickle, :class:`NotACheckpointError` for a file that is no zip archive, and
    ``ValueError`` for a corrupt one; every message names the file and none shows its bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    _check_archive(path)
    try:
        return _within_file(_weights_only_load(path, map_location), path)
    except pickle.UnpicklingError as first:
        needed = set(re.findall(r"GLOBAL ([\w.]+)", str(first)))
        if not needed or not needed <= _BENIGN_NAMES:
            raise _refusal(path, first) from None
    # Retry with inert stand-ins for the known metadata containers (still weights-only).
    try:
        with torch.serialization.safe_globals(list(_BENIGN_GLOBALS)):
            return _within_file(_weights_only_load(path, map_location), path)
    except pickle.UnpicklingError as second:
        raise _refusal(path, second) from None


_PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _check_archive(path: Path) -> None:
    """Refuse, before torch reads it, a file that is not a zip archive of uncompressed entries within the file
    (what ``torch.save`` writes); never shows the file's bytes."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] in _PICKLE_PROTOCOLS:
        raise _BarePickleError(
            f"refused to load {path}: it is a bare pickle (the legacy format of torch < 1.6, or not a torch file), "
            "which states the size of every buffer before reading it; re-save it with torch.save in a current torch"
        )
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        if head != b"PK\x03\x04":
            raise NotACheckpointError(f"{path} is not a readable PyTorch checkpoint (not a zip archive)") from None
        raise ValueError(f"{path} is not a readable PyTorch checkpoint (cut short or damaged: "
                         f"{type(e).__name__})") from None
    for info in entries:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise ValueError(f"{path} is not a readable PyTorch checkpoint: its entry {info.filename[:100]!r} is "
                             "compressed (torch.save stores every entry as it is)")  # fmt: skip
        if info.header_offset + info.file_size > size:
            raise ValueError(f"{path} is not a readable PyTorch checkpoint: it is cut short (its entry "
                             f"{info.filename[:100]!r} ends beyond the file)")  # fmt: skip


def _within_file(obj: Any, path: Path) -> Any:
    """``obj``, once every tensor in it is known to lie within its storage (the bytes read from the file):
    ValueError for one that views them as more elements than they hold (a stride of 0 over billions)."""
    seen: set[int] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            if item.layout != torch.strided or item.is_quantized:
                raise ValueError(f"{path} holds a {item.layout} tensor: a checkpoint of this kind holds dense ones")
            held = item.untyped_storage().nbytes()
            extent = 0 if item.numel() == 0 else item.storage_offset() + 1 + sum(
                (n - 1) * abs(st) for n, st in zip(item.shape, item.stride()))
            if item.numel() > extent or extent * item.element_size() > held:
                raise ValueError(f"{path} is a damaged checkpoint: a tensor of shape {tuple(item.shape)} claims "
                                 f"more data than its {held} bytes in the file")  # fmt: skip
        elif isinstance(item, (dict, list, tuple, set)) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item.values() if isinstance(item, dict) else item)
            if isinstance(item, dict):
                stack.extend(item.keys())
        elif isinstance(item, _InertNamespace) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(vars(item).values())
    return obj


def _weights_only_load(path: Path, map_location: str | torch.device) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise
    except Exception as e:  # corrupt zip, truncated file, not a torch file at all
        reason = " ".join(str(e).split())
        reason = reason if len(reason) <= 300 else reason[:300] + " …"
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {reason})") from None


_BOILERPLATE = ("Weights only load failed", "(1)", "(2)", "Re-running", "Please file", "Check the documentation")


_UNSAFE_MARKERS = ("GLOBAL", "reduce", "Can only", "allowlist", "blocked")


def _refusal(path: Path, err: Exception) -> ValueError:
    """UnsafeCheckpointError when the file asks for code or classes; ValueError for other junk."""
    lines = [ln.replace("WeightsUnpickler error:", "").strip() for ln in str(err).splitlines()]
    reasons = [ln for ln in lines if ln and not ln.startswith(_BOILERPLATE)]
    reason = reasons[0] if reasons else "unsupported content"
    if not any(m in reason for m in _UNSAFE_MARKERS):
        return ValueError(f"{path} is not a readable PyTorch checkpoint (weights-only unpickler: {reason})")
    return UnsafeCheckpointError(
        f"refused to load {path}: it holds something a weights-only load does not rebuild "
        f"({reason}). Checkpoints are never unpickled with arbitrary code; if you trust the file's "
        f"source, re-save its tensors as a plain state dict."
    )


def split_lightning_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a Lightning ``state_dict`` into (backbone, head) dicts with the prefixes removed.

    ``model.<key>`` goes to the backbone dict as ``<key>``; ``head.<key>`` to the head dict as
    ``<key>`` (e.g. ``kernel``, ``t``, ``batch_mean``, ``batch_std``). Keys with neither prefix
    are left out (``load_backbone_checkpoint`` reports them as ignored).
    """
    backbone = {k[len(_BACKBONE_PREFIX):]: v for k, v in state_dict.items() if k.startswith(_BACKBONE_PREFIX)}
    head = {k[len(_HEAD_PREFIX):]: v for k, v in state_dict.items() if k.startswith(_HEAD_PREFIX)}
    return backbone, head


@dataclass
class LoadReport:
    """What :func:`load_backbone_checkpoint` found and loaded.

    ``shape_mismatches`` holds ``(key, shape in file, shape in model)``; ``ignored_keys`` are
    keys of the file that are neither backbone nor head; ``head_state_dict`` is the head's state
    (prefix removed) ready for ``head.load_state_dict``; ``meta`` holds scalar metadata of a
    Lightning file (epoch, global_step, versions).
    """

    path: str
    format: str
    loaded_keys: list[str] = field(default_factory=list)
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)
    head_state_dict: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every backbone key matched in name and shape."""
        return not (self.missing_keys or self.unexpected_keys or self.shape_mismatches)

    def problems(self) -> str:
        """A readable list of what did not match (empty string when ``ok``)."""
        lines = []
        for title, keys in (("missing from file", self.missing_keys), ("unexpected in file", self.unexpected_keys)):
            if keys:
                lines.append(f"{len(keys)} {title}: {_short(keys)}")
        if self.shape_mismatches:
            shown = ", ".join(f"{k} file{tuple(a)} vs model{tuple(b)}" for k, a, b in self.shape_mismatches[:8])
            more = f" … and {len(self.shape_mismatches) - 8} more" if len(self.shape_mismatches) > 8 else ""
            lines.append(f"{len(self.shape_mismatches)} shape mismatches: {shown}{more}")
        return "\n".join(lines)

    def __str__(self) -> str:
        head = f"{self.path} ({self.format}): {len(self.loaded_keys)} backbone tensors loaded"
        if self.head_state_dict:
            head += f", head state {sorted(self.head_state_dict)}"
        if self.ignored_keys:
            head += f", {len(self.ignored_keys)} other keys ignored"
        return head + ("" if self.ok else "\n" + self.problems())


def _short(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f" … and {len(keys) - n} more" if len(keys) > n else "")


def load_backbone_checkpoint(
    path: str | os.PathLike[str],
    backbone: nn.Module,
    strict: bool = True,
) -> LoadReport:
    """Load backbone weights from an authors' Lightning ``.ckpt`` or a plain state-dict file.

    Accepted layouts: ``{"state_dict": {"model.<key>": ..., "head.<key>": ...}, ...}`` (Lightning);
    a plain ``{<key>: tensor}`` state dict, with or without a ``model.`` (or DataParallel
    ``module.``) prefix. Loading is weights-only (see :func:`load_checkpoint`).

    With ``strict=True`` any missing, unexpected or shape-mismatched key raises ``ValueError``
    naming them and nothing is loaded. With ``strict=False`` the matching tensors are loaded
    and the rest is reported. Returns a :class:`LoadReport`.
    """
    return load_backbone_state(load_checkpoint(path), backbone, strict=strict, source=str(path))


@dataclass
class _Layout:
    """A checkpoint object taken apart: its format, the backbone's and the head's tensors (prefixes
    removed), the keys that are neither, and scalar metadata."""

    format: str
    backbone: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    ignored: list[str]
    meta: dict[str, Any]


def _layout(obj: Any, source: str) -> _Layout:
    """Where the backbone's tensors are in a loaded checkpoint object; ValueError for unknown layouts."""
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        fmt, raw = "lightning", obj["state_dict"]
        meta = {k: v for k, v in obj.items() if isinstance(v, (str, int, float, bool))}
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        fmt, raw = "state_dict", obj
    else:
        raise ValueError(
            f"{source}: not a checkpoint layout this loader knows (expected a Lightning dict with "
            f"'state_dict' or a plain state dict of tensors); top-level type {type(obj).__name__}"
        )
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in raw.items()):
        raise ValueError(f"{source}: the state dict must map str keys to tensors")
    keys = list(raw)
    if any(k.startswith(_BACKBONE_PREFIX) for k in keys):
        backbone_sd, head_sd = split_lightning_state_dict(raw)
        ignored = [k for k in keys if not k.startswith((_BACKBONE_PREFIX, _HEAD_PREFIX))]
    elif keys and all(k.startswith("module.") for k in keys):
        backbone_sd, head_sd, ignored = {k[len("module."):]: v for k, v in raw.items()}, {}, []
    elif fmt == "lightning":
        head_sd = {k[len(_HEAD_PREFIX):]: v for k, v in raw.items() if k.startswith(_HEAD_PREFIX)}
        backbone_sd, ignored = {k: v for k, v in raw.items() if not k.startswith(_HEAD_PREFIX)}, []
    else:
        backbone_sd, head_sd, ignored = dict(raw), {}, []
    return _Layout(fmt, backbone_sd, head_sd, ignored, meta)


def load_backbone_state(obj: Any, backbone: nn.Module, strict: bool = True, source: str = "checkpoint") -> LoadReport:
    """:func:`load_backbone_checkpoint` for a checkpoint object already loaded (``source`` names it in
    messages)."""
    parts = _layout(obj, source)
    target = backbone.state_dict()
    report = LoadReport(
        path=source,
        format=parts.format,
        missing_keys=[k for k in target if k not in parts.backbone],
        unexpected_keys=[k for k in parts.backbone if k not in target],
        shape_mismatches=[
            (k, tuple(v.shape), tuple(target[k].shape))
            for k, v in parts.backbone.items()
            if k in target and tuple(v.shape) != tuple(target[k].shape)
        ],
        ignored_keys=parts.ignored,
        head_state_dict=parts.head,
        meta=parts.meta,
    )
    if strict and not report.ok:
        raise ValueError(f"checkpoint {source} does not match the backbone:\n{report.problems()}")
    bad = {k for k, _, _ in report.shape_mismatches}
    loadable = {k: v for k, v in parts.backbone.items() if k in target and k not in bad}
    backbone.load_state_dict(loadable, strict=False)
    report.loaded_keys = list(loadable)
    return report


def backbone_shapes(name: str, **params: Any) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the backbone ``build_backbone(name, **params)`` would make, found on the meta
    device (no memory): what to compare a file's tensors with before making it."""
    with torch.device("meta"):
        model = build_backbone(name, **params)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@functools.lru_cache(maxsize=None)
def _backbone_shapes(name: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """:func:`backbone_shapes` of a registered backbone with its defaults (built once)."""
    return tuple(backbone_shapes(name).items())


def guess_backbone(obj: Any) -> str | None:
    """The registered backbone whose tensor names and shapes match a loaded checkpoint's, or None."""
    try:
        parts = _layout(obj, "checkpoint")
    except ValueError:
        return None
    shapes = {k: tuple(v.shape) for k, v in parts.backbone.items()}
    return next((name for name in list_backbones() if dict(_backbone_shapes(name)) == shapes), None)


# --------------------------------------------------------------------------- saving


def save_checkpoint(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Save ``obj`` with ``torch.save`` atomically: a temp file in the same folder, then ``os.replace``.

    A reader never sees a half-written file, even if the process is killed mid-save. Parent
    folders are created. Returns the final path. Keep ``obj`` to tensors and plain containers
    so that :func:`load_checkpoint` can read it back weights-only.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path
