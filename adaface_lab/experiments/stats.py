"""Uncertainty over seeds: a 95 % t-interval per grid point, and paired differences with a baseline point.

::

    summary = summarise(runs, keys=["head"], metrics=["ver_auc", "r_norm_qseverity"])
    compare = compare_with_baseline(runs, keys=["head"], metrics=[...], baseline={"head": "arcface"})
    noise_verdict(compare, "ver_auc")   # one sentence: which differences lie beyond the seeds' noise

``runs`` holds one row per run: the grid columns, ``seed`` and one column per metric.

**Why a t-interval and not a bootstrap.** A sweep has few seeds per grid point (2 to 5). The percentile
bootstrap of a mean of n values cannot reach beyond the smallest and largest value, and with n = 2 it
has only three distinct resampled means: its "95 %" interval is the range of the two runs, far too
narrow. The t-interval, mean ± t(0.975, n − 1) · s / √n, widens with the few degrees of freedom
(t = 12.7 for two seeds, 4.3 for three) and is exact when the seed-to-seed spread is roughly normal,
the usual assumption for a metric averaged over many pairs or samples. Differences are paired over
matched seeds (a seed fixes the data, its held-out identities, the initialisation and the batch order),
which removes what the two settings share from the noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from .grid import point_label, same_value

__all__ = ["CONFIDENCE", "Interval", "t_interval", "summarise", "compare_with_baseline", "beyond_noise",
           "noise_verdict", "interval_sign", "sign_verdict"]  # fmt: skip

CONFIDENCE = 0.95


class Interval(NamedTuple):
    """A mean and its two-sided t confidence interval over ``n`` finite values (NaN bounds for n < 2)."""

    mean: float
    low: float
    high: float
    n: int


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean ± t((1 + confidence)/2, n − 1) · sd/√n of the finite ``values`` (sd with n − 1)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, np.nan, np.nan, 1)
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) / np.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


def _groups(runs: pd.DataFrame, keys: Sequence[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """(grid point, its rows) in the order the points first appear."""
    if not keys:
        return [({}, runs)]
    return [(dict(zip(keys, k if isinstance(k, tuple) else (k,))), g)
            for k, g in runs.groupby(list(keys), sort=False, dropna=False)]  # fmt: skip


def summarise(runs: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str],
              confidence: float = CONFIDENCE) -> pd.DataFrame:  # fmt: skip
    """One row per grid point: its ``keys``, then ``<metric>_mean``, ``<metric>_ci_low``, ``<metric>_ci_high``
    for each metric (NaN values left out; bounds NaN below two finite values) and ``n_seeds`` (its runs)."""
    rows = []
    for point, group in _groups(runs, keys):
        row: dict[str, Any] = dict(point)
        for metric in metrics:
            ci = t_interval(group[metric].to_numpy(np.float64), confidence)
            row.update({f"{metric}_mean": ci.mean, f"{metric}_ci_low": ci.low, f"{metric}_ci_high": ci.high})
        row["n_seeds"] = len(group)
        rows.append(row)
    columns = [*keys, *(f"{m}_{s}" for m in metrics for s in ("mean", "ci_low", "ci_high")), "n_seeds"]
    return pd.DataFrame(rows, columns=columns)


def _matches(point: Mapping[str, Any], partial: Mapping[str, Any]) -> bool:
    return all(same_value(point[k], v) for k, v in partial.items())


def compare_with_baseline(runs: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str],
                          baseline: Mapping[str, Any], confidence: float = CONFIDENCE) -> pd.DataFrame:  # fmt: skip
    """Each grid point minus its baseline point, paired over matched seeds.

    ``baseline`` names values for some or all axes; a point's baseline is the point with those values
    and the point's own values on the other axes (so ``head=arcface`` compares every head with ArcFace
    at each value of the other axes). Returns one row per point that is not a baseline: its ``keys``,
    ``baseline`` (the baseline point, as text), ``n_matched`` (seeds run at both), and per metric
    ``<metric>_diff`` (mean of the per-seed differences), ``<metric>_diff_ci_low``, ``<metric>_diff_ci_high``.
    """
    groups = _groups(runs, keys)
    rows = []
    for point, group in groups:
        if _matches(point, baseline):
            continue
        target = {**point, **baseline}
        base = next((g for p, g in groups if _matches(p, target)), None)
        row: dict[str, Any] = {**point, "baseline": point_label(target)}
        a = group.set_index("seed")
        b = base.set_index("seed") if base is not None else a.iloc[:0]
        seeds = sorted(set(a.index) & set(b.index))
        row["n_matched"] = len(seeds)
        for metric in metrics:
            diffs = a.loc[seeds, metric].to_numpy(np.float64) - b.loc[seeds, metric].to_numpy(np.float64)
            ci = t_interval(diffs, confidence)
            row.update({f"{metric}_diff": ci.mean, f"{metric}_diff_ci_low": ci.low, f"{metric}_diff_ci_high": ci.high})
        rows.append(row)
    columns = [*keys, "baseline", "n_matched",
               *(f"{m}_diff{s}" for m in metrics for s in ("", "_ci_low", "_ci_high"))]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def beyond_noise(comparison: pd.DataFrame, metric: str) -> pd.Series:
    """Per row: does the difference's confidence interval exclude 0? (False where it is undefined)"""
    low, high = comparison[f"{metric}_diff_ci_low"], comparison[f"{metric}_diff_ci_high"]
    return ((low > 0) | (high < 0)).fillna(False).astype(bool)


def noise_verdict(comparison: pd.DataFrame, metric: str, keys: Sequence[str], label: str | None = None,
                  confidence: float = CONFIDENCE) -> str:  # fmt: skip
    """One sentence, from the numbers: which points differ from their baseline beyond the seeds' noise
    in ``metric`` (named ``label``), and which do not."""
    name = label or metric
    if comparison.empty:
        return f"{name}: no point to compare with the baseline."
    pct = f"{confidence * 100:.0f} %"
    beyond = beyond_noise(comparison, metric)
    clear, unclear = [], []
    for (_, row), out in zip(comparison.iterrows(), beyond):
        point = point_label({k: row[k] for k in keys if k in row}) or "the grid"
        diff = row[f"{metric}_diff"]
        if out:
            clear.append(f"{point} ({'+' if diff > 0 else '−'}{abs(diff):.3g} against {row['baseline']})")
        else:
            unclear.append(point)
    if not clear:
        return (f"{name}: no difference from the baseline lies beyond the seeds' noise (every {pct} interval of "
                f"the paired difference includes 0).")  # fmt: skip
    text = f"{name}: beyond the seeds' noise ({pct} interval of the paired difference excludes 0): {'; '.join(clear)}"
    return text + (f"; within the noise: {', '.join(unclear)}." if unclear else ".")


def interval_sign(low: float, high: float) -> str:
    """``positive`` (the interval lies above 0), ``negative`` (below 0) or ``unsettled`` (it holds 0, or is
    undefined)."""
    if low > 0:
        return "positive"
    if high < 0:
        return "negative"
    return "unsettled"


def sign_verdict(summary: pd.DataFrame, metric: str, x: str, label: str | None = None) -> str:
    """One sentence on the sign of ``metric`` along the grid values ``x`` (one row of ``summary`` per value):
    its mean and 95 % interval at each, and from which value on the sign is settled (every interval from
    there on on the same side of 0)."""
    rows = summary.sort_values(x, kind="stable")
    signs = [interval_sign(lo, hi) for lo, hi in zip(rows[f"{metric}_ci_low"], rows[f"{metric}_ci_high"])]
    parts = [f"{x}={v}: {m:+.3f} [{lo:+.3f}, {hi:+.3f}], {sign}"
             for v, m, lo, hi, sign in zip(rows[x], rows[f"{metric}_mean"], rows[f"{metric}_ci_low"],
                                          rows[f"{metric}_ci_high"], signs)]  # fmt: skip
    text = f"{label or metric} (95 % interval over seeds) — {'; '.join(parts)}. "
    start = len(signs)
    while start > 0 and signs[start - 1] == signs[-1] != "unsettled":
        start -= 1
    if start == len(signs):
        return text + "The sign is not settled at the largest value: no conclusion about its sign there."
    if start == 0:
        return text + f"The sign is {signs[-1]} at every value, beyond the seeds' noise."
    return text + f"The sign settles {signs[-1]} from {x}={rows[x].iloc[start]} on, beyond the seeds' noise."
