"""Quality-aware template fusion and set-to-set verification (DESIGN.md §6).

A template is k images of one identity fused into one feature. With unit embeddings ẑ_i, norms
‖z_i‖ and weights w_i, the fused feature is ``f = Σ w_i·ẑ_i / ‖Σ w_i·ẑ_i‖``:

- ``mean``: w_i = 1, the mean of unit embeddings (every image counts the same);
- ``norm``: w_i = ‖z_i‖, so ``Σ w_i·ẑ_i = Σ z_i`` — the sum of un-normalised features the official
  AdaFace evaluation uses (its flip fusion is the case k = 2, :func:`~adaface_lab.evaluate.fuse_flip`);
- any quality measure q: w_i = q_i (non-negative), a quality-weighted mean.

Templates come from held-out identities; every pair of templates is compared by the cosine of
their fused features (:func:`all_pairs`, which also pairs single images), and TAR@FAR is read off
:func:`~adaface_lab.evaluate.verification_metrics`::

    table = fusion_table(emb, norms, labels, k=5, qualities={"serfiq": q}, draws=5)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..evaluate import DEFAULT_FAR_TARGETS, verification_metrics

__all__ = ["Templates", "all_pairs", "fuse_templates", "fusion_table", "make_templates", "template_verification"]


@dataclass(frozen=True)
class Templates:
    """``index`` (N,): the template of each image, -1 for images left out; ``labels`` (T,): each template's identity."""

    index: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def make_templates(labels: Any, k: int, *, seed: int = 0) -> Templates:
    """Group each identity's images, in a random order from ``seed``, into templates of ``k`` images.

    An identity with n images gives ⌊n/k⌋ templates; the n mod k images left over are left out.
    Templates are numbered identity by identity (identities in ascending order).
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = int(k)
    rng = np.random.default_rng(seed)
    index = np.full(len(y), -1, dtype=np.int64)
    template_labels: list[Any] = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n_t = len(members) // k
        index[members[: n_t * k]] = len(template_labels) + np.arange(n_t * k) // k
        template_labels.extend([c] * n_t)
    return Templates(index=index, labels=np.asarray(template_labels, dtype=y.dtype))


def fuse_templates(embeddings: Any, templates: Templates, weights: Any = None) -> np.ndarray:
    """Fused unit features of the templates: float64 (T, E), ``Σ w_i·ẑ_i`` normalised (module docstring).

    Args:
        embeddings: (N, E) unit embeddings (rows are normalised here in any case).
        templates: from :func:`make_templates`, over the same N images.
        weights: (N,) non-negative finite weight per image (norms, a quality), or None for 1.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2 or len(e) != len(templates.index):
        raise ValueError(f"embeddings must be (N, E) with N = {len(templates.index)} images, got shape {e.shape}")
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    w = np.ones(len(e)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (len(e),):
        raise ValueError(f"weights must have one value per image ({len(e)}), got shape {w.shape}")
    used = templates.index >= 0
    if not np.all(np.isfinite(w[used]) & (w[used] >= 0)):
        raise ValueError("fusion weights must be finite and non-negative (shift or clip a quality that can go below 0)")
    fused = np.zeros((len(templates), e.shape[1]))
    np.add.at(fused, templates.index[used], w[used, None] * e[used])  # (T, E) Σ w_i ẑ_i
    norm = np.linalg.norm(fused, axis=1, keepdims=True)
    if np.any(norm == 0):
        raise ValueError(f"{int((norm == 0).sum())} templates have zero total weight (or features that cancel)")
    return fused / norm


def template_verification(
    fused: Any, template_labels: Any, *, folds: int = 10, far_targets: Sequence[float] = DEFAULT_FAR_TARGETS
) -> dict[str, Any]:
    """Compare every pair of templates (cosine of fused features): :func:`verification_metrics` of all pairs,
    plus ``scores`` and ``issame`` (one per template pair ``(i, j)``, i < j, row by row) and ``pairs`` (P, 2)."""
    f = np.asarray(fused, dtype=np.float64)
    y = np.asarray(template_labels)
    if f.ndim != 2 or len(f) != len(y):
        raise ValueError(f"fused must be (T, E) with one label per template, got {f.shape} and {y.shape}")
    scores, issame, pairs = all_pairs(f, y)
    if not issame.any() or issame.all():
        raise ValueError(
            f"set-to-set verification needs genuine and impostor template pairs, got {int(issame.sum())} genuine "
            f"and {int((~issame).sum())} impostor (an identity needs at least 2k images for a genuine pair)"
        )
    result = verification_metrics(scores, issame, folds=min(folds, len(scores)), far_targets=far_targets)
    result.update(scores=scores, issame=issame, pairs=pairs)
    return result


def all_pairs(embeddings: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, i < j, of a set of unit embeddings (N, E) with labels (N,), row by row:
    ``scores`` (P,) the cosines, ``issame`` (P,) bool, ``pairs`` (P, 2) the image indices; P = N(N−1)/2.

    Rows are normalised here in any case. The pairs share images: per-image qualities go to
    :func:`~.edc.edc_tables` and :func:`~.edc.random_edc` with ``pairs=``.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    if e.ndim != 2 or len(e) != len(y):
        raise ValueError(f"embeddings must be (N, E) with one label per row, got {e.shape} and {y.shape}")
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    i, j = np.triu_indices(len(e), k=1)
    return (e @ e.T)[i, j], y[i] == y[j], np.stack([i, j], axis=1)  # (P,), (P,), (P, 2)


def fusion_table(
    embeddings: Any,
    norms: Any,
    labels: Any,
    *,
    k: int = 5,
    qualities: Mapping[str, Any] | None = None,
    draws: int = 5,
    seed: int = 0,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
) -> pd.DataFrame:
    """Set-to-set verification per fusion mode, mean and std over ``draws`` random groupings into templates.

    Args:
        embeddings: (N, E) unit embeddings; norms: (N,) or (N, 1) their feature norms; labels: (N,).
        k: images per template.
        qualities: ``{name: (N,) non-negative quality}``, one ``quality:<name>`` row each.
        draws: groupings drawn (seeds ``seed, seed + 1, ...``); the std over them is the spread a
            different grouping would show.

    Returns one row per mode (``mean``, ``norm``, then the qualities) with ``n_templates``,
    ``n_genuine``, ``n_impostor`` (of the first draw), and for ``auc``, ``accuracy`` and each
    ``tar@far=<f>`` its mean over draws and a ``<column>_std`` beside it.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    weights: dict[str, Any] = {"mean": None, "norm": np.asarray(norms, dtype=np.float64).reshape(-1)}
    weights.update({f"quality:{name}": q for name, q in (qualities or {}).items()})
    metric_cols = ["auc", "accuracy", *(f"tar@far={far:g}" for far in far_targets)]
    per_draw: dict[str, list[dict[str, float]]] = {mode: [] for mode in weights}
    sizes: dict[str, tuple[int, int, int]] = {}
    for draw in range(draws):
        templates = make_templates(labels, k, seed=seed + draw)
        for mode, w in weights.items():
            met = template_verification(fuse_templates(embeddings, templates, w), templates.labels,
                                        far_targets=far_targets)
            values = [met["auc"], met["accuracy"], *(met["tar_at_far"][float(far)] for far in far_targets)]
            per_draw[mode].append(dict(zip(metric_cols, values)))
            sizes.setdefault(mode, (len(templates), met["n_genuine"], met["n_impostor"]))
    rows = []
    for mode, results in per_draw.items():
        frame = pd.DataFrame(results)
        row: dict[str, Any] = {"mode": mode, "k": int(k), "draws": draws}
        row.update(zip(("n_templates", "n_genuine", "n_impostor"), sizes[mode]))
        for c in metric_cols:
            row[c] = float(frame[c].mean())
            row[f"{c}_std"] = float(frame[c].std(ddof=1)) if draws > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)
