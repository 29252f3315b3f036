"""Plotly figures of a training run: norm-versus-quality (paper Fig. 4, 5), the head's EMA, ẑ and margins
over time, loss/accuracy, and verification (ROC, accuracy by quality bin).

Every builder takes the DataFrames of :mod:`adaface_lab.analysis` (or the dicts of
:mod:`adaface_lab.evaluate`) and returns a ``go.Figure``; the numbers are computed there, never
here. Traces are built from whole NumPy columns (no per-point Python loops), so a figure of
tens of thousands of records builds in milliseconds::

    run = load_run("runs/demo")
    correlation_figure(correlation_by_epoch(run.records))
    correlation_figure(correlation_by_epoch(run.records), x="step", steps=run.steps)  # or x="images"
    quality_scatter_figure(run.records, epoch=-1)
    trajectory_figure(trajectories(run.records, n=64, seed=0))
    trajectory_figure(trajectories(run.records, n=64, seed=0), x="step", steps=run.steps)  # ‖z‖, P_y over time
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors as pcolors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..analysis import TIME_AXES, Trajectories, epoch_clock, least_squares, time_axis

__all__ = [
    "FEATURE_LABELS",
    "time_title",
    "correlation_figure",
    "quality_scatter_figure",
    "trajectory_figure",
    "norm_ema_figure",
    "z_hat_figure",
    "margin_distribution_figure",
    "training_curves_figure",
    "roc_figure",
    "verification_bins_figure",
]

#: Display names of record columns.
FEATURE_LABELS: dict[str, str] = {
    "norm": "‖z‖",
    "p_y": "P<sub>y</sub>",
    "cos_y": "cos θ<sub>y</sub>",
    "z_hat": "ẑ",
    "quality": "quality (1 − BRISQUE/100)",
    "severity_quality": "ground-truth quality (1 − severity)",
    "brisque": "BRISQUE",
    "severity": "severity",
    "margin_angle": "g<sub>angle</sub>",
    "margin_add": "g<sub>add</sub>",
}
_FEATURE_COLORS = {"norm": "#1f77b4", "p_y": "#ff7f0e", "cos_y": "#2ca02c"}
_FONT = dict(size=13)


def _label(col: str) -> str:
    return FEATURE_LABELS.get(col, col)


def _layout(fig: go.Figure, title: str, uirevision: str, height: int, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0.02, font=dict(size=15)),
        template="plotly_white", font=_FONT, height=height, uirevision=uirevision,
        margin=dict(l=60, r=20, t=60, b=50), **kwargs,
    )
    return fig


def _empty(message: str, title: str, height: int = 360) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=dict(size=14))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, "empty", height)


def _need(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks the columns {missing}; present: {list(frame.columns)}")


# --------------------------------------------------------------------------- norm vs quality


def time_title(x: str, steps: pd.DataFrame | None) -> str:
    """The title of a time axis (:data:`~adaface_lab.analysis.TIME_AXES`), saying how long an epoch was:
    e.g. "optimiser step (an epoch: 38 steps, 4,800 images)"."""
    if x not in TIME_AXES:
        raise ValueError(f"x must be one of {list(TIME_AXES)}, got {x!r}")
    if steps is None or len(steps) == 0 or not {"epoch", "step", "batch"} <= set(steps.columns):
        return TIME_AXES[x]
    clock = epoch_clock(steps)
    n_steps, n_images = clock["steps"], clock["images"]
    span = (lambda v: f"{v.min():,}" if v.min() == v.max() else f"{v.min():,}–{v.max():,}")  # noqa: E731
    return f"{TIME_AXES[x]} (an epoch: {span(n_steps)} steps, {span(n_images)} images)"


def correlation_figure(
    correlations: pd.DataFrame, features: Sequence[str] = ("norm", "p_y"), height: int = 400,
    x: str = "epoch", steps: pd.DataFrame | None = None,
) -> go.Figure:
    """Correlation with quality per epoch, one line per feature (paper Fig. 4, left).

    ``correlations``: :func:`~adaface_lab.analysis.correlation_by_epoch` output; several of them
    concatenated (different ``quality`` columns) give one dashed line set per extra quality.
    Trace ``x`` = the ``epoch``, or with ``x="step"``/``"images"`` the step that ended it or the images
    seen by then (:func:`~adaface_lab.analysis.time_axis`; needs the run's ``steps``, and the axis title
    says how long an epoch was); ``y`` = ``r_<feature>``.
    """
    _need(correlations, ["epoch", *[f"r_{f}" for f in features]], "correlations")
    qualities = list(pd.unique(correlations["quality"])) if "quality" in correlations.columns else [None]
    method = str(correlations["method"].iloc[0]).capitalize() if "method" in correlations.columns and len(correlations) else "Pearson"
    fig = go.Figure()
    for qi, q in enumerate(qualities):  # a few quality columns at most
        sub = correlations if q is None else correlations[correlations["quality"] == q]
        sub = sub.sort_values("epoch")
        n = sub["n"].to_numpy() if "n" in sub.columns else np.full(len(sub), -1)
        for f in features:
            name = f"r({_label(f)}, q)" if len(qualities) == 1 else f"r({_label(f)}, {_label(str(q))})"
            fig.add_trace(go.Scatter(
                x=time_axis(sub, steps, x), y=sub[f"r_{f}"].to_numpy(np.float64), mode="lines+markers", name=name,
                line=dict(color=_FEATURE_COLORS.get(f), dash="solid" if qi == 0 else "dash"),
                customdata=np.stack([sub["epoch"].to_numpy(), n], axis=1),
                hovertemplate="epoch %{customdata[0]}" + ("" if x == "epoch" else f", {TIME_AXES[x]} %{{x:,}}")
                + "<br>r = %{y:.3f}" + ("<br>n = %{customdata[1]}" if "n" in sub.columns else "")
                + "<extra>" + name + "</extra>",
            ))
    fig.add_hline(y=0.0, line=dict(color="grey", width=1))
    qtext = _label(str(qualities[0])) if len(qualities) == 1 and qualities[0] is not None else "quality"
    return _layout(
        fig, f"{method} correlation with {qtext} per epoch", "correlation", height,
        xaxis=dict(title=dict(text=time_title(x, steps))),
        yaxis=dict(title=dict(text=f"{method} r"), range=[-1.05, 1.05]), legend=dict(orientation="h", y=-0.2),
    )


def quality_scatter_figure(
    records: pd.DataFrame,
    epoch: int = -1,
    quality: str = "quality",
    features: Sequence[str] = ("norm", "p_y"),
    height: int = 420,
) -> go.Figure:
    """Each feature against quality at one epoch, side by side, with the least-squares line (paper Fig. 4, right).

    Per panel: a marker trace (``x`` = quality, ``y`` = the feature, the finite rows of that
    epoch) and a line trace from :func:`~adaface_lab.analysis.least_squares`; r and the slope
    are in the panel title.
    """
    fits = [least_squares(records, x=quality, y=f, epoch=epoch) for f in features]
    e = fits[0].epoch
    rec = records if quality in records.columns else records.assign(**{quality: np.nan})
    sub = rec[rec["epoch"] == e]
    titles = [f"{_label(f)}: r = {fit.r:+.3f}, slope = {fit.slope:.3g} (n = {fit.n})" for f, fit in zip(features, fits)]
    fig = make_subplots(rows=1, cols=len(features), subplot_titles=titles, horizontal_spacing=0.1)
    gl = len(sub) > 20_000
    Marker = go.Scattergl if gl else go.Scatter
    for i, (f, fit) in enumerate(zip(features, fits), start=1):
        xv, yv = sub[quality].to_numpy(np.float64), sub[f].to_numpy(np.float64)
        ok = np.isfinite(xv) & np.isfinite(yv)
        ids = sub["sample_id"].to_numpy()[ok] if "sample_id" in sub.columns else None
        fig.add_trace(Marker(
            x=xv[ok], y=yv[ok], mode="markers", name=_label(f), customdata=ids,
            marker=dict(size=4, opacity=0.45, color=_FEATURE_COLORS.get(f)),
            hovertemplate="q = %{x:.3f}<br>" + _label(f) + " = %{y:.3f}"
            + ("<br>sample %{customdata}" if ids is not None else "") + "<extra></extra>",
        ), row=1, col=i)
        line = fit.line
        fig.add_trace(go.Scatter(
            x=line["x"].to_numpy(), y=line["y"].to_numpy(), mode="lines", name=f"least squares ({_label(f)})",
            line=dict(color="black", width=2),
        ), row=1, col=i)
        fig.update_xaxes(title_text=_label(quality), row=1, col=i)
        fig.update_yaxes(title_text=_label(f), row=1, col=i)
    return _layout(fig, f"Epoch {e}: features against {_label(quality)}", "quality-scatter", height, showlegend=False)


def _nan_separated(values: np.ndarray, group_starts: np.ndarray) -> np.ndarray:
    """Insert a NaN before every group start except the first (so one trace draws separate lines)."""
    out = np.full(len(values) + max(len(group_starts) - 1, 0), np.nan)
    shift = np.zeros(len(values), dtype=np.int64)
    shift[group_starts[1:]] = 1
    out[np.arange(len(values)) + np.cumsum(shift)] = values
    return out


def trajectory_figure(
    traj: Trajectories | tuple[pd.DataFrame, pd.DataFrame],
    n_colors: int = 8,
    colorscale: str = "Viridis",
    height: int = 480,
    x: str | None = None,
    steps: pd.DataFrame | None = None,
) -> go.Figure:
    """Trajectories of (‖z‖, P_y) over epochs, coloured by each sample's last-epoch norm (paper Fig. 5).

    ``traj``: :func:`~adaface_lab.analysis.trajectories` output. Lines are drawn as ``n_colors``
    traces (samples binned by last-epoch norm, NaN-separated); the last trace holds every point
    as a marker (``x`` = ``paths.norm``, ``y`` = ``paths.p_y`` in ``paths`` order, colour = the
    sample's last norm, with the colour bar); the final epoch's point is drawn larger.

    ``x`` = ``"epoch"``, ``"step"`` or ``"images"`` draws the same samples against time instead: ‖z‖ (top)
    and P_y (bottom) per sample, each point at the step its record was taken (or the images seen by then;
    :func:`~adaface_lab.analysis.time_axis`, which needs the run's ``steps``), the axis title saying how long
    an epoch was. There the last trace holds the ‖z‖ markers.
    """
    paths, summary = traj
    _need(paths, ["sample_id", "epoch", "norm", "p_y"], "paths")
    _need(summary, ["sample_id", "last_norm"], "summary")
    title = "Trajectories of (‖z‖, P<sub>y</sub>)" if x is None else "‖z‖ and P<sub>y</sub> over training"
    if len(paths) == 0:
        return _empty("no trajectories", title, height)
    paths = paths.sort_values(["sample_id", "epoch"], kind="stable").reset_index(drop=True)
    sid = paths["sample_id"].to_numpy()
    color_val = summary.set_index("sample_id")["last_norm"].reindex(sid).to_numpy(np.float64)  # (rows,)
    lo, hi = float(np.nanmin(color_val)), float(np.nanmax(color_val))
    n_colors = max(1, int(n_colors))
    level = np.clip(((color_val - lo) / (hi - lo if hi > lo else 1.0) * n_colors).astype(np.int64), 0, n_colors - 1)
    colors = pcolors.sample_colorscale(colorscale, list((np.arange(n_colors) + 0.5) / n_colors))
    panels = [("norm", "p_y")] if x is None else [("time", "norm"), ("time", "p_y")]
    fig = go.Figure() if x is None else make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06)
    columns = {"norm": paths["norm"].to_numpy(np.float64), "p_y": paths["p_y"].to_numpy(np.float64),
               "time": None if x is None else np.asarray(time_axis(paths, steps, x), dtype=np.float64)}
    for row, (cx, cy) in enumerate(panels, start=1):
        for c in range(n_colors):  # one trace per colour band and panel, not per sample
            m = level == c
            if not m.any():
                continue
            s = sid[m]
            starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
            fig.add_trace(go.Scatter(
                x=_nan_separated(columns[cx][m], starts), y=_nan_separated(columns[cy][m], starts), mode="lines",
                line=dict(color=colors[c], width=1.2), opacity=0.7, hoverinfo="skip", showlegend=False,
            ), **({} if x is None else dict(row=row, col=1)))
    is_last = np.r_[sid[1:] != sid[:-1], True]
    mx, my = (columns["norm"], columns["p_y"]) if x is None else (columns["time"], columns["norm"])
    fig.add_trace(go.Scatter(
        x=mx, y=my, mode="markers", name="epochs", showlegend=False,
        customdata=np.stack([sid, paths["epoch"].to_numpy(), columns["norm"], columns["p_y"]], axis=1),
        marker=dict(
            size=np.where(is_last, 9, 4), color=color_val, colorscale=colorscale, cmin=lo, cmax=hi,
            colorbar=dict(title=dict(text="last ‖z‖"), thickness=14), line=dict(width=0),
        ),
        hovertemplate="sample %{customdata[0]}, epoch %{customdata[1]}<br>‖z‖ = %{customdata[2]:.2f}"
        "<br>P<sub>y</sub> = %{customdata[3]:.3f}<extra></extra>",
    ), **({} if x is None else dict(row=1, col=1)))
    n = summary["sample_id"].nunique()
    if x is None:
        return _layout(fig, f"{title} for {n} samples (large dot: last epoch)", "trajectories", height,
                       xaxis=dict(title=dict(text="feature norm ‖z‖")), yaxis=dict(title=dict(text="P<sub>y</sub>")))
    fig.update_yaxes(title_text="‖z‖", row=1, col=1)
    fig.update_yaxes(title_text="P<sub>y</sub>", row=2, col=1)
    fig.update_xaxes(title_text=time_title(x, steps), row=2, col=1)
    return _layout(fig, f"{title} for {n} samples (large dot: last epoch)", "trajectories-time", height)


# --------------------------------------------------------------------------- over time


def norm_ema_figure(ema: pd.DataFrame, height: int = 420) -> go.Figure:
    """The head's EMA μ_z and σ_z against the global step (two stacked panels).

    ``ema``: :func:`~adaface_lab.analysis.ema_over_steps` output; trace ``x`` = ``global_step``,
    ``y`` = ``mu_z`` (top) and ``sigma_z`` (bottom). Buffers start at μ = 20, σ = 100 (DESIGN.md §2).
    """
    present = [c for c in ("mu_z", "sigma_z") if c in ema.columns]
    if len(ema) == 0 or not present:
        return _empty("no batch statistics recorded (the head keeps no EMA of the norm)", "μ<sub>z</sub>, σ<sub>z</sub> over steps", height)
    _need(ema, ["global_step"], "ema")
    names = {"mu_z": "μ<sub>z</sub> (EMA of batch mean ‖z‖)", "sigma_z": "σ<sub>z</sub> (EMA of batch std ‖z‖)"}
    fig = make_subplots(rows=len(present), cols=1, shared_xaxes=True, vertical_spacing=0.08)
    x = ema["global_step"].to_numpy()
    for i, c in enumerate(present, start=1):
        fig.add_trace(go.Scatter(x=x, y=ema[c].to_numpy(np.float64), mode="lines", name=names[c],
                                 line=dict(color="#1f77b4" if c == "mu_z" else "#d62728")), row=i, col=1)
        fig.update_yaxes(title_text=names[c].split(" (")[0], row=i, col=1)
    fig.update_xaxes(title_text="step", row=len(present), col=1)
    return _layout(fig, "AdaFace's batch statistics of the norm (EMA) over training", "norm-ema", height,
                   legend=dict(orientation="h", y=-0.2))


def z_hat_figure(z_hat_dist: pd.DataFrame, height: int = 400) -> go.Figure:
    """ẑ per epoch as boxes from precomputed quantiles: whiskers q05–q95, box q25–q75, median, mean.

    ``z_hat_dist``: :func:`~adaface_lab.analysis.z_hat_distribution` output (default quantiles).
    One Box trace with ``x`` = ``epoch``; its ``q1``/``median``/``q3`` are the frame's
    ``q25``/``q50``/``q75``. An empty frame (non-AdaFace head) gives a figure saying so.
    """
    title = "Distribution of ẑ over epochs"
    if len(z_hat_dist) == 0:
        return _empty("no ẑ recorded: the head is not AdaFace", title, height)
    _need(z_hat_dist, ["epoch", "mean", "q05", "q25", "q50", "q75", "q95"], "z_hat_dist")
    d = z_hat_dist.sort_values("epoch")
    fig = go.Figure(go.Box(
        x=d["epoch"].to_numpy(), q1=d["q25"].to_numpy(np.float64), median=d["q50"].to_numpy(np.float64),
        q3=d["q75"].to_numpy(np.float64), lowerfence=d["q05"].to_numpy(np.float64),
        upperfence=d["q95"].to_numpy(np.float64), mean=d["mean"].to_numpy(np.float64),
        name="ẑ", marker_color="#ff7f0e", boxpoints=False,
    ))
    for y, txt in ((-1.0, "ẑ = −1: ArcFace"), (0.0, "ẑ = 0: CosFace"), (1.0, "ẑ = +1: negative angular + 2m")):
        fig.add_hline(y=y, line=dict(color="grey", width=1, dash="dot"), annotation_text=txt,
                      annotation_position="top left", annotation_font_size=11)
    return _layout(fig, title + " (whiskers: 5–95 %)", "z-hat", height,
                   xaxis=dict(title=dict(text="epoch")), yaxis=dict(title=dict(text="ẑ"), range=[-1.15, 1.15]),
                   showlegend=False)


def margin_distribution_figure(margin_dist: pd.DataFrame, height: int = 400) -> go.Figure:
    """Median and 5–95 % band of each margin term per epoch.

    ``margin_dist``: :func:`~adaface_lab.analysis.margin_distribution` output. Per term three
    traces: q05 (invisible lower edge), q95 (filled band to it) and the median line
    (``x`` = ``epoch``, ``y`` = ``q50``).
    """
    title = "Margins applied per epoch (median, 5–95 %)"
    if len(margin_dist) == 0:
        return _empty("no margin terms recorded", title, height)
    _need(margin_dist, ["term", "epoch", "q05", "q50", "q95"], "margin_dist")
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    fig = go.Figure()
    for i, term in enumerate(pd.unique(margin_dist["term"])):  # one or two terms
        d = margin_dist[margin_dist["term"] == term].sort_values("epoch")
        x, col = d["epoch"].to_numpy(), palette[i % len(palette)]
        fig.add_trace(go.Scatter(x=x, y=d["q05"].to_numpy(np.float64), mode="lines", line=dict(width=0),
                                 showlegend=False, hoverinfo="skip", legendgroup=str(term)))
        fig.add_trace(go.Scatter(x=x, y=d["q95"].to_numpy(np.float64), mode="lines", line=dict(width=0),
                                 fill="tonexty", fillcolor=_rgba(col, 0.2), showlegend=False, hoverinfo="skip",
                                 legendgroup=str(term)))
        fig.add_trace(go.Scatter(x=x, y=d["q50"].to_numpy(np.float64), mode="lines+markers", name=_label(str(term)),
                                 line=dict(color=col), legendgroup=str(term)))
    return _layout(fig, title, "margins", height, xaxis=dict(title=dict(text="epoch")),
                   yaxis=dict(title=dict(text="margin (rad for g<sub>angle</sub>, cos units for g<sub>add</sub>)")))


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def training_curves_figure(
    epochs: pd.DataFrame | None = None, steps: pd.DataFrame | None = None, height: int = 380
) -> go.Figure:
    """Loss (left) and accuracy (right) over training.

    ``steps``: :func:`~adaface_lab.analysis.ema_over_steps` output — per panel a faint raw
    trace and the smoothed ``<name>_ema`` trace against ``global_step``. ``epochs``: the run's
    ``epochs.csv`` frame — one marker per epoch, placed at the epoch's last step when steps are
    given, else against the epoch number. Either may be omitted, not both.
    """
    has_steps = steps is not None and len(steps) > 0
    has_epochs = epochs is not None and len(epochs) > 0
    if not has_steps and not has_epochs:
        return _empty("no training curves recorded yet", "Loss and accuracy", height)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.1)
    epoch_x = None
    if has_steps:
        assert steps is not None
        _need(steps, ["global_step"], "steps (use analysis.ema_over_steps)")
        x = steps["global_step"].to_numpy()
        for col, c in ((1, "loss"), (2, "acc")):
            if c in steps.columns:
                fig.add_trace(go.Scatter(x=x, y=steps[c].to_numpy(np.float64), mode="lines", name=f"{c} per step",
                                         line=dict(color="#9ecae1", width=1)), row=1, col=col)
            if f"{c}_ema" in steps.columns:
                fig.add_trace(go.Scatter(x=x, y=steps[f"{c}_ema"].to_numpy(np.float64), mode="lines",
                                         name=f"{c} (smoothed)", line=dict(color="#1f77b4", width=2)), row=1, col=col)
        if "epoch" in steps.columns:
            epoch_x = steps.groupby("epoch")["global_step"].max()
    if has_epochs:
        assert epochs is not None
        _need(epochs, ["epoch"], "epochs")
        ep = epochs["epoch"].to_numpy()
        if epoch_x is not None and np.isin(ep, epoch_x.index.to_numpy()).all():
            xe = epoch_x.reindex(ep).to_numpy()
        else:
            xe = ep
            if has_steps:
                epoch_x = None  # epochs cannot be placed on the step axis: keep them on their own
        for col, c in ((1, "loss"), (2, "acc")):
            if c in epochs.columns:
                fig.add_trace(go.Scatter(x=xe, y=epochs[c].to_numpy(np.float64), mode="markers+lines" if not has_steps else "markers",
                                         name=f"{c} per epoch", marker=dict(color="#d62728", size=8)), row=1, col=col)
    xtitle = "step" if has_steps else "epoch"
    fig.update_xaxes(title_text=xtitle)
    return _layout(fig, "Loss and accuracy", "training-curves", height, legend=dict(orientation="h", y=-0.25))


# --------------------------------------------------------------------------- verification


def roc_figure(results: Mapping[str, Any] | Mapping[str, Mapping[str, Any]], log_x: bool = True, height: int = 420) -> go.Figure:
    """ROC curve(s) of :func:`~adaface_lab.evaluate.verification_metrics` results.

    ``results``: one result dict, or ``{name: result}`` for several models. Per model a line
    trace (``x`` = ``fpr``, ``y`` = ``tpr``; AUC in its name) and a marker trace at the finite
    TAR@FAR points. With ``log_x`` the FAR axis is logarithmic (the (0, 0) point drops out of view).
    """
    named = {"": results} if "fpr" in results else dict(results)
    fig = go.Figure()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    for i, (name, r) in enumerate(named.items()):  # one per model
        col = palette[i % len(palette)]
        fpr, tpr = np.asarray(r["fpr"], dtype=np.float64), np.asarray(r["tpr"], dtype=np.float64)
        label = (f"{name} " if name else "") + f"(AUC {r.get('auc', float('nan')):.4f})"
        fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=label, line=dict(color=col, shape="linear"),
                                 hovertemplate="FAR %{x:.2e}<br>TAR %{y:.4f}<extra></extra>"))
        tars = {f: t for f, t in r.get("tar_at_far", {}).items() if np.isfinite(t)}
        if tars:
            fig.add_trace(go.Scatter(
                x=np.fromiter(tars.keys(), float), y=np.fromiter(tars.values(), float), mode="markers+text",
                text=[f"{t:.3f}" for t in tars.values()], textposition="top left", marker=dict(color=col, size=9),
                name=(f"{name} " if name else "") + "TAR@FAR", showlegend=False,
            ))
    if not log_x:
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="grey", dash="dot"),
                                 name="chance", hoverinfo="skip"))
    return _layout(
        fig, "ROC (1:1 verification)", "roc", height,
        xaxis=dict(title=dict(text="false accept rate (FAR)"), type="log" if log_x else "linear"),
        yaxis=dict(title=dict(text="true accept rate (TAR)"), range=[0, 1.02]),
        legend=dict(x=0.98, xanchor="right", y=0.02, yanchor="bottom"),
    )


def verification_bins_figure(tables: pd.DataFrame | Mapping[str, pd.DataFrame], height: int = 380) -> go.Figure:
    """Verification accuracy per quality bin (± std over folds), one bar group per model.

    ``tables``: :func:`~adaface_lab.evaluate.verification_by_bin` output, or ``{model: table}``.
    Per model a Bar trace with ``x`` = ``bin``, ``y`` = ``accuracy``.
    """
    named = {"": tables} if isinstance(tables, pd.DataFrame) else dict(tables)
    fig = go.Figure()
    for name, t in named.items():  # one per model
        _need(t, ["bin", "accuracy"], "verification table")
        err = t["accuracy_std"].to_numpy(np.float64) if "accuracy_std" in t.columns else None
        fig.add_trace(go.Bar(
            x=t["bin"].astype(str).to_numpy(), y=t["accuracy"].to_numpy(np.float64), name=name or "accuracy",
            error_y=dict(type="data", array=err) if err is not None else None,
            customdata=t["n_pairs"].to_numpy() if "n_pairs" in t.columns else None,
            hovertemplate="%{x}: %{y:.4f}" + (" (%{customdata} pairs)" if "n_pairs" in t.columns else "") + "<extra></extra>",
        ))
    return _layout(fig, "Verification accuracy by pair quality", "verification-bins", height, barmode="group",
                   xaxis=dict(title=dict(text="pair quality")), yaxis=dict(title=dict(text="10-fold accuracy")),
                   showlegend=len(named) > 1)
