"""How the app draws its charts: a figure updated in place in the browser.

``st.plotly_chart`` gives a chart a new identity whenever its figure changes, so the browser throws
the chart away and draws it from scratch (and re-themes its whole JSON first): on the margin explorer
that was most of a slider move's 700 ms. :func:`show_chart` instead hands the figure's JSON to a small
component (``st.components.v2``) that keeps one Plotly graph per ``key`` and calls ``Plotly.react``
on it — and nothing at all when the JSON did not change. Plotly itself is the copy Streamlit
ships (the module that ``st.plotly_chart`` loads), so no second copy of plotly.js is served.

Where that is not available (a Streamlit without components v2, or without its Plotly module), the
charts fall back to ``st.plotly_chart``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

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

export default function ({ parentElement, data }) {
  let gd = parentElement.querySelector(':scope > .adaface-lab-chart');
  if (!gd) {
    gd = document.createElement('div');
    gd.className = 'adaface-lab-chart';
    gd.dataset.renders = '0';
    parentElement.appendChild(gd);
    new ResizeObserver(() => { if (gd._fullLayout && window.Plotly) window.Plotly.Plots.resize(gd); })
      .observe(parentElement);
  }
  const text = new TextDecoder().decode(data);
  if (gd.__spec !== text) {  // an unchanged figure costs nothing
    gd.__spec = text;
    const fig = JSON.parse(text);
    gd.style.minHeight = (fig.layout.height || 450) + 'px';
    plotly().then(Plotly => {
      if (gd.__spec !== text) return;  // a newer figure came meanwhile
      const page = getComputedStyle(parentElement);  // the page's font, and bold titles, as
      fig.layout.font = { family: page.fontFamily, ...fig.layout.font };  // st.plotly_chart has
      const title = fig.layout.title;
      if (title && title.text) title.text = '<b>' + title.text + '</b>';
      fig.layout.autosize = true;
      return Plotly.react(gd, fig.data, fig.layout, { ...fig.config, responsive: true });
    }).then(() => { gd.dataset.renders = String(Number(gd.dataset.renders) + 1); });
  }
  return () => setTimeout(() => { if (!gd.isConnected && window.Plotly) window.Plotly.purge(gd); });
}
"""


def _plotly_module() -> str | None:
    """The file name of Streamlit's module holding plotly.js (next to its index module)."""
    found = sorted((Path(st.__file__).parent / "static" / "static" / "js").glob("PlotlyChart.*.js"))
    return found[0].name if len(found) == 1 else None


def _component():
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


def chart_spec(fig: go.Figure) -> bytes:
    """What :func:`show_chart` sends: the figure's JSON (plotly's, with base64 arrays) and the
    config, as one object ``{"data", "layout", "config"}``."""
    spec = fig.to_dict()
    spec["config"] = CHART_CONFIG
    return pio.to_json(spec, validate=False).encode()


def show_chart(fig: go.Figure, key: str) -> None:
    """Draw ``fig`` under ``key``; a later run with the same key updates that chart in place."""
    if _CHART is None:
        st.plotly_chart(fig, width="stretch", config=CHART_CONFIG, key=key)
        return
    _CHART(key=key, data=chart_spec(fig), height=int(fig.layout.height or 450))
