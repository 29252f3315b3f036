"""The controls of the margin pages, derived from the registered margin classes, and the mapping
from their values to library margins.

Every control is a :class:`_state.Param`, so its value lives in the URL. The page controls (which
methods, which plane, φ, the gradient convention, the gallery's layout) are written here; the
margins' own controls come from their classes (:mod:`adaface_lab.margins`): a slider for each
parameter and context input with a shown :class:`~adaface_lab.margins.Range`, under the range's
``key``. Margins whose ranges share a key share one control (every method's m, the norm). A margin
registered later gets its controls and its place in the method lists with no edit here: the
controls are rebuilt on every run of a page.

No maths here: the values become keyword arguments of :func:`adaface_lab.margins.build_margin` and
:func:`adaface_lab.gst.feature_plane`.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, Iterable, Mapping

from _state import Param
from adaface_lab.gst import CONVENTIONS, FeaturePlane, feature_plane
from adaface_lab.margins import (
    Choice,
    Margin,
    Range,
    adaface_z_hat,
    build_margin,
    list_margins,
    margin_class,
)
from adaface_lab.plots import MethodSpec, method_spec

PLANE_RESOLUTION = 161
"""Grid side of the explorer's feature plane (161² cells: sharp on screen, a few ms to compute)."""


def label(name: str) -> str:
    """Display name of the margin registered as ``name``."""
    return margin_class(name).label


def _page_controls(methods: tuple[str, ...]) -> dict[str, Param]:
    labels = {name: label(name) for name in methods}
    return {
        "methods": Param("methods", "Methods", "multi",
                         ["arcface", "cosface", "negative_angular", "adaface"],
                         choices=methods, labels=labels),
        "plane": Param("plane", "Feature plane of", "choice", "adaface", choices=methods,
                       labels=labels),
        "zdirect": Param("zdirect", "set ẑ directly", "bool", False),
        "phi": Param("phi", "angle φ between W_y and W_j (°)", "float", 90.0, 10.0, 180.0, 1.0,
                     fmt="%.0f°"),
        "conv": Param("conv", "gradient convention", "choice", "official", choices=CONVENTIONS,
                      labels={"official": "official (margin in the graph)",
                              "detached": "detached (insightface/CVLface)"},
                      help="Detached: the margin is computed without gradient, so df/dc = s and the "
                           "margin acts only through P_y."),
        # gallery
        "nlo": Param("nlo", "AdaFace low norm", "float", 5.0, 0.5, 100.0, 0.5, fmt="%.1f"),
        # 5 and 35 give ẑ = ∓0.5 at the default μ_z = 20, σ_z = 10, h = 0.333: the largest
        # symmetric pair there (ẑ = −1 would need ‖z‖ = μ_z − σ_z/h < 0)
        "nhi": Param("nhi", "AdaFace high norm", "float", 35.0, 0.5, 100.0, 0.5, fmt="%.1f"),
        "cols": Param("cols", "panels per row", "int", 4, 2, 6, 1),  # the built-in 11 panels in rows of 4, 4, 3
    }


def _key(item: str, ranges: Mapping[str, Range | Choice]) -> str:
    """The control key of a margin's parameter or context input ``item``."""
    r = ranges.get(item)
    return (r.key if r is not None else None) or item


def _fmt(step: float) -> str:
    """A slider format with as many decimals as the step has (0.5 → %.1f, 0.001 → %.3f)."""
    return f"%.{max(0, -math.floor(math.log10(step) + 1e-9))}f"


def _margin_controls(methods: tuple[str, ...]) -> dict[str, Param]:
    """One control per key over the margins' shown ranges and choices (the first declaration of a
    key wins), with the labels of the margins that use it in its help when several do."""
    found: dict[str, tuple[Range | Choice, str, Any]] = {}
    users: dict[str, list[str]] = {}
    for name in methods:
        cls = margin_class(name)
        defaults = {f.name: f.default for f in fields(cls)}
        for item, r in {**cls.param_ranges(), **cls.param_choices(), **cls.input_ranges()}.items():
            if not r.shown:
                continue
            key = r.key or item
            users.setdefault(key, []).append(cls.label)
            if key not in found:
                default = r.default if r.default is not None else defaults[item]
                found[key] = (r, r.label or f"{cls.label} {item}", default)
    out = {}
    for key, (r, text, default) in found.items():
        used_by = users[key]
        help_text = r.help
        if 1 < len(used_by) < len(methods):
            listed = ", ".join(used_by[:-1]) + " and " + used_by[-1]
            help_text = f"{help_text + ' ' if help_text else ''}Used by {listed}."
        if isinstance(r, Choice):
            out[key] = Param(key, text, "choice", default, choices=r.options,
                             labels=dict(r.labels or {}), help=help_text)
            continue
        out[key] = Param(key, text, "float", float(default), r.lo, r.hi, r.step, fmt=_fmt(r.step),
                         help=help_text)
    return out


def controls() -> dict[str, Param]:
    """Every control of the margin pages by key: the page's own, then the margins'."""
    methods = tuple(list_margins())
    page = _page_controls(methods)
    margins = _margin_controls(methods)
    clash = set(page) & set(margins)
    if clash:
        raise ValueError(f"margin control key(s) {sorted(clash)} clash with the page's controls")
    return {**page, **margins}


def other_margin_controls(placed: Iterable[str]) -> list[str]:
    """Keys of the margins' controls a page has not ``placed`` itself (for an "other methods"
    section), in registration order."""
    placed = set(placed)
    return [key for key in _margin_controls(tuple(list_margins())) if key not in placed]


def make_margin(name: str, v: Mapping[str, Any]) -> Margin:
    """The margin ``name`` at the page's values: each shown parameter from its control (a control
    the page does not have leaves the parameter at its default)."""
    cls = margin_class(name)
    ranges = {**cls.param_ranges(), **cls.param_choices()}
    params = {item: v[_key(item, ranges)] for item, r in ranges.items()
              if r.shown and _key(item, ranges) in v}
    return build_margin(name, **params)


def context(name: str, v: Mapping[str, Any], norm: float | None = None) -> dict[str, Any]:
    """What the page knows of the context inputs ``name`` reads (e.g. AdaFace: the norm with μ_z,
    σ_z, and ẑ when it is set directly; MagFace: the norm; CurricularFace: t). ``norm`` overrides
    the page's norm."""
    cls = margin_class(name)
    ranges = cls.input_ranges()
    out: dict[str, Any] = {}
    for item in cls.input_names():
        if item == "z_hat" and not v.get("zdirect"):
            continue  # ẑ follows from the norm unless the page sets it directly
        value = norm if item == "norm" and norm is not None else v.get(_key(item, ranges))
        if value is not None:
            out[item] = value
    return out


def spec(name: str, v: Mapping[str, Any], norm: float | None = None, label: str | None = None) -> MethodSpec:
    """A :class:`~adaface_lab.plots.MethodSpec` of ``name`` at the page's values."""
    return method_spec(make_margin(name, v), label, **context(name, v, norm))


def z_hat_now(v: Mapping[str, Any], norm: float | None = None) -> float:
    """AdaFace's ẑ at the page's values (from the library's formula, or as set directly)."""
    if v.get("zdirect"):
        return float(v["zhat"])
    norm = v["norm"] if norm is None else norm
    return float(adaface_z_hat(norm, v["mean"], v["std"], v["h"]))


def plane(name: str, v: Mapping[str, Any], norm: float | None = None,
          resolution: int = PLANE_RESOLUTION) -> FeaturePlane:
    """The feature plane of ``name`` at the page's values.

    Not cached: a plane takes about 0.5 ms at 121² (1 ms at 161²), no more than a cache hit costs,
    and a cache of planes would hold ~0.8 MB per entry on a shared server."""
    return feature_plane(make_margin(name, v), phi=math.radians(float(v["phi"])), resolution=resolution,
                         convention=v["conv"], **context(name, v, norm))
