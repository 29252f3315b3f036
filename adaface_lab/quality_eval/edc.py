"""Error-versus-discard characteristic (EDC) of a quality score, ISO/IEC 29794-5 style (DESIGN.md §6).

A quality score is good for face recognition when discarding the pairs it rates lowest removes the
errors first. The EDC plots the false non-match rate (FNMR) left after discarding a fraction of
the pairs against that fraction::

    table = edc(scores, issame, quality_a, quality_b, fmr=0.01)   # discard, fnmr, kept, threshold, ...
    area = edc_pauc(table, limit=0.2)                             # area.value, area.random, area.relative
    base = random_edc(scores, issame, fmr=0.01, draws=200)        # random qualities: mean and band

The rules, in order:

1. **Pair quality** is the lower of the two images' qualities (higher = better).
2. **Threshold**: fixed once, on all pairs, before anything is discarded: the lowest observed score
   ``t`` whose false match rate ``FMR(t) = #{impostor pairs with score ≥ t} / #impostor pairs`` is at
   most ``fmr``. A pair matches when ``score ≥ t``. Thresholds between two observed scores make the
   same decisions, so looking only at observed scores loses nothing. When no observed score is
   high enough (the highest score is an impostor's and ``1/#impostors > fmr``), ``t = +inf``.
3. **Discard**: a fraction ``d`` removes ``m = ⌊d·N⌋`` of the ``N`` pairs (genuine and impostor), those
   of lowest pair quality. ``d·N`` gets an allowance of 1e-6 before the floor so that a fraction
   written in decimal is not lost to rounding (0.29 · 100 is 28.999999999999996 in floating point;
   it discards 29 pairs).
4. **Ties** in pair quality are shared, not broken: when the cut falls inside a group of ``g`` pairs
   of equal quality and ``r`` of them must go, every pair of the group is discarded by the
   fraction ``r/g`` (it counts ``1 - r/g`` in what is kept). This is the average of every possible
   order within the group, for the count of genuine pairs kept and the count of false non-matches
   kept alike; FNMR is their ratio. Why not break ties by pair index or at random: an index rule
   lets the order of the pairs file decide (LFW lists each fold's genuine pairs first, so a tied
   quality would discard genuine pairs first), and a random rule adds noise that differs with the
   seed. With shared ties the EDC does not depend on the order of the pairs, and a constant
   quality (no information) gives exactly the flat curve of the random baseline. Ties are common:
   two pairs sharing their worse image have equal pair quality, and ground-truth qualities
   (SyntheticFaces severities) take few values.
5. **FNMR** at ``d`` = false non-matches kept / genuine pairs kept, at the threshold of rule 2
   (NaN once no genuine pair is left).

**pAUC** (:func:`edc_pauc`): the area under FNMR(d) for ``d`` in [0, ``limit``], by the trapezoid rule
over the table's fractions (FNMR linearly interpolated at ``limit`` when it is not one of them).
Random quality discards genuine pairs and false non-matches in proportion, so its expected curve is
flat at FNMR(0) (in rule 4's sense of expected counts) and its area is ``FNMR(0) · limit``; that is
the *random baseline*, and ``relative = pAUC / (FNMR(0)·limit)``: 1 = no better than random, below 1
= the measure finds the errors, 0 = every false non-match goes at once, above 1 = worse than random
(the measure discards the good pairs first — a quality read with its sign reversed).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..evaluate import _as_scores

__all__ = [
    "DEFAULT_DISCARD",
    "PAUC",
    "RandomBaseline",
    "edc",
    "edc_pauc",
    "edc_tables",
    "fmr_threshold",
    "pair_quality",
    "pauc_table",
    "random_edc",
]

#: Discard fractions of :func:`edc` by default: 0, 0.01, ..., 0.50 (51 values).
DEFAULT_DISCARD: np.ndarray = np.arange(51) / 100.0

_FLOOR_ALLOWANCE = 1e-6  # added to d·N before the floor (rule 3 of the module docstring)


# --------------------------------------------------------------------------- input checks


def _check_fmr(fmr: float) -> float:
    if not (isinstance(fmr, (int, float, np.floating)) and 0.0 < float(fmr) < 1.0):
        raise ValueError(f"fmr must be a number in (0, 1), got {fmr!r}")
    return float(fmr)


def _check_discard(discard: Any) -> np.ndarray:
    d = np.asarray(discard, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"discard must be a non-empty 1-D sequence of fractions, got shape {d.shape}")
    if not np.all((d >= 0.0) & (d <= 1.0)):
        raise ValueError("discard fractions must lie in [0, 1]")
    return d


def _check_both_classes(issame: np.ndarray) -> None:
    n_gen, n_imp = int(issame.sum()), int((~issame).sum())
    if n_gen == 0 or n_imp == 0:
        raise ValueError(
            f"the EDC needs genuine and impostor pairs (the threshold comes from the impostors, the FNMR from "
            f"the genuine pairs); got {n_gen} genuine and {n_imp} impostor"
        )


def pair_quality(quality_a: Any, quality_b: Any) -> np.ndarray:
    """Pair quality: the element-wise minimum of the two images' qualities, float64 (N,).

    Raises ``ValueError`` for unequal lengths or NaN (a pair without a quality cannot be ranked:
    drop it, or give it a quality).
    """
    qa, qb = np.asarray(quality_a, dtype=np.float64), np.asarray(quality_b, dtype=np.float64)
    if qa.ndim != 1 or qa.shape != qb.shape:
        raise ValueError(f"quality_a and quality_b must be 1-D of equal length, got shapes {qa.shape} and {qb.shape}")
    for name, q in (("quality_a", qa), ("quality_b", qb)):
        if np.isnan(q).any():
            raise ValueError(
                f"{name} holds {int(np.isnan(q).sum())} NaN values: every pair needs a quality "
                f"(drop those pairs, or give them a quality)"
            )
    return np.minimum(qa, qb)


def _check_pairs(scores: Any, issame: Any, quality_a: Any, quality_b: Any) -> tuple[np.ndarray, ...]:
    lengths = [len(np.atleast_1d(np.asarray(x))) for x in (scores, issame, quality_a, quality_b)]
    if len(set(lengths)) != 1:
        raise ValueError(
            f"scores, issame, quality_a and quality_b must have one value per pair; got lengths {lengths}"
        )
    s, y = _as_scores(scores, issame)
    q = pair_quality(quality_a, quality_b)
    _check_both_classes(y)
    return s, y, q


# --------------------------------------------------------------------------- threshold and curve


def fmr_threshold(scores: Any, issame: Any, fmr: float) -> float:
    """The lowest observed score ``t`` with ``#{impostor score ≥ t} / #impostor ≤ fmr``; ``+inf`` if none.

    Warns (``RuntimeWarning``) when fewer than ``1/fmr`` impostor pairs are given: the threshold
    then admits no impostor at all, and the FMR actually reached is 0, not ``fmr``.
    """
    fmr = _check_fmr(fmr)
    s, y = _as_scores(scores, issame)
    _check_both_classes(y)
    impostor = np.sort(s[~y])  # ascending
    if len(impostor) * fmr < 1.0 - 1e-9:
        warnings.warn(
            f"{len(impostor)} impostor pairs cannot resolve FMR = {fmr:g} (it needs {math.ceil(1 / fmr - 1e-9)}): "
            f"the threshold admits no impostor",
            RuntimeWarning,
            stacklevel=2,
        )
    candidates = np.unique(s)  # ascending
    n_accepted = len(impostor) - np.searchsorted(impostor, candidates, side="left")  # impostors with score >= t
    ok = n_accepted / len(impostor) <= fmr  # False ... False True ... True
    return float(candidates[int(np.argmax(ok))]) if ok.any() else math.inf


def _discard_counts(discard: np.ndarray, n: int) -> np.ndarray:
    return np.floor(discard * n + _FLOOR_ALLOWANCE).astype(np.int64)


def _fnmr_after_discard(
    q: np.ndarray | None, genuine: np.ndarray, false_nonmatch: np.ndarray, m: np.ndarray,
    order: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """FNMR and genuine pairs kept after discarding the ``m`` lowest-quality pairs, ties shared (rule 4).

    One sort: cumulative counts of genuine pairs and false non-matches in quality order are exact at
    the boundaries between groups of equal quality and linear inside a group. With ``order`` (a
    permutation, lowest quality first, no ties) instead of ``q``, the counts are read directly.
    """
    if order is None:
        order = np.argsort(q, kind="stable")
        qs = q[order]
        bounds = np.r_[0, np.flatnonzero(qs[1:] != qs[:-1]) + 1, len(qs)]  # group edges
    else:
        bounds = None
    genuine_cum = np.r_[0, np.cumsum(genuine[order])]  # (N+1,) genuine among the first j
    fnm_cum = np.r_[0, np.cumsum(false_nonmatch[order])]  # (N+1,)
    if bounds is None:
        genuine_kept, fnm_kept = genuine_cum[-1] - genuine_cum[m], fnm_cum[-1] - fnm_cum[m]
    else:
        genuine_kept = genuine_cum[-1] - np.interp(m, bounds, genuine_cum[bounds])
        fnm_kept = fnm_cum[-1] - np.interp(m, bounds, fnm_cum[bounds])
    left = genuine_kept > 1e-9
    fnmr = np.full(len(m), np.nan)
    fnmr[left] = fnm_kept[left] / genuine_kept[left]
    return fnmr, genuine_kept.astype(np.float64)


def edc(
    scores: Any,
    issame: Any,
    quality_a: Any,
    quality_b: Any,
    *,
    fmr: float = 0.01,
    discard: Sequence[float] | np.ndarray = DEFAULT_DISCARD,
) -> pd.DataFrame:
    """Error-versus-discard characteristic of a quality measure (rules in the module docstring).

    Args:
        scores: (N,) similarity per pair (higher = more alike), finite.
        issame: (N,) bool, True for genuine pairs; both kinds must be present.
        quality_a, quality_b: (N,) quality of each pair's two images (higher = better), no NaN.
        fmr: the false match rate in (0, 1) that fixes the threshold.
        discard: fractions of pairs to discard, in [0, 1].

    Returns one row per fraction, in the given order, with ``discard``; ``fnmr``; ``kept`` (pairs
    kept, ``N - ⌊d·N⌋``); ``threshold`` (the same on every row); ``genuine_kept`` (genuine pairs
    kept, fractional inside a tie, rule 4). ``attrs`` holds ``fmr``, ``fmr_actual`` (the FMR of the
    threshold on all pairs), ``n_pairs``, ``n_genuine``, ``n_impostor``. O(N log N + len(discard)).
    """
    fmr = _check_fmr(fmr)
    d = _check_discard(discard)
    s, y, q = _check_pairs(scores, issame, quality_a, quality_b)
    t = fmr_threshold(s, y, fmr)
    m = _discard_counts(d, len(s))
    fnmr, genuine_kept = _fnmr_after_discard(q, y, y & (s < t), m)
    table = pd.DataFrame(
        {"discard": d, "fnmr": fnmr, "kept": len(s) - m, "threshold": t, "genuine_kept": genuine_kept}
    )
    table.attrs.update(
        fmr=fmr,
        fmr_actual=float(np.mean(s[~y] >= t)),
        n_pairs=len(s),
        n_genuine=int(y.sum()),
        n_impostor=int((~y).sum()),
    )
    return table


def edc_tables(
    scores: Any,
    issame: Any,
    qualities: Mapping[str, Any],
    *,
    pairs: Any = None,
    fmr: float = 0.01,
    discard: Sequence[float] | np.ndarray = DEFAULT_DISCARD,
) -> dict[str, pd.DataFrame]:
    """:func:`edc` of several quality measures on the same pairs: ``{name: table}``.

    ``qualities``: ``{name: (P, 2)}`` the quality of each pair's two images; or, with ``pairs`` (P, 2)
    image indices, ``{name: (N,)}`` one quality per image (a column of
    :func:`~adaface_lab.quality_eval.image_qualities`, say).
    """
    index = None if pairs is None else np.asarray(pairs, dtype=np.int64)
    if index is not None and (index.ndim != 2 or index.shape[1] != 2):
        raise ValueError(f"pairs must be (P, 2) image indices, got shape {index.shape}")
    tables = {}
    for name, q in qualities.items():
        q = np.asarray(q, dtype=np.float64)
        qp = q[index] if index is not None else q  # (P, 2)
        if qp.ndim != 2 or qp.shape[1] != 2:
            raise ValueError(f"quality {name!r}: expected (P, 2) per pair, or (N,) per image with pairs=, got {q.shape}")
        tables[name] = edc(scores, issame, qp[:, 0], qp[:, 1], fmr=fmr, discard=discard)
    return tables


# --------------------------------------------------------------------------- area under the curve


@dataclass(frozen=True)
class PAUC:
    """Partial area under an EDC: ``value`` over [0, ``limit``]; ``random`` = FNMR(0)·limit, the
    expected area of random quality; ``relative`` = value / random (NaN when FNMR(0) = 0)."""

    value: float
    random: float
    relative: float
    limit: float


def _area(discard: np.ndarray, fnmr: np.ndarray, limit: float) -> np.ndarray | float:
    """Trapezoid area of curves ``fnmr`` (..., F) over ``discard`` (F,) ascending, from 0 to ``limit``."""
    j = int(np.searchsorted(discard, limit, side="left"))  # first fraction >= limit (checked to exist)
    if discard[j] == limit:
        x, y = discard[: j + 1], fnmr[..., : j + 1]
    else:  # FNMR linearly interpolated at limit, between fractions j-1 and j
        w = (limit - discard[j - 1]) / (discard[j] - discard[j - 1])
        at_limit = fnmr[..., j - 1] + w * (fnmr[..., j] - fnmr[..., j - 1])
        x = np.r_[discard[:j], limit]
        y = np.concatenate([fnmr[..., :j], at_limit[..., None]], axis=-1)
    return np.sum(np.diff(x) * (y[..., 1:] + y[..., :-1]) / 2.0, axis=-1)


def _check_curve(discard: np.ndarray, fnmr: np.ndarray, limit: float) -> None:
    if not 0.0 < limit <= 1.0:
        raise ValueError(f"limit must be in (0, 1], got {limit}")
    if len(discard) == 0 or discard[0] != 0.0 or np.any(np.diff(discard) <= 0):
        raise ValueError("the EDC table must start at discard = 0 and have strictly increasing discard fractions")
    if discard[-1] < limit:
        raise ValueError(f"the EDC table stops at discard = {discard[-1]:g}, before limit = {limit:g}")
    upto = int(np.searchsorted(discard, limit, side="left")) + 1  # the fractions the area uses
    if not np.isfinite(fnmr[..., :upto]).all():
        raise ValueError(f"FNMR is NaN before discard = {limit:g} (no genuine pair left): lower limit")


def edc_pauc(table: pd.DataFrame, limit: float = 0.2) -> PAUC:
    """Area under an :func:`edc` table's FNMR for discard in [0, ``limit``], and relative to random.

    See the module docstring for the definitions. The table must start at discard 0 and reach
    ``limit``; a finer grid of fractions gives an area closer to that of the step curve.
    """
    missing = [c for c in ("discard", "fnmr") if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the columns {missing}; expected an edc() table")
    d, f = table["discard"].to_numpy(np.float64), table["fnmr"].to_numpy(np.float64)
    _check_curve(d, f, float(limit))
    value = float(_area(d, f, float(limit)))
    random = float(f[0] * limit)
    return PAUC(value=value, random=random, relative=value / random if random > 0 else math.nan, limit=float(limit))


# --------------------------------------------------------------------------- random baseline


@dataclass(frozen=True)
class RandomBaseline:
    """EDCs of ``draws`` random qualities (one uniform value per pair) on the same pairs.

    ``discard`` (F,); ``curves`` (draws, F) FNMR per draw; ``threshold``; ``level`` of the band.
    """

    discard: np.ndarray
    curves: np.ndarray
    threshold: float
    level: float = 0.95

    @property
    def table(self) -> pd.DataFrame:
        """Per fraction: ``discard``, ``fnmr`` (mean over draws), ``fnmr_low``/``fnmr_high`` (central ``level`` band)."""
        lo, hi = np.nanquantile(self.curves, [(1 - self.level) / 2, (1 + self.level) / 2], axis=0)
        return pd.DataFrame({"discard": self.discard, "fnmr": np.nanmean(self.curves, axis=0),
                             "fnmr_low": lo, "fnmr_high": hi, "threshold": self.threshold})

    def pauc(self, limit: float = 0.2) -> np.ndarray:
        """(draws,) pAUC of each random draw over [0, ``limit``]."""
        _check_curve(self.discard, self.curves, float(limit))
        return _area(self.discard, self.curves, float(limit))


def random_edc(
    scores: Any,
    issame: Any,
    *,
    fmr: float = 0.01,
    discard: Sequence[float] | np.ndarray = DEFAULT_DISCARD,
    draws: int = 200,
    seed: int = 0,
    level: float = 0.95,
    pairs: Any = None,
) -> RandomBaseline:
    """The random-quality baseline: :func:`edc` of ``draws`` independent uniform qualities.

    Without ``pairs``, one uniform value per pair (equivalently, random orders of the pairs). With
    ``pairs`` (P, 2) image indices, one uniform value per *image*, the pair quality being the lower of
    its two (rule 1): the null of a per-image quality measure. When pairs share images (all pairs of a
    set of images, say), discarding one poor image drops all its pairs at once, and the band of
    per-image draws is wider than that of per-pair draws — compare a per-image measure with this one.

    Its mean curve sits at FNMR(0) (the module docstring); the band shows how far a measure with no
    information strays by chance on these pairs. ``discard`` must be ascending for :meth:`RandomBaseline.pauc`.
    """
    fmr = _check_fmr(fmr)
    d = _check_discard(discard)
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    s, y = _as_scores(scores, issame)
    _check_both_classes(y)
    t = fmr_threshold(s, y, fmr)
    m = _discard_counts(d, len(s))
    rng = np.random.default_rng(seed)
    fnm = y & (s < t)
    if pairs is None:
        # A uniform quality per pair orders the pairs by a random permutation (ties have probability 0).
        curves = [_fnmr_after_discard(None, y, fnm, m, order=rng.permutation(len(s)))[0] for _ in range(draws)]
    else:
        index = _pair_index(pairs, len(s))
        n_images = int(index.max()) + 1
        # Pairs that share their worse image tie (rule 4 shares them out).
        curves = [_fnmr_after_discard(rng.random(n_images)[index].min(axis=1), y, fnm, m)[0] for _ in range(draws)]
    return RandomBaseline(discard=d, curves=np.stack(curves), threshold=t, level=level)


def _pair_index(pairs: Any, n_pairs: int) -> np.ndarray:
    """``pairs`` as (P, 2) non-negative int64 image indices, one row per pair."""
    index = np.asarray(pairs)
    if index.ndim != 2 or index.shape != (n_pairs, 2) or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"pairs must be ({n_pairs}, 2) integer image indices, one row per pair; got shape "
                         f"{index.shape} of {index.dtype}")
    if n_pairs and index.min() < 0:
        raise ValueError("pairs hold negative image indices")
    return index.astype(np.int64)


def pauc_table(
    tables: Mapping[str, pd.DataFrame], limit: float = 0.2, baseline: RandomBaseline | None = None
) -> pd.DataFrame:
    """pAUC of several measures' EDCs on the same pairs, one row per measure, best (lowest) first.

    Columns ``measure, pauc, pauc_random, relative``; with a ``baseline``, also ``random_low`` and
    ``random_high`` (the central band of the random draws' relative pAUC) and ``beyond_random``
    (relative below ``random_low``: the measure finds errors better than chance does).
    """
    rows = []
    for name, table in tables.items():
        a = edc_pauc(table, limit)
        row: dict[str, Any] = {"measure": name, "pauc": a.value, "pauc_random": a.random, "relative": a.relative}
        if baseline is not None:
            if table["threshold"].iloc[0] != baseline.threshold:
                raise ValueError(f"the baseline's threshold differs from {name!r}'s: other pairs or another fmr")
            rel = baseline.pauc(limit) / a.random if a.random > 0 else np.full(len(baseline.curves), np.nan)
            low, high = np.nanquantile(rel, [(1 - baseline.level) / 2, (1 + baseline.level) / 2])
            row.update(random_low=float(low), random_high=float(high), beyond_random=bool(a.relative < low))
        rows.append(row)
    return pd.DataFrame(rows).sort_values("pauc", kind="stable").reset_index(drop=True)
