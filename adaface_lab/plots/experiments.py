"""Figures of a sweep (:mod:`adaface_lab.experiments`): a metric against a grid value, with the 95 % interval
over seeds and every seed's own value, and the paired differences with the baseline.

::

    result = load_sweep("sweeps/heads")
    sweep_metric_figure(result.runs, result.summary, "ver_auc", x="head", keys=result.keys)
    comparison_figure(result.comparison, "ver_auc", keys=result.keys)

Both take the sweep's frames (``runs.csv``, ``summary.csv``, ``comparison.csv``); the numbers are computed
in :mod:`adaface_lab.experiments.stats`, never here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..experiments.grid import point_label
from ..experiments.metrics import metric_label
from .training import _empty, _layout, _need

__all__ = ["sweep_metric_figure", "comparison_figure"]

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _is_numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)


def _positions(values: Sequence[Any], log: bool) -> tuple[dict[Any, float], dict[str, Any]]:
    """Where each x value sits and the x axis' settings: numbers on a (log) number line, anything else
    as evenly spaced categories in their order of appearance."""
    uniq = list(dict.fromkeys(values))
    if _is_numeric(uniq):
        return {v: float(v) for v in uniq}, dict(type="log" if log else "linear")
    return {v: float(i) for i, v in enumerate(uniq)}, dict(tickvals=list(range(len(uniq))),
                                                         ticktext=[str(v) for v in uniq], range=[-0.6, len(uniq) - 0.4])


def _offset(pos: float, k: int, n: int, axis: dict[str, Any], span: float) -> float:
    """Group ``k`` of ``n`` nudged sideways so that their bars do not hide each other."""
    shift = (k - (n - 1) / 2) * 0.08
    if axis.get("type") == "log":
        return pos * 10 ** (shift * span / 4)
    return pos + shift * (span / 4 if axis.get("type") == "linear" else 1.0)


def sweep_metric_figure(runs: pd.DataFrame, summary: pd.DataFrame, metric: str, x: str, keys: Sequence[str],
                        log_x: bool | None = None, height: int = 420) -> go.Figure:  # fmt: skip
    """``metric`` against the grid value ``x``: per grid point the mean with its 95 % interval (error bars)
    and each seed's value (open markers). The other axes' values make one colour each.

    Traces per colour group: ``<group> (mean, 95 % CI)`` with ``x`` the positions of the x values (their
    labels on the axis), ``y`` the means and ``error_y`` the interval; ``<group> (seeds)`` with one point per
    run. ``log_x``: a log axis for numeric x (default: when its values span a factor of 10 or more).
    """
    _need(runs, [x, metric, "seed"], "runs")
    _need(summary, [x, f"{metric}_mean", f"{metric}_ci_low", f"{metric}_ci_high"], "summary")
    if summary[f"{metric}_mean"].isna().all():
        return _empty(f"no value of {metric_label(metric)} in this sweep", metric_label(metric), height)
    others = [k for k in keys if k != x]
    values = list(summary[x])
    numeric = _is_numeric(list(dict.fromkeys(values)))
    positive = numeric and min(float(v) for v in values) > 0
    log = bool(positive and max(map(float, values)) / min(map(float, values)) >= 10) if log_x is None else log_x
    where, axis = _positions(values, log and positive)
    span = (np.log10(max(where.values()) / min(where.values())) if axis.get("type") == "log"
            else max(where.values()) - min(where.values()) or 1.0)  # fmt: skip
    groups = list(summary.groupby(others, sort=False)) if others else [((), summary)]
    fig = go.Figure()
    for k, (values_of_others, point_rows) in enumerate(groups):  # one per combination of the other axes
        label = point_label(dict(zip(others, values_of_others if isinstance(values_of_others, tuple)
                                     else (values_of_others,)))) if others else metric_label(metric)  # fmt: skip
        color = _PALETTE[k % len(_PALETTE)]
        xs = np.array([_offset(where[v], k, len(groups), axis, span) for v in point_rows[x]])
        mean = point_rows[f"{metric}_mean"].to_numpy(np.float64)
        low, high = point_rows[f"{metric}_ci_low"].to_numpy(np.float64), point_rows[f"{metric}_ci_high"].to_numpy(np.float64)
        fig.add_trace(go.Scatter(
            x=xs, y=mean, mode="markers+lines" if numeric else "markers", name=f"{label} (mean, 95 % CI)",
            marker=dict(color=color, size=10), line=dict(color=color), legendgroup=label,
            error_y=dict(type="data", symmetric=False, array=high - mean, arrayminus=mean - low, color=color),
            customdata=np.stack([low, high, point_rows["n_seeds"].to_numpy()], axis=1),
            hovertemplate="mean %{y:.4f}<br>95 % CI [%{customdata[0]:.4f}, %{customdata[1]:.4f}]<br>"
                          "%{customdata[2]} seeds<extra>" + label + "</extra>",
        ))  # fmt: skip
        mask = np.ones(len(runs), dtype=bool)
        for key, value in zip(others, values_of_others if isinstance(values_of_others, tuple) else (values_of_others,)):
            mask &= (runs[key] == value).to_numpy()
        seeds = runs[mask]
        fig.add_trace(go.Scatter(
            x=np.array([_offset(where[v], k, len(groups), axis, span) for v in seeds[x]]),
            y=seeds[metric].to_numpy(np.float64), mode="markers", name=f"{label} (seeds)", legendgroup=label,
            marker=dict(color=color, size=7, symbol="circle-open"), customdata=seeds["seed"].to_numpy(),
            hovertemplate="seed %{customdata}: %{y:.4f}<extra>" + label + "</extra>",
        ))  # fmt: skip
    if metric.startswith("r_"):
        fig.add_hline(y=0.0, line=dict(color="grey", width=1))
    title = f"{metric_label(metric)} against {x}"
    return _layout(fig, title, f"sweep-{metric}-{x}", height, xaxis=dict(title=dict(text=x), **axis),
                   yaxis=dict(title=dict(text=metric_label(metric))), legend=dict(orientation="h", y=-0.25))


def comparison_figure(comparison: pd.DataFrame, metric: str, keys: Sequence[str], height: int | None = None) -> go.Figure:
    """Each grid point minus its baseline in ``metric`` (paired over matched seeds), with the 95 % interval
    of the difference: a point whose bar misses the zero line differs beyond the seeds' noise.

    One trace: ``y`` the points' labels, ``x`` the mean differences, ``error_x`` the interval."""
    _need(comparison, ["baseline", f"{metric}_diff", f"{metric}_diff_ci_low", f"{metric}_diff_ci_high"], "comparison")
    if comparison.empty:
        return _empty("no point to compare with the baseline", f"{metric_label(metric)}: difference", height or 300)
    labels = [point_label({k: row[k] for k in keys if k in row}) for _, row in comparison.iterrows()]
    diff = comparison[f"{metric}_diff"].to_numpy(np.float64)
    low, high = comparison[f"{metric}_diff_ci_low"].to_numpy(np.float64), comparison[f"{metric}_diff_ci_high"].to_numpy(np.float64)
    beyond = (low > 0) | (high < 0)
    fig = go.Figure(go.Scatter(
        x=diff, y=labels, mode="markers", name="difference (95 % CI)",
        marker=dict(size=10, color=np.where(beyond, "#d62728", "#7f7f7f")),
        error_x=dict(type="data", symmetric=False, array=high - diff, arrayminus=diff - low),
        customdata=np.stack([low, high, comparison["baseline"].to_numpy(), comparison["n_matched"].to_numpy()], axis=1),
        hovertemplate="%{y} − %{customdata[2]}: %{x:+.4f}<br>95 % CI [%{customdata[0]:+.4f}, %{customdata[1]:+.4f}]"
                      "<br>%{customdata[3]} matched seeds<extra></extra>",
    ))  # fmt: skip
    fig.add_vline(x=0.0, line=dict(color="grey", width=1))
    baseline = comparison["baseline"].iloc[0] if comparison["baseline"].nunique() == 1 else "its baseline"
    return _layout(fig, f"{metric_label(metric)}: each point minus {baseline}", f"compare-{metric}",
                   height or 140 + 40 * len(labels), xaxis=dict(title=dict(text="paired difference (red: beyond the seeds' noise)")),
                   yaxis=dict(autorange="reversed"), showlegend=False)  # fmt: skip
