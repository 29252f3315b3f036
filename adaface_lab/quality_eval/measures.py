"""Quality per image from several measures, higher = better, ready for :func:`~.edc.edc` and fusion::

    q = image_qualities(backbone, images, channel_order="rgb", measures=("norm", "brisque", "serfiq"))
    q["norm"], q["brisque"], q["serfiq"]                       # float64 (N,) each, a DataFrame

- ``norm``: the feature norm ‖z‖ of one view (no flip fusion), the quality AdaFace trains on.
- ``brisque``: ``1 - BRISQUE/100`` (:mod:`adaface_lab.quality`), scored at 112 × 112 px — the size the
  LIVE model is reliable at (DESIGN.md §2): other sizes are resized to 112 first (bilinear,
  antialiased, as :func:`~adaface_lab.backbones.preprocess`). NaN for a degenerate (flat) image.
- ``serfiq``: :func:`~.serfiq.serfiq`, the agreement of stochastic embeddings.
- ``random``: uniform noise from ``seed``, a measure with no information (the EDC baseline is
  :func:`~.edc.random_edc`; this column is for fusion and figures).

A ground-truth quality (``1 - severity`` on SyntheticFaces) comes from the data set, not the image;
pass it beside these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..evaluate import embed
from ..quality import brisque, quality_from_brisque
from .serfiq import serfiq

__all__ = ["BRISQUE_SIZE", "MEASURES", "brisque_quality", "image_qualities", "norm_quality"]

#: The side, in pixels, at which BRISQUE is scored.
BRISQUE_SIZE = 112
#: The measures :func:`image_qualities` knows.
MEASURES: tuple[str, ...] = ("norm", "brisque", "serfiq", "random")


def norm_quality(
    backbone: nn.Module, images: torch.Tensor, channel_order: Literal["bgr", "rgb"], **kwargs: Any
) -> np.ndarray:
    """The feature norm ‖z‖ of each image (one view, eval mode): float64 (N,).

    ``images``: RGB uint8 (N, 3, H, W) or float in [0, 1], resized to the backbone's input;
    ``kwargs`` (batch_size, device, progress) go to :func:`~adaface_lab.evaluate.embed`.
    """
    _, norms = embed(backbone, images, channel_order, flip=False, **kwargs)
    return norms.numpy().reshape(-1).astype(np.float64)


def _at_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) uint8 or float [0, 1] -> float [0, 1] at (size, size); unchanged size stays as is."""
    if images.shape[-2:] == (size, size):
        return images
    x = images.to(torch.float32) / 255.0 if images.dtype == torch.uint8 else images.to(torch.float32)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp_(0.0, 1.0)


def brisque_quality(images: torch.Tensor, *, size: int = BRISQUE_SIZE, **kwargs: Any) -> np.ndarray:
    """``1 - BRISQUE/100`` of each image, scored at ``size`` px: float64 (N,), NaN for a degenerate image.

    ``images``: RGB (N, 3, H, W), uint8 or float in [0, 1]; ``kwargs`` go to
    :func:`adaface_lab.quality.brisque` (backend, cache, device, progress, ...).
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a (N, 3, H, W) RGB tensor, got {getattr(images, 'shape', type(images))}")
    if len(images) == 0:
        return np.empty(0)
    return np.asarray(quality_from_brisque(brisque(_at_size(images, size), **kwargs)), dtype=np.float64)


def image_qualities(
    backbone: nn.Module | None,
    images: torch.Tensor,
    channel_order: Literal["bgr", "rgb"] = "rgb",
    *,
    measures: Sequence[str] = ("norm", "brisque", "serfiq"),
    passes: int = 100,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """One column per measure (see the module docstring), one row per image.

    ``backbone`` is needed for ``norm`` and ``serfiq`` (``None`` is fine for ``brisque`` and ``random``);
    ``passes`` and ``seed`` go to SER-FIQ, ``seed`` also to ``random``.
    """
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ValueError(f"unknown quality measures {unknown}; known: {list(MEASURES)}")
    if backbone is None and {"norm", "serfiq"} & set(measures):
        raise ValueError("the measures 'norm' and 'serfiq' need a backbone")
    out: dict[str, np.ndarray] = {}
    for m in measures:
        if m == "norm":
            out[m] = norm_quality(backbone, images, channel_order, batch_size=batch_size, device=device,
                                  progress=progress)
        elif m == "brisque":
            out[m] = brisque_quality(images, progress=progress)
        elif m == "serfiq":
            out[m] = serfiq(backbone, images, channel_order, passes=passes, seed=seed, batch_size=batch_size,
                            device=device, progress=progress)
        else:
            out[m] = np.random.default_rng(seed).random(len(images))
    return pd.DataFrame(out)
