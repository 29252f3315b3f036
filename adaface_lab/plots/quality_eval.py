"""Figures of :mod:`adaface_lab.quality_eval`: EDC curves of several quality measures with the random
baseline's band, TAR@FAR per template-fusion mode, and the check-up's sweep, trends and channel order::

    tables = edc_tables(scores, issame, qualities, pairs=pair_index)
    edc_figure(tables, baseline=random_edc(scores, issame), limit=0.2)
    fusion_figure(fusion_table(emb, norms, labels, k=5, qualities={"serfiq": q}))
    result = checkup(backbone, faces, "bgr")
    degradation_sweep_figure({m: sweep_bands(result.sweep, m) for m in ("norm", "brisque")})
    trend_figure(result.trends); channel_order_figure(result.channel)

The numbers come from :mod:`adaface_lab.quality_eval`; nothing is computed here but the pAUC shown
in the legend (:func:`~adaface_lab.quality_eval.edc_pauc`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from plotly.subplots import make_subplots

from ..quality_eval.checkup import ChannelOrderCheck
from ..quality_eval.edc import RandomBaseline, edc_pauc
from .training import _layout, _need

__all__ = ["channel_order_figure", "degradation_sweep_figure", "edc_figure", "fusion_figure", "trend_figure"]

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


# --------------------------------------------------------------------------- the check-up

#: How the check-up's degradations and measures are named on axes.
DEGRADATION_LABELS = {"blur_sigma": "blur σ (px)", "scale": "down-up scale", "noise_sigma": "noise σ (grey levels)",
                      "jpeg_quality": "JPEG quality", "all": "all four"}  # fmt: skip
MEASURE_LABELS = {"norm": "‖z‖", "brisque": "1 − BRISQUE/100", "serfiq": "SER-FIQ"}


def degradation_sweep_figure(bands: Mapping[str, pd.DataFrame], height: int | None = None) -> go.Figure:
    """How each measure moves as the faces are degraded: one row per measure, one column per degradation.

    ``bands``: ``{measure: sweep_bands(sweep, measure)}`` (:func:`~adaface_lab.quality_eval.sweep_bands`);
    per panel the median change from each face's own undegraded value (a line, ``x`` = step, labelled with
    the strengths) and the band between ``low`` and ``high`` (a filled trace), and a dotted zero line.
    """
    if not bands:
        raise ValueError("bands is empty: give {measure: sweep_bands(sweep, measure)}")
    for name, t in bands.items():
        _need(t, ["degradation", "step", "strength", "median", "low", "high"], f"sweep bands of {name!r}")
    kinds = list(dict.fromkeys(k for t in bands.values() for k in t["degradation"]))
    fig = make_subplots(rows=len(bands), cols=len(kinds), shared_yaxes="rows", horizontal_spacing=0.03,
                        vertical_spacing=0.12, column_titles=[DEGRADATION_LABELS.get(k, k) for k in kinds])
    for r, (measure, t) in enumerate(bands.items(), start=1):
        colour = _PALETTE[(r - 1) % len(_PALETTE)]
        for c, kind in enumerate(kinds, start=1):
            part = t[t["degradation"] == kind].sort_values("step")
            x = part["step"].to_numpy()
            fig.add_trace(go.Scatter(x=np.r_[x, x[::-1]], y=np.r_[part["high"].to_numpy(), part["low"].to_numpy()[::-1]],
                                     mode="lines", fill="toself", fillcolor="rgba(128,128,128,0.2)",
                                     line=dict(width=0), hoverinfo="skip", showlegend=False), row=r, col=c)  # fmt: skip
            fig.add_trace(go.Scatter(x=x, y=part["median"].to_numpy(), mode="lines+markers", line=dict(color=colour),
                                     name=MEASURE_LABELS.get(measure, measure), showlegend=c == 1,
                                     customdata=part["strength"].to_numpy(),
                                     hovertemplate="strength %{customdata:g}<br>median change %{y:.3g}<extra></extra>"),
                          row=r, col=c)  # fmt: skip
            fig.add_hline(y=0, line=dict(color="grey", dash="dot", width=1), row=r, col=c)
            fig.update_xaxes(tickvals=x, ticktext=[f"{v:g}" for v in part["strength"]], row=r, col=c)
        fig.update_yaxes(title_text=f"Δ {MEASURE_LABELS.get(measure, measure)}", row=r, col=1)
    fig.update_xaxes(title_text="strength →", row=len(bands))
    return _layout(fig, "Change from each face's undegraded value (median, 25–75 % of faces)", "sweep",
                   height or 260 * len(bands) + 80)


def trend_figure(trends: pd.DataFrame, height: int = 360) -> go.Figure:
    """The trend of each measure per degradation: mean Spearman ρ(step, value) with its interval.

    ``trends``: :func:`~adaface_lab.quality_eval.trend_summary` output; per measure a marker trace
    (``x`` = ``rho``, ``y`` = degradation, error bars to ``low`` and ``high``); a dotted line at ρ = 0.
    Left of it the measure falls as the face degrades (it tracks quality), right of it it rises.
    """
    _need(trends, ["measure", "degradation", "rho", "low", "high"], "trends table")
    fig = go.Figure()
    for i, (measure, part) in enumerate(trends.groupby("measure", sort=False)):
        rho = part["rho"].to_numpy(np.float64)
        fig.add_trace(go.Scatter(
            x=rho, y=[DEGRADATION_LABELS.get(k, k) for k in part["degradation"]], mode="markers",
            name=MEASURE_LABELS.get(measure, measure), marker=dict(size=10, color=_PALETTE[i % len(_PALETTE)]),
            error_x=dict(type="data", symmetric=False, array=part["high"].to_numpy(np.float64) - rho,
                         arrayminus=rho - part["low"].to_numpy(np.float64)),
            hovertemplate="%{y}: ρ %{x:+.2f}<extra>" + measure + "</extra>",
        ))  # fmt: skip
    fig.add_vline(x=0, line=dict(color="grey", dash="dot", width=1))
    return _layout(fig, "Trend along the degradation sweep (mean Spearman ρ over faces, bootstrap CI)", "trend",
                   height, xaxis=dict(title=dict(text="← falls as the face degrades · rises →"), range=[-1.05, 1.05]),
                   yaxis=dict(autorange="reversed"))  # fmt: skip


def channel_order_figure(check: ChannelOrderCheck, height: int = 360) -> go.Figure:
    """Genuine and impostor cosine scores with the faces fed BGR and fed RGB (one panel each), or, without
    identities, the norms of each order (one histogram trace each)."""
    if check.issame is None or not check.scores:
        fig = go.Figure([go.Histogram(x=check.norms[o], name=f"fed {o.upper()}", opacity=0.6) for o in ("bgr", "rgb")])
        return _layout(fig, "Feature norm fed BGR and fed RGB", "channel", height, barmode="overlay",
                       xaxis=dict(title=dict(text="‖z‖")), yaxis=dict(title=dict(text="faces")))
    titles = [f"fed {o.upper()}" + (f" (AUC {check.auc[o]:.3f})" if check.auc else "") + (" — in use" if o == check.used else "")
              for o in ("bgr", "rgb")]  # fmt: skip
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_titles=titles, horizontal_spacing=0.05)
    for c, order in enumerate(("bgr", "rgb"), start=1):
        s = check.scores[order]
        for kind, mask, colour in (("genuine", check.issame, "#2ca02c"), ("impostor", ~check.issame, "#d62728")):
            fig.add_trace(go.Histogram(x=s[mask], name=kind, histnorm="probability density", opacity=0.6,
                                       marker_color=colour, showlegend=c == 1, legendgroup=kind), row=1, col=c)
        fig.update_xaxes(title_text="cosine of the pair", row=1, col=c)
    return _layout(fig, "Genuine and impostor pairs by channel order", "channel", height, barmode="overlay")
