"""The check-up to run before trusting a model's feature norm as an image-quality score, on your own faces::

    faces = load_faces("../shared/data/lfw_min20", max_images=200, center_crop=112)
    result = checkup(backbone, faces, channel_order="bgr")       # the order the model is fed
    print(result.summary())                                      # verdicts in plain words
    result.trends, result.sweep, result.channel                   # the numbers behind them

The command ``adaface-lab checkup`` (:mod:`adaface_lab.checkup_report`) runs this on a checkpoint and a
folder and writes an HTML report.

**1. Degradation sweep.** Each face (112 px, RGB) is degraded one kind at a time at increasing strength
(:data:`SWEEP_LEVELS`: Gaussian blur, down-up rescaling, additive noise, JPEG, from
:mod:`adaface_lab.degrade`, applied before the model's own resize to its input size); step 0 is the face
itself. Each version is scored by the measures: ``norm``, the feature norm ‖z‖ (one view, eval mode), and
``brisque``, the quality ``1 − BRISQUE/100`` at 112 px (and, when asked, ``serfiq``).

**2. The trend of a measure.** For image *i* and one kind of degradation, ρ_i is the Spearman correlation
between the step (0, 1, ..., L−1) and the measure over the image's L versions: −1 when the measure falls
at every step, +1 when it rises at every step. The *trend* is the mean of ρ_i over the images, and its
confidence interval a percentile bootstrap **over images** (images resampled with replacement,
``n_boot`` times). The row ``all`` first averages each image's ρ_i over the kinds. An image whose measure
is the same at every step, or NaN at some step (BRISQUE of a flat image), has no ρ_i and is left out
(``n_images`` counts those kept).

**3. Verdicts**, judged by the interval alone (no threshold on ρ): ``falls`` (the interval lies below 0:
the measure falls as the image degrades — it tracks quality), ``rises`` (above 0: read as quality, it is
reversed) or ``flat`` (the interval holds 0: no direction shown).

**4. Channel order.** The authors' models want BGR input and the lab's runs RGB; a model fed the wrong
order still gives embeddings and norms, just worse ones — it fails silently. The undegraded faces are
embedded in both orders; with identities (``root/<identity>/*.jpg``) every pair of faces is compared
(cosine), and the AUC of genuine against impostor pairs is computed per order. The difference
AUC(BGR) − AUC(RGB) gets a percentile bootstrap interval over images (pairs of an image with its own copy
left out); the better order is the one the interval favours, or none when it holds 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch import nn
from tqdm.auto import tqdm

from ..data.folders import IMAGE_EXTENSIONS
from ..data.images import CorruptImageError, decode_image
from ..degrade import DEGRADATION_FIELDS, Degradation, degrade
from ..evaluate import embed
from .measures import BRISQUE_SIZE, image_qualities

__all__ = [
    "CHECKUP_MEASURES",
    "SWEEP_LEVELS",
    "SWEEP_MEASURES",
    "ChannelOrderCheck",
    "Checkup",
    "Faces",
    "channel_order_check",
    "checkup",
    "degradation_sweep",
    "find_faces",
    "image_trends",
    "load_faces",
    "sweep_bands",
    "trend_summary",
    "trend_verdict",
]

#: Strengths per kind of degradation, mildest first; the first of each is "off" (the face itself).
SWEEP_LEVELS: dict[str, tuple[float, ...]] = {
    "blur_sigma": (0.0, 1.0, 2.0, 3.0, 4.0),  # Gaussian σ, pixels at 112 px
    "scale": (1.0, 0.7, 0.5, 0.35, 0.25),  # down-up: fraction of the side
    "noise_sigma": (0.0, 5.0, 10.0, 20.0, 30.0),  # grey levels of 0..255
    "jpeg_quality": (100, 50, 30, 15, 5),  # JPEG quality
}
#: The measures a check-up follows through the sweep by default.
CHECKUP_MEASURES: tuple[str, ...] = ("norm", "brisque")
#: The measures :func:`degradation_sweep` knows (SER-FIQ costs ``passes`` small head passes per version).
SWEEP_MEASURES: tuple[str, ...] = ("norm", "brisque", "serfiq")
_OFF = {"blur_sigma": 0.0, "scale": 1.0, "noise_sigma": 0.0, "jpeg_quality": 100}
ORDERS: tuple[str, str] = ("bgr", "rgb")


# =========================================================================== faces from a folder


@dataclass
class Faces:
    """Face images for a check-up: ``images`` uint8 (N, 3, S, S) RGB; ``labels`` (N,) identity index, or
    None for a flat folder; ``identities`` their names; ``paths``; ``found`` the images the folder holds;
    ``skipped`` the chosen files that could not be decoded; ``truth`` (N,) the ground-truth quality where
    the data set knows it (SyntheticFaces: 1 − severity), else None."""

    images: torch.Tensor
    labels: np.ndarray | None = None
    identities: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    folder: str = ""
    found: int = 0
    skipped: int = 0
    truth: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_identities(self) -> int | None:
        return None if self.labels is None else len(np.unique(self.labels))


def _is_image(p: Path, exts: tuple[str, ...]) -> bool:
    return p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")


def _scan(root: Path) -> tuple[list[Path], list[str] | None]:
    """Image files of ``root`` and their identity names (``root/<identity>/*``), or (files, None) for a flat
    folder (images directly in ``root``). Identity folders win when a folder has both."""
    exts = tuple(IMAGE_EXTENSIONS)
    files: list[Path] = []
    names: list[str] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        inside = sorted(f for f in d.iterdir() if _is_image(f, exts))
        files += inside
        names += [d.name] * len(inside)
    if files:
        return files, names
    return sorted(f for f in root.iterdir() if _is_image(f, exts)), None


def find_faces(folder: str | os.PathLike[str]) -> tuple[list[Path], list[str] | None]:
    """The image files of ``folder`` and the identity (sub-folder name) of each, or None for a flat folder.

    FileNotFoundError for a missing folder; ValueError for a file or a folder without images.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"data folder not found: {root}")
    if not root.is_dir():
        raise ValueError(f"{root} is a file; give a folder of aligned faces (root/<identity>/*.jpg or images in it)")
    files, names = _scan(root)
    if not files:
        raise ValueError(f"no images in {root}: expected root/<identity>/*.jpg or image files "
                         f"({', '.join(IMAGE_EXTENSIONS)}) directly in it")  # fmt: skip
    return files, names


def _pick(labels: np.ndarray | None, n: int, max_images: int, seed: int) -> np.ndarray:
    """Up to ``max_images`` indices of ``n``: with labels, identities take turns (round robin, each in a
    random order), so every identity keeps images for genuine pairs; sorted."""
    rng = np.random.default_rng(seed)
    if labels is None or max_images >= n:
        return np.sort(rng.permutation(n)[:max_images])
    turn_of_identity = rng.permutation(int(labels.max()) + 1)
    within = np.empty(n, dtype=np.int64)  # the image's turn within its identity
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        within[rng.permutation(members)] = np.arange(len(members))
    order = np.lexsort((turn_of_identity[labels], within))  # round by round
    return np.sort(order[:max_images])


def load_faces(folder: str | os.PathLike[str], *, max_images: int = 200, size: int = BRISQUE_SIZE,
               center_crop: int | None = None, seed: int = 0, progress: bool = True) -> Faces:  # fmt: skip
    """Up to ``max_images`` aligned faces of ``folder`` (``root/<identity>/*.jpg``, or image files directly
    in it), drawn with ``seed``, decoded to uint8 (3, size, size) RGB after an optional centre crop.

    FileNotFoundError for a missing folder; ValueError for a file, a folder without images, or one whose
    chosen images all fail to decode.
    """
    if int(max_images) < 2:
        raise ValueError(f"max_images must be at least 2, got {max_images}")
    root = Path(folder)
    files, names = find_faces(root)
    identities = sorted(set(names)) if names is not None else []
    labels = np.array([identities.index(n) for n in names]) if names is not None else None
    chosen = _pick(labels, len(files), int(max_images), seed)
    images, kept = [], []
    for i in tqdm(chosen, desc=f"reading {root.name}", unit="img", disable=not progress or len(chosen) < 50):
        try:
            images.append(decode_image(files[i], size=size, center_crop=center_crop))
            kept.append(int(i))
        except (CorruptImageError, OSError):
            continue
    if not images:
        raise ValueError(f"none of the {len(chosen)} images chosen from {root} could be decoded")
    return Faces(images=torch.stack(images), labels=None if labels is None else labels[kept],
                 identities=identities, paths=[str(files[i]) for i in kept], folder=str(root), found=len(files),
                 skipped=len(chosen) - len(kept))  # fmt: skip


# =========================================================================== the sweep and its trends


def _check_levels(levels: Mapping[str, Sequence[float]]) -> None:
    for kind, values in levels.items():
        if kind not in DEGRADATION_FIELDS:
            raise ValueError(f"unknown degradation {kind!r}; known: {list(DEGRADATION_FIELDS)}")
        if len(values) < 3 or values[0] != _OFF[kind]:
            raise ValueError(f"levels of {kind} must start at {_OFF[kind]} (off) and hold at least 3 strengths")


def _scores(backbone: nn.Module | None, images: torch.Tensor, channel_order: str, measures: Sequence[str],
            batch_size: int, device: str | torch.device | None, passes: int, seed: int) -> dict[str, np.ndarray]:  # fmt: skip
    table = image_qualities(backbone, images, channel_order, measures=measures, passes=passes, seed=seed,
                            batch_size=batch_size, device=device, progress=False)  # fmt: skip
    return {m: table[m].to_numpy() for m in measures}


def degradation_sweep(
    backbone: nn.Module | None,
    images: torch.Tensor,
    channel_order: Literal["bgr", "rgb"],
    *,
    levels: Mapping[str, Sequence[float]] = SWEEP_LEVELS,
    measures: Sequence[str] = CHECKUP_MEASURES,
    seed: int = 0,
    passes: int = 100,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Every image at every step of every kind of degradation, scored by ``measures`` (of :data:`SWEEP_MEASURES`).

    Returns one row per (image, degradation, step): ``image`` (index into ``images``), ``degradation``,
    ``step`` (0 = the image itself, shared by the kinds), ``strength`` and one column per measure.
    ``images``: uint8 (N, 3, H, W) RGB; ``seed`` seeds the noise pattern (and SER-FIQ's ``passes`` masks).
    """
    unknown = [m for m in measures if m not in SWEEP_MEASURES]
    if unknown or not measures:
        raise ValueError(f"measures must be some of {list(SWEEP_MEASURES)}, got {list(measures)}")
    if {"norm", "serfiq"} & set(measures) and backbone is None:
        raise ValueError("the measures 'norm' and 'serfiq' need a backbone")
    _check_levels(levels)
    n = len(images)
    steps = [(kind, s, v) for kind, values in levels.items() for s, v in enumerate(values) if s > 0]
    bar = tqdm(total=len(steps) + 1, desc="degradation sweep", unit="step", disable=not progress)
    base = _scores(backbone, images, channel_order, measures, batch_size, device, passes, seed)  # step 0
    bar.update()
    frames = [pd.DataFrame({"image": np.arange(n), "degradation": kind, "step": 0,
                            "strength": float(levels[kind][0]), **base}) for kind in levels]  # fmt: skip
    for kind, s, v in steps:
        value = int(v) if kind == "jpeg_quality" else float(v)
        degraded = degrade(images, Degradation(**{kind: value}, seed=seed))  # (N, 3, H, W)
        scored = _scores(backbone, degraded, channel_order, measures, batch_size, device, passes, seed)
        frames.append(pd.DataFrame({"image": np.arange(n), "degradation": kind, "step": s,
                                    "strength": float(v), **scored}))  # fmt: skip
        bar.update()
    bar.close()
    table = pd.concat(frames, ignore_index=True)
    return table.sort_values(["degradation", "image", "step"], kind="stable").reset_index(drop=True)


def _rank_correlation(values: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``values`` (..., L) with 0..L−1; NaN for a constant row or one
    holding NaN."""
    bad = np.isnan(values).any(axis=-1)
    ranks = rankdata(np.where(np.isnan(values), 0.0, values), axis=-1)  # ties share their average rank
    steps = np.arange(values.shape[-1], dtype=np.float64)
    rc = ranks - ranks.mean(axis=-1, keepdims=True)
    sc = steps - steps.mean()
    denom = np.sqrt((rc**2).sum(axis=-1) * (sc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rc * sc).sum(axis=-1) / denom
    rho[bad | (denom == 0)] = np.nan
    return rho


def image_trends(sweep: pd.DataFrame, measure: str) -> pd.DataFrame:
    """ρ_i per image (rows) and degradation (columns): the Spearman correlation of the step with
    ``measure`` over the image's versions (module docstring); NaN where it is undefined."""
    if measure not in sweep.columns:
        raise ValueError(f"the sweep holds no {measure!r} column; it has {list(sweep.columns)}")
    out = {}
    for kind in _kinds(sweep):
        part = sweep[sweep["degradation"] == kind]
        grid = part.pivot(index="image", columns="step", values=measure).sort_index(axis=1)  # (N, L)
        out[kind] = pd.Series(_rank_correlation(grid.to_numpy(np.float64)), index=grid.index)
    return pd.DataFrame(out)


def _kinds(sweep: pd.DataFrame) -> list[str]:
    """The sweep's degradations in the order they are applied (:data:`~adaface_lab.degrade.DEGRADATION_FIELDS`)."""
    present = set(sweep["degradation"])
    return [k for k in DEGRADATION_FIELDS if k in present]


def sweep_bands(sweep: pd.DataFrame, measure: str, quantiles: tuple[float, float] = (0.25, 0.75)) -> pd.DataFrame:
    """How much ``measure`` moved from each face's own undegraded value, per degradation and step: columns
    ``degradation``, ``step``, ``strength``, ``median``, ``low``, ``high`` (the ``quantiles`` over faces of
    value − value at step 0) and ``n`` (faces with a value at both)."""
    if measure not in sweep.columns:
        raise ValueError(f"the sweep holds no {measure!r} column; it has {list(sweep.columns)}")
    rows = []
    for kind in _kinds(sweep):
        part = sweep[sweep["degradation"] == kind]
        grid = part.pivot(index="image", columns="step", values=measure).sort_index(axis=1)  # (N, L)
        change = grid.to_numpy(np.float64) - grid.to_numpy(np.float64)[:, :1]  # (N, L)
        strengths = part.groupby("step")["strength"].first().sort_index().to_numpy()
        for step, strength, col in zip(grid.columns, strengths, change.T):
            col = col[np.isfinite(col)]
            low, mid, high = np.quantile(col, [quantiles[0], 0.5, quantiles[1]]) if len(col) else (np.nan,) * 3
            rows.append({"degradation": kind, "step": int(step), "strength": float(strength), "median": float(mid),
                         "low": float(low), "high": float(high), "n": len(col)})  # fmt: skip
    return pd.DataFrame(rows)


def trend_verdict(low: float, high: float) -> str:
    """``"falls"`` when the interval [low, high] lies below 0, ``"rises"`` above 0, ``"flat"`` when it holds
    0, ``"unknown"`` when it is NaN (too few images)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "unknown"
    return "falls" if high < 0 else "rises" if low > 0 else "flat"


def _bootstrap_mean(values: np.ndarray, n_boot: int, level: float, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement)."""
    if len(values) < 2:
        return float("nan"), float("nan")
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)  # (n_boot,)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def trend_summary(sweep: pd.DataFrame, measures: Sequence[str] | None = None, *, level: float = 0.95,
                  n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """The trend of each measure per degradation and over all (``all``), with its bootstrap interval.

    Columns: ``measure``, ``degradation``, ``rho`` (mean ρ_i over images), ``low``, ``high`` (the central
    ``level`` interval of ``n_boot`` bootstrap means over images), ``falls_share`` (share of images with
    ρ_i < 0), ``n_images`` (images with a ρ_i) and ``verdict`` (:func:`trend_verdict`).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100, got {n_boot}")
    measures = [m for m in SWEEP_MEASURES if m in sweep.columns] if measures is None else list(measures)
    rng = np.random.default_rng(seed)
    rows = []
    for measure in measures:
        per_image = image_trends(sweep, measure)
        per_image["all"] = per_image.mean(axis=1, skipna=False)  # an image needs a ρ_i for every kind
        for kind in per_image.columns:
            rho = per_image[kind].dropna().to_numpy()
            low, high = _bootstrap_mean(rho, n_boot, level, rng)
            rows.append({"measure": measure, "degradation": kind,
                         "rho": float(rho.mean()) if len(rho) else float("nan"), "low": low, "high": high,
                         "falls_share": float((rho < 0).mean()) if len(rho) else float("nan"),
                         "n_images": len(rho), "verdict": trend_verdict(low, high)})  # fmt: skip
    return pd.DataFrame(rows)


# =========================================================================== channel order


def _auc(scores: np.ndarray, issame: np.ndarray) -> float:
    """Area under the ROC curve of genuine against impostor scores (Mann–Whitney, ties count half)."""
    n_gen, n_imp = int(issame.sum()), int((~issame).sum())
    if n_gen == 0 or n_imp == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[issame].sum() - n_gen * (n_gen + 1) / 2) / (n_gen * n_imp))


@dataclass(frozen=True)
class ChannelOrderCheck:
    """The undegraded faces fed in both channel orders (module docstring, point 4).

    ``used``: the order the model is fed; ``norms``: (N,) per order; ``auc``: per order, None without
    identities; ``auc_diff``: (AUC(BGR) − AUC(RGB), low, high); ``better``: the order the interval
    favours, None when it holds 0 or without identities; ``scores``/``issame``: every pair's cosine per
    order (for figures); ``level``: of the interval.
    """

    used: str
    norms: dict[str, np.ndarray]
    auc: dict[str, float] | None = None
    auc_diff: tuple[float, float, float] | None = None
    better: str | None = None
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    issame: np.ndarray | None = None
    level: float = 0.95

    @property
    def wrong_order(self) -> bool:
        """True when the other order separates genuine from impostor pairs better than the one used."""
        return self.better is not None and self.better != self.used

    def verdict(self) -> str:
        """What the check found, in words."""
        mean = ", ".join(f"{o.upper()} {self.norms[o].mean():.2f}" for o in ORDERS)
        if self.auc is None or self.auc_diff is None:
            return (f"Channel order: no identities (a flat folder, or no identity with two images), so only the "
                    f"norms can be compared (mean ‖z‖ {mean}); the genuine/impostor check needs "
                    f"root/<identity>/*.jpg folders.")  # fmt: skip
        d, lo, hi = self.auc_diff
        aucs = f"AUC BGR {self.auc['bgr']:.3f}, RGB {self.auc['rgb']:.3f}; BGR − RGB {d:+.3f}, " \
               f"{self.level:.0%} CI [{lo:+.3f}, {hi:+.3f}]"
        if self.better is None:
            return (f"Channel order: neither order separates genuine from impostor pairs better ({aucs}). This "
                    f"model barely depends on the order on these faces, or there are too few to tell.")
        if self.wrong_order:
            return (f"WARNING — channel order: the model is fed {self.used.upper()}, but {self.better.upper()} "
                    f"separates genuine from impostor pairs better ({aucs}). The order is probably wrong: the "
                    f"authors' models want BGR, the lab's runs RGB; the norms of the wrong order mean little.")
        return (f"Channel order: the model is fed {self.used.upper()}, and {self.used.upper()} separates genuine "
                f"from impostor pairs better ({aucs}): the order looks right.")


def _pair_auc_bootstrap(sims: dict[str, np.ndarray], labels: np.ndarray, n_boot: int, level: float,
                        seed: int) -> tuple[float, float]:  # fmt: skip
    """Percentile interval of AUC(BGR) − AUC(RGB) over images resampled with replacement."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    a, b = np.triu_indices(n, k=1)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        ia, ib = idx[a], idx[b]
        keep = ia != ib  # an image against its own copy is no pair
        ia, ib = ia[keep], ib[keep]
        same = labels[ia] == labels[ib]
        diffs.append(_auc(sims["bgr"][ia, ib], same) - _auc(sims["rgb"][ia, ib], same))
    low, high = np.nanquantile(np.asarray(diffs), [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def channel_order_check(
    backbone: nn.Module,
    images: torch.Tensor,
    used: Literal["bgr", "rgb"],
    labels: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> ChannelOrderCheck:
    """Embed ``images`` (uint8 RGB (N, 3, H, W)) fed BGR and fed RGB; with ``labels`` (N,), compare every pair
    and say which order separates genuine from impostor pairs better (module docstring, point 4)."""
    if used not in ORDERS:
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {used!r}")
    norms, sims = {}, {}
    for order in ORDERS:
        emb, nrm = embed(backbone, images, order, batch_size=batch_size, device=device, flip=False, progress=False)
        norms[order] = nrm.numpy().reshape(-1).astype(np.float64)
        e = emb.numpy().astype(np.float64)
        sims[order] = e @ e.T  # (N, N) cosines
    y = None if labels is None else np.asarray(labels).reshape(-1)
    if y is not None and len(y) != len(images):
        raise ValueError(f"labels must have one value per image ({len(images)}), got {len(y)}")
    a, b = np.triu_indices(len(images), k=1)
    same = None if y is None else y[a] == y[b]
    if same is None or not same.any() or same.all():
        return ChannelOrderCheck(used=used, norms=norms, level=level)
    scores = {o: sims[o][a, b] for o in ORDERS}
    auc = {o: _auc(scores[o], same) for o in ORDERS}
    low, high = _pair_auc_bootstrap(sims, y, n_boot, level, seed)
    better = "bgr" if low > 0 else "rgb" if high < 0 else None
    return ChannelOrderCheck(used=used, norms=norms, auc=auc, auc_diff=(auc["bgr"] - auc["rgb"], low, high),
                             better=better, scores=scores, issame=same, level=level)  # fmt: skip


# =========================================================================== the whole check-up


_KIND_WORDS = {"blur_sigma": "blur", "scale": "down-up rescaling", "noise_sigma": "noise", "jpeg_quality": "JPEG",
               "all": "all four degradations"}  # fmt: skip
_MEASURE_WORDS = {"norm": "The feature norm ‖z‖", "brisque": "BRISQUE's quality (1 − BRISQUE/100)",
                  "serfiq": "SER-FIQ"}


def _trend_sentence(row: pd.Series, level: float) -> str:
    what, kind = _MEASURE_WORDS.get(row["measure"], row["measure"]), _KIND_WORDS.get(row["degradation"], "")
    numbers = (f"mean Spearman ρ(step, value) {row['rho']:+.2f}, {level:.0%} CI [{row['low']:+.2f}, "
               f"{row['high']:+.2f}], {row['n_images']} images")  # fmt: skip
    verdict = row["verdict"]
    if verdict == "falls":
        return f"{what} falls as the faces are degraded by {kind} ({numbers}): it tracks quality."
    if verdict == "rises":
        return (f"{what} RISES as the faces are degraded by {kind} ({numbers}): read as a quality it is "
                f"reversed.")
    if verdict == "flat":
        return f"{what} shows no direction under {kind} ({numbers}: the interval holds 0)."
    return f"{what}: too few images with a trend under {kind} to judge ({row['n_images']})."


@dataclass
class Checkup:
    """What :func:`checkup` found: the ``sweep`` (every version's scores), the ``trends`` table
    (:func:`trend_summary`), the ``channel`` check, and what was checked."""

    source: str
    channel_order: str
    faces: Faces
    sweep: pd.DataFrame
    trends: pd.DataFrame
    channel: ChannelOrderCheck
    level: float = 0.95
    levels: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(SWEEP_LEVELS))

    def trend(self, measure: str = "norm", degradation: str = "all") -> pd.Series:
        """The trends row of one measure and degradation."""
        hit = self.trends[(self.trends["measure"] == measure) & (self.trends["degradation"] == degradation)]
        if hit.empty:
            raise ValueError(f"no trend for {measure!r} under {degradation!r}")
        return hit.iloc[0]

    def verdicts(self) -> list[str]:
        """Plain-word findings: each measure over all degradations, the norm per degradation, the channel order
        (first when the order in use looks wrong: then the other findings describe a model fed the wrong order)."""
        rows = [r for _, r in self.trends.iterrows() if r["degradation"] == "all" or r["measure"] == "norm"]
        rows.sort(key=lambda r: (r["measure"] != "norm", r["degradation"] != "all"))
        trends = [_trend_sentence(r, self.level) for r in rows]
        return [self.channel.verdict(), *trends] if self.channel.wrong_order else [*trends, self.channel.verdict()]

    def summary(self) -> str:
        """A printable report: what was checked, the trends table, the verdicts."""
        f = self.faces
        who = f"{len(f)} faces" + (f" of {f.n_identities} identities" if f.labels is not None else " (no identities)")
        head = [f"Check-up of {self.source}", f"  fed {self.channel_order.upper()}; {who}"
                + (f" from {f.folder} ({f.found} there" + (f", {f.skipped} unreadable" if f.skipped else "") + ")"
                   if f.folder else "")]  # fmt: skip
        table = self.trends.assign(**{"CI": [f"[{lo:+.2f}, {hi:+.2f}]" for lo, hi in
                                              zip(self.trends["low"], self.trends["high"])]})  # fmt: skip
        table = table.assign(rho=table["rho"].map("{:+.2f}".format),
                             falls_share=table["falls_share"].map("{:.0%}".format))  # fmt: skip
        body = table[["measure", "degradation", "rho", "CI", "falls_share", "n_images", "verdict"]].to_string(index=False)
        note = (f"  rho: mean over images of Spearman(step, value) along each face's sweep; CI: {self.level:.0%} "
                f"bootstrap over images; falls_share: faces whose value falls.")  # fmt: skip
        return "\n".join([*head, "", body, note, "", *(f"- {v}" for v in self.verdicts())])


def checkup(
    backbone: nn.Module,
    faces: Faces | torch.Tensor,
    channel_order: Literal["bgr", "rgb"],
    *,
    labels: np.ndarray | None = None,
    levels: Mapping[str, Sequence[float]] = SWEEP_LEVELS,
    measures: Sequence[str] = CHECKUP_MEASURES,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    source: str = "the model",
    progress: bool = True,
) -> Checkup:
    """The degradation sweep, the trends with their intervals and the channel-order check of ``backbone``
    on ``faces`` (a :class:`Faces`, or uint8 RGB images (N, 3, H, W) with optional ``labels``).

    ``channel_order`` is the order the model is fed (``"bgr"`` for the authors' models, ``"rgb"`` for the
    lab's runs); ``source`` names the model in the summary.
    """
    if not isinstance(faces, Faces):
        faces = Faces(images=faces, labels=None if labels is None else np.asarray(labels))
    if faces.images.ndim != 4 or faces.images.dtype != torch.uint8 or len(faces) < 2:
        raise ValueError(f"faces must be at least 2 uint8 RGB images (N, 3, H, W), got "
                         f"{tuple(faces.images.shape)} {faces.images.dtype}")  # fmt: skip
    if channel_order not in ORDERS:
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    sweep = degradation_sweep(backbone, faces.images, channel_order, levels=levels, measures=measures, seed=seed,
                              batch_size=batch_size, device=device, progress=progress)  # fmt: skip
    trends = trend_summary(sweep, measures, level=level, n_boot=max(n_boot, 100), seed=seed)
    channel = channel_order_check(backbone, faces.images, channel_order, faces.labels, n_boot=n_boot, level=level,
                                  seed=seed, batch_size=batch_size, device=device)  # fmt: skip
    return Checkup(source=source, channel_order=channel_order, faces=faces, sweep=sweep, trends=trends,
                   channel=channel, level=level, levels={k: tuple(v) for k, v in levels.items()})  # fmt: skip
