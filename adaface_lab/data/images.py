"""Robust image decoding shared by every reader of the lab.

:func:`decode_image` turns a file path or encoded bytes into the lab's image convention, a
uint8 tensor (3, H, W) in RGB, whatever the file holds: grayscale, palette, RGBA/LA (composited
over black), CMYK, 16-bit and 32-bit grayscale (scaled, not clipped), EXIF-rotated photos.
Unreadable or truncated files raise :class:`CorruptImageError` naming the file; images with
more pixels than ``max_pixels`` raise :class:`ImageTooLargeError` before being decoded
(a decompression-bomb guard). Readers catch :class:`CorruptImageError` (which both are) to
skip a bad sample and count it; see :class:`SkipCounter`.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = [
    "CorruptImageError",
    "ImageTooLargeError",
    "DEFAULT_MAX_PIXELS",
    "decode_image",
    "probe_image",
    "SkipCounter",
]

#: Default decompression-bomb guard: images with more pixels than this are refused (40 MP).
DEFAULT_MAX_PIXELS = 40_000_000

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview


class CorruptImageError(ValueError):
    """An image file could not be decoded (unreadable, truncated, not an image)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"cannot decode image {source}: {reason}")
        self.source = source
        self.reason = reason


class ImageTooLargeError(CorruptImageError):
    """An image has more pixels than the configured ``max_pixels`` (decompression-bomb guard)."""


def _describe(src: ImageSource) -> str:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes in memory>"
    return str(src)


def _open(src: ImageSource, max_pixels: int) -> Image.Image:
    """Open (header only) and apply the pixel-count guard; raises CorruptImageError."""
    name = _describe(src)
    if isinstance(src, (str, os.PathLike)):
        if not Path(src).is_file():
            raise FileNotFoundError(f"image file not found: {src}")
        fp: object = src
    elif isinstance(src, (bytes, bytearray, memoryview)):
        fp = io.BytesIO(bytes(src))
    else:
        raise TypeError(f"expected a path or encoded bytes, got {type(src).__name__}")
    try:
        with warnings.catch_warnings():
            # We apply our own limit below; silence Pillow's global warning and let its hard
            # error (at twice its own limit) surface as ImageTooLargeError.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)  # type: ignore[arg-type]
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(name, str(e)) from None
    except Exception as e:  # Pillow raises many types on bad headers
        raise CorruptImageError(name, f"{type(e).__name__}: {e}") from None
    w, h = img.size
    if w < 1 or h < 1:
        raise CorruptImageError(name, f"empty image {w}x{h}")
    if w * h > max_pixels:
        raise ImageTooLargeError(name, f"{w}x{h} = {w * h} pixels exceeds max_pixels={max_pixels}")
    return img


def probe_image(src: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int, str]:
    """Fast header check without decoding the pixels: returns (width, height, PIL mode).

    Raises :class:`CorruptImageError` for a file that is not a readable image header (a file
    truncated after its header passes this check and fails in :func:`decode_image`).
    """
    img = _open(src, max_pixels)
    try:
        return img.size[0], img.size[1], img.mode
    finally:
        img.close()


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited over black, deep images scaled)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if a.ndim == 3:  # some multi-channel 16-bit modes
            a = a[..., :3]
        peak = float(np.nanmax(a)) if a.size else 0.0
        if mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        elif mode == "F" and peak <= 1.0:
            scale = 255.0  # float images in [0, 1]
        elif peak <= 255.0:
            scale = 1.0  # 8-bit values stored in a wide mode
        else:
            scale = 255.0 / 65535.0  # 16-bit values (Pillow opens some 16-bit files as "I")
        a8 = np.clip(np.rint(np.nan_to_num(a) * scale), 0, 255).astype(np.uint8)
        if a8.ndim == 2:
            a8 = np.repeat(a8[..., None], 3, axis=2)
        return Image.fromarray(a8, mode="RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, RGBX, LAB, HSV, ...


def decode_image(
    src: ImageSource,
    size: int | None = None,
    center_crop: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = True,
) -> torch.Tensor:
    """Decode an image file or encoded bytes to a uint8 RGB tensor (3, H, W).

    Args:
        src: a path or the encoded bytes (JPEG, PNG, BMP, WebP, TIFF, GIF: first frame).
        size: when given, the output is (3, size, size), resized with antialiased bilinear
            filtering (the aspect ratio is not kept: crop first to keep it).
        center_crop: when given, a centre square of this side (in the original image's pixels)
            is cut before resizing, e.g. 128 of LFW's 250x250 images. An image smaller than
            the crop is zero-padded around, as torchvision's CenterCrop does.
        max_pixels: decompression-bomb guard; larger images raise :class:`ImageTooLargeError`.
        exif_transpose: rotate according to the EXIF orientation tag (phone photos).

    Raises:
        FileNotFoundError: ``src`` is a path that does not exist.
        CorruptImageError: the data cannot be decoded (the message names the file).
    """
    if size is not None and int(size) < 1:
        raise ValueError(f"size must be a positive int, got {size}")
    if center_crop is not None and int(center_crop) < 1:
        raise ValueError(f"center_crop must be a positive int, got {center_crop}")
    name = _describe(src)
    img = _open(src, max_pixels)
    try:
        orig_w = img.size[0]
        if img.format == "JPEG" and size is not None:
            _jpeg_draft(img, int(size), center_crop)
        scale = img.size[0] / orig_w  # < 1 when libjpeg decodes at reduced scale
        img.load()
        if exif_transpose:
            img = ImageOps.exif_transpose(img)
        img = _to_rgb(img)
        w, h = img.size
        if center_crop is not None:
            c = center_crop * scale  # crop side in this (maybe draft-reduced) image's pixels
            if c > w or c > h:
                canvas = Image.new("RGB", (max(w, round(c)), max(h, round(c))))
                canvas.paste(img, ((canvas.width - w) // 2, (canvas.height - h) // 2))
                img, w, h = canvas, canvas.width, canvas.height
            left, top = (w - c) / 2.0, (h - c) / 2.0
            box = (left, top, left + c, top + c)
            if size is None:
                ci, li, ti = int(round(c)), int(round(left)), int(round(top))
                img = img.crop((li, ti, li + ci, ti + ci))
            else:
                img = img.resize((int(size), int(size)), Image.BILINEAR, box=box)
        elif size is not None and (w, h) != (int(size), int(size)):
            img = img.resize((int(size), int(size)), Image.BILINEAR)
        arr = np.array(img, dtype=np.uint8)  # a writable copy
    except (FileNotFoundError, CorruptImageError):
        raise
    except Exception as e:  # truncated data, broken streams, decoder errors of any type
        raise CorruptImageError(name, f"{type(e).__name__}: {e}") from None
    finally:
        img.close()
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise CorruptImageError(name, f"unexpected decoded array shape {arr.shape}")
    # Transpose in NumPy (single-threaded): a torch copy this size would start an OpenMP team,
    # which costs far more than the copy itself on a busy machine.
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (3, H, W)


def encode_jpeg(image: bytes | torch.Tensor | np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of a uint8 (3, H, W) RGB image; already-encoded bytes pass through unchanged.

    Used by the writers of the real formats (RecordIO, InsightFace ``.bin``).
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    arr = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"images must be encoded bytes or uint8 (3, H, W) RGB, got {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0))).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _jpeg_draft(img: Image.Image, size: int, center_crop: int | None) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still leaves enough pixels.

    The DCT-domain reduction is an area average, so quality is kept and large JPEGs decode
    several times faster.
    """
    w, h = img.size
    need = size if center_crop is None else size * w / center_crop  # width needed so the crop has >= size px
    need_h = size if center_crop is None else size * h / center_crop
    if w < 2 * need or h < 2 * need_h:
        return
    img.draft("RGB", (int(np.ceil(need)), int(np.ceil(need_h))))


# --------------------------------------------------------------------------- skip-and-count


@dataclass
class SkipCounter:
    """Records samples that could not be decoded, warning once per sample.

    Readers call :meth:`record` when a sample fails and substitute the next good one, so an
    epoch never crashes on a bad file; ``num_skipped`` and ``skipped`` report what happened.
    Note: with a multi-process DataLoader each worker keeps its own counter.
    """

    skipped: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def record(self, source: str, reason: str) -> None:
        if source in self.reasons:
            return
        self.skipped.append(source)
        self.reasons[source] = reason
        warnings.warn(f"skipping unreadable image {source}: {reason}", RuntimeWarning, stacklevel=3)


class SkipReporting:
    """Mixin for readers that keep a :class:`SkipCounter` in ``self._skips``: what was skipped."""

    _skips: SkipCounter

    @property
    def skipped(self) -> list[str]:
        """Paths or records left out at index time or skipped at read time (in this process)."""
        return list(self._skips.skipped)

    @property
    def num_skipped(self) -> int:
        return self._skips.num_skipped

    def _first_readable(
        self,
        index: int,
        n: int,
        unit: str,
        source: Callable[[int], str],
        read: Callable[[int], Any],
        errors: tuple[type[BaseException], ...],
        where: str,
    ) -> tuple[int, int, Any]:
        """What ``__getitem__`` serves for ``index`` of ``n`` samples (``unit``: "samples", "records"):
        from ``index`` on, wrapping around, the first sample ``i`` whose ``read(i)`` succeeds, as
        (index in [0, n), i, read(i)). A sample whose read raises one of ``errors`` is recorded under
        ``source(i)`` and skipped for good. IndexError outside [-n, n); RuntimeError naming ``where``
        when every sample fails."""
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} {unit}")
        index %= n
        for step in range(n):
            i = (index + step) % n
            name = source(i)
            if name in self._skips.reasons:
                continue
            try:
                return index, i, read(i)
            except errors as e:
                self._skips.record(name, str(e))
        raise RuntimeError(f"{where} failed to decode ({self.num_skipped} skipped)")
