"""Figures of :mod:`adaface_lab.quality_eval`: EDC curves of several quality measures with the random
baseline's band, and TAR@FAR per template-fusion mode::

    tables = edc_tables(scores, issame, qualities, pairs=pair_index)
    edc_figure(tables, baseline=random_edc(scores, issame), limit=0.2)
    fusion_figure(fusion_table(emb, norms, labels, k=5, qualities={"serfiq": q}))

The numbers come from :mod:`adaface_lab.quality_eval`; nothing is computed here but the pAUC shown
in the legend (:func:`~adaface_lab.quality_eval.edc_pauc`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..quality_eval.edc import RandomBaseline, edc_pauc
from .training import _layout, _need

__all__ = ["edc_figure", "fusion_figure"]

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


def _band(baseline: RandomBaseline) -> list[go.Scatter]:
    t = baseline.table
    x = t["discard"].to_numpy(np.float64)
    name = f"random quality ({len(baseline.curves)} draws, {baseline.level:.0%} band)"
    return [
        go.Scatter(x=np.r_[x, x[::-1]], y=np.r_[t["fnmr_high"].to_numpy(), t["fnmr_low"].to_numpy()[::-1]],
                   fill="toself", fillcolor="rgba(128,128,128,0.2)", line=dict(width=0), hoverinfo="skip",
                   name=name, legendgroup="random"),
        go.Scatter(x=x, y=t["fnmr"].to_numpy(np.float64), mode="lines", line=dict(color="grey", dash="dash"),
                   name="random quality (mean)", legendgroup="random", showlegend=False,
                   hovertemplate="discard %{x:.2f}<br>FNMR %{y:.4f}<extra>random</extra>"),
    ]


def edc_figure(
    tables: pd.DataFrame | Mapping[str, pd.DataFrame],
    baseline: RandomBaseline | None = None,
    limit: float | None = 0.2,
    height: int = 420,
) -> go.Figure:
    """Error-versus-discard curves, one line per measure, on the same pairs.

    ``tables``: an :func:`~adaface_lab.quality_eval.edc` table or ``{measure: table}``; per measure a
    line trace (``x`` = ``discard``, ``y`` = ``fnmr``), its relative pAUC up to ``limit`` in the
    legend. ``baseline``: the random-quality band (a filled trace) and its mean (dashed). ``limit``:
    a dotted vertical line where the pAUC stops (None: no line, no pAUC).
    """
    named = {"": tables} if isinstance(tables, pd.DataFrame) else dict(tables)
    fig = go.Figure()
    if baseline is not None:
        for trace in _band(baseline):
            fig.add_trace(trace)
    for i, (name, t) in enumerate(named.items()):  # a few measures
        _need(t, ["discard", "fnmr"], "EDC table")
        label = name or "quality"
        if limit is not None:
            label += f" (pAUC {edc_pauc(t, limit).relative:.2f}× random)"
        fig.add_trace(go.Scatter(
            x=t["discard"].to_numpy(np.float64), y=t["fnmr"].to_numpy(np.float64), mode="lines", name=label,
            line=dict(color=_PALETTE[i % len(_PALETTE)]),
            hovertemplate="discard %{x:.2f}<br>FNMR %{y:.4f}<extra>" + (name or "quality") + "</extra>",
        ))
    if limit is not None:
        fig.add_vline(x=limit, line=dict(color="grey", dash="dot", width=1))
    first = next(iter(named.values()))
    fmr = first.attrs.get("fmr")
    title = "Error versus discard" + (f" (FNMR at FMR = {fmr:g})" if fmr is not None else "")
    return _layout(
        fig, title, "edc", height,
        xaxis=dict(title=dict(text="fraction of pairs discarded (lowest pair quality first)")),
        yaxis=dict(title=dict(text="FNMR of the pairs kept"), rangemode="tozero"),
        legend=dict(x=0.98, xanchor="right", y=0.98, yanchor="top"),
    )


def fusion_figure(table: pd.DataFrame, height: int = 380) -> go.Figure:
    """TAR@FAR per fusion mode (± std over template draws): one Bar trace per FAR target.

    ``table``: :func:`~adaface_lab.quality_eval.fusion_table` output; ``x`` = ``mode``.
    """
    _need(table, ["mode"], "fusion table")
    cols = [c for c in table.columns if c.startswith("tar@far=") and not c.endswith("_std")]
    if not cols:
        raise ValueError("fusion table holds no tar@far=<f> columns")
    fig = go.Figure()
    for i, c in enumerate(cols):
        err = table[f"{c}_std"].to_numpy(np.float64) if f"{c}_std" in table.columns else None
        fig.add_trace(go.Bar(
            x=table["mode"].astype(str).to_numpy(), y=table[c].to_numpy(np.float64), name=c.replace("tar@far=", "TAR @ FAR "),
            marker_color=_PALETTE[i % len(_PALETTE)], error_y=dict(type="data", array=err) if err is not None else None,
            hovertemplate="%{x}: %{y:.4f}<extra>" + c + "</extra>",
        ))
    k = int(table["k"].iloc[0]) if "k" in table.columns and len(table) else None
    title = "Set-to-set verification by fusion mode" + (f" (templates of {k} images)" if k else "")
    return _layout(fig, title, "fusion", height, barmode="group",
                   xaxis=dict(title=dict(text="fusion")), yaxis=dict(title=dict(text="TAR"), range=[0, 1.02]))
