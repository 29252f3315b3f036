"""Natural test images for BRISQUE: scikit-image's bundled sample photos cut into crops, and the
degradations used to check the scores (Gaussian blur, ×4 down-up, noise, JPEG).

Only images shipped inside scikit-image are used (nothing is downloaded).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

# Photographs bundled with scikit-image (no download): colour or grey, all natural scenes or textures.
SAMPLE_NAMES: tuple[str, ...] = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "moon",
    "clock",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "grass",
    "gravel",
    "brick",
    "cell",
)


def natural_crops(size: int = 112, per_image: int = 4, seed: int = 0) -> np.ndarray:
    """(N, size, size, 3) uint8 RGB crops, ``per_image`` from each sample photo at random positions
    (fixed ``seed``); grey photos are repeated over three channels."""
    import skimage.data

    rng = np.random.default_rng(seed)
    crops = []
    for name in SAMPLE_NAMES:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = img[:, :, :3].astype(np.uint8)
        h, w = img.shape[:2]
        for _ in range(per_image):
            i, j = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            crops.append(img[i : i + size, j : j + size])
    return np.stack(crops)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W, 3) uint8 -> blurred uint8 (per channel, reflective border)."""
    out = ndimage.gaussian_filter(img.astype(np.float64), sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def down_up(img: np.ndarray, factor: int = 4) -> np.ndarray:
    """Bicubic downscale by ``factor`` then back up: the low-resolution degradation."""
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((w // factor, h // factor), Image.BICUBIC)
    return np.asarray(small.resize((w, h), Image.BICUBIC))


def gaussian_noise(img: np.ndarray, std: float = 10.0, seed: int | None = None) -> np.ndarray:
    """Additive Gaussian noise of ``std`` grey levels, clipped and rounded to uint8. The default seed is
    taken from the image's pixel sum: deterministic, and different across images."""
    seed = int(img.astype(np.int64).sum()) if seed is None else seed
    noise = np.random.default_rng(seed).normal(0.0, std, img.shape)
    return np.clip(np.round(img + noise), 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int = 10) -> np.ndarray:
    """Round trip through JPEG at ``quality`` (Pillow)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


DEGRADATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "blur1": lambda im: gaussian_blur(im, 1.0),
    "blur2": lambda im: gaussian_blur(im, 2.0),
    "blur4": lambda im: gaussian_blur(im, 4.0),
    "downup4": down_up,
    "noise10": gaussian_noise,
    "jpeg10": jpeg,
}


def degraded_set(crops: np.ndarray) -> dict[str, np.ndarray]:
    """{"original": crops, name: degraded crops for each of :data:`DEGRADATIONS`}, each (N, H, W, 3)."""
    out = {"original": crops}
    for name, fn in DEGRADATIONS.items():
        out[name] = np.stack([fn(c) for c in crops])
    return out
