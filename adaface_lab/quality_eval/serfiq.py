"""SER-FIQ (Terhörst et al., CVPR 2020): an image's quality is how much its embedding stays put when
random subnetworks embed it (DESIGN.md §6). No training, no download::

    q = serfiq(backbone, images, channel_order="rgb", passes=100, seed=0)   # float64 (N,), in (0, 1]

For T stochastic embeddings x_1..x_T of one image (unit vectors), drawn with dropout active on the
layer before the embedding, ``q = 2·σ(−(2/T²)·Σ_{i<j} ‖x_i − x_j‖)`` (σ the logistic function):
1 when every pass agrees, lower the more they scatter.

How the passes are drawn here (:func:`stochastic_embeddings`):

- Only the IResNet's output ``Dropout`` is stochastic; every BatchNorm stays in eval mode (running
  statistics). The modules are never switched to training mode: the masks are applied by hand.
- The trunk (input layer, body, the BatchNorm2d before the dropout) runs **once** per image; only
  what follows the dropout (Flatten, Linear, BatchNorm1d) runs T times, on T masked copies of the
  trunk's output. The official SER-FIQ code replicates each image T times through the whole
  network; the result is the same (the trunk is deterministic) and the cost falls from T trunks to
  one trunk plus T small heads (``bench/bench_quality_eval.py`` measures the ratio).
- The T dropout masks are drawn once from ``seed`` and **shared by every image**: the same T random
  subnetworks judge every image. An image's score then depends only on the image, the model, T and
  the seed — not on the batch it came in, its position, or the other images — and differences
  between images are not blurred by each image drawing its own subnetworks (common random numbers).
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..backbones import preprocess
from ..evaluate import _model_device

__all__ = ["dropout_masks", "serfiq", "serfiq_from_embeddings", "split_at_dropout", "stochastic_embeddings"]

_CHUNK_ELEMENTS = 1 << 23  # masked copies per head call: at most this many floats (32 MiB)


def split_at_dropout(backbone: nn.Module) -> tuple[nn.Module, nn.Dropout, nn.Module]:
    """``(trunk, dropout, head)`` of an IResNet-like backbone: ``head(dropout(trunk(x)))`` is its
    un-normalised embedding.

    The backbone needs ``input_layer``, ``body`` and an ``output_layer`` Sequential holding exactly
    one ``nn.Dropout`` (every :mod:`adaface_lab.backbones` model has one).
    """
    out = getattr(backbone, "output_layer", None)
    if not (isinstance(out, nn.Sequential) and hasattr(backbone, "input_layer") and hasattr(backbone, "body")):
        raise ValueError(
            f"SER-FIQ needs an IResNet-like backbone (input_layer, body, output_layer), got {type(backbone).__name__}"
        )
    layers = list(out)
    where = [i for i, m in enumerate(layers) if isinstance(m, nn.Dropout)]
    if len(where) != 1:
        raise ValueError(f"SER-FIQ needs exactly one nn.Dropout in output_layer, found {len(where)}")
    i = where[0]
    dropout = layers[i]
    trunk = nn.Sequential(backbone.input_layer, backbone.body, *layers[:i])
    return trunk, dropout, nn.Sequential(*layers[i + 1:])


@functools.lru_cache(maxsize=4)
def dropout_masks(passes: int, numel: int, p: float, seed: int) -> torch.Tensor:
    """``passes`` dropout masks over ``numel`` features: float32 (passes, numel), 0 or 1/(1-p).

    Drawn on the CPU from ``torch.Generator().manual_seed(seed)`` (the same masks on every device),
    and cached: the returned tensor is shared, do not modify it.
    """
    if passes < 2:
        raise ValueError(f"SER-FIQ needs at least 2 passes, got {passes}")
    if not 0.0 < p < 1.0:
        raise ValueError(f"SER-FIQ needs a dropout p in (0, 1), got {p} (a model trained without dropout: pass p=)")
    g = torch.Generator().manual_seed(int(seed))
    keep = torch.rand(passes, numel, generator=g) >= p
    return keep.to(torch.float32) / (1.0 - p)


@torch.no_grad()
def stochastic_embeddings(
    backbone: nn.Module, x: torch.Tensor, *, passes: int = 100, seed: int = 0, p: float | None = None
) -> torch.Tensor:
    """Unit embeddings of ``x`` under ``passes`` dropout masks: (B, T, E), T = ``passes``.

    Args:
        backbone: an IResNet-like model (:func:`split_at_dropout`), used in eval mode (restored after).
        x: model input (B, 3, S, S), already preprocessed.
        passes, seed, p: the masks, ``dropout_masks(passes, D, p, seed)`` with D the number of features
            entering the dropout and ``p`` by default the backbone's own (SER-FIQ is meant for the rate the
            model was trained with; another ``p`` is an experiment).
    """
    trunk, dropout, head = split_at_dropout(backbone)
    was_training = backbone.training
    backbone.eval()
    try:
        feats = trunk(x)  # (B, C, H, W), computed once
        b, shape = feats.shape[0], feats.shape[1:]
        flat = feats.reshape(b, -1)  # (B, D)
        masks = dropout_masks(passes, flat.shape[1], dropout.p if p is None else p, seed)
        masks = masks.to(device=flat.device, dtype=flat.dtype)
        step = max(1, _CHUNK_ELEMENTS // max(1, b * flat.shape[1]))
        out = []
        for j in range(0, passes, step):
            m = masks[j : j + step]  # (t, D)
            copies = (m[:, None, :] * flat[None]).reshape(-1, *shape)  # (t*B, C, H, W)
            e = head(copies).reshape(len(m), b, -1)  # (t, B, E)
            out.append(torch.nn.functional.normalize(e.float(), dim=-1))
    finally:
        backbone.train(was_training)
    return torch.cat(out).transpose(0, 1)  # (B, T, E)


def serfiq_from_embeddings(embeddings: torch.Tensor) -> torch.Tensor:
    """SER-FIQ of stochastic embeddings (B, T, E) -> float64 (B,): ``2σ(−(2/T²)·Σ_{i<j}‖x_i − x_j‖)``.

    Rows are normalised to unit length first. Distances come from the Gram matrix in float64
    (``‖x_i − x_j‖² = 2 − 2·x_i·x_j`` for unit vectors; ten times faster than differencing): a
    distance δ is off by about 1e-16/δ, so q is exact to about 1e-8 even when every pass agrees.
    """
    if embeddings.ndim != 3 or embeddings.shape[1] < 2:
        raise ValueError(f"embeddings must be (B, T, E) with T >= 2, got {tuple(embeddings.shape)}")
    e = torch.nn.functional.normalize(embeddings.to(torch.float64), dim=-1)
    t = e.shape[1]
    gram = e @ e.transpose(1, 2)  # (B, T, T)
    dist = (2.0 - 2.0 * gram).clamp_min(0.0).sqrt()
    pair_sum = dist.triu(diagonal=1).sum(dim=(1, 2))  # Σ_{i<j}
    return 2.0 * torch.sigmoid(-(2.0 / t**2) * pair_sum)


def serfiq(
    backbone: nn.Module,
    images: torch.Tensor,
    channel_order: Literal["bgr", "rgb"],
    *,
    passes: int = 100,
    seed: int = 0,
    p: float | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> np.ndarray:
    """SER-FIQ quality per image: float64 (N,) in (0, 1], higher = better.

    Args:
        backbone: an IResNet-like model (:func:`split_at_dropout`).
        images: RGB, uint8 (N, 3, H, W) or float in [0, 1]; resized to ``backbone.input_size`` and
            converted by :func:`~adaface_lab.backbones.preprocess` with ``channel_order`` (what the
            model expects: ``"bgr"`` for the authors' weights, ``"rgb"`` for the lab's runs).
        passes: T, the number of stochastic embeddings per image (the paper uses 100).
        seed: seeds the T masks, shared by all images (module docstring): same seed, same scores,
            whatever the batching.
        p: dropout probability; default the backbone's own (0.4 in the official models).
        batch_size: images per trunk pass; ``device``: where to run (default: the backbone's).
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (N, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    split_at_dropout(backbone)  # fails early, with its message, on a model without the dropout
    dev = torch.device(device) if device is not None else _model_device(backbone)
    backbone.to(dev)
    size = getattr(backbone, "input_size", None)
    scores = []
    starts = range(0, len(images), batch_size)
    for i in tqdm(starts, desc="SER-FIQ", unit="batch", disable=not progress or len(starts) < 4):
        x = preprocess(images[i : i + batch_size], channel_order=channel_order, size=size).to(dev)
        emb = stochastic_embeddings(backbone, x, passes=passes, seed=seed, p=p)
        scores.append(serfiq_from_embeddings(emb).cpu())
    return torch.cat(scores).numpy() if scores else np.empty(0)
