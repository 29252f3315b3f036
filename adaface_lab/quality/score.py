"""``brisque()``: one BRISQUE score per image, from arrays, tensors or files, with either backend."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.images import DEFAULT_MAX_PIXELS, decode_image
from ._pybrisque_compat import pybrisque_scores
from .cache import BrisqueCache, content_key, default_cache
from .torch_backend import MODES, _warn_degenerate, brisque_torch, to_uint8

Backend = Literal["torch", "pybrisque"]
BACKENDS: tuple[str, ...] = ("torch", "pybrisque")
PathLike = Union[str, "os.PathLike[str]"]  # noqa: UP007 (a runtime alias with a string part)
ImageInput = Union[np.ndarray, torch.Tensor, PathLike, Sequence[Union[PathLike, np.ndarray, torch.Tensor]]]  # noqa: UP007


def quality_from_brisque(score: Any) -> Any:
    """The paper's quality, ``1 - BRISQUE / 100`` (higher is better; not clipped, NaN stays NaN)."""
    return 1.0 - score / 100.0


def load_image(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an image file, decoded exactly as the training reader decodes it
    (:func:`adaface_lab.data.decode_image`: 16-bit scaled to 8 bits, alpha over black, EXIF rotation).

    Raises FileNotFoundError for a missing file and :class:`~adaface_lab.data.CorruptImageError`
    (a ValueError naming the file) for an unreadable one or one over ``max_pixels`` pixels.
    """
    return decode_image(path, max_pixels=max_pixels).permute(1, 2, 0).numpy()


def _item_to_chw(item: Any) -> torch.Tensor:
    """One image (path, (H, W, 3|1) uint8 array, or (C, H, W) tensor) -> (C, H, W) uint8 tensor."""
    if isinstance(item, (str, os.PathLike)):
        item = load_image(item)
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3):
            raise TypeError(
                f"array images must be uint8 (H, W, 3) RGB or (H, W) gray, got {item.dtype} {item.shape}"
            )
        item = item[:, :, None] if item.ndim == 2 else item
        return torch.from_numpy(np.require(item, requirements=["C", "W"])).permute(2, 0, 1)
    if isinstance(item, torch.Tensor):
        if item.ndim != 3:
            raise ValueError(f"tensor images in a list must be (C, H, W), got shape {tuple(item.shape)}")
        return to_uint8(item)
    raise TypeError(f"unsupported image type {type(item).__name__}")


def _as_groups(images: ImageInput) -> tuple[int, list[tuple[np.ndarray, torch.Tensor]]]:
    """Normalise the input to groups of same-shaped images: [(indices, uint8 (n, C, H, W))]."""
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    if isinstance(images, torch.Tensor):
        x = images.unsqueeze(0) if images.ndim == 3 else images
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"tensor input must be (N, C, H, W) with C = 1 or 3, got {tuple(images.shape)}")
        return x.shape[0], [(np.arange(x.shape[0]), to_uint8(x))]
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"array input must be uint8 (N, H, W, 3) RGB, got {images.dtype}")
        x = images[None] if images.ndim == 3 and images.shape[-1] in (1, 3) else images
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"array input must be (N, H, W, 3) RGB (or (N, H, W, 1)), got {images.shape}")
        return x.shape[0], [
            (
                np.arange(x.shape[0]),
                torch.from_numpy(np.require(x, requirements=["C", "W"])).permute(0, 3, 1, 2),
            )
        ]
    if isinstance(images, Iterable):
        items = [_item_to_chw(it) for it in images]
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, t in enumerate(items):
            by_shape[tuple(t.shape)].append(i)
        groups = [(np.asarray(idx), torch.stack([items[i] for i in idx])) for idx in by_shape.values()]
        return len(items), groups
    raise TypeError(f"unsupported input type {type(images).__name__}")


def _resolve(backend: str, mode: str | None) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if mode is None:
        return "matlab" if backend == "torch" else "pybrisque"
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if backend == "pybrisque" and mode != "pybrisque":
        raise ValueError(
            "the pybrisque backend only computes pybrisque's own variant: use mode='pybrisque' or None"
        )
    return mode


def _score_batch(x: torch.Tensor, backend: str, mode: str, device: torch.device) -> np.ndarray:
    """uint8 (n, C, H, W) -> float64 (n,) scores, NaN for degenerate images, no warning."""
    if backend == "torch":
        return brisque_torch(x.to(device), mode=mode, warn=False).cpu().numpy()
    arrays = [t.permute(1, 2, 0).cpu().numpy() for t in x]
    return pybrisque_scores([a[:, :, 0] if a.shape[2] == 1 else a for a in arrays])


def brisque(
    images: ImageInput,
    backend: Backend = "torch",
    mode: Literal["matlab", "pybrisque"] | None = None,
    *,
    cache: bool | BrisqueCache | None = True,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """BRISQUE score per image (float64 (N,), lower is better, about 0..100; NaN if degenerate).

    images: uint8 (N, H, W, 3) RGB array; (N, C, H, W) tensor, C = 1 or 3 (RGB), uint8 or float in
      [0, 1] (floats are rounded to uint8 first); a path or a list of paths / (H, W, 3) arrays /
      (C, H, W) tensors (sizes may differ: same-sized images are batched together).
    backend: "torch" (default; batched, CPU or GPU) or "pybrisque" (the named package, per image).
    mode: "matlab" (the original brisque_feature.m: rgb2gray, antialiased bicubic second scale) or
      "pybrisque" (pybrisque's own gray and nearest-neighbour second scale). Default: "matlab" for the
      torch backend, "pybrisque" for the pybrisque backend (the only variant it computes).
    cache: True = the process-wide in-memory LRU, a :class:`BrisqueCache` (e.g. with an on-disk
      path), or False/None for none. Keys are content hashes, so equal pixels are scored once.
    device: where the torch backend runs (default: the input tensor's device, else CPU).
    Degenerate (e.g. constant) images give NaN and one counted :class:`DegenerateImageWarning`.
    """
    mode = _resolve(backend, mode)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n, groups = _as_groups(images)
    store = default_cache() if cache is True else (cache if isinstance(cache, BrisqueCache) else None)
    out = np.full(n, np.nan)
    todo: list[tuple[np.ndarray, torch.Tensor, list[str] | None]] = []
    for idx, x in groups:
        keys = None
        if store is not None:
            host = x.cpu().numpy()
            keys = [content_key(host[i], backend, mode) for i in range(len(idx))]
            hit = store.get_many(keys)
            cached = np.array([k in hit for k in keys], dtype=bool)
            out[idx[cached]] = [hit[k] for k, c in zip(keys, cached) if c]
            idx, x, keys = (
                idx[~cached],
                x[torch.from_numpy(~cached).to(x.device)],
                [k for k, c in zip(keys, cached) if not c],
            )
        if len(idx):
            todo.append((idx, x, keys))
    dev = (
        torch.device(device)
        if device is not None
        else (images.device if isinstance(images, torch.Tensor) else torch.device("cpu"))
    )
    total = sum(len(i) for i, _, _ in todo)
    with tqdm(
        total=total, disable=not progress or total == 0, desc=f"BRISQUE ({backend})", unit="img"
    ) as bar:
        for idx, x, keys in todo:
            for start in range(0, len(idx), batch_size):
                scores = _score_batch(x[start : start + batch_size], backend, mode, dev)
                out[idx[start : start + batch_size]] = scores
                if store is not None and keys is not None:
                    store.put_many(dict(zip(keys[start : start + batch_size], scores.tolist())))
                bar.update(len(scores))
    _warn_degenerate(int(np.isnan(out).sum()), n)
    return out
