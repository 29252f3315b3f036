"""The AdaFace training augmentations (DESIGN.md §3), in torch, per sample or batched on any device.

The official recipe (``dataset/augmenter.py`` of the AdaFace repository) applies, in this order and each
with its own probability (0.2 in the released training scripts):

1. **crop** — a box drawn as ``RandomResizedCrop.get_params`` draws it (area fraction U(0.2, 1), log-uniform
   aspect ratio in [3/4, 4/3], 10 attempts then a centre-crop fallback) is kept *at its own place* and
   everything outside it is set to zero. The official code pastes the crop back unresized, so no
   resampling happens; the network sees the face partly blacked out.
2. **low resolution** — the side is scaled by ``r ~ U(0.2, 1)`` (``int(r * side)`` pixels) and scaled back,
   each step with an interpolation drawn uniformly from OpenCV's nearest, linear, area, cubic and
   Lanczos-4. This module reproduces those five OpenCV kernels (half-pixel centres, no antialiasing
   except what "area" does by construction, replicated borders) as separable gather-and-sum
   operations, so each sample can have its own size and kernels in one batched call, and Lanczos-4 —
   which ``torch.nn.functional.interpolate`` lacks — is included. On uint8 images each step rounds to
   integers as OpenCV's uint8 resize does.
3. **photometric** — torchvision ``ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5)``: factors
   from U(0.5, 1.5), applied in a random order (one of the 6 orders, as ColorJitter permutes them;
   ``random_order=False`` keeps brightness, contrast, saturation). Each op blends with a degenerate image
   as PIL's ``ImageEnhance`` does (black; the rounded mean of the luma; the luma), luma
   ``L = (19595 R + 38470 G + 7471 B) / 65536``; on uint8 the result is truncated to an integer after each
   op, as PIL and torchvision do.

Randomness: every sample consumes exactly ``NUM_DRAWS`` uniforms (float64) from the generator, in sample
order, and all its parameters are functions of those. Because a CPU ``torch.Generator`` produces the
same sequence whether asked for (B, K) numbers at once or (1, K) B times, ``augment_batch(x, g)`` equals
``[augment(x[i], g) for i in range(B)]`` bit for bit for the same starting generator state. The draws
follow the official distributions but not its random stream (which mixes NumPy's and torch's global RNGs).

Every sample gets a record (``RECORD_FIELDS``): ``crop_applied, crop_ratio`` (area fraction kept; 1.0 when
not applied), ``crop_side_ratio`` (the official code's ``min(h, w) / max(H, W)``), the box ``crop_top,
crop_left, crop_height, crop_width``; ``resize_applied, resize_ratio`` (side factor; 1.0 when not applied),
``resize_down, resize_up`` (codes into ``INTERPOLATIONS``, -1 when not applied); ``photo_applied,
brightness, contrast, saturation`` (1.0 when not applied) and ``photo_order`` (code into ``PHOTO_ORDERS``).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

__all__ = [
    "INTERPOLATIONS",
    "NUM_DRAWS",
    "PHOTO_ORDERS",
    "RECORD_FIELDS",
    "AugmentConfig",
    "apply_params",
    "augment",
    "augment_batch",
    "draw_params",
    "make_generator",
    "resize_taps",
]

#: Interpolations of the low-resolution step (OpenCV's INTER_NEAREST, _LINEAR, _AREA, _CUBIC, _LANCZOS4).
INTERPOLATIONS: tuple[str, ...] = ("nearest", "bilinear", "area", "bicubic", "lanczos4")
#: Orders of the photometric ops: 0 = brightness, 1 = contrast, 2 = saturation.
PHOTO_ORDERS: tuple[tuple[int, int, int], ...] = tuple(itertools.permutations(range(3)))
#: Uniforms consumed per sample.
NUM_DRAWS = 32
_CROP_ATTEMPTS = 10

RECORD_FIELDS: tuple[str, ...] = (
    "crop_applied", "crop_ratio", "crop_side_ratio", "crop_top", "crop_left", "crop_height", "crop_width",
    "resize_applied", "resize_ratio", "resize_down", "resize_up",
    "photo_applied", "brightness", "contrast", "saturation", "photo_order",
)
_LUMA = (19595.0, 38470.0, 7471.0)  # PIL's ITU-R 601-2 luma weights, in 1/65536


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the AdaFace augmentations (defaults: the official training recipe)."""

    crop_prob: float = 0.2
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_aspect_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)  # torchvision's "ratio" (w / h)
    low_res_prob: float = 0.2
    low_res_range: tuple[float, float] = (0.2, 1.0)
    interpolations: tuple[str, ...] = INTERPOLATIONS
    photometric_prob: float = 0.2
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    random_order: bool = True

    def __post_init__(self) -> None:
        for name in ("crop_prob", "low_res_prob", "photometric_prob"):
            p = getattr(self, name)
            if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        lo, hi = self.crop_aspect_ratio
        if not 0.0 < lo <= hi:
            raise ValueError(f"crop_aspect_ratio must satisfy 0 < low <= high, got {self.crop_aspect_ratio}")
        lo, hi = self.low_res_range
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"low_res_range must satisfy 0 < low <= high <= 1, got {self.low_res_range}")
        if not self.interpolations or any(m not in INTERPOLATIONS for m in self.interpolations):
            raise ValueError(
                f"interpolations must be a non-empty subset of {INTERPOLATIONS}, got {self.interpolations}")
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} jitter must be a non-negative number, got {v!r}")

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> "AugmentConfig":
        """Build from a dict, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown augmentation options {unknown}; known: {sorted(known)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# ----------------------------------------------------------------------------- drawing parameters


def make_generator(*keys: int) -> torch.Generator:
    """A CPU torch.Generator seeded from integer keys, e.g. ``make_generator(seed, epoch, sample_id)``.

    Gives each sample of each epoch its own reproducible draws, whatever worker or order it is loaded in.
    """
    if not keys or any(not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0 for k in keys):
        raise ValueError(f"keys must be one or more non-negative ints, got {keys!r}")
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))



def _uniforms(batch_size: int, generator: torch.Generator | int | None) -> torch.Tensor:
    """(batch_size, NUM_DRAWS) float64 uniforms on the CPU, sample by sample from the generator."""
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(int(generator))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(batch_size, NUM_DRAWS, generator=generator, dtype=torch.float64, device=device).cpu()


def draw_params(batch_size: int, height: int, width: int, generator: torch.Generator | int | None = None,
                config: AugmentConfig | None = None) -> dict[str, torch.Tensor]:
    """Draw the augmentation parameters of `batch_size` samples -> dict of CPU tensors (batch_size,).

    The keys are ``RECORD_FIELDS``. ``generator``: a torch.Generator (consumed), an int seed, or None
    for torch's global generator.
    """
    cfg = config or AugmentConfig()
    if batch_size < 0 or height < 1 or width < 1:
        raise ValueError(f"need batch_size >= 0 and a positive image size, got {batch_size}, {height}x{width}")
    u = _uniforms(batch_size, generator)
    f64 = torch.float64

    # crop: torchvision RandomResizedCrop.get_params, vectorised over samples and attempts
    crop_applied = u[:, 0] < cfg.crop_prob
    area = float(height * width)
    target = area * (cfg.crop_scale[0] + (cfg.crop_scale[1] - cfg.crop_scale[0]) * u[:, 1:1 + _CROP_ATTEMPTS])
    lr0, lr1 = math.log(cfg.crop_aspect_ratio[0]), math.log(cfg.crop_aspect_ratio[1])
    aspect = torch.exp(lr0 + (lr1 - lr0) * u[:, 1 + _CROP_ATTEMPTS:1 + 2 * _CROP_ATTEMPTS])
    w_try = torch.round(torch.sqrt(target * aspect))
    h_try = torch.round(torch.sqrt(target / aspect))
    ok = (w_try > 0) & (w_try <= width) & (h_try > 0) & (h_try <= height)
    first = ok.to(torch.int8).argmax(dim=1, keepdim=True)
    w_c = w_try.gather(1, first)[:, 0]
    h_c = h_try.gather(1, first)[:, 0]
    # fallback (no attempt fitted): the central crop with the aspect ratio clamped into range
    in_ratio = width / height
    if in_ratio < cfg.crop_aspect_ratio[0]:
        fw, fh = width, int(round(width / cfg.crop_aspect_ratio[0]))
    elif in_ratio > cfg.crop_aspect_ratio[1]:
        fw, fh = int(round(height * cfg.crop_aspect_ratio[1])), height
    else:
        fw, fh = width, height
    found = ok.any(dim=1)
    w_c = torch.where(found, w_c, torch.tensor(float(fw), dtype=f64))
    h_c = torch.where(found, h_c, torch.tensor(float(fh), dtype=f64))
    top = torch.where(found, torch.floor(u[:, 21] * (height - h_c + 1)), torch.tensor(float((height - fh) // 2)))
    left = torch.where(found, torch.floor(u[:, 22] * (width - w_c + 1)), torch.tensor(float((width - fw) // 2)))
    top = torch.where(crop_applied, top, torch.zeros_like(top)).long()
    left = torch.where(crop_applied, left, torch.zeros_like(left)).long()
    h_c = torch.where(crop_applied, h_c, torch.full_like(h_c, float(height))).long()
    w_c = torch.where(crop_applied, w_c, torch.full_like(w_c, float(width))).long()

    # low resolution
    resize_applied = u[:, 23] < cfg.low_res_prob
    lo, hi = cfg.low_res_range
    ratio = torch.where(resize_applied, lo + (hi - lo) * u[:, 24], torch.ones_like(u[:, 24]))
    allowed = torch.tensor([INTERPOLATIONS.index(m) for m in cfg.interpolations])
    n_int = len(allowed)
    down = allowed[torch.clamp((u[:, 25] * n_int).long(), max=n_int - 1)]
    up = allowed[torch.clamp((u[:, 26] * n_int).long(), max=n_int - 1)]
    down = torch.where(resize_applied, down, torch.full_like(down, -1))
    up = torch.where(resize_applied, up, torch.full_like(up, -1))

    # photometric: ColorJitter factors from U(max(0, 1 - j), 1 + j) and an order
    photo_applied = u[:, 27] < cfg.photometric_prob

    def factor(j: float, col: int) -> torch.Tensor:
        low = max(0.0, 1.0 - j)
        v = low + (1.0 + j - low) * u[:, col]
        return torch.where(photo_applied, v, torch.ones_like(v))

    order = torch.clamp((u[:, 31] * len(PHOTO_ORDERS)).long(), max=len(PHOTO_ORDERS) - 1)
    if not cfg.random_order:
        order = torch.zeros_like(order)
    order = torch.where(photo_applied, order, torch.zeros_like(order))

    return {
        "crop_applied": crop_applied,
        "crop_ratio": (h_c * w_c).to(f64) / area,
        "crop_side_ratio": torch.minimum(h_c, w_c).to(f64) / max(height, width),
        "crop_top": top,
        "crop_left": left,
        "crop_height": h_c,
        "crop_width": w_c,
        "resize_applied": resize_applied,
        "resize_ratio": ratio,
        "resize_down": down,
        "resize_up": up,
        "photo_applied": photo_applied,
        "brightness": factor(cfg.brightness, 28),
        "contrast": factor(cfg.contrast, 29),
        "saturation": factor(cfg.saturation, 30),
        "photo_order": order,
    }


# ----------------------------------------------------------------------------- resampling kernels


def _cubic(d: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel with OpenCV's a = -0.75, at distances d."""
    d = np.abs(d)
    return np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                    np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))


@functools.lru_cache(maxsize=2048)
def resize_taps(in_size: int, out_size: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Taps of a 1-D resize from `in_size` to `out_size` samples as OpenCV's cv2.resize computes it.

    Returns (index (out_size, T) int64, weight (out_size, T) float64): output sample i is
    ``sum_t weight[i, t] * input[index[i, t]]``. Half-pixel centres: source coordinate
    ``(i + 0.5) * in/out - 0.5``; borders replicate. nearest: ``floor(i * in/out)``; area: exact box
    overlap (an average when shrinking, OpenCV's INTER_AREA in both directions).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}")
    if method not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {method!r}; choose from {INTERPOLATIONS}")
    scale = in_size / out_size
    i = np.arange(out_size, dtype=np.float64)
    if method == "nearest":
        idx = np.minimum(np.floor(i * scale), in_size - 1)[:, None]
        w = np.ones_like(idx)
    elif method == "area":
        lo, hi = i * scale, (i + 1) * scale
        t_max = int(math.ceil(scale)) + 1
        first = np.floor(lo)
        idx = first[:, None] + np.arange(t_max)[None, :]
        w = np.clip(np.minimum(hi[:, None], idx + 1) - np.maximum(lo[:, None], idx), 0.0, None) / scale
        idx = np.clip(idx, 0, in_size - 1)
    else:
        src = (i + 0.5) * scale - 0.5
        base = np.floor(src)
        frac = src - base
        if method == "bilinear":
            # OpenCV clamps the coordinate itself at the borders (weights (1, 0) there)
            left = base < 0
            right = base >= in_size - 1
            frac = np.where(left | right, 0.0, frac)
            base = np.where(left, 0.0, np.where(right, in_size - 1.0, base))
            offsets = np.arange(2)
            w = np.stack([1.0 - frac, frac], axis=1)
        else:
            half = 2 if method == "bicubic" else 4
            offsets = np.arange(-half + 1, half + 1)
            d = frac[:, None] - offsets[None, :]
            if method == "bicubic":
                w = _cubic(d)
            else:
                w = np.sinc(d) * np.sinc(d / 4.0)
                w[frac < np.finfo(np.float32).eps] = (offsets == 0).astype(np.float64)
            w = w / w.sum(axis=1, keepdims=True)
        idx = np.clip(base[:, None] + offsets[None, :], 0, in_size - 1)
    return idx.astype(np.int64), w.astype(np.float64)


@functools.lru_cache(maxsize=1024)
def _resize_matrix_cpu(in_size: int, out_size: int, method: str) -> torch.Tensor:
    idx, w = resize_taps(in_size, out_size, method)
    m = np.zeros((out_size, in_size), dtype=np.float64)
    np.add.at(m, (np.repeat(np.arange(out_size), idx.shape[1]), idx.ravel()), w.ravel())
    return torch.from_numpy(m.astype(np.float32))


_DEVICE_MATRICES: dict[tuple[int, int, str, str, torch.dtype], torch.Tensor] = {}


def _resize_matrix(in_size: int, out_size: int, method: str, device: torch.device, dtype: torch.dtype,
                   ) -> torch.Tensor:
    """Dense (out_size, in_size) resize matrix built from ``resize_taps``, cached per device and dtype."""
    key = (in_size, out_size, method, str(device), dtype)
    m = _DEVICE_MATRICES.get(key)
    if m is None:
        if len(_DEVICE_MATRICES) > 4096:
            _DEVICE_MATRICES.clear()
        m = _DEVICE_MATRICES[key] = _resize_matrix_cpu(in_size, out_size, method).to(device=device, dtype=dtype)
    return m


def _down_up(x: torch.Tensor, ratio: float, down: int, up: int, integer: bool, top: float) -> torch.Tensor:
    """One image (C, H, W): resize to int(ratio * side) with kernel `down`, back with kernel `up`."""
    _, h, w = x.shape
    hs, ws = max(1, int(ratio * h)), max(1, int(ratio * w))
    dev, dt = x.device, x.dtype
    kd, ku = INTERPOLATIONS[down], INTERPOLATIONS[up]
    y = _resize_matrix(h, hs, kd, dev, dt) @ x @ _resize_matrix(w, ws, kd, dev, dt).T  # (C, hs, ws)
    y = _finish(y, integer, top)
    y = _resize_matrix(hs, h, ku, dev, dt) @ y @ _resize_matrix(ws, w, ku, dev, dt).T  # (C, H, W)
    return _finish(y, integer, top)


def _finish(x: torch.Tensor, integer: bool, top: float) -> torch.Tensor:
    return torch.clamp(torch.round(x) if integer else x, 0.0, top)


# ----------------------------------------------------------------------------- applying parameters


def _luma(x: torch.Tensor, integer: bool) -> torch.Tensor:
    """(n, 3, H, W) -> (n, 1, H, W) luma; on the integer scale rounded as PIL's convert("L") does."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    if integer:
        return torch.floor((r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2] + 32768.0) / 65536.0)
    return (r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2]) / 65536.0


def apply_params(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply drawn parameters to images (B, 3, H, W), uint8 or float in [0, 1], on any device.

    Returns a new tensor of the same dtype and device. ``params`` as returned by ``draw_params`` for
    the same B, H, W.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    integer = images.dtype == torch.uint8
    if not integer and not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    b, _, h, w = images.shape
    if len(params["crop_applied"]) != b:
        raise ValueError(f"params are for {len(params['crop_applied'])} samples, images has {b}")
    device = images.device
    touched = params["crop_applied"] | params["resize_applied"] | params["photo_applied"]  # (B,) on the CPU
    if not bool(touched.all()):  # most samples pass untouched (0.8^3 of them by default): copy those as they are
        out = images.clone()
        sel = torch.nonzero(touched).flatten()
        if len(sel):
            sel_d = sel.to(device)
            out[sel_d] = apply_params(images[sel_d], {k: v[sel] for k, v in params.items()})
        return out
    work = torch.float32 if images.dtype in (torch.uint8, torch.float16, torch.bfloat16) else images.dtype
    top = 255.0 if integer else 1.0
    x = images.to(work).clone()

    # crop: zero outside the box (no resampling; the box stays where it was)
    sel = torch.nonzero(params["crop_applied"]).flatten()
    if len(sel):
        rows = torch.arange(h).view(1, h, 1)
        cols = torch.arange(w).view(1, 1, w)
        t, l_ = params["crop_top"][sel].view(-1, 1, 1), params["crop_left"][sel].view(-1, 1, 1)
        hh, ww = params["crop_height"][sel].view(-1, 1, 1), params["crop_width"][sel].view(-1, 1, 1)
        mask = (rows >= t) & (rows < t + hh) & (cols >= l_) & (cols < l_ + ww)  # (n, H, W)
        sel_d = sel.to(device)
        x[sel_d] = x[sel_d] * mask.to(device=device, dtype=work)[:, None]

    # low resolution: down to int(r * side) then back up, per-sample sizes and kernels
    sel = torch.nonzero(params["resize_applied"]).flatten()
    if len(sel):
        # one sample at a time: sizes and kernels differ per sample, and the result of a sample must not
        # depend on the rest of the batch (bit-for-bit equal to the per-sample path)
        for k, r, dn, upk in zip(sel.tolist(), params["resize_ratio"][sel].tolist(),
                                 params["resize_down"][sel].tolist(), params["resize_up"][sel].tolist()):
            x[k] = _down_up(x[k].clone(), r, dn, upk, integer, top)  # fresh buffer: same alignment either way

    # photometric: three blends x' = D + f (x - D), in the sample's order
    sel = torch.nonzero(params["photo_applied"]).flatten()
    if len(sel):
        sel_d = sel.to(device)
        y = x[sel_d]
        n = len(sel)
        factors = torch.stack([params["brightness"][sel], params["contrast"][sel], params["saturation"][sel]], 1)
        orders = torch.tensor(PHOTO_ORDERS)[params["photo_order"][sel]]  # (n, 3)
        for step in range(3):
            op = orders[:, step]  # (n,)
            f = factors.gather(1, op[:, None])[:, 0].to(device=device, dtype=work).view(n, 1, 1, 1)
            op_d = op.to(device).view(n, 1, 1, 1)
            if bool((op > 0).any()):
                gray = _luma(y, integer)  # (n, 1, H, W)
                mean = gray.double().mean(dim=(2, 3), keepdim=True)
                mean = (torch.floor(mean + 0.5) if integer else mean).to(work)
                degenerate = torch.where(op_d == 1, mean, gray)
                degenerate = torch.where(op_d == 0, torch.zeros_like(degenerate), degenerate)
                y = y.sub_(degenerate).mul_(f).add_(degenerate)
            else:
                y = y.mul_(f)
            if integer:
                y = y.floor_()
            y = y.clamp_(0.0, top)
        x[sel_d] = y

    if integer:
        return x.to(torch.uint8)
    return x.to(images.dtype)


def augment_batch(images: torch.Tensor, generator: torch.Generator | int | None = None,
                  config: AugmentConfig | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Augment a batch (B, 3, H, W) uint8 or float in [0, 1], on any device.

    ``generator``: a CPU torch.Generator (consumed; equal to calling ``augment`` per sample in order with
    it), an int seed, or None for torch's global generator. Returns (images of the same dtype/device,
    records: dict of CPU tensors (B,) keyed by ``RECORD_FIELDS``).
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("augment_batch expects a tensor (B, 3, H, W)")
    params = draw_params(images.shape[0], images.shape[2], images.shape[3], generator, config)
    return apply_params(images, params), params


def augment(image: torch.Tensor, generator: torch.Generator | int | None = None,
            config: AugmentConfig | None = None) -> tuple[torch.Tensor, dict[str, float | int | bool]]:
    """Augment one image (3, H, W) uint8 or float in [0, 1] -> (image of the same dtype, record).

    The record is a flat dict of Python scalars keyed by ``RECORD_FIELDS`` (fits a data set's meta).
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        raise ValueError("augment expects a tensor (3, H, W); use augment_batch for batches")
    out, params = augment_batch(image[None], generator, config)
    return out[0], {k: v[0].item() for k, v in params.items()}
