"""Plotly figures of the toy trainer (:mod:`adaface_lab.toy`): features moving on the circle or the
sphere, the norm of clean and degraded samples over the steps, and the distribution of |g|.

Every builder takes one :class:`~adaface_lab.toy.ToyRun` or several (a list, or the dict of
:func:`~adaface_lab.toy.compare_toy`), drawn side by side or overlaid::

    runs = compare_toy(("arcface", "adaface"), steps=300)
    toy_feature_figure(runs)    # animated: play, pause and a step slider, all in the browser
    toy_norm_figure(runs)
    toy_gst_figure(runs)

The animation is Plotly frames (``fig.frames``): the browser plays and scrubs them without asking
the server again. A frame carries only the moving coordinates (features and class-weight arrows);
colour (class), size (quality) and symbol (× for samples beyond recognition) are set once. Frames
are capped at ``max_frames`` evenly spaced recorded steps and points at ``max_points`` samples, so
the figure stays small: with the defaults (300 steps, 300 samples, 60 frames) a 2-D figure of one
run is about 0.3 MB of JSON, of two runs about 0.6 MB; 3-D, about 0.45 MB per run (plotly ≥ 6 writes
arrays as base64; older plotly writes lists, a few times larger).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.colors as pcolors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..toy import GROUPS, ToyRun

__all__ = ["GROUP_COLORS", "GROUP_LABELS", "toy_feature_figure", "toy_gst_figure", "toy_norm_figure"]

GROUP_LABELS: dict[str, str] = {
    "clean": "clean (q = 1)",
    "degraded": "degraded (0 < q < 1)",
    "unrecognisable": "beyond recognition (q = 0)",
}
GROUP_COLORS: dict[str, str] = {"clean": "#1f77b4", "degraded": "#ff7f0e", "unrecognisable": "#7f7f7f"}
_CLASS_COLORS = pcolors.qualitative.D3
_ARROW = 1.3
"""Class-weight arrows are drawn this many RMS norms long."""
_DASHES = ("solid", "dash", "dot", "dashdot")
_FONT = dict(size=13)

RunsLike = ToyRun | Sequence[ToyRun] | Mapping[str, ToyRun]


def _as_runs(runs: RunsLike) -> list[ToyRun]:
    if isinstance(runs, ToyRun):
        return [runs]
    out = list(runs.values()) if isinstance(runs, Mapping) else list(runs)
    if not out or not all(isinstance(r, ToyRun) for r in out):
        raise ValueError("pass a ToyRun, a non-empty list of them or compare_toy's dict")
    if len({(r.dim, len(r.labels)) for r in out}) > 1:
        raise ValueError("runs drawn together must share dim and samples (use compare_toy)")
    return out


def _class_color(c: int) -> str:
    return _CLASS_COLORS[c % len(_CLASS_COLORS)]


def _evenly(n: int, most: int) -> np.ndarray:
    """At most ``most`` indices into range(n), evenly spaced, first and last included."""
    if most < 2:
        raise ValueError(f"need room for at least 2 (first and last), got {most}")
    return np.unique(np.round(np.linspace(0, n - 1, min(n, most))).astype(int))


def _layout(fig: go.Figure, title: str, height: int, **kwargs: Any) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.02, font=dict(size=15)), template="plotly_white",
                      font=_FONT, height=height, margin=dict(l=50, r=20, t=70, b=40), **kwargs)
    return fig


# ----------------------------------------------------------------------------- the animation


def _moving(run: ToyRun, t: int, points: np.ndarray, radius: float) -> list[dict[str, Any]]:
    """The coordinates that move at recorded step index ``t``: per class its features, then its arrow."""
    moving: list[dict[str, Any]] = []
    features, labels = run.features[t][points], run.labels[points]
    axes, kind = "xyz"[: run.dim], "scatter3d" if run.dim == 3 else "scatter"
    for c in range(run.weights.shape[1]):
        mine = features[labels == c]
        moving.append({"type": kind, **{a: mine[:, i] for i, a in enumerate(axes)}})
    for c in range(run.weights.shape[1]):
        tip = run.weights[t, c] * radius
        moving.append({"type": kind, **{a: np.array([0.0, tip[i]], np.float32) for i, a in enumerate(axes)}})
    return moving


def _static_traces(run: ToyRun, points: np.ndarray, first: list[dict[str, Any]], panel: int,
                   rms: float) -> list[dict[str, Any]]:
    """Every trace of one panel at its first frame: features per class, arrows, the reference shape."""
    three_d = run.dim == 3
    where = {"scene": f"scene{panel if panel > 1 else ''}"} if three_d else {
        "xaxis": f"x{panel if panel > 1 else ''}", "yaxis": f"y{panel if panel > 1 else ''}"}
    tip = (dict(size=[0, 5], symbol=["circle", "diamond"]) if three_d
           else dict(size=[0, 12], symbol=["circle", "arrow"], angleref="previous"))
    labels, quality = run.labels[points], run.quality[points]
    n_classes = run.weights.shape[1]
    traces = []
    for c in range(n_classes):
        q = quality[labels == c]
        traces.append(dict(
            mode="markers", name=f"class {c}", legendgroup=f"class {c}", showlegend=panel == 1,
            marker=dict(size=(3 + 5 * q) if three_d else (5 + 7 * q), color=_class_color(c),
                        symbol=np.where(q <= 0, "x", "circle"), opacity=0.8, line=dict(width=0)),
            customdata=q, hovertemplate=f"class {c}<br>q = %{{customdata:.2f}}<extra></extra>",
            **{**first[c], **where}))
    for c in range(n_classes):
        traces.append(dict(
            mode="lines+markers", name=f"W{c}", legendgroup=f"class {c}", showlegend=False,
            line=dict(color=_class_color(c), width=6 if three_d else 3), marker=dict(color=_class_color(c), **tip),
            hovertemplate=f"W<sub>{c}</sub>: unit class weight, drawn {_ARROW} × RMS ‖z‖ long<extra></extra>",
            **{**first[n_classes + c], **where}))
    traces.append(_reference_shape(run.dim, rms, where))
    return traces


def _reference_shape(dim: int, rms: float, where: dict[str, str]) -> dict[str, Any]:
    """A dotted circle (2-D) or a wire sphere (3-D) of radius RMS ‖z‖, fixed by the BatchNorm."""
    angle = np.linspace(0, 2 * np.pi, 121)
    common = dict(mode="lines", name="RMS ‖z‖", hoverinfo="skip", showlegend=False,
                  line=dict(color="#999", width=1, dash="dot" if dim == 2 else "solid"))
    if dim == 2:
        return dict(type="scatter", x=rms * np.cos(angle), y=rms * np.sin(angle), **common, **where)
    rings = []  # three great circles, NaN-separated
    for axis in range(3):
        ring = np.zeros((3, angle.size + 1))
        ring[[(axis + 1) % 3, (axis + 2) % 3], :-1] = rms * np.cos(angle), rms * np.sin(angle)
        ring[:, -1] = np.nan
        rings.append(ring)
    x, y, z = np.concatenate(rings, axis=1)
    return dict(type="scatter3d", x=x, y=y, z=z, opacity=0.5, **common, **where)


def _controls(frame_names: list[str], redraw: bool, duration_ms: int, active: int) -> dict[str, Any]:
    """Play and pause buttons and a step slider; the browser runs them (no server round trip)."""
    play = dict(label="▶ Play", method="animate", args=[None, dict(
        frame=dict(duration=duration_ms, redraw=redraw), transition=dict(duration=0),
        fromcurrent=True, mode="immediate")])
    pause = dict(label="❚❚ Pause", method="animate", args=[[None], dict(
        frame=dict(duration=0, redraw=False), transition=dict(duration=0), mode="immediate")])
    steps = [dict(label=name, method="animate", args=[[name], dict(
        frame=dict(duration=0, redraw=redraw), transition=dict(duration=0), mode="immediate")])
        for name in frame_names]
    return dict(
        updatemenus=[dict(type="buttons", direction="left", buttons=[play, pause], showactive=False,
                          x=0.0, y=-0.02, xanchor="left", yanchor="top", pad=dict(r=8, t=28))],
        sliders=[dict(active=active, steps=steps, x=0.2, len=0.8, y=-0.02, yanchor="top",
                      currentvalue=dict(prefix="step ", font=dict(size=13, color="#333")), pad=dict(t=8),
                      font=dict(color="rgba(0,0,0,0)"),  # no label under every tick: the value says it
                      transition=dict(duration=0))],
    )


def run_title(run: ToyRun) -> str:
    """The run's display label with its margin parameters, e.g. ``AdaFace (s = 4, m = 0.4, …)``."""
    params = ", ".join(f"{k} = {v:g}" for k, v in run.params.items() if isinstance(v, (int, float)))
    return f"{run.label} ({params})" if params else run.label


def toy_feature_figure(runs: RunsLike, *, max_frames: int = 60, max_points: int = 600,
                       frame_ms: int = 80, start: int = 0, height: int = 520) -> go.Figure:
    """Features before normalisation moving over the steps, one panel per run (animated).

    2-D runs: a scatter on the plane, the dotted circle at the RMS norm (the BatchNorm fixes it);
    3-D runs: a scatter3d with a wire sphere. Colour = class, marker size = quality, × = beyond
    recognition (q = 0); lines from the origin = the unit class weights, drawn 1.3 × the RMS norm
    long. Play/pause and the slider run ``max_frames`` evenly spaced recorded steps in the browser,
    ``frame_ms`` per frame; at most ``max_points`` samples are drawn (evenly spaced, same in every
    panel). Axes are fixed over the frames so that the radius reads as the norm. ``start``: the
    frame shown before Play (0 the first, −1 the last: what a static export shows).
    """
    runs = _as_runs(runs)
    first_run, dim = runs[0], runs[0].dim
    points = _evenly(len(first_run.labels), max_points)
    frames_at = [_evenly(len(r.step), max_frames) for r in runs]
    n_frames = min(len(f) for f in frames_at)
    frames_at = [f[np.round(np.linspace(0, len(f) - 1, n_frames)).astype(int)] for f in frames_at]
    rms = [float(np.sqrt(np.mean(r.norm[-1] ** 2))) for r in runs]
    reach = max(max(float(r.norm[f][:, points].max()), _ARROW * q) for r, f, q in zip(runs, frames_at, rms))
    lim = 1.05 * reach

    titles = [run_title(r) for r in runs]
    specs = [[{"type": "scene"} if dim == 3 else {"type": "xy"} for _ in runs]]
    fig = make_subplots(rows=1, cols=len(runs), specs=specs, subplot_titles=titles, horizontal_spacing=0.06)
    if not -n_frames <= start < n_frames:
        raise ValueError(f"start must index the {n_frames} frames, got {start}")
    per_panel = 2 * first_run.weights.shape[1] + 1
    for p, (run, f, q) in enumerate(zip(runs, frames_at, rms), start=1):
        fig.add_traces(_static_traces(run, points, _moving(run, f[start], points, _ARROW * q), p, q))
    frames = []
    for k in range(n_frames):
        data, indices = [], []
        for p, (run, f, q) in enumerate(zip(runs, frames_at, rms)):
            moving = _moving(run, f[k], points, _ARROW * q)
            data += moving
            indices += list(range(p * per_panel, p * per_panel + len(moving)))
        frames.append(dict(name=str(int(runs[0].step[frames_at[0][k]])), data=data, traces=indices))
    _fix_axes(fig, len(runs), dim, lim)
    fig.update_layout(**_controls([fr["name"] for fr in frames], redraw=dim == 3, duration_ms=frame_ms,
                                  active=start % n_frames))
    what = "circle" if dim == 2 else "sphere"
    _layout(fig, f"Features before normalisation on the {what} (radius = ‖z‖; size = quality, × = beyond "
            "recognition)", height, legend=dict(x=1.01, y=1, xanchor="left"), uirevision="toy-features")
    fig.update_layout(margin=dict(b=100))  # room for Play, Pause and the slider under the axes' labels
    # frames skip plotly's per-property validation (0.3 s of 60 frames, 4× the rest of the build);
    # tests/test_plots_toy.py validates the whole figure
    fig = go.Figure(data=fig.data, layout=fig.layout, _validate=False)
    fig.frames = [go.Frame(frame, _validate=False) for frame in frames]
    return fig


def _fix_axes(fig: go.Figure, panels: int, dim: int, lim: float) -> None:
    """Same fixed range on every axis of every panel; equal aspect."""
    span = [-lim, lim]
    for p in range(1, panels + 1):
        suffix = "" if p == 1 else str(p)
        if dim == 3:
            axis = dict(range=span, title="", showbackground=False, zeroline=True)
            fig.layout[f"scene{suffix}"].update(xaxis=axis, yaxis=axis, zaxis=axis, aspectmode="cube")
        else:
            fig.layout[f"xaxis{suffix}"].update(range=span, zeroline=True, showgrid=False, constrain="domain")
            fig.layout[f"yaxis{suffix}"].update(range=span, zeroline=True, showgrid=False,
                                                scaleanchor=f"x{suffix}", scaleratio=1)


# ----------------------------------------------------------------------------- norm and |g|


def toy_norm_figure(runs: RunsLike, height: int = 380) -> go.Figure:
    """Mean ‖z‖ of each quality group over the steps; band = the middle half (25–75 %) of the group.

    Colour = quality group, dash = run (solid for the first). From :meth:`ToyRun.norm_by_group`.
    """
    runs = _as_runs(runs)
    fig = go.Figure()
    for i, run in enumerate(runs):
        table = run.norm_by_group()
        for group in GROUPS:
            rows = table[table["group"] == group]
            if rows.empty:
                continue
            color, step = GROUP_COLORS[group], rows["step"].to_numpy()
            name = GROUP_LABELS[group] + (f" — {run.label}" if len(runs) > 1 else "")
            fig.add_trace(go.Scatter(x=step, y=rows["q75"].to_numpy(), mode="lines", line=dict(width=0),
                                     hoverinfo="skip", showlegend=False, legendgroup=name))
            fig.add_trace(go.Scatter(x=step, y=rows["q25"].to_numpy(), mode="lines", line=dict(width=0),
                                     fill="tonexty", fillcolor=_transparent(color, 0.12), hoverinfo="skip",
                                     showlegend=False, legendgroup=name))
            fig.add_trace(go.Scatter(
                x=step, y=rows["mean"].to_numpy(), mode="lines", name=name, legendgroup=name,
                line=dict(color=color, width=2, dash=_DASHES[i % len(_DASHES)]),
                hovertemplate=f"step %{{x}}<br>mean ‖z‖ = %{{y:.2f}} (n = {int(rows['n'].iloc[0])})"
                              f"<extra>{name}</extra>"))
    return _layout(fig, "Mean feature norm by quality (band: middle half of the group)", height,
                   xaxis=dict(title=dict(text="step")), yaxis=dict(title=dict(text="‖z‖"), rangemode="tozero"),
                   legend=dict(orientation="h", y=-0.22), uirevision="toy-norm")


def toy_gst_figure(runs: RunsLike, step: int = -1, height: int = 380) -> go.Figure:
    """|g| = |∂CE/∂cos θ_y| per quality group at one recorded step (default the last): a box per
    group and run, grouped side by side. ``step`` indexes the recorded steps (negative from the end).
    """
    runs = _as_runs(runs)
    n = len(runs[0].step)
    if not -n <= step < n:
        raise ValueError(f"step must index the {n} recorded steps (−{n} … {n - 1}), got {step}")
    fig = go.Figure()
    for i, run in enumerate(runs):
        groups = np.array([GROUP_LABELS[g] for g in run.group])
        fig.add_trace(go.Box(
            x=groups, y=np.abs(run.g[step]), name=run_title(run) if len(runs) > 1 else "|g|",
            marker=dict(size=3), boxpoints="outliers", offsetgroup=str(i),
            line=dict(color=run.color), showlegend=len(runs) > 1))
    shown = int(runs[0].step[step])
    return _layout(fig, f"|g| = |∂L/∂cos θ<sub>y</sub>| per sample at step {shown}", height, boxmode="group",
                   yaxis=dict(title=dict(text="|g|"), rangemode="tozero"),
                   xaxis=dict(categoryorder="array", categoryarray=[GROUP_LABELS[g] for g in GROUPS]),
                   legend=dict(orientation="h", y=-0.22), uirevision="toy-gst")


def _transparent(color: str, alpha: float) -> str:
    r, g, b = pcolors.hex_to_rgb(color)
    return f"rgba({r},{g},{b},{alpha})"
