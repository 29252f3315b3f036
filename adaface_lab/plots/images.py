"""Figures of images: a captioned strip of faces (notebook 4's sample trajectories), and a field
coloured into a PNG the browser shows as it is (the app's gallery of feature planes)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import plotly.colors as pc
import plotly.graph_objects as go
import torch
from PIL import Image
from plotly.subplots import make_subplots


COLOUR_LEVELS = 255
"""Colours of :func:`field_image_uri`'s pictures: a palette PNG holds 256, one is transparent."""


@lru_cache(maxsize=8)
def _colour_table(colorscale: str, levels: int = COLOUR_LEVELS) -> np.ndarray:
    """(levels, 3) uint8: the colours of a named Plotly colour scale at ``levels`` evenly spaced
    points, interpolated linearly in RGB between its stops as plotly.js colours a heatmap."""
    stops = pc.get_colorscale(colorscale)
    where = np.array([float(at) for at, _ in stops])
    rgb = np.array([pc.unlabel_rgb(pc.convert_colors_to_same_type([c], "rgb")[0][0]) for _, c in stops])
    t = np.linspace(0.0, 1.0, levels)
    return np.stack([np.interp(t, where, rgb[:, k]) for k in range(3)], axis=1).round().astype(np.uint8)


def field_image_uri(z: np.ndarray, zmin: float, zmax: float, colorscale: str = "Viridis") -> str:
    """A (H, W) field coloured as a heatmap with range [zmin, zmax] colours it (values outside
    clamped, NaN transparent), as a PNG data URI whose row k is ``z[k]``: a Plotly image trace
    draws row k at ``y0 + k·dy``, where a heatmap with that y0, dy draws ``z[k]``.

    A palette PNG of :data:`COLOUR_LEVELS` colours (a few ms and ~30 kB for the app's gallery):
    a value is drawn within half a level, (zmax − zmin)/(2·254), of where the heatmap draws it.
    """
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or not z.size:
        raise ValueError(f"z must be a non-empty 2-D array, got shape {z.shape}")
    if not zmax > zmin:
        raise ValueError(f"need zmax > zmin, got [{zmin}, {zmax}]")
    top = COLOUR_LEVELS - 1
    known = np.isfinite(z)
    scaled = np.where(known, (z - np.float32(zmin)) * np.float32(top / (zmax - zmin)), 0.0)
    index = np.clip(scaled, 0, top).round().astype(np.uint8)
    index[~known] = COLOUR_LEVELS  # the transparent entry
    picture = Image.fromarray(index, "P")
    palette = np.vstack([_colour_table(colorscale), np.zeros((1, 3), dtype=np.uint8)])
    picture.putpalette(palette.tobytes())
    out = io.BytesIO()
    picture.save(out, format="PNG", compress_level=3, transparency=COLOUR_LEVELS)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


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

