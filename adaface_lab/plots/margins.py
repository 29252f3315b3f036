"""Plotly figures of the margin maths: feature planes (paper Fig. 3), GST curves, target logits and
AdaFace's adaptive terms. Built once here, used by the Streamlit app and by the notebooks.

Every builder takes results of :mod:`adaface_lab.gst` / :mod:`adaface_lab.margins` (a
:class:`~adaface_lab.gst.FeaturePlane`, margins with their per-sample context) and returns a
``go.Figure``; none of them holds maths of its own. Angles are shown in degrees, the library takes
radians. Figures are kept cheap (one heatmap of NumPy arrays, a handful of line traces, no
per-point Python loops) so that the app can rebuild them on every slider move; each carries a
``uirevision`` so that a user's zoom survives a rebuild.

A method is passed to the curve builders as a :class:`MethodSpec` ``(label, margin, context)``;
``context`` holds what :func:`adaface_lab.gst.resolve_context` needs (``norm``, ``z_hat``, ``mean``,
``std``, ``t``). Build one with :func:`method_spec`. Each method's display label, colour and the
part of its context a title shows come from its margin class (:mod:`adaface_lab.margins`).
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence, Union

import numpy as np
import plotly.graph_objects as go

from .._atomic import write_bytes_atomic
from .images import field_image_uri
from ..gst import CONVENTIONS, FeaturePlane, arc_profile, resolve_context, zero_gradient_bands
from ..margins import (
    CONTEXT_INPUTS,
    ArcFace,
    CosFace,
    Margin,
    adaface_terms,
    adaface_z_hat,
    build_margin,
)

_COLORSCALE = "Viridis"
"""The colour scale of |g| in every feature plane: plotly's (Python) stops, sent to the browser as a list
(:func:`_colour_stops`), because plotly.js has its own Viridis with other stops than the pictures of
:func:`~adaface_lab.plots.images.field_image_uri`."""


def _colour_stops() -> list[list[Any]]:
    """:data:`_COLORSCALE` as the explicit ``[[position, colour], …]`` the browser colours with."""
    import plotly.colors as pc

    return [[float(at), colour] for at, colour in pc.get_colorscale(_COLORSCALE)]

G_CAP_IN_S = 2.0
"""Default colour cap of |g| in the feature planes, in units of s (|g| ≤ s for CosFace)."""

_FONT = dict(size=13)


class MethodSpec(NamedTuple):
    """A method to draw: display ``label``, the ``margin`` and its per-sample ``context``."""

    label: str
    margin: Margin
    context: Mapping[str, Any]


MethodLike = Union[MethodSpec, tuple, Margin, str]


def method_spec(margin: Margin | str, label: str | None = None, **context: Any) -> MethodSpec:
    """A :class:`MethodSpec`; ``margin`` may be a registered name (default parameters).

    ``context`` keywords: ``norm``, ``z_hat``, ``mean``, ``std`` (see
    :func:`adaface_lab.gst.resolve_context`) and ``t`` (CurricularFace's curriculum parameter).
    """
    if isinstance(margin, str):
        margin = build_margin(margin)
    unknown = set(context) - set(CONTEXT_INPUTS)
    if unknown:
        raise ValueError(f"unknown context keyword(s) {sorted(unknown)}; known: {CONTEXT_INPUTS}")
    return MethodSpec(label or margin.label, margin, dict(context))


def _as_spec(item: MethodLike) -> MethodSpec:
    if isinstance(item, MethodSpec):
        return item
    if isinstance(item, (Margin, str)):
        return method_spec(item)
    if isinstance(item, tuple) and len(item) == 3:
        label, margin, context = item
        return method_spec(margin, label, **dict(context))
    if isinstance(item, tuple) and len(item) == 2:
        margin, context = item
        return method_spec(margin, None, **dict(context))
    raise TypeError(
        "a method is a Margin, a registered name, (margin, context) or (label, margin, context); "
        f"got {type(item).__name__}"
    )


def _profile(spec: MethodSpec, theta_y: np.ndarray, phi: float, convention: str) -> dict[str, np.ndarray]:
    """:func:`adaface_lab.gst.arc_profile` of one method along the arc (θ_y in radians)."""
    context = resolve_context(spec.margin, **spec.context)
    return arc_profile(spec.margin, theta_y, phi=phi, convention=convention, **context)


def _color(spec: MethodSpec) -> str | None:
    return spec.margin.color


def _dash(index: int, specs: Sequence[MethodSpec], spec: MethodSpec) -> str:
    """Solid for a method's first curve, dashed/dotted for repeats (e.g. AdaFace low/high norm)."""
    earlier = sum(1 for s in specs[:index] if s.margin.name == spec.margin.name)
    return ("solid", "dash", "dot", "dashdot")[earlier % 4]


# ----------------------------------------------------------------------------- figure assembly
#
# Figures are assembled as plain dicts and wrapped without plotly's per-property validation, which
# costs 20–40 ms per small figure (most of a slider move's budget). tests/test_plots_margins.py
# checks that every builder's output passes full validation, so nothing invalid slips through.


@lru_cache(maxsize=None)
def _template(name: str) -> dict[str, Any]:
    import plotly.io as pio

    return pio.templates[name].to_plotly_json()


def _figure(data: list[dict[str, Any]], layout: dict[str, Any], template: str = "plotly_white") -> go.Figure:
    layout = {"template": copy.deepcopy(_template(template)), "font": dict(_FONT), **layout}
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def _vline(x: float, text: str, *, color: str = "#555", dash: str = "dot", width: float = 1.0,
           position: str = "top", xref: str = "x",
           xanchor: str = "left") -> tuple[dict[str, Any], dict[str, Any]]:
    """A vertical line across the plot and its label (shape, annotation).

    ``xanchor="right"`` puts the label on the line's left, for lines near the right edge.
    """
    shape = dict(type="line", x0=x, x1=x, y0=0, y1=1, xref=xref, yref="paper",
                 line=dict(color=color, dash=dash, width=width))
    # "top": the label above the plot area; "bottom": inside it, just above the x axis
    ann = dict(x=x, y=1.0 if position == "top" else 0.0, xref=xref, yref="paper", text=text,
               showarrow=False, xanchor=xanchor, yanchor="bottom", font=dict(size=12, color=color))
    return shape, ann


# ----------------------------------------------------------------------------- feature plane


def _polylines(lines: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate (K, 2) polylines into one x/y pair separated by NaN (one trace, many lines)."""
    if not lines:
        return np.array([]), np.array([])
    parts = []
    for line in lines:
        parts.append(np.asarray(line, dtype=float))
        parts.append(np.full((1, 2), np.nan))
    xy = np.concatenate(parts[:-1])
    return xy[:, 0], xy[:, 1]


_CIRCLE = np.exp(1j * np.linspace(0.0, 2 * math.pi, 181))


def _plane_cap(planes: Sequence[FeaturePlane], g_range: tuple[float, float] | None,
               *fields: str) -> tuple[float, float, str]:
    """(zmin, zmax, colour-bar title) of the colour scale of ``fields`` (default: |g|)."""
    name = ", ".join(_FIELDS[f][0] for f in fields or ("g",))
    if g_range is not None:
        lo, hi = float(g_range[0]), float(g_range[1])
        if not hi > lo:
            raise ValueError(f"g_range must be (low, high) with high > low, got {g_range}")
        return lo, hi, f"{name}<br><sup>clipped to<br>[{lo:g}, {hi:g}]</sup>"
    s = max(float(p.params.get("s", 64.0)) for p in planes)
    hi = G_CAP_IN_S * s
    return 0.0, hi, f"{name}<br><sup>clipped at<br>{G_CAP_IN_S:g}s = {hi:g}</sup>"


def _plane_title(plane: FeaturePlane) -> str:
    """"Label (s=…, m=…)" with the parameters the margin shows, plus what its per-sample context
    sets (e.g. AdaFace's ẑ, MagFace's m(‖z‖))."""
    margin = plane.margin
    shown = margin.param_ranges()
    params = ", ".join(f"{k}={v:g}" for k, v in margin.params().items()
                       if k in shown and shown[k].shown and isinstance(v, (int, float)))
    note = margin.context_label(plane.context)
    return f"{margin.label} ({params})" + (f", {note}" if note else "")


def _with_choices(text: str, margin: Margin, sep: str = " · ") -> str:
    """``text`` plus what the margin's named values draw (e.g. MagFace's boundary), unless it says
    so already: a figure always tells which variant it shows."""
    note = margin.choice_note()
    return text if not note or note in text else f"{text}{sep}{note}"


_FIELDS = {"g": ("|g|", "target"), "g_j": ("|g<sub>j</sub>|", "negative")}
"""What a feature plane can be coloured by: the target's GST or the negative class's."""


def _check_field(field: str) -> None:
    if field not in _FIELDS:
        raise ValueError(f"field must be one of {tuple(_FIELDS)}, got {field!r}")


_ZERO_G_COLOR = "rgba(255,0,200,0.5)"
_ZERO_G_NAME = "|g| = 0 although P<sub>y</sub> < ½ (angle clip)"


def _mask_outline(plane: FeaturePlane) -> tuple[np.ndarray, np.ndarray]:
    """The outline of ``plane.zero_g`` in plane coordinates: closed polylines around each marked region
    (marching squares at ½ on the mask, padded so every region closes), separated by NaN."""
    from skimage.measure import find_contours

    rows = find_contours(np.pad(plane.zero_g.astype(np.float32), 1), 0.5)  # (K, 2) as (row, col), padded
    x, y = np.asarray(plane.x, dtype=float), np.asarray(plane.y, dtype=float)
    index = np.arange(len(x), dtype=float)
    lines = [np.column_stack([np.interp(r[:, 1] - 1, index, x), np.interp(r[:, 0] - 1, index, y)])
             for r in rows]
    return _polylines(lines)


def _tip_sizes(x: np.ndarray, size: float = 16.0) -> np.ndarray:
    """Marker sizes for arrow polylines ``origin, tip, NaN, origin, tip, …``: ``size`` at each tip
    (a point followed by a gap or the end), 0 elsewhere."""
    x = np.asarray(x, dtype=float)
    ends = np.append(np.isnan(x[1:]), True) & ~np.isnan(x)
    return np.where(ends, size, 0.0)


def _plane_lines(plane: FeaturePlane, zero_g: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The line parts of a plane's picture as (x, y) in plane coordinates, NaN between polylines:
    the unit ``circle``, ``b0``, ``b1``, the outline of the misclassified points an angle clip gives
    no gradient (``zero_g``; empty when there are none, or with ``zero_g=False``: a |g_j| plane) and
    W_y and W_j as ``arrows`` from the origin."""
    (yx, yy), (jx, jy) = (float(v) for v in plane.w_y[:2]), (float(v) for v in plane.w_j[:2])
    empty = (np.array([]), np.array([]))
    return {
        "circle": (_CIRCLE.real, _CIRCLE.imag),
        "b0": _polylines(plane.b0),
        "b1": _polylines(plane.b1),
        "zero_g": _mask_outline(plane) if zero_g and plane.zero_g.any() else empty,
        "arrows": (np.array([0.0, yx, np.nan, 0.0, jx]), np.array([0.0, yy, np.nan, 0.0, jy])),
    }


def _line_traces(lines: Mapping[str, tuple[np.ndarray, np.ndarray]], showlegend: bool) -> list[dict[str, Any]]:
    """The line parts of :func:`_plane_lines` (one plane's, or several planes' joined) as styled
    traces: the circle, B0 dashed, B1 solid, the magenta fill (only when it has points: Plotly
    fills each NaN-separated outline on its own) and W_y, W_j as arrows.

    (The fill is an outline computed once here: a contour trace of the mask would be traced again
    by the browser on every redraw. The arrows are one line trace with an arrowhead marker at each
    tip, not layout annotations: Plotly redraws those on every update at several times the cost.)
    """
    line = dict(type="scatter", mode="lines", hoverinfo="skip")
    (cx, cy), (b0x, b0y), (b1x, b1y) = lines["circle"], lines["b0"], lines["b1"]
    (ox, oy), (ax, ay) = lines["zero_g"], lines["arrows"]
    traces = [
        dict(line, x=cx, y=cy, line=dict(color="#999", width=1), showlegend=False),
        dict(line, x=b0x, y=b0y, name="B0: c<sub>y</sub> = c<sub>j</sub>", legendgroup="b0",
             showlegend=showlegend, line=dict(color="white", width=2, dash="dash")),
        dict(line, x=b1x, y=b1y, name="B1: f(c<sub>y</sub>) = logit<sub>j</sub>", legendgroup="b1",
             showlegend=showlegend, line=dict(color="#ff2d55", width=2.5)),
    ]
    if len(ox):
        traces.append(dict(line, x=ox, y=oy, fill="toself", fillcolor=_ZERO_G_COLOR,
                           line=dict(color="#ff00c8", width=1.5), name=_ZERO_G_NAME,
                           legendgroup="zero_g", showlegend=showlegend))
    traces.append(dict(line, mode="lines+markers", x=ax, y=ay, showlegend=False,
                       name="W<sub>y</sub>, W<sub>j</sub>", line=dict(color="black", width=2.5),
                       marker=dict(symbol="arrow", angleref="previous", size=_tip_sizes(ax),
                                   color="black", line=dict(width=0))))
    return traces


def _plane_traces(plane: FeaturePlane, zmin: float, zmax: float, colorbar_title: str,
                  showlegend: bool, field: str = "g") -> list[dict[str, Any]]:
    """Heatmap of |g| or |g_j| (NaN outside the disc is transparent), the unit circle, B0 and B1,
    the misclassified points an angle clip gives no gradient (on the |g| plane) and the arrows."""
    name = _FIELDS[field][0]
    heat: dict[str, Any] = dict(
        type="heatmap", x=plane.x, y=plane.y, z=np.abs(getattr(plane, field)).astype(np.float32),
        zsmooth=False, hoverongaps=False, name=name, zmin=zmin, zmax=zmax, colorscale=_colour_stops(),
        colorbar=dict(title=dict(text=colorbar_title), thickness=14),
        hovertemplate=f"x=%{{x:.2f}}, y=%{{y:.2f}}<br>{name}=%{{z:.1f}}<extra></extra>",
    )
    return [heat] + _line_traces(_plane_lines(plane, zero_g=field == "g"), showlegend)


def _arrow_labels(plane: FeaturePlane) -> list[dict[str, Any]]:
    """W_y and W_j written at the tips of their arrows (:func:`_line_traces`)."""
    return [dict(x=1.12 * float(vec[0]), y=1.12 * float(vec[1]), xref="x", yref="y",
                 showarrow=False, text=text, font=dict(size=15, color="black"))
            for vec, text in ((plane.w_y, "W<sub>y</sub>"), (plane.w_j, "W<sub>j</sub>"))]


def _disc_axis(lo: float = -1.2, hi: float = 1.2, **extra: Any) -> dict[str, Any]:
    """An axis of a feature plane: no grid, ticks or labels, from ``lo`` to ``hi``."""
    return dict(range=[lo, hi], showgrid=False, zeroline=False, showticklabels=False,
                showline=False, ticks="", constrain="domain", **extra)


_LEGEND_DARK = dict(bgcolor="rgba(70,70,70,0.85)", font=dict(color="white", size=12))


def feature_plane_figure(plane: FeaturePlane, title: str | None = None,
                         g_range: tuple[float, float] | None = None, *, field: str = "g",
                         height: int = 480, uirevision: str = "feature-plane") -> go.Figure:
    """The paper's Fig. 3 for one method: |g| as colour over the unit disc, B0 dashed, B1 solid.

    ``g_range``: the colour range of |g|; by default ``(0, 2s)`` — |g| grows without bound near
    θ_y = π for the negative angular margin and SphereFace, so the colour saturates there (the
    colour bar says so; hovering shows the true value). W_y and W_j are drawn as arrows; the axes
    have equal aspect. ``field="g_j"`` colours by the negative class's |g_j| instead (what
    CurricularFace's t changes). Misclassified points that an angle clip gives g = 0 are filled in
    magenta (``FeaturePlane.zero_g``). The title says which boundary a margin with a choice of it
    (MagFace, CurricularFace) is drawn with.
    """
    _check_field(field)
    zmin, zmax, cbar = _plane_cap([plane], g_range, field)
    text = title if title is not None else _plane_title(plane)
    if field == "g_j":
        text += " · negative class"
    layout = dict(
        title=dict(text=_with_choices(text, plane.margin), x=0.02, font=dict(size=15)),
        xaxis=_disc_axis(),
        yaxis=_disc_axis(scaleanchor="x", scaleratio=1),
        annotations=_arrow_labels(plane),
        legend=dict(orientation="h", x=0.0, y=0.0, yanchor="bottom", **_LEGEND_DARK),
        margin=dict(l=10, r=10, t=50, b=10), height=height, plot_bgcolor="white",
        uirevision=uirevision,
    )
    return _figure(_plane_traces(plane, zmin, zmax, cbar, showlegend=True, field=field), layout)


_GRID_PITCH = (2.5, 3.0)
"""Distance between the centres of neighbouring panels of :func:`feature_plane_grid`, across and
down, in units of the disc's radius (the disc spans ±1, the W labels reach 1.2; down, a band of
0.6 above each disc holds its title, two lines even where a panel is only ~150 px wide)."""


def _grid_cells(planes: Sequence[FeaturePlane]) -> tuple[float, int, int]:
    """(grid step, panel pitch across, panel pitch down) of a grid of ``planes``, the pitches in whole
    grid steps so that every panel's cells fall on one shared grid. The planes must share
    :func:`~adaface_lab.gst.feature_plane`'s grid, x = y = linspace(−1, 1, R), one R."""
    side = len(planes[0].x)
    axis = np.linspace(-1.0, 1.0, side)
    if any(len(p.x) != side or not (np.allclose(p.x, axis, atol=1e-5) and np.allclose(p.y, axis, atol=1e-5))
           for p in planes):
        found = sorted({len(p.x) for p in planes})
        raise ValueError(f"feature_plane_grid needs planes on one grid, x = y = linspace(-1, 1, R) with one R "
                         f"(feature_plane's); got R in {found}")
    step = float(axis[1] - axis[0])
    return step, round(_GRID_PITCH[0] / step), round(_GRID_PITCH[1] / step)


def _joined(parts: Sequence[tuple[np.ndarray, np.ndarray]],
            centres: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Polylines of several panels moved to their centres and joined, NaN between panels."""
    xs, ys = [], []
    for (x, y), (cx, cy) in zip(parts, centres):
        if len(x):
            xs += [np.asarray(x, dtype=float) + cx, [np.nan]]
            ys += [np.asarray(y, dtype=float) + cy, [np.nan]]
    if not xs:
        return np.array([]), np.array([])
    return np.concatenate(xs[:-1]), np.concatenate(ys[:-1])


def _grid_fields(planes: Sequence[FeaturePlane], fields: Sequence[str], spots: Sequence[tuple[int, int]],
                 cells: tuple[float, int, int], z_range: tuple[float, float], hover: bool) -> list[dict[str, Any]]:
    """The fields of :func:`feature_plane_grid`'s panels (``spots``: each panel's (row, col), row 0 on top;
    ``cells``: :func:`_grid_cells`): per field, one heatmap over the panels that show it (NaN between
    them), or with ``hover=False`` one picture, plus a trace that draws nothing and carries the colour bar."""
    (step, across, down), side, (zmin, zmax) = cells, len(planes[0].x), z_range
    traces = []
    for field in dict.fromkeys(fields):
        mine = [i for i, f in enumerate(fields) if f == field]
        first, last = min(spots[i][0] for i in mine), max(spots[i][0] for i in mine)  # rows
        left, right = min(spots[i][1] for i in mine), max(spots[i][1] for i in mine)
        z = np.full(((last - first) * down + side, (right - left) * across + side), np.nan, dtype=np.float32)
        for i in mine:
            row, col = spots[i]
            r0, c0 = (last - row) * down, (col - left) * across  # z's row 0 is the lowest panel's
            z[r0:r0 + side, c0:c0 + side] = np.abs(getattr(planes[i], field))
        name = _FIELDS[field][0]
        where = dict(x0=-1.0 + left * across * step, dx=step, y0=-1.0 - last * down * step, dy=step, name=name)
        if hover:
            traces.append(dict(type="heatmap", z=z, zsmooth=False, hoverongaps=False, coloraxis="coloraxis",
                               hovertemplate=f"{name} = %{{z:.1f}}<extra></extra>", **where))
        else:
            traces.append(dict(type="image", source=field_image_uri(z, zmin, zmax, _COLORSCALE),
                               zsmooth=False, hoverinfo="skip", **where))
    if not hover:  # the colour bar's key: no point to draw, only the shared colour axis
        traces.append(dict(type="scatter", mode="markers", x=[None], y=[None], hoverinfo="skip",
                           showlegend=False, name="colour scale", marker=dict(color=[zmin], coloraxis="coloraxis")))
    return traces


def feature_plane_grid(planes: Sequence[FeaturePlane], cols: int = 3,
                       titles: Sequence[str] | None = None,
                       g_range: tuple[float, float] | None = None, *,
                       fields: Sequence[str] | None = None,
                       panel_height: int = 300, hover: bool = True,
                       uirevision: str = "feature-plane-grid") -> go.Figure:
    """Small multiples of :func:`feature_plane_figure` (the gallery, paper Fig. 3): ``cols``
    panels per row on one shared colour scale (default ``(0, 2·max s)``). ``fields``: per panel,
    "g" (default) or "g_j" (the negative class's |g_j|). The planes must share one grid (one
    resolution of :func:`~adaface_lab.gst.feature_plane`).

    All panels are drawn on one pair of axes with equal aspect: panel ``i`` is its plane moved to
    the centre ``layout.meta["panels"][i]`` (data coordinates, 2.5 across and 3.0 down apart), its
    field a block of the heatmap that holds every panel of that field (NaN, transparent, between
    them; a second heatmap when a panel shows |g_j|), its lines joined with the other panels' into
    one trace per kind, its title an annotation above it. A browser redraws one subplot of a few
    traces much sooner than a subplot per panel (the app's gallery: a key press ~350 → ~230 ms,
    bench/bench_app_browser.py). ``panel_height``: the pixel height of a panel's ±1.2 square (the
    disc and its W labels) when the figure is wide enough for ``cols`` of them;
    ``layout.meta["aspect"]`` (the data's height ÷ width) lets a page size it to its width instead.
    Hovering a heatmap shows the value (not x and y: those are the panel's position).

    ``hover=False`` draws each field as a picture instead: a palette PNG coloured here as the
    browser colours the heatmap (:func:`~adaface_lab.plots.images.field_image_uri`, 255 levels),
    shown as it is. Hovering then shows no values, but the browser neither parses nor colours the
    field (the app's gallery: ~1.5 MB less per change, bench/bench_app_browser.py).
    """
    if not planes:
        raise ValueError("feature_plane_grid needs at least one plane")
    if cols < 1:
        raise ValueError(f"cols must be at least 1, got {cols}")
    if titles is not None and len(titles) != len(planes):
        raise ValueError(f"{len(titles)} titles for {len(planes)} planes")
    fields = list(fields) if fields is not None else ["g"] * len(planes)
    if len(fields) != len(planes):
        raise ValueError(f"{len(fields)} fields for {len(planes)} planes")
    for field in fields:
        _check_field(field)
    step, across, down = _grid_cells(planes)
    cols = min(cols, len(planes))
    if titles is None:
        titles = [_plane_title(p) + (" · negative class" if f == "g_j" else "") for p, f in zip(planes, fields)]
    # at most two lines: a title with a line break of its own gets the choice note on its last line
    titles = [_with_choices(t, p.margin, " · " if "<br>" in t else "<br>") for t, p in zip(titles, planes)]
    zmin, zmax, cbar = _plane_cap(planes, g_range, *dict.fromkeys(fields))

    spots = [divmod(i, cols) for i in range(len(planes))]  # (row, col), row 0 on top
    centres = [(col * across * step, -row * down * step) for row, col in spots]
    field_traces = _grid_fields(planes, fields, spots, (step, across, down), (zmin, zmax), hover)
    per_panel = [_plane_lines(p, zero_g=f == "g") for p, f in zip(planes, fields)]
    joined = {kind: _joined([p[kind] for p in per_panel], centres) for kind in per_panel[0]}
    labels = [(cx + 1.12 * float(vec[0]), cy + 1.12 * float(vec[1]), text)
              for plane, (cx, cy) in zip(planes, centres)
              for vec, text in ((plane.w_y, "W<sub>y</sub>"), (plane.w_j, "W<sub>j</sub>"))]
    lx, ly, lt = (list(v) for v in zip(*labels))
    label_trace = dict(type="scatter", mode="text", x=lx, y=ly, text=lt, hoverinfo="skip", cliponaxis=False,
                       showlegend=False, name="W labels", textfont=dict(size=12, color="black"))
    data = field_traces + _line_traces(joined, showlegend=True) + [label_trace]

    (cx_max, _), (_, cy_min) = centres[cols - 1], centres[-1]
    top = 1.2 + _GRID_PITCH[1] - 2.4  # the title band above the first row's discs
    height = round((-cy_min + 1.2 + top) * panel_height / 2.4) + 50
    annotations = [dict(x=cx, y=cy + 1.2, xref="x", yref="y", text=title, showarrow=False,
                        xanchor="center", yanchor="bottom", font=dict(size=12))
                   for (cx, cy), title in zip(centres, titles)]
    layout = dict(
        xaxis=_disc_axis(-1.2, cx_max + 1.2),
        # a figure too narrow for its height keeps its panels at the top, the space below them
        yaxis=_disc_axis(cy_min - 1.2, top, scaleanchor="x", scaleratio=1, constraintoward="top"),
        annotations=annotations,
        # aspect: the data's height ÷ width, for a page that sizes the figure to its width (app/_charts.py)
        meta=dict(panels=[[cx, cy] for cx, cy in centres], aspect=(top - cy_min + 1.2) / (cx_max + 2.4)),
        coloraxis=dict(colorscale=_colour_stops(), cmin=zmin, cmax=zmax,
                       colorbar=dict(title=dict(text=cbar), thickness=14)),
        legend=dict(orientation="h", x=0.0, y=1.0, yanchor="bottom", **_LEGEND_DARK),
        height=height, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white",
        uirevision=uirevision,
    )
    return _figure(data, layout)


# ----------------------------------------------------------------------------- curves along the arc


def _theta_grid(n: int) -> np.ndarray:
    if n < 3:
        raise ValueError(f"n must be at least 3, got {n}")
    return np.linspace(0.0, math.pi, n)


def _curve_layout(title: str, ytitle: str, uirevision: str, height: int, **extra: Any) -> dict[str, Any]:
    layout = dict(
        title=dict(text=title, x=0.02, font=dict(size=15)),
        xaxis=dict(title=dict(text="θ<sub>y</sub> (degrees)"), range=[0, 180], dtick=30),
        yaxis=dict(title=dict(text=ytitle)),
        legend=dict(orientation="h", x=0.0, y=-0.2, yanchor="top"),
        margin=dict(l=60, r=20, t=60, b=40), height=height,
        hovermode="x unified", uirevision=uirevision,
    )
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            merged = {**layout[key], **value}
            layout[key] = {k: v for k, v in merged.items() if v is not None}
        else:
            layout[key] = value
    return layout


def _zero_band_traces(spec: MethodSpec, phi: float, convention: str) -> list[dict[str, Any]]:
    """A thick bar on the θ_y axis, in the method's colour, over each band where a misclassified
    sample gets |g| = 0 from an angle clip (:func:`adaface_lab.gst.zero_gradient_bands`)."""
    context = resolve_context(spec.margin, **spec.context)
    bands = zero_gradient_bands(spec.margin, phi=phi, convention=convention, **context)
    out = []
    for lo, hi in bands:
        lo_deg, hi_deg = math.degrees(lo), math.degrees(hi)
        out.append(dict(
            type="scatter", x=[lo_deg, hi_deg], y=[0.0, 0.0], mode="lines", opacity=0.55,
            name=f"{_legend(spec)}: |g| = 0 although P<sub>y</sub> < ½, {lo_deg:.1f}°–{hi_deg:.1f}°",
            line=dict(color=_color(spec), width=10), hovertemplate="%{x:.1f}°<extra>angle clip</extra>",
        ))
    return out


def _legend(spec: MethodSpec) -> str:
    return _with_choices(spec.label, spec.margin, ", ")


def gst_curves_figure(methods: Sequence[MethodLike], phi: float = math.pi / 2,
                      convention: str = "official", *, negatives: bool = False, n: int = 361,
                      title: str | None = None, height: int = 420, legend_columns: int | None = None,
                      uirevision: str = "gst-curves") -> go.Figure:
    """|g| = (1 − P_y)·df/dc against θ_y (degrees) along the arc from W_y toward W_j.

    ``methods``: :class:`MethodSpec` items (or margins / names needing no context); ``phi`` the
    angle between W_y and W_j in radians; ``convention`` "official" or "detached". The y axis is
    cut at 2·s when a curve exceeds it (the negative angular margin and SphereFace grow without
    bound near 180°); a dotted line marks B0 (θ_y = φ/2). A thick bar on the axis marks where a
    misclassified sample gets |g| = 0 because an angle clip of the official code is active (e.g.
    AdaFace at ẑ = +1 from B1 to m·ẑ + ε). ``negatives=True`` adds |g_j| (long dashes) for methods
    that change the negative logits (CurricularFace), where their curriculum acts.
    ``legend_columns``: the legend below the plot in that many columns, the figure taller by its rows
    (``height`` is then the plot's share): a long legend left to flow would push the plot's bottom
    margin up until the plot itself is a strip. None: Plotly lays the legend out.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if legend_columns is not None and legend_columns < 1:
        raise ValueError(f"legend_columns must be at least 1, got {legend_columns}")
    specs = [_as_spec(m) for m in methods]
    theta = _theta_grid(n)
    degrees = np.degrees(theta)
    data: list[dict[str, Any]] = []
    top, s_max = 0.0, 0.0
    for i, spec in enumerate(specs):
        prof = _profile(spec, theta, phi, convention)
        g = np.abs(prof["g"])
        top = max(top, float(np.nanmax(g)))
        s_max = max(s_max, float(spec.margin.s))
        data.append(dict(type="scatter", x=degrees, y=g, mode="lines", name=_legend(spec),
                         line=dict(color=_color(spec), width=2.5, dash=_dash(i, specs, spec)),
                         hovertemplate="%{y:.1f}"))
        if negatives and spec.margin.modifies_negatives:
            data.append(dict(type="scatter", x=degrees, y=np.abs(prof["g_j"]), mode="lines",
                             name=f"{_legend(spec)}: |g<sub>j</sub>| (negative class)",
                             line=dict(color=_color(spec), width=2, dash="longdash"),
                             hovertemplate="%{y:.1f}"))
        data += _zero_band_traces(spec, phi, convention)
    cap = G_CAP_IN_S * s_max
    shape, ann = _vline(math.degrees(phi) / 2, "B0")
    annotations = [ann]
    yaxis: dict[str, Any] = {}
    if top > cap:
        yaxis["range"] = [0, cap]
        annotations.append(dict(x=1, y=1, xref="paper", yref="paper", xanchor="right",
                                yanchor="bottom", showarrow=False, text=f"y axis cut at 2s = {cap:g}",
                                font=dict(size=11, color="#777")))
    title = title or f"Gradient scaling term ({convention} convention, φ = {math.degrees(phi):.0f}°)"
    legend: dict[str, Any] = {}
    if legend_columns is not None:
        plot_px = height - 100  # less the top and bottom margins of _curve_layout
        legend = dict(entrywidth=1.0 / legend_columns, entrywidthmode="fraction", y=-60 / plot_px)
        height += 21 * math.ceil(len(data) / legend_columns)  # a legend row is about 21 px
    return _figure(data, _curve_layout(title, "|g| = (1 − P<sub>y</sub>)·df/dc", uirevision, height,
                                       yaxis=yaxis, shapes=[shape], annotations=annotations, legend=legend))


def target_logit_figure(methods: Sequence[MethodLike], phi: float | None = None, *, n: int = 361,
                        title: str | None = None, height: int = 420,
                        uirevision: str = "target-logit") -> go.Figure:
    """The target logit over the scale, f(cos θ_y)/s, against θ_y (degrees).

    cos θ_y (no margin) is drawn in grey for reference; with ``phi`` (radians) also cos θ_j, the
    plain negative logit over s, so that B1 is where a method's curve crosses it.
    """
    specs = [_as_spec(m) for m in methods]
    theta = _theta_grid(n)
    degrees = np.degrees(theta)
    line = dict(type="scatter", x=degrees, mode="lines", hovertemplate="%{y:.3f}")
    data = [dict(line, y=np.cos(theta), name="cos θ<sub>y</sub> (no margin)",
                 line=dict(color="#aaa", width=1.5))]
    for i, spec in enumerate(specs):
        prof = _profile(spec, theta, math.pi / 2 if phi is None else phi, "official")
        data.append(dict(line, y=prof["logit_y"] / spec.margin.s, name=_legend(spec),
                         line=dict(color=_color(spec), width=2.5, dash=_dash(i, specs, spec))))
    if phi is not None:
        theta_j = arc_profile(build_margin("softmax"), theta, phi=phi)["theta_j"]
        data.append(dict(line, y=np.cos(theta_j), name="cos θ<sub>j</sub> (negative logit / s)",
                         line=dict(color="#555", width=1.5, dash="dot")))
    return _figure(data, _curve_layout(title or "Target logit f(θ<sub>y</sub>) / s", "f / s",
                                       uirevision, height))


def adaface_terms_figure(h: float, m: float, mean: float, std: float, norm: float, *,
                         z_hat: float | None = None, norm_max: float | None = None,
                         n: int = 401, height: int = 420,
                         uirevision: str = "adaface-terms") -> go.Figure:
    """AdaFace's ẑ, g_angle (radians) and g_add against the feature norm ‖z‖, current norm marked.

    ``h``, ``m``: AdaFace's parameters; ``mean``, ``std``: μ_z and σ_z. With ``z_hat`` given (ẑ set
    directly) the norm mapping is still drawn and the chosen ẑ is marked as a horizontal line.
    """
    if n < 3:
        raise ValueError(f"n must be at least 3, got {n}")
    if norm_max is None:
        ramp = (std + 1e-3) / max(abs(h), 1e-6)  # ẑ saturates at μ_z ± σ_z/h
        norm_max = max(min(100.0, mean + 1.6 * ramp), 1.1 * norm, mean + 1.0)
    norms = np.linspace(0.0, float(norm_max), n)
    zh = adaface_z_hat(norms, mean, std, h)
    g_angle, g_add = adaface_terms(zh, m)
    red, blue = ArcFace.color, CosFace.color  # angular term as ArcFace, additive as CosFace
    line = dict(type="scatter", x=norms, mode="lines", hovertemplate="%{y:.3f}")
    data = [
        dict(line, y=zh, name="ẑ", line=dict(color="#333", width=2.5)),
        dict(line, y=g_angle, name="g<sub>angle</sub> = −m·ẑ (rad)", line=dict(color=red, width=2.5)),
        dict(line, y=g_add, name="g<sub>add</sub> = m·ẑ + m", line=dict(color=blue, width=2.5)),
    ]
    shapes, annotations = [], []
    shape, ann = _vline(mean, "μ<sub>z</sub>", color="#999", dash="solid", position="bottom")
    shapes.append(shape)
    annotations.append(ann)
    if z_hat is None:
        z_now = float(adaface_z_hat(np.asarray(norm, dtype=float), mean, std, h))
        a_now, d_now = adaface_terms(z_now, m)
        data.append(dict(type="scatter", x=[norm] * 3, y=[z_now, a_now, d_now], mode="markers",
                         name="current ‖z‖", showlegend=False, hovertemplate="%{y:.3f}",
                         marker=dict(size=11, color=["#333", red, blue],
                                     line=dict(color="white", width=1.5))))
        shape, ann = _vline(norm, f"‖z‖ = {norm:g} → ẑ = {z_now:.2f}", width=1.5,
                            xanchor="right" if norm > 0.6 * norm_max else "left")
    else:
        shape = dict(type="line", x0=0, x1=1, xref="paper", y0=z_hat, y1=z_hat, yref="y",
                     line=dict(color="#333", dash="dot", width=1.5))
        ann = dict(x=1, y=z_hat, xref="paper", yref="y", text=f"ẑ set directly = {z_hat:.2f}",
                   showarrow=False, xanchor="right", yanchor="bottom", font=dict(size=12))
    shapes.append(shape)
    annotations.append(ann)
    layout = _curve_layout(
        f"AdaFace's adaptive terms (h = {h:g}, m = {m:g}, μ<sub>z</sub> = {mean:g}, "
        f"σ<sub>z</sub> = {std:g})", "value", uirevision, height,
        xaxis=dict(title=dict(text="feature norm ‖z‖"), range=[0, float(norm_max)], dtick=None),
        yaxis=dict(range=[-1.08, max(1.08, 2 * m + 0.08)]),
        shapes=shapes, annotations=annotations,
    )
    return _figure(data, layout)


# ----------------------------------------------------------------------------- static export


_write_atomic = write_bytes_atomic


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _png_via_chromium(fig: go.Figure, width: int, height: int, timeout: float) -> bytes:
    """Fallback without kaleido: render the figure's HTML in headless Chromium and screenshot it."""
    browser = _chromium()
    if browser is None:
        raise RuntimeError(
            "static images need kaleido (pip install kaleido) or a Chromium binary on PATH "
            "(Debian: apt-get install chromium; see scripts/install_chromium.sh)"
        )
    with tempfile.TemporaryDirectory(prefix="adaface_lab_png_") as tmp:
        html = Path(tmp) / "figure.html"
        png = Path(tmp) / "figure.png"
        page = fig.to_html(include_plotlyjs=True, full_html=True, default_width=f"{width}px",
                           default_height=f"{height}px", config={"displayModeBar": False}, auto_play=False)
        page = page.replace("<body>", '<body style="margin:0">', 1)
        html.write_text(page, encoding="utf-8")
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp}/profile",
               f"--window-size={width},{height}", "--virtual-time-budget=5000",
               f"--screenshot={png}", html.as_uri()]
        subprocess.run(cmd, check=False, capture_output=True, timeout=timeout)
        if not png.exists():
            raise RuntimeError(f"{browser} did not write a screenshot")
        return png.read_bytes()


def static_image(fig: go.Figure, *, width: int | None = None, height: int | None = None,
                 scale: float = 1.0, timeout: float = 60.0) -> bytes:
    """The figure as PNG bytes: through kaleido (which drives the machine's Chromium) when it is
    installed and works, else by screenshotting the figure's HTML in headless Chromium directly.
    An animated figure is drawn as it opens, before Play: at the frame its data hold (for
    :func:`~adaface_lab.plots.toy_feature_figure`, the one ``start`` picks).

    Raises RuntimeError when neither is available.
    """
    width = int(width or fig.layout.width or 900)
    height = int(height or fig.layout.height or 500)
    try:
        import kaleido  # noqa: F401  (optional dependency)
    except ImportError:
        kaleido_ok = False
    else:
        kaleido_ok = True
    if kaleido_ok:
        try:
            return fig.to_image(format="png", width=width, height=height, scale=scale)
        except Exception:  # kaleido present but its browser failed: use the direct route
            pass
    return _png_via_chromium(fig, width, height, timeout)


def save_figure(fig: go.Figure, path_html: str | os.PathLike[str] | None,
                path_png: str | os.PathLike[str] | None = None, *,
                include_plotlyjs: bool | str = True, **image_kwargs: Any) -> dict[str, Path]:
    """Write the figure as an interactive HTML file and/or a PNG (see :func:`static_image`).

    ``include_plotlyjs=True`` embeds plotly.js (about 4 MB) so the HTML works offline; pass "cdn"
    for small files that need the network. An animated figure waits for its Play button (plotly's
    HTML would start playing on load). Files are written atomically. Returns the paths written.
    """
    written: dict[str, Path] = {}
    if path_html is not None:
        html_path = Path(path_html)
        html = fig.to_html(include_plotlyjs=include_plotlyjs, full_html=True, auto_play=False)
        _write_atomic(html_path, html.encode("utf-8"))
        written["html"] = html_path
    if path_png is not None:
        png_path = Path(path_png)
        _write_atomic(png_path, static_image(fig, **image_kwargs))
        written["png"] = png_path
    return written


__all__ = [
    "G_CAP_IN_S",
    "MethodSpec",
    "adaface_terms_figure",
    "feature_plane_figure",
    "feature_plane_grid",
    "gst_curves_figure",
    "method_spec",
    "save_figure",
    "static_image",
    "target_logit_figure",
]
