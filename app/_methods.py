"""The controls shared by the margin pages and the mapping from their values to library margins.

No maths here: the sliders' values become keyword arguments of
:func:`adaface_lab.margins.build_margin` and :func:`adaface_lab.gst.feature_plane`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import streamlit as st

from _state import Param
from adaface_lab.gst import CONVENTIONS, FeaturePlane, feature_plane
from adaface_lab.margins import Margin, adaface_z_hat, build_margin, list_margins, margin_class
from adaface_lab.plots import MethodSpec, method_label, method_spec

METHODS = tuple(list_margins())
LABELS = {name: method_label(name) for name in METHODS}

P = {
    "methods": Param("methods", "Methods", "multi",
                     ["arcface", "cosface", "negative_angular", "adaface"],
                     choices=METHODS, labels=LABELS),
    "plane": Param("plane", "Feature plane of", "choice", "adaface", choices=METHODS, labels=LABELS),
    "m": Param("m", "margin m", "float", 0.4, 0.0, 1.0, 0.01, fmt="%.2f",
               help="The method's own margin, for every method with an m (ArcFace, CosFace, "
                    "negative angular, CurricularFace, AdaFace). SphereFace's multiplicative m is "
                    "set below."),
    "s": Param("s", "scale s", "float", 64.0, 1.0, 128.0, 1.0, fmt="%.0f"),
    "h": Param("h", "AdaFace h", "float", 0.333, 0.0, 1.0, 0.001, fmt="%.3f",
               help="How strongly the norm moves ẑ: ẑ = clip(h·(‖z‖ − μ_z)/(σ_z + ε), −1, 1)."),
    "norm": Param("norm", "feature norm ‖z‖", "float", 30.0, 0.5, 100.0, 0.5, fmt="%.1f",
                  help="Used by AdaFace (through ẑ) and MagFace."),
    "mean": Param("mean", "batch mean μ_z", "float", 20.0, 0.0, 100.0, 0.5, fmt="%.1f"),
    "std": Param("std", "batch std σ_z", "float", 10.0, 0.5, 100.0, 0.5, fmt="%.1f"),
    "zdirect": Param("zdirect", "set ẑ directly", "bool", False),
    "zhat": Param("zhat", "ẑ", "float", 0.0, -1.0, 1.0, 0.01,
                  help="−1: ArcFace, 0: CosFace, +1: negative angular margin + 2m."),
    "phi": Param("phi", "angle φ between W_y and W_j (°)", "float", 90.0, 10.0, 180.0, 1.0, fmt="%.0f°"),
    "conv": Param("conv", "gradient convention", "choice", "official", choices=CONVENTIONS,
                  labels={"official": "official (margin in the graph)",
                          "detached": "detached (insightface/CVLface)"},
                  help="Detached: the margin is computed without gradient, so df/dc = s and the "
                       "margin acts only through P_y."),
    "sm": Param("sm", "SphereFace multiplicative m", "float", 1.35, 1.0, 4.0, 0.05),
    "ct": Param("ct", "CurricularFace t", "float", 0.0, 0.0, 1.0, 0.01,
                help="The curriculum parameter: 0 early in training, it grows toward the mean "
                     "target cosine (about 0.5 late)."),
    "m1": Param("m1", "combined m1", "float", 1.0, 0.5, 2.0, 0.05),
    "m2": Param("m2", "combined m2", "float", 0.3, 0.0, 1.0, 0.01),
    "m3": Param("m3", "combined m3", "float", 0.2, 0.0, 0.6, 0.01),
    # gallery
    "nlo": Param("nlo", "AdaFace low norm", "float", 5.0, 0.5, 100.0, 0.5, fmt="%.1f"),
    "nhi": Param("nhi", "AdaFace high norm", "float", 50.0, 0.5, 100.0, 0.5, fmt="%.1f"),
    "cols": Param("cols", "panels per row", "int", 5, 2, 6, 1),
}

PLANE_RESOLUTION = 161
"""Grid side of the explorer's feature plane (161² cells: sharp on screen, a few ms to compute)."""


def make_margin(name: str, v: Mapping[str, Any]) -> Margin:
    """The margin ``name`` at the page's values: the shared m for every method that has an m
    (SphereFace's multiplicative m has its own control), s for all, h for AdaFace."""
    fields = margin_class(name).__dataclass_fields__
    params: dict[str, Any] = {"s": v["s"]}
    if name == "sphereface":
        params["m"] = v["sm"]
    elif name == "combined":
        params.update(m1=v["m1"], m2=v["m2"], m3=v["m3"])
    elif "m" in fields:
        params["m"] = v["m"]
    if "h" in fields:
        params["h"] = v["h"]
    return build_margin(name, **params)


def context(name: str, v: Mapping[str, Any], norm: float | None = None) -> dict[str, Any]:
    """Per-sample context of ``name``: AdaFace's ẑ (set directly, or from ‖z‖, μ_z, σ_z),
    MagFace's norm, CurricularFace's t. ``norm`` overrides the page's norm."""
    norm = v["norm"] if norm is None else norm
    if name == "adaface":
        if v.get("zdirect"):
            return {"z_hat": v["zhat"]}
        return {"norm": norm, "mean": v["mean"], "std": v["std"]}
    if name == "magface":
        return {"norm": norm}
    if name == "curricularface":
        return {"t": v["ct"]}
    return {}


def spec(name: str, v: Mapping[str, Any], norm: float | None = None, label: str | None = None) -> MethodSpec:
    """A :class:`~adaface_lab.plots.MethodSpec` of ``name`` at the page's values."""
    return method_spec(make_margin(name, v), label, **context(name, v, norm))


def z_hat_now(v: Mapping[str, Any], norm: float | None = None) -> float:
    """AdaFace's ẑ at the page's values (from the library's formula, or as set directly)."""
    if v.get("zdirect"):
        return float(v["zhat"])
    norm = v["norm"] if norm is None else norm
    return float(adaface_z_hat(norm, v["mean"], v["std"], v["h"]))


@st.cache_data(max_entries=256, show_spinner=False)
def _plane(name: str, params: tuple[tuple[str, float], ...], ctx: tuple[tuple[str, float], ...],
           phi_deg: float, convention: str, resolution: int) -> FeaturePlane:
    margin = build_margin(name, **dict(params))
    kwargs = dict(ctx)
    t = kwargs.pop("t", 0.0)
    return feature_plane(margin, phi=math.radians(phi_deg), resolution=resolution, t=t,
                         convention=convention, **kwargs)


def plane(name: str, v: Mapping[str, Any], norm: float | None = None,
          resolution: int = PLANE_RESOLUTION) -> FeaturePlane:
    """The feature plane of ``name`` at the page's values (cached per parameter tuple)."""
    margin = make_margin(name, v)
    params = tuple(sorted((k, float(x)) for k, x in margin.params().items()))
    ctx = tuple(sorted((k, float(x)) for k, x in context(name, v, norm).items()))
    return _plane(name, params, ctx, float(v["phi"]), v["conv"], resolution)


CHART_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"],
                "toImageButtonOptions": {"format": "png", "scale": 2}}
"""Plotly's config for every chart of the app."""
