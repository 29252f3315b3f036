"""Image degradations with continuous strengths: Gaussian blur, down-up rescaling, additive noise, JPEG.

The image quality inspector of the app degrades one face with these and watches BRISQUE, the feature
norm and the margin AdaFace would give it move. They are applied in the order SyntheticFaces uses
(blur, low resolution, noise, JPEG: optics, sensor, compression)::

    from adaface_lab.degrade import Degradation, astronaut_face, degrade, sweep
    face = astronaut_face()                                    # uint8 (3, 112, 112) RGB
    bad = degrade(face, Degradation(blur_sigma=2.0, jpeg_quality=30))
    ladder = sweep(face, "blur_sigma", [0, 1, 2, 4])           # uint8 (4, 3, 112, 112)

Images follow the lab's convention: torch uint8 tensors (3, H, W) or (N, 3, H, W), RGB, 0..255.
Every function returns a new tensor of the same shape and dtype; a strength that means "off"
(σ = 0, scale = 1, quality = 100) returns an unchanged copy.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

__all__ = [
    "Degradation",
    "DEGRADATION_FIELDS",
    "gaussian_blur",
    "down_up",
    "add_noise",
    "jpeg_round_trip",
    "degrade",
    "sweep",
    "astronaut_face",
]

DegradationField = Literal["blur_sigma", "scale", "noise_sigma", "jpeg_quality"]
#: The strengths of :class:`Degradation`, in the order they are applied.
DEGRADATION_FIELDS: tuple[str, ...] = ("blur_sigma", "scale", "noise_sigma", "jpeg_quality")

# The astronaut photo's face (rows, columns of skimage.data.astronaut(), 512 x 512): a square with the
# eyes a little above the middle, as in aligned face crops.
_ASTRONAUT_FACE_BOX = (30, 190, 145, 305)


@dataclass(frozen=True)
class Degradation:
    """Strengths of the four degradations (the defaults leave an image unchanged).

    Attributes:
        blur_sigma: standard deviation of the Gaussian blur, in pixels (0 = off).
        scale: side factor of the down-up step in (0, 1]: the image is resized to ``scale`` of its
            side (antialiased bicubic) and back (bicubic); 1 = off.
        noise_sigma: standard deviation of additive Gaussian noise, in grey levels of 0..255 (0 = off).
        jpeg_quality: quality of a JPEG round trip, 1..100 (Pillow, 4:2:0 chroma); 100 = off.
        seed: seed of the noise (the same seed gives the same noise pattern at every strength).
    """

    blur_sigma: float = 0.0
    scale: float = 1.0
    noise_sigma: float = 0.0
    jpeg_quality: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        _check_sigma("blur_sigma", self.blur_sigma)
        _check_scale(self.scale)
        _check_sigma("noise_sigma", self.noise_sigma)
        _check_quality(self.jpeg_quality)

    @property
    def is_identity(self) -> bool:
        """True when every degradation is off."""
        return self.blur_sigma == 0 and self.scale == 1 and self.noise_sigma == 0 and self.jpeg_quality >= 100


# --------------------------------------------------------------------------- checks


def _check_sigma(name: str, sigma: float) -> None:
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {sigma}")


def _check_scale(scale: float) -> None:
    if not np.isfinite(scale) or not 0 < scale <= 1:
        raise ValueError(f"scale must lie in (0, 1], got {scale}")


def _check_quality(quality: int) -> None:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"jpeg_quality must be an int in 1..100, got {quality!r}")


def _as_batch(images: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(N, 3, H, W) uint8 view of ``images`` and whether a batch dimension was added."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (0..255), got {images.dtype}")
    if images.ndim not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"images must have shape (3, H, W) or (N, 3, H, W), got {tuple(images.shape)}")
    return (images, False) if images.ndim == 4 else (images.unsqueeze(0), True)


def _per_image(images: torch.Tensor, fn: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """Apply ``fn`` ((H, W, 3) uint8 -> (H, W, 3) uint8) to each image."""
    batch, added = _as_batch(images)
    hwc = batch.permute(0, 2, 3, 1).cpu().numpy()  # (N, H, W, 3)
    out = np.stack([fn(np.ascontiguousarray(im)) for im in hwc])
    result = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    return result[0] if added else result


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- the degradations


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels per channel (reflective border, 4σ support)."""
    _check_sigma("sigma", sigma)
    batch, added = _as_batch(images)
    if sigma == 0:
        return images.clone()
    x = batch.cpu().numpy().astype(np.float64)  # (N, 3, H, W)
    out = _to_uint8(ndimage.gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="reflect", truncate=4.0))
    result = torch.from_numpy(out)
    return result[0] if added else result


def down_up(images: torch.Tensor, scale: float) -> torch.Tensor:
    """Low resolution: resize to ``scale`` of the side (antialiased bicubic, at least 2 px) and back (bicubic)."""
    _check_scale(scale)
    if scale == 1:
        _as_batch(images)
        return images.clone()

    def one(im: np.ndarray) -> np.ndarray:
        h, w = im.shape[:2]
        small = (max(2, round(w * scale)), max(2, round(h * scale)))
        pil = Image.fromarray(im).resize(small, Image.Resampling.BICUBIC)
        return np.asarray(pil.resize((w, h), Image.Resampling.BICUBIC))

    return _per_image(images, one)


def add_noise(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Additive Gaussian noise of ``sigma`` grey levels, rounded and clipped to 0..255.

    The pattern depends on ``seed`` and the shape only, so a sweep over ``sigma`` scales one pattern.
    """
    _check_sigma("sigma", sigma)
    batch, added = _as_batch(images)
    if sigma == 0:
        return images.clone()
    noise = np.random.default_rng(seed).standard_normal(tuple(batch.shape))  # (N, 3, H, W)
    out = _to_uint8(batch.cpu().numpy().astype(np.float64) + sigma * noise)
    result = torch.from_numpy(out)
    return result[0] if added else result


def jpeg_round_trip(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode as JPEG at ``quality`` (1..100, Pillow) and decode; 100 returns an unchanged copy."""
    _check_quality(quality)
    if quality >= 100:
        _as_batch(images)
        return images.clone()

    def one(im: np.ndarray) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as decoded:
            return np.array(decoded.convert("RGB"))

    return _per_image(images, one)


def degrade(images: torch.Tensor, degradation: Degradation | None = None, **strengths: float) -> torch.Tensor:
    """Apply blur, down-up, noise and JPEG (in that order) at the strengths of ``degradation``.

    Keyword ``strengths`` (the :class:`Degradation` fields) override those of ``degradation``:
    ``degrade(img, blur_sigma=2)``. Returns uint8 of the input's shape.
    """
    d = degradation if degradation is not None else Degradation()
    if strengths:
        unknown = sorted(set(strengths) - {f.name for f in fields(Degradation)})
        if unknown:
            raise ValueError(f"unknown degradation strengths {unknown}; known: {list(DEGRADATION_FIELDS)} and seed")
        d = replace(d, **strengths)
    out = gaussian_blur(images, d.blur_sigma)
    out = down_up(out, d.scale)
    out = add_noise(out, d.noise_sigma, d.seed)
    return jpeg_round_trip(out, d.jpeg_quality)


def sweep(image: torch.Tensor, field: DegradationField, levels: Sequence[float],
          base: Degradation | None = None) -> torch.Tensor:
    """``image`` (3, H, W) degraded with ``field`` set to each of ``levels`` and the other strengths
    as in ``base`` (default: off) -> uint8 (len(levels), 3, H, W)."""
    if field not in DEGRADATION_FIELDS:
        raise ValueError(f"field must be one of {list(DEGRADATION_FIELDS)}, got {field!r}")
    batch, added = _as_batch(image)
    if not added:
        raise ValueError(f"sweep takes one image (3, H, W), got {tuple(image.shape)}")
    if len(levels) == 0:
        raise ValueError("levels is empty")
    base = base if base is not None else Degradation()
    cast = int if field == "jpeg_quality" else float
    return torch.stack([degrade(image, replace(base, **{field: cast(v)})) for v in levels])


def astronaut_face(size: int = 112) -> torch.Tensor:
    """scikit-image's astronaut photo (Eileen Collins, NASA; bundled, no download) cut to a square around
    the face and resized to ``size`` (antialiased bicubic) -> uint8 (3, size, size) RGB."""
    import skimage.data

    if int(size) < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    top, bottom, left, right = _ASTRONAUT_FACE_BOX
    crop = np.asarray(skimage.data.astronaut())[top:bottom, left:right, :3]
    face = np.array(Image.fromarray(crop).resize((int(size), int(size)), Image.Resampling.BICUBIC))  # (S, S, 3)
    return torch.from_numpy(face).permute(2, 0, 1).contiguous()
