"""1:1 face verification: the LFW 10-fold protocol, ROC, TAR at FAR, and flip-fused embeddings.

::

    pairs = load_bin("lfw.bin")                                    # or load_pairs_txt / pairs_from_identities
    result = evaluate_pairs(backbone, pairs, channel_order="bgr")  # the authors' weights are BGR
    result["accuracy"], result["accuracy_std"], result["auc"], result["tar_at_far"][1e-3]

    metrics = verification_metrics(scores, issame, folds=10)       # from any (N,) similarity scores
    table = verification_by_bin(scores, issame, pair_quality_bins(norms))  # high / mixed / low quality

Scores are similarities: higher means "more likely the same person" (the cosine of two unit
embeddings). A pair is declared genuine when ``score > threshold``.

How this differs from insightface's ``verification.py`` (which the AdaFace repo reuses): there the
threshold is searched on a fixed grid of squared Euclidean distances (0 to 4 in steps of 0.01);
here every midpoint between consecutive distinct training scores is a candidate, so the chosen
threshold is an exact maximiser of the training-fold accuracy. For unit embeddings the squared
distance is ``2 - 2·cos``, so the two agree up to the grid's resolution. TAR at FAR is read off
the ROC of all pairs (see :func:`verification_metrics`), not per fold.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .backbones import preprocess
from .data.verification import VerificationPairs, kfold_indices, load_bin, load_pairs_txt

__all__ = [
    "DEFAULT_FAR_TARGETS",
    "verification_metrics",
    "roc_curve",
    "tar_at_far",
    "best_threshold",
    "fuse_flip",
    "embed",
    "open_pairs",
    "evaluate_pairs",
    "pair_quality_bins",
    "verification_by_bin",
    "compare_by_bin",
]

#: The false accept rates at which TAR is reported by default.
DEFAULT_FAR_TARGETS: tuple[float, ...] = (1e-2, 1e-3)


# --------------------------------------------------------------------------- input checks


def _as_scores(scores: Any, issame: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(issame)
    if s.ndim != 1 or y.ndim != 1 or len(s) != len(y):
        raise ValueError(f"scores and issame must be 1-D of equal length, got shapes {s.shape} and {y.shape}")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("issame must be boolean (or 0/1)")
        y = y.astype(bool)
    if not np.isfinite(s).all():
        raise ValueError(f"scores must be finite; {int((~np.isfinite(s)).sum())} are NaN or infinite")
    return s, y


def _as_folds(folds: int | Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    if isinstance(folds, (int, np.integer)):
        k = int(folds)
        if k < 2:
            raise ValueError(f"folds must be >= 2 (each fold's threshold comes from the others), got {k}")
        if k > n:
            raise ValueError(f"cannot split {n} pairs into {k} folds")
        return kfold_indices(n, k)
    f = np.asarray(folds)
    if f.shape != (n,) or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"folds must be an int or an integer array of shape ({n},), got {f.dtype} {f.shape}")
    if len(np.unique(f)) < 2:
        raise ValueError("folds must hold at least 2 distinct fold indices")
    return f


# --------------------------------------------------------------------------- thresholds, ROC, TAR@FAR


def best_threshold(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """The threshold maximising accuracy of ``score > threshold`` on these pairs: (threshold, accuracy).

    Candidates are the midpoints between consecutive distinct scores, plus one below the lowest
    score (``min - 1``: everything accepted) and one above the highest (``max + 1``: everything
    rejected). Ties go to the lowest maximising threshold. O(N log N).
    """
    s, y = _as_scores(scores, issame)
    if len(s) == 0:
        raise ValueError("no pairs to choose a threshold on")
    u = np.unique(s)  # ascending
    cand = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2.0, [u[-1] + 1.0]])  # (M+1,)
    neg = np.sort(s[~y])
    pos = np.sort(s[y])
    # Rejected (declared different) at threshold t: scores <= t. No score equals a candidate.
    neg_rejected = np.searchsorted(neg, cand, side="right")
    pos_accepted = len(pos) - np.searchsorted(pos, cand, side="right")
    correct = neg_rejected + pos_accepted
    i = int(np.argmax(correct))  # first maximiser = lowest threshold
    return float(cand[i]), float(correct[i] / len(s))


def roc_curve(scores: Any, issame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of ``score >= threshold``: (fpr, tpr, thresholds), each (M+1,), thresholds decreasing.

    One point per distinct score (tied scores move together, giving a diagonal segment),
    preceded by (0, 0) at threshold ``+inf``. Requires at least one genuine and one impostor pair.
    """
    s, y = _as_scores(scores, issame)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"the ROC needs genuine and impostor pairs, got {n_pos} genuine and {n_neg} impostor")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s) - 1]  # last index of each distinct value
    tps = np.cumsum(y_sorted)[last_of_value]
    fps = (last_of_value + 1) - tps
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, s_sorted[last_of_value]]
    return fpr, tpr, thresholds


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """TAR at a target FAR on a ROC (fpr non-decreasing), linearly interpolated between ROC points.

    If ``far`` is a point of the curve, the highest TAR at exactly that FAR (the top of a vertical
    step). Otherwise the straight segment between the last point below ``far`` and the first point
    above it: the operating point a threshold randomised between those two achieves on average.
    (The step rule "highest TAR with FAR ≤ far" is lower between points; ``np.interp`` happens
    to follow this rule on repeated fpr values but documents only strictly increasing ones,
    so the rule is spelled out here.)
    """
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1], got {far}")
    i = int(np.searchsorted(fpr, far, side="right")) - 1  # last point with fpr <= far
    if i < 0:
        return float("nan")
    if fpr[i] == far or i == len(fpr) - 1:
        return float(tpr[i])
    j = i + 1  # first point with fpr > far: the lowest tpr of its vertical step
    w = (far - fpr[i]) / (fpr[j] - fpr[i])
    return float(tpr[i] + w * (tpr[j] - tpr[i]))


def verification_metrics(
    scores: Any,
    issame: Any,
    folds: int | Sequence[int] | np.ndarray = 10,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
) -> dict[str, Any]:
    """Verification metrics of similarity ``scores`` (N,) for pairs with flags ``issame`` (N,).

    Args:
        scores: (N,) similarity per pair (higher = more alike), finite.
        issame: (N,) bool, True for genuine pairs.
        folds: number of contiguous folds (as the LFW/insightface protocol: pairs in file order),
            or an (N,) integer array giving each pair's fold (e.g. ``VerificationPairs.folds``).
        far_targets: false accept rates at which to report TAR.

    Returns a dict:
        ``accuracy``, ``accuracy_std``: mean and (population) std over folds of the accuracy on
        each held-out fold, with the threshold chosen by :func:`best_threshold` on the *other*
        folds only (the LFW protocol); ``fold_accuracy``, ``fold_threshold``: (K,) per fold;
        ``threshold``: mean of the fold thresholds.
        ``fpr``, ``tpr``, ``roc_thresholds``: the ROC of all pairs (:func:`roc_curve`); ``auc``.
        ``tar_at_far``: {far: TAR} read off that ROC by :func:`tar_at_far`.
        ``n_pairs``, ``n_genuine``, ``n_impostor``; ``notes``: list of plain-language caveats.

    Too few impostors: a FAR of f can only be resolved with at least ``ceil(1/f)`` impostor
    pairs (below that, the first false accept already exceeds f, and the value would be an
    interpolation towards a single impostor's score). TAR at such an f is NaN and ``notes``
    says why; e.g. 1e-3 needs 1,000 impostor pairs (LFW has 3,000). With only one class
    present, ROC, AUC and TAR are NaN and only the accuracy is reported.
    """
    s, y = _as_scores(scores, issame)
    n = len(s)
    if n < 2:
        raise ValueError(f"need at least 2 pairs, got {n}")
    fold_of = _as_folds(folds, n)
    fold_ids = np.unique(fold_of)

    accs, thrs = [], []
    for k in fold_ids:
        test = fold_of == k
        thr, _ = best_threshold(s[~test], y[~test])  # chosen on the training folds only
        thrs.append(thr)
        accs.append(float(np.mean((s[test] > thr) == y[test])))
    accs_arr, thrs_arr = np.asarray(accs), np.asarray(thrs)

    n_pos, n_neg = int(y.sum()), int((~y).sum())
    notes: list[str] = []
    tars: dict[float, float] = {}
    if n_pos and n_neg:
        fpr, tpr, roc_thr = roc_curve(s, y)
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)  # trapezoid rule
        for far in far_targets:
            if n_neg * far < 1.0 - 1e-9:
                tars[float(far)] = float("nan")
                notes.append(
                    f"TAR at FAR={far:g} is NaN: it needs at least {math.ceil(1 / far - 1e-9)} impostor pairs, "
                    f"there are {n_neg}"
                )
            else:
                tars[float(far)] = tar_at_far(fpr, tpr, far)
    else:
        fpr = tpr = roc_thr = np.array([np.nan])
        auc = float("nan")
        tars = {float(far): float("nan") for far in far_targets}
        notes.append(f"only one class present ({n_pos} genuine, {n_neg} impostor): no ROC, AUC or TAR")

    return {
        "accuracy": float(accs_arr.mean()),
        "accuracy_std": float(accs_arr.std()),
        "fold_accuracy": accs_arr,
        "fold_threshold": thrs_arr,
        "threshold": float(thrs_arr.mean()),
        "fpr": fpr,
        "tpr": tpr,
        "roc_thresholds": roc_thr,
        "auc": auc,
        "tar_at_far": tars,
        "n_pairs": n,
        "n_genuine": n_pos,
        "n_impostor": n_neg,
        "notes": notes,
    }


# --------------------------------------------------------------------------- embeddings


def fuse_flip(
    embedding: torch.Tensor, norm: torch.Tensor, embedding_flip: torch.Tensor, norm_flip: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Norm-weighted flip fusion, as the official AdaFace ``fuse_features_with_norm``.

    ``f = e·n + e_f·n_f`` (the two *un-normalised* features summed), returned as
    ``(f/‖f‖ (B, E), ‖f‖ (B, 1))``. A view with a larger norm (higher quality, DESIGN.md §2) weighs more.
    """
    fused = embedding * norm + embedding_flip * norm_flip  # (B, E)
    fused_norm = torch.linalg.vector_norm(fused, ord=2, dim=1, keepdim=True)  # (B, 1)
    return fused / fused_norm.clamp_min(torch.finfo(fused.dtype).tiny), fused_norm


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def embed(
    backbone: nn.Module,
    images: torch.Tensor,
    channel_order: Literal["bgr", "rgb"],
    batch_size: int = 128,
    device: str | torch.device | None = None,
    flip: bool = True,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed images with a backbone in eval mode: (unit embeddings (N, E), norms (N, 1)), float32 on the CPU.

    Args:
        backbone: returns ``(unit embedding (B, E), norm (B, 1))`` (:mod:`adaface_lab.backbones`).
        images: RGB, uint8 (N, 3, H, W) 0..255 or float in [0, 1]; resized to
            ``backbone.input_size`` and converted by :func:`adaface_lab.backbones.preprocess`.
        channel_order: what the *model* expects: ``"bgr"`` for the authors' AdaFace weights,
            ``"rgb"`` for insightface's (and for models trained by this lab, which feed RGB).
        batch_size: images per forward pass.
        device: where to run; the backbone is moved there. ``None``: where the backbone is.
        flip: also embed the horizontally flipped image and fuse the two as the official
            evaluation does (:func:`fuse_flip`): ``f = e·‖z‖ + e_flip·‖z_flip‖``, normalised.
            Summing the un-normalised features weights each view by its norm, i.e. by the
            quality the network sees in it (DESIGN.md §2-§3). The returned norm is then ``‖f‖``,
            about twice a single view's norm, not comparable to training-time norms.
        progress: show a tqdm bar for more than a few batches.

    The backbone's train/eval mode is restored afterwards.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (N, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = torch.device(device) if device is not None else _model_device(backbone)
    if device is not None:
        backbone.to(dev)
    size = getattr(backbone, "input_size", None)
    was_training = backbone.training
    backbone.eval()
    embs: list[torch.Tensor] = []
    norms: list[torch.Tensor] = []
    try:
        starts = range(0, len(images), batch_size)
        for i in tqdm(starts, desc="embedding", unit="batch", disable=not progress or len(starts) < 8):
            x = preprocess(images[i : i + batch_size], channel_order=channel_order, size=size).to(dev)  # (B, 3, S, S)
            e, nrm = backbone(x)
            if flip:
                e_f, nrm_f = backbone(x.flip(-1))  # horizontal flip
                e, nrm = fuse_flip(e.float(), nrm.float(), e_f.float(), nrm_f.float())
            embs.append(e.float().cpu())
            norms.append(nrm.float().reshape(-1, 1).cpu())
    finally:
        backbone.train(was_training)
    if not embs:
        return torch.empty(0, getattr(backbone, "embedding_size", 0)), torch.empty(0, 1)
    return torch.cat(embs), torch.cat(norms)


# --------------------------------------------------------------------------- pairs


def open_pairs(source: VerificationPairs | str | os.PathLike[str], **kwargs: Any) -> VerificationPairs:
    """Verification pairs from a ``.bin`` file, a ``pairs.txt`` file, or a folder holding ``pairs.txt``.

    A ``pairs.txt`` is read with its own folder as the image root unless ``root=`` is given;
    other ``kwargs`` go to :func:`~adaface_lab.data.verification.load_bin` or
    :func:`~adaface_lab.data.verification.load_pairs_txt`. A :class:`VerificationPairs` is returned as is.
    """
    if isinstance(source, VerificationPairs):
        return source
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"verification pairs not found: {path}")
    if path.is_file() and path.suffix == ".bin":
        return load_bin(path, **kwargs)
    if path.is_dir():
        path = path / "pairs.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path.parent} holds no pairs.txt (expected a .bin file, a pairs.txt, or its folder)")
    if path.suffix == ".txt":
        root = kwargs.pop("root", path.parent)
        return load_pairs_txt(path, root, **kwargs)
    raise ValueError(f"{path}: expected a .bin file, a pairs.txt, or a folder holding pairs.txt")


def evaluate_pairs(
    backbone: nn.Module,
    pairs: VerificationPairs | str | os.PathLike[str],
    channel_order: Literal["bgr", "rgb"],
    batch_size: int = 128,
    device: str | torch.device | None = None,
    flip: bool = True,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
    images: tuple[torch.Tensor, np.ndarray] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Verify the pairs with ``backbone``: :func:`verification_metrics` plus the raw material.

    Args:
        pairs: a :class:`VerificationPairs` or a source for :func:`open_pairs`.
        images: the output of ``pairs.load_images()`` when already decoded (e.g. cached by a
            training loop that evaluates every epoch); decoded here otherwise.
        Others: as :func:`embed` and :func:`verification_metrics`. Folds are ``pairs.folds``.

    Returns the metrics dict with, in addition: ``name``; ``scores`` (P,) cosine similarity of
    the fused embeddings (NaN for invalid pairs); ``issame`` (P,); ``valid`` (P,) bool, False where
    an image failed to decode (left out of the metrics, counted in ``n_invalid``); ``norms``
    (P, 2) the norms of both images of each pair (fused norms when ``flip``).
    """
    vp = open_pairs(pairs)
    imgs, valid = images if images is not None else vp.load_images(progress=progress)
    if len(imgs) != 2 * len(vp):
        raise ValueError(f"{vp.name}: {len(imgs)} images for {len(vp)} pairs (need 2 per pair)")
    valid = np.asarray(valid, dtype=bool)
    emb, norms = embed(backbone, imgs, channel_order, batch_size=batch_size, device=device, flip=flip, progress=progress)
    scores = (emb[0::2] * emb[1::2]).sum(dim=1).numpy().astype(np.float64)  # (P,) cosine
    scores[~valid] = np.nan
    folds = np.asarray(vp.folds)[valid]
    if len(np.unique(folds)) < 2:
        folds = min(10, int(valid.sum()))  # type: ignore[assignment]
    result = verification_metrics(scores[valid], vp.issame[valid], folds=folds, far_targets=far_targets)
    if (~valid).any():
        result["notes"].append(f"{int((~valid).sum())} pairs left out: an image could not be decoded")
    result.update(
        name=vp.name,
        scores=scores,
        issame=np.asarray(vp.issame, dtype=bool),
        valid=valid,
        norms=norms.numpy().reshape(-1, 2).astype(np.float64),
        n_invalid=int((~valid).sum()),
    )
    return result


# --------------------------------------------------------------------------- by quality


def pair_quality_bins(
    quality: Any,
    threshold: float | None = None,
    labels: tuple[str, str, str] = ("low", "mixed", "high"),
) -> np.ndarray:
    """Label each pair by the quality of its two images: (P,) array of ``labels``.

    Args:
        quality: (P, 2) per-image quality (or (2P,) in pair order: images 2k and 2k+1), higher
            = better; e.g. ``1 - severity``, ``1 - BRISQUE/100``, or the feature norm.
        threshold: the line between low and high; default the median of all images.
        labels: names for (both below, one each side, both at or above the threshold).
    """
    q = np.asarray(quality, dtype=np.float64)
    if q.ndim == 1:
        if len(q) % 2:
            raise ValueError(f"a flat quality array needs 2 values per pair, got {len(q)}")
        q = q.reshape(-1, 2)
    if q.ndim != 2 or q.shape[1] != 2:
        raise ValueError(f"quality must be (P, 2) or (2P,), got shape {q.shape}")
    if np.isnan(q).any():
        raise ValueError("quality holds NaN")
    t = float(np.median(q)) if threshold is None else float(threshold)
    n_high = (q >= t).sum(axis=1)  # (P,) 0, 1 or 2
    return np.asarray(labels, dtype=object)[n_high]


def verification_by_bin(
    scores: Any,
    issame: Any,
    bins: Any,
    folds: int | Sequence[int] | np.ndarray = 10,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
) -> pd.DataFrame:
    """:func:`verification_metrics` within each bin of pairs (e.g. high / mixed / low quality).

    Args:
        scores, issame: (P,) as :func:`verification_metrics`.
        bins: (P,) label per pair (e.g. from :func:`pair_quality_bins`).
        folds: an int (at most that many contiguous folds within each bin, fewer for a small bin)
            or a (P,) fold index per pair (used within each bin).

    Returns one row per bin — ordered high, mixed, low when those are the labels, else sorted —
    with ``bin, n_pairs, n_genuine, n_impostor, accuracy, accuracy_std, auc`` and one
    ``tar@far=<f>`` column per FAR target. A bin with fewer than 2 pairs, or whose pairs fall in
    a single fold, gets NaN metrics.
    """
    s, y = _as_scores(scores, issame)
    b = np.asarray(bins, dtype=object)
    if b.shape != s.shape:
        raise ValueError(f"bins must have shape {s.shape}, got {b.shape}")
    fold_arr = None if isinstance(folds, (int, np.integer)) else _as_folds(folds, len(s))
    present = list(pd.unique(b))
    order = [x for x in ("high", "mixed", "low") if x in present]
    order = order if len(order) == len(present) else sorted(present, key=str)
    rows = []
    for label in order:
        m = b == label
        row: dict[str, Any] = {
            "bin": label,
            "n_pairs": int(m.sum()),
            "n_genuine": int(y[m].sum()),
            "n_impostor": int((~y[m]).sum()),
        }
        f: int | np.ndarray = min(int(folds), int(m.sum())) if fold_arr is None else fold_arr[m]
        ok = m.sum() >= 2 and (len(np.unique(f)) >= 2 if fold_arr is not None else f >= 2)
        met = verification_metrics(s[m], y[m], folds=f, far_targets=far_targets) if ok else None
        row["accuracy"] = met["accuracy"] if met else np.nan
        row["accuracy_std"] = met["accuracy_std"] if met else np.nan
        row["auc"] = met["auc"] if met else np.nan
        for far in far_targets:
            row[f"tar@far={far:g}"] = met["tar_at_far"][float(far)] if met else np.nan
        rows.append(row)
    cols = ["bin", "n_pairs", "n_genuine", "n_impostor", "accuracy", "accuracy_std", "auc"]
    return pd.DataFrame(rows, columns=cols + [f"tar@far={far:g}" for far in far_targets])


def compare_by_bin(table: pd.DataFrame, baseline: pd.DataFrame,
                   metrics: Sequence[str] = ("accuracy", "auc")) -> pd.DataFrame:
    """Per quality bin, ``table`` minus ``baseline`` (two :func:`verification_by_bin` frames).

    Returns one row per bin present in both (in ``table``'s order), indexed by ``bin``: the
    difference of each metric (same column names), ``fold_std`` (the larger of the two accuracy
    standard deviations over folds) and ``beyond_noise`` (|accuracy difference| > ``fold_std``).
    Taught in ``notebooks/05_adaface_vs_arcface.ipynb`` (§5.3).
    """
    for name, frame in (("table", table), ("baseline", baseline)):
        missing = [c for c in ("bin", "accuracy", "accuracy_std", *metrics) if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks the columns {missing}; expected a verification_by_bin frame")
    a, b = table.set_index("bin"), baseline.set_index("bin")
    shared = [label for label in a.index if label in b.index]
    a, b = a.loc[shared], b.loc[shared]
    out = pd.DataFrame({m: a[m] - b[m] for m in metrics})
    out["fold_std"] = np.maximum(a["accuracy_std"], b["accuracy_std"])
    out["beyond_noise"] = (a["accuracy"] - b["accuracy"]).abs() > out["fold_std"]
    return out
