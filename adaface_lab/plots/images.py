"""Figures of images: a captioned strip of faces (notebook 4's sample trajectories)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots


def image_strip_figure(images: torch.Tensor, captions: Sequence[str] | None = None, title: str = "",
                       height: int = 230) -> go.Figure:
    """A row of images (uint8 (K, 3, H, W) RGB) with a caption under each, as one Plotly figure."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a (K, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    k = images.shape[0]
    if captions is not None and len(captions) != k:
        raise ValueError(f"{len(captions)} captions for {k} images")
    fig = make_subplots(rows=1, cols=max(k, 1), horizontal_spacing=0.01)
    pixels = images.to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (K, H, W, 3)
    for i in range(k):  # a handful of images
        fig.add_trace(go.Image(z=pixels[i], hoverinfo="skip"), row=1, col=i + 1)
        # constrain="domain": each axis domain shrinks to its image, so a caption sits right under it
        fig.update_xaxes(visible=False, constrain="domain", row=1, col=i + 1)
        fig.update_yaxes(visible=False, constrain="domain", row=1, col=i + 1)
        if captions is not None:
            suffix = "" if i == 0 else str(i + 1)
            fig.add_annotation(text=captions[i], xref=f"x{suffix} domain", yref=f"y{suffix} domain", x=0.5, y=-0.03,
                               showarrow=False, yanchor="top", font=dict(size=11))
    fig.update_layout(title=dict(text=title, x=0.02, font=dict(size=15)), height=height, template="plotly_white",
                      margin=dict(l=10, r=10, t=50 if title else 10, b=60))
    return fig

