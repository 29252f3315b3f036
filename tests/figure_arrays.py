"""Reading figures back as a user's browser gets them: plotly's JSON arrays (plain lists or base64
typed arrays) and the panels of :func:`adaface_lab.plots.feature_plane_grid` (one pair of axes,
panel ``i`` centred at ``layout.meta["panels"][i]``)."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import plotly.graph_objects as go


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


def panel_field(fig: go.Figure | dict[str, Any], panel: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, z) of panel ``panel``: its heatmap cells in the panel's own coordinates (the disc's
    centre at 0), z indexed [y, x]. Raises when no heatmap shows that panel."""
    spec = as_spec(fig)
    cx, cy = spec["layout"]["meta"]["panels"][panel]
    for trace in spec["data"]:
        if trace["type"] != "heatmap":
            continue
        z = np.asarray(decode(trace["z"]), dtype=float)
        xs = trace["x0"] + trace["dx"] * np.arange(z.shape[1]) - cx
        ys = trace["y0"] + trace["dy"] * np.arange(z.shape[0]) - cy
        cols, rows = np.abs(xs) <= 1 + trace["dx"] / 2, np.abs(ys) <= 1 + trace["dy"] / 2
        block = z[np.ix_(rows, cols)]
        if block.size and np.isfinite(block).any():
            return xs[cols], ys[rows], block
    raise AssertionError(f"no heatmap shows panel {panel}")
