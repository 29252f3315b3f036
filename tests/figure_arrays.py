"""Reading figures back as a user's browser gets them: plotly's JSON arrays (plain lists or base64
typed arrays) and the panels of :func:`adaface_lab.plots.feature_plane_grid` (one pair of axes,
panel ``i`` centred at ``layout.meta["panels"][i]``), whether drawn as heatmaps or as pictures
(``hover=False``: PNG images whose colours are read back to values here, through the colour axis's
own stops as the browser interpolates them, not through the library's colour table)."""

from __future__ import annotations

import base64
import io
import json
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image

LEVELS = 255
"""Colour levels of the pictures (adaface_lab.plots.images.COLOUR_LEVELS, restated)."""


def decode(value: Any) -> Any:
    """Plotly's JSON arrays: plain lists, or {"dtype", "bdata" (base64), "shape"} typed arrays."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            dims = [int(s) for s in str(shape).split(",")] if isinstance(shape, str) else list(shape)
            arr = arr.reshape(dims)
        return arr
    if isinstance(value, (list, tuple)):
        return np.asarray(value, dtype=float)
    return value


def as_spec(fig: go.Figure | dict[str, Any]) -> dict[str, Any]:
    """A figure as the JSON plotly sends (data + layout), or ``fig`` itself when it is that already."""
    return json.loads(fig.to_json()) if isinstance(fig, go.Figure) else fig


def panel_count(fig: go.Figure | dict[str, Any]) -> int:
    return len(as_spec(fig)["layout"]["meta"]["panels"])


def panel_titles(fig: go.Figure | dict[str, Any]) -> list[str]:
    """The panels' titles, in panel order: the annotation written just above each disc."""
    spec = as_spec(fig)
    by_centre = {(round(cx, 6), round(cy + 1.2, 6)): None for cx, cy in spec["layout"]["meta"]["panels"]}
    titles = {(round(a["x"], 6), round(a["y"], 6)): a["text"] for a in spec["layout"].get("annotations", [])
              if a.get("yanchor") == "bottom" and a.get("xref") == "x"}
    return [titles[key] for key in by_centre]


def _rgb(colour: str) -> tuple[float, float, float]:
    """'#rrggbb' or 'rgb(r, g, b)' as three numbers 0–255."""
    if colour.startswith("#"):
        return tuple(float(int(colour[k:k + 2], 16)) for k in (1, 3, 5))  # type: ignore[return-value]
    r, g, b = (float(v) for v in colour[colour.index("(") + 1:colour.index(")")].split(",")[:3])
    return r, g, b


def stop_colours(stops: Any, levels: int = LEVELS) -> np.ndarray:
    """(levels, 3): the colours a browser gives ``levels`` evenly spaced values of a colour axis whose
    scale is the explicit ``[[position, colour], …]`` ``stops`` (linear in RGB between stops, as
    plotly.js interpolates), rounded to 8 bits."""
    where = np.array([float(at) for at, _ in stops])
    rgb = np.array([_rgb(c) for _, c in stops])
    t = np.linspace(0.0, 1.0, levels)
    return np.rint(np.stack([np.interp(t, where, rgb[:, k]) for k in range(3)], axis=1))


@lru_cache(maxsize=8)
def _picture_values(source: str, stops: str, zmin: float, zmax: float) -> np.ndarray:
    head, _, data = source.partition(",")
    assert head == "data:image/png;base64", head
    rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGBA"), dtype=np.int64)
    table = stop_colours(json.loads(stops))
    colours, where = np.unique(rgba[..., :3].reshape(-1, 3), axis=0, return_inverse=True)
    distance = ((colours[:, None, :] - table[None, :, :]) ** 2).sum(-1)  # (unique colours, levels)
    nearest = distance == distance.min(axis=1, keepdims=True)
    level = (nearest * np.arange(LEVELS)).sum(axis=1) / nearest.sum(axis=1)
    values = zmin + level[where.reshape(-1)].reshape(rgba.shape[:2]) * (zmax - zmin) / (LEVELS - 1)
    values = np.where(rgba[..., 3] > 0, values, np.nan)
    values.flags.writeable = False  # shared by the cache
    return values


def picture_values(source: str, stops: Any, zmin: float, zmax: float) -> np.ndarray:
    """A PNG data URI read back to values: each pixel's colour matched to the nearest of ``LEVELS``
    colours the browser gives the colour axis (:func:`stop_colours` of its explicit ``stops`` over
    [zmin, zmax]; the mean level where neighbouring levels share one 8-bit colour); transparent pixels
    NaN. Row k of the result is the picture's row k (drawn at y0 + k·dy)."""
    return _picture_values(source, json.dumps(stops), float(zmin), float(zmax))


def picture_quantum(fig: go.Figure | dict[str, Any]) -> float:
    """How far a value read from a picture of ``fig`` may lie from the value drawn: one colour level
    of its colour axis (half a level of rounding, half where two neighbouring levels share a colour);
    0 when the fields are heatmaps, which hold the values themselves."""
    spec = as_spec(fig)
    if not any(t["type"] == "image" for t in spec["data"]):
        return 0.0
    axis = spec["layout"]["coloraxis"]
    return (axis["cmax"] - axis["cmin"]) / (LEVELS - 1)


def _field(trace: dict[str, Any], layout: dict[str, Any]) -> np.ndarray:
    if trace["type"] == "heatmap":
        return np.asarray(decode(trace["z"]), dtype=float)
    axis = layout["coloraxis"]
    assert not isinstance(axis["colorscale"], str), "a named scale: plotly.js has its own stops for it"
    return picture_values(trace["source"], axis["colorscale"], axis["cmin"], axis["cmax"])


def panel_field(fig: go.Figure | dict[str, Any], panel: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, z) of panel ``panel``: its cells in the panel's own coordinates (the disc's centre at
    0), z indexed [y, x], from the heatmap or picture that shows it (a picture's values within
    :func:`picture_quantum`). Raises when none shows that panel."""
    spec = as_spec(fig)
    cx, cy = spec["layout"]["meta"]["panels"][panel]
    for trace in spec["data"]:
        if trace["type"] not in ("heatmap", "image"):
            continue
        z = _field(trace, spec["layout"])
        xs = trace["x0"] + trace["dx"] * np.arange(z.shape[1]) - cx
        ys = trace["y0"] + trace["dy"] * np.arange(z.shape[0]) - cy
        cols, rows = np.abs(xs) <= 1 + trace["dx"] / 2, np.abs(ys) <= 1 + trace["dy"] / 2
        block = z[np.ix_(rows, cols)]
        if block.size and np.isfinite(block).any():
            return xs[cols], ys[rows], block
    raise AssertionError(f"no heatmap shows panel {panel}")
