"""How the app draws its charts: a figure updated in place in the browser.

``st.plotly_chart`` gives a chart a new identity whenever its figure changes, so the browser throws
the chart away and draws it from scratch (and re-themes its whole JSON first): on the margin explorer
that was most of a slider move's 700 ms. :func:`show_chart` instead hands the figure's JSON to a small
component (``st.components.v2``) that keeps one Plotly graph per ``key`` and calls ``Plotly.react``
on it — and nothing at all when the JSON did not change. Plotly itself is the copy Streamlit
ships (the module that ``st.plotly_chart`` loads), so no second copy of plotly.js is served. A figure
of fixed shape (``layout.meta.aspect``) is made as tall as its drawn width asks, and again when the
page's width changes.

Where that is not available (a Streamlit without components v2, or without its Plotly module), the
charts fall back to ``st.plotly_chart``.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

CHART_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"],
                "toImageButtonOptions": {"format": "png", "scale": 2}}
"""Plotly's config for every chart of the app."""

_JS = """
const PLOTLY_MODULE = %s;  // Streamlit's own module holding plotly.js (it sets window.Plotly)

function plotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__adafaceLabPlotly) {
    const index = document.querySelector('script[type="module"][src*="static/js/index."]');
    window.__adafaceLabPlotly = import(new URL(PLOTLY_MODULE, index.src).href)
      .then(() => window.Plotly);
  }
  return window.__adafaceLabPlotly;
}

function fittedHeight(gd, layout) {
  // a figure of fixed shape (layout.meta.aspect: its data's height ÷ width, the gallery's grid):
  // the height its drawn width asks for, from the last draw's plot area; null for any other figure
  const aspect = layout.meta && layout.meta.aspect;
  const size = gd._fullLayout && gd._fullLayout._size;
  return aspect && size ? Math.round(size.w * aspect + size.t + size.b) : null;
}

function refit(gd, Plotly) {  // after a draw: a figure of fixed shape as tall as its width asks
  const height = fittedHeight(gd, gd.layout);
  if (height === null || Math.abs(height - gd._fullLayout.height) <= 4) return Promise.resolve();
  gd.style.minHeight = height + 'px';
  return Plotly.relayout(gd, { height });
}

export default function ({ parentElement, data }) {
  let gd = parentElement.querySelector(':scope > .adaface-lab-chart');
  if (!gd) {
    gd = document.createElement('div');
    gd.className = 'adaface-lab-chart';
    gd.dataset.renders = '0';
    parentElement.appendChild(gd);
    new ResizeObserver(() => {
      if (gd._fullLayout && window.Plotly) {
        window.Plotly.Plots.resize(gd).then(() => refit(gd, window.Plotly));
      }
    }).observe(parentElement);
  }
  const text = new TextDecoder().decode(data);
  if (gd.__spec !== text) {  // an unchanged figure costs nothing
    gd.__spec = text;
    const fig = JSON.parse(text);
    fig.layout.height = fittedHeight(gd, fig.layout) || fig.layout.height;
    gd.style.minHeight = (fig.layout.height || 450) + 'px';
    plotly().then(Plotly => {
      if (gd.__spec !== text) return;  // a newer figure came meanwhile
      const page = getComputedStyle(parentElement);  // the page's font, and bold titles, as
      fig.layout.font = { family: page.fontFamily, ...fig.layout.font };  // st.plotly_chart has
      const title = fig.layout.title;
      if (title && title.text) title.text = '<b>' + title.text + '</b>';
      fig.layout.autosize = true;
      return Plotly.react(gd, fig.data, fig.layout, { ...fig.config, responsive: true })
        .then(() => refit(gd, Plotly))
        .then(() => { gd.dataset.renders = String(Number(gd.dataset.renders) + 1); });
    }).catch(err => { gd.textContent = 'The chart could not be drawn: ' + err; });
  }
  return () => setTimeout(() => { if (!gd.isConnected && window.Plotly) window.Plotly.purge(gd); });
}
"""


def _plotly_module() -> str | None:
    """The file name of Streamlit's module holding plotly.js (next to its index module)."""
    found = sorted((Path(st.__file__).parent / "static" / "static" / "js").glob("PlotlyChart.*.js"))
    return found[0].name if len(found) == 1 else None


def _component():
    """The component that draws the charts, registered once per process; None (with a warning)
    where this Streamlit cannot have it."""
    module = _plotly_module()
    components = getattr(st.components, "v2", None)
    if module is None or components is None:
        logging.getLogger(__name__).warning(
            "charts drawn with st.plotly_chart (slower): this Streamlit has %s",
            "no components v2" if components is None else "no PlotlyChart module")
        return None
    return components.component("adaface_lab.chart", js=_JS % json.dumps(module),
                                isolate_styles=False)


_CHART = _component()


_TYPED = {"int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4",
          "uint32": "u4", "float32": "f4", "float64": "f8"}
"""NumPy dtypes that plotly.js reads as base64 typed arrays, and its names for them."""
_AS_IS = {"geojson", "layer", "layers", "range"}
"""Keys whose values plotly sends as plain JSON, never as typed arrays."""


def _typed_array(v: np.ndarray) -> Any:
    """``v`` as plotly.py writes it: a base64 typed array (int64 narrowed to the smallest int type
    that holds it), or a plain list when plotly.js has no typed array for its dtype."""
    if v.size and v.dtype.kind in "iu" and v.dtype.itemsize == 8:
        kinds = ("int8", "int16", "int32") if v.dtype.kind == "i" else ("uint8", "uint16", "uint32")
        lo, hi = v.min(), v.max()
        v = next((v.astype(k) for k in kinds if np.iinfo(k).min <= lo and hi <= np.iinfo(k).max), v)
    name = _TYPED.get(v.dtype.name)
    if not v.size or name is None:
        return v
    out = {"dtype": name, "bdata": base64.b64encode(np.ascontiguousarray(v)).decode("ascii")}
    if v.ndim > 1:
        out["shape"] = str(v.shape)[1:-1]
    return out


def _with_typed_arrays(obj: Any) -> Any:
    """A copy of a figure's dicts and lists with each array that is a dict value as a typed array
    (what ``BaseFigure.to_dict`` does, without its deep copy and per-array type detection)."""
    if isinstance(obj, dict):
        return {k: v if k in _AS_IS else _typed_array(v) if isinstance(v, np.ndarray)
                else _with_typed_arrays(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_with_typed_arrays(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def chart_spec(fig: go.Figure) -> bytes:
    """What :func:`show_chart` sends: the figure's JSON as plotly writes it (base64 typed arrays)
    and the config, as one object ``{"data", "layout", "config"}``.

    Written from the figure's own dicts, about 3× faster than ``fig.to_dict()`` on the gallery's
    grid; anything that path cannot write as strict JSON (a NaN outside an array, an object it does
    not know) goes through plotly's own encoder instead (tests/test_app.py compares the two).
    """
    try:
        spec = {"data": _with_typed_arrays(fig._data), "layout": _with_typed_arrays(fig._layout),
                "config": CHART_CONFIG}
        return json.dumps(spec, default=_json_default, allow_nan=False,
                          separators=(",", ":")).encode()
    except (AttributeError, TypeError, ValueError):
        spec = fig.to_dict()
        spec["config"] = CHART_CONFIG
        return pio.to_json(spec, validate=False).encode()


def show_chart(fig: go.Figure, key: str) -> None:
    """Draw ``fig`` under ``key``; a later run with the same key updates that chart in place.

    A figure whose ``layout.meta`` holds an ``aspect`` (its data's height ÷ width, e.g.
    :func:`adaface_lab.plots.feature_plane_grid`) is drawn as tall as the page's width asks, not
    at its ``layout.height`` (which only sizes the first draw)."""
    if _CHART is None:
        st.plotly_chart(fig, width="stretch", config=CHART_CONFIG, key=key)
        return
    meta = fig.layout.meta
    fitted = isinstance(meta, dict) and "aspect" in meta
    _CHART(key=key, data=chart_spec(fig), height="content" if fitted else int(fig.layout.height or 450))
