"""The gradient scaling term (GST) and the paper's Fig. 3 feature plane, in NumPy.

For the cross-entropy of scaled logits, the gradient with respect to the target cosine is

    g = ∂L/∂c_y = (P_y − 1) · df/dc                      (target class)
    g_j = ∂L/∂c_j = P_j · d logit_j / d c_j               (a negative class j)

with f the method's target logit (:mod:`adaface_lab.margins`). Under the "detached-margin"
convention (insightface, CVLface) the margin is computed without gradient, so df/dc = s and the
margin acts only through P_y. ``convention="official"`` (the AdaFace code) is the default.

The feature plane (DESIGN.md §2, paper Fig. 3): two unit class vectors W_y (along +x) and W_j at
angle φ, a feature at polar angle α and radius r in the unit disc. θ_y is its angle to W_y, θ_j to
W_j; two-class softmax gives P_y; B0 is where c_y = c_j and B1 where f(c_y) = logit_j(c_j).

Where an angle clip of the official code is active, df/dc = 0, so even a misclassified sample gets
no gradient: :func:`zero_gradient_bands` finds those angles along the arc (AdaFace's θ_y < m·ẑ + ε
for ẑ above about 0.75, ArcFace's θ_y > π − m − ε) and ``FeaturePlane.zero_g`` marks them in the
plane. :func:`where_more_gradient` compares two methods (or one at two norms) along the arc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Literal, NamedTuple

import numpy as np

from .margins import EPS, Margin, build_margin

if TYPE_CHECKING:
    import torch

    from .heads import MarginHead

Convention = Literal["official", "detached"]
CONVENTIONS: tuple[str, ...] = ("official", "detached")
Interval = tuple[float, float]
"""(first, last) angle θ_y of a run of the arc, radians."""


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def resolve_context(
    margin: Margin,
    *,
    norm: Any = None,
    z_hat: Any = None,
    mean: float | None = None,
    std: float | None = None,
    t: float | None = None,
) -> dict[str, Any]:
    """The per-sample keywords ``margin`` needs, from what the caller knows (each margin says how:
    :meth:`adaface_lab.margins.Margin.resolve_context`; e.g. AdaFace takes ``z_hat`` directly or
    computes it from ``norm``, ``mean`` and ``std``, MagFace takes ``norm``)."""
    return margin.resolve_context(norm=norm, z_hat=z_hat, mean=mean, std=std, t=t)


def target_derivative(margin: Margin, c_y: np.ndarray, convention: Convention = "official",
                      **context: Any) -> np.ndarray:
    """df/dc under ``convention``: the analytic derivative, or s when the margin is detached."""
    _check_convention(convention)
    if convention == "detached":
        return np.full_like(np.asarray(c_y, dtype=float), margin.s)
    return margin.target_derivative(c_y, **context)


def target_gst(margin: Margin, c_y: np.ndarray, p_y: np.ndarray, convention: Convention = "official",
               **context: Any) -> np.ndarray:
    """g = (P_y − 1) · df/dc for target cosines ``c_y`` with target probabilities ``p_y``."""
    return (np.asarray(p_y) - 1.0) * target_derivative(margin, c_y, convention, **context)


def negative_gst(margin: Margin, c_j: np.ndarray, c_y: np.ndarray, p_j: np.ndarray,
                 convention: Convention = "official", **context: Any) -> np.ndarray:
    """g_j = P_j · d logit_j/dc_j for a negative class (differs from P_j·s only for CurricularFace,
    whose ``t`` comes with the context)."""
    _check_convention(convention)
    if convention == "detached":
        return np.asarray(p_j) * margin.s
    return np.asarray(p_j) * margin.negative_derivative(c_j, c_y, **context)


def two_class(margin: Margin, c_y: np.ndarray, c_j: np.ndarray, *,
              convention: Convention = "official", **context: Any) -> dict[str, np.ndarray]:
    """Logits, P_y and both GSTs for a two-class problem (W_y and one negative W_j).

    ``context``: the margin's per-sample keywords (``norm``, ``z_hat``, ``t``; see
    :func:`resolve_context`). Returns a dict of arrays shaped like ``c_y``: ``logit_y``,
    ``logit_j``, ``p_y``, ``g`` (target GST) and ``g_j`` (negative GST).
    """
    logit_y = margin.target_logit(c_y, **context)
    logit_j = margin.negative_logit(c_j, c_y, **context)
    p_y = 0.5 * (1.0 + np.tanh(0.5 * (logit_y - logit_j)))  # stable sigmoid(f − logit_j)
    g = target_gst(margin, c_y, p_y, convention, **context)
    g_j = negative_gst(margin, c_j, c_y, 1.0 - p_y, convention, **context)
    return {"logit_y": logit_y, "logit_j": logit_j, "p_y": p_y, "g": g, "g_j": g_j}


def zero_gradient(margin: Margin, c_y: np.ndarray, p_y: np.ndarray,
                  convention: Convention = "official", **context: Any) -> np.ndarray:
    """Where a misclassified sample (P_y < ½) gets g = 0 exactly: a clip of the official code is
    active, so df/dc = 0 however wrong the sample is. Boolean, shaped like ``c_y``.

    The cosine clamp [−1+ε, 1−ε], which zeroes g within 2.6° of W_y and of −W_y for every method, is
    left out; what remains is an angle clip: AdaFace's θ + g_angle ≥ ε (for ẑ > 0 it stops the
    gradient of every θ_y < m·ẑ + ε), ArcFace's θ + m ≤ π − ε. The detached convention
    (df/dc = s) has none.
    """
    _check_convention(convention)
    c_y = np.asarray(c_y)
    if convention == "detached":
        return np.zeros(c_y.shape, dtype=bool)
    dfdc = margin.target_derivative(c_y, **context)
    return (np.asarray(p_y) < 0.5) & (dfdc == 0) & (np.abs(c_y) <= 1.0 - EPS)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The runs of True in ``mask``: (first, last) index of each."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def _bands(mask_of: Callable[[np.ndarray], np.ndarray], upto: float, resolution: int,
           refine: int = 257) -> list[Interval]:
    """The runs of θ ∈ [0, upto] where ``mask_of(θ)`` holds: found on a grid of ``resolution``
    angles, each edge then located on ``refine`` angles between its two grid neighbours (so a run
    narrower than the grid step can be missed, an edge is exact to step/refine)."""
    if not 0 < upto <= math.pi:
        raise ValueError(f"upto must lie in (0, π], got {upto}")
    if resolution < 3:
        raise ValueError(f"resolution must be at least 3, got {resolution}")
    theta = np.linspace(0.0, upto, resolution)
    out = []
    for a, b in _runs(mask_of(theta)):
        lo, hi = theta[a], theta[b]
        if a > 0:
            local = np.linspace(theta[a - 1], theta[a], refine)
            lo = local[np.argmax(mask_of(local))]
        if b < resolution - 1:
            local = np.linspace(theta[b], theta[b + 1], refine)
            hi = local[len(local) - 1 - np.argmax(mask_of(local)[::-1])]
        out.append((float(lo), float(hi)))
    return out


def zero_gradient_bands(margin: Margin | str, *, phi: float = math.pi / 2,
                        convention: Convention = "official", upto: float = math.pi,
                        resolution: int = 1801, **context: Any) -> list[Interval]:
    """The bands of θ_y ∈ [0, ``upto``] (radians) along the arc from W_y toward W_j where a sample is
    misclassified (P_y < ½) and still gets no gradient (:func:`zero_gradient`).

    ``context``: :func:`resolve_context`'s keywords (e.g. AdaFace's ``z_hat``, or ``norm`` with
    ``mean`` and ``std``). Found on ``resolution`` angles (0.1° apart by default), edges refined to
    below 0.001°. AdaFace at ẑ = +1, m = 0.4, φ = 90°: one band, from B1 (11.5°) to m·ẑ + ε (23.0°).
    Taught in ``notebooks/01_margins_and_gst.ipynb`` (§1.2).
    """
    if isinstance(margin, str):
        margin = build_margin(margin)
    ctx = resolve_context(margin, **context)

    def mask_of(theta: np.ndarray) -> np.ndarray:
        p_y = arc_profile(margin, theta, phi=phi, convention=convention, **ctx)["p_y"]
        return zero_gradient(margin, np.cos(theta), p_y, convention, **ctx)

    return _bands(mask_of, upto, resolution)


def where_more_gradient(first: tuple[Margin, dict[str, Any]], second: tuple[Margin, dict[str, Any]],
                        *, phi: float = math.pi / 2, convention: Convention = "official",
                        upto: float = math.pi, resolution: int = 1801) -> list[Interval]:
    """The runs of θ_y ∈ [0, ``upto``] (radians) along the arc where the ``first`` method's |g|
    exceeds the ``second``'s (by more than 1e-9·s, so that two zeros tie); found as in
    :func:`zero_gradient_bands`.

    Each method is a (margin, context) pair, the context as for :func:`resolve_context`; e.g. AdaFace
    at a high and a low norm: ``((ada, {"z_hat": 1.0}), (ada, {"z_hat": -1.0}))``. Taught in
    ``notebooks/01_margins_and_gst.ipynb`` (§1.2).
    """
    contexts = [resolve_context(margin, **context) for margin, context in (first, second)]
    tol = 1e-9 * max(first[0].s, second[0].s)

    def mask_of(theta: np.ndarray) -> np.ndarray:
        g = [np.abs(arc_profile(margin, theta, phi=phi, convention=convention, **ctx)["g"])
             for (margin, _), ctx in zip((first, second), contexts)]
        return g[0] > g[1] + tol

    return _bands(mask_of, upto, resolution)


def _angle_between(alpha: np.ndarray, direction: float) -> np.ndarray:
    """Unsigned angle in [0, π] between polar angle ``alpha`` and ``direction`` (radians)."""
    return np.abs((alpha - direction + math.pi) % (2 * math.pi) - math.pi)


def arc_profile(margin: Margin, theta_y: np.ndarray, *, phi: float = math.pi / 2,
                convention: Convention = "official", **context: Any) -> dict[str, np.ndarray]:
    """:func:`two_class` along the unit circle, for features at angle ``theta_y`` (rad) from W_y
    rotating toward W_j (so θ_j = |θ_y − φ|). Adds ``theta_y`` and ``theta_j`` to the dict."""
    theta_y = np.asarray(theta_y, dtype=float)
    theta_j = _angle_between(theta_y, phi)
    out = two_class(margin, np.cos(theta_y), np.cos(theta_j), convention=convention, **context)
    out.update(theta_y=theta_y, theta_j=theta_j)
    return out


@dataclass
class FeaturePlane:
    """A method's Fig. 3 picture: fields on a square grid over the unit disc (NaN outside).

    ``margin``: the method drawn (``method`` and ``params`` are its name and parameters);
    ``x``, ``y``: (R,) grid coordinates; ``theta_y``, ``theta_j`` (rad), ``norm``, ``p_y``, ``g``
    and ``g_j``: (R, R) arrays indexed [y, x]; ``zero_g``: (R, R) booleans, the misclassified points
    whose g an angle clip sets to 0 (:func:`zero_gradient`); ``b0`` and ``b1``: lists of (K, 2) polylines;
    ``w_y``, ``w_j``: the unit class vectors; ``context``: what the caller gave (norm, ẑ, μ_z,
    σ_z, t).
    """

    margin: Margin
    phi: float
    convention: str
    x: np.ndarray
    y: np.ndarray
    theta_y: np.ndarray
    theta_j: np.ndarray
    norm: np.ndarray
    p_y: np.ndarray
    g: np.ndarray
    g_j: np.ndarray
    zero_g: np.ndarray
    b0: list[np.ndarray]
    b1: list[np.ndarray]
    w_y: np.ndarray
    w_j: np.ndarray
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        """The margin's registered name."""
        return self.margin.name

    @property
    def params(self) -> dict[str, float]:
        """The margin's parameters."""
        return self.margin.params()


def feature_plane(
    margin: Margin | str,
    *,
    phi: float = math.pi / 2,
    resolution: int = 300,
    norm: float | None = None,
    z_hat: float | None = None,
    mean: float | None = None,
    std: float | None = None,
    radial_norm: tuple[float, float] | None = None,
    t: float = 0.0,
    convention: Convention = "official",
    dtype: Any = np.float32,
) -> FeaturePlane:
    """The feature plane of ``margin`` (a Margin or a registered name with default parameters).

    A point's norm is ``norm`` everywhere, or, with ``radial_norm=(lo, hi)``, grows with its radius
    r ∈ [0, 1] as lo + r·(hi − lo) (so AdaFace's and MagFace's margins vary across the disc).
    AdaFace takes ``z_hat`` directly, or ``mean`` and ``std`` (μ_z, σ_z) with the norm(s).
    ``phi`` is the angle between W_y and W_j in radians; ``resolution`` the grid side.
    """
    if isinstance(margin, str):
        margin = build_margin(margin)
    _check_convention(convention)
    if not 0 < phi <= math.pi:
        raise ValueError(f"phi must lie in (0, π], got {phi}")
    if resolution < 8:
        raise ValueError("resolution must be at least 8")
    axis, radius, inside, theta_y, theta_j, c_y, c_j = _plane_geometry(phi, resolution, np.dtype(dtype))

    if radial_norm is not None:
        lo, hi = radial_norm
        norms = np.where(inside, lo + radius * (hi - lo), np.nan).astype(dtype)
    else:
        norms = np.where(inside, np.nan if norm is None else norm, np.nan).astype(dtype)
    have_norm = norm is not None or radial_norm is not None
    context = resolve_context(
        margin, norm=norms[inside] if have_norm else None, z_hat=z_hat, mean=mean, std=std, t=t
    )

    fields = two_class(margin, c_y, c_j, convention=convention, **context)

    def _full(values: np.ndarray) -> np.ndarray:
        out = np.full(radius.shape, np.nan, dtype=dtype)
        out[inside] = values
        return out

    b0 = [_ray(phi / 2), _ray(phi / 2 + math.pi)]
    b1 = _boundary_b1(margin, phi, norm, z_hat, mean, std, radial_norm, t)
    return FeaturePlane(
        margin=margin,
        phi=phi,
        convention=convention,
        x=axis,
        y=axis,
        theta_y=theta_y,
        theta_j=theta_j,
        norm=norms,
        p_y=_full(fields["p_y"]),
        g=_full(fields["g"]),
        g_j=_full(fields["g_j"]),
        zero_g=_full(zero_gradient(margin, c_y, fields["p_y"], convention, **context)) == 1,
        b0=b0,
        b1=b1,
        w_y=np.array([1.0, 0.0]),
        w_j=np.array([math.cos(phi), math.sin(phi)]),
        context={k: v for k, v in (("norm", norm), ("z_hat", z_hat), ("mean", mean), ("std", std),
                                   ("t", t)) if v is not None},
    )


@lru_cache(maxsize=8)
def _plane_geometry(phi: float, resolution: int, dtype: np.dtype) -> tuple[np.ndarray, ...]:
    """Grid geometry shared by every method at the same (φ, resolution), computed once.

    Returns (axis (R,), radius (R, R), inside mask, θ_y and θ_j grids (NaN outside the disc),
    c_y and c_j of the points inside). The arrays are read-only: they are shared.
    """
    axis = np.linspace(-1.0, 1.0, resolution, dtype=dtype)
    xx, yy = np.meshgrid(axis, axis)  # [y, x]
    radius = np.hypot(xx, yy)
    alpha = np.arctan2(yy, xx)
    inside = radius <= 1.0
    theta_y = np.where(inside, _angle_between(alpha, 0.0), np.nan).astype(dtype)
    theta_j = np.where(inside, _angle_between(alpha, phi), np.nan).astype(dtype)
    c_y, c_j = np.cos(alpha[inside]), np.cos(alpha[inside] - dtype.type(phi))
    out = (axis, radius, inside, theta_y, theta_j, c_y, c_j)
    for array in out:
        array.flags.writeable = False
    return out


def _ray(angle: float, r0: float = 0.0, r1: float = 1.0) -> np.ndarray:
    """A straight segment from radius r0 to r1 along polar angle ``angle``: (2, 2)."""
    direction = np.array([math.cos(angle), math.sin(angle)])
    return np.stack([r0 * direction, r1 * direction])


def _boundary_b1(margin: Margin, phi: float, norm: float | None, z_hat: float | None,
                 mean: float | None, std: float | None, radial_norm: tuple[float, float] | None,
                 t: float, n_alpha: int = 1440, n_radius: int = 48) -> list[np.ndarray]:
    """B1 (f(c_y) = logit_j(c_j)) as polylines, found by sign changes along the angle.

    With a fixed norm B1 is made of rays; with a radial norm it bends, traced radius by radius.
    """
    alpha = np.linspace(-math.pi, math.pi, n_alpha, endpoint=False)
    radii = np.linspace(0.02, 1.0, n_radius) if radial_norm is not None else np.array([1.0])
    roots_per_radius: list[np.ndarray] = []
    for r in radii:
        r_norm = radial_norm[0] + r * (radial_norm[1] - radial_norm[0]) if radial_norm else norm
        context = resolve_context(
            margin,
            norm=None if r_norm is None else np.full_like(alpha, r_norm),
            z_hat=z_hat, mean=mean, std=std, t=t,
        )
        c_y, c_j = np.cos(alpha), np.cos(alpha - phi)
        diff = margin.target_logit(c_y, **context) - margin.negative_logit(c_j, c_y, **context)
        nxt = np.roll(diff, -1)
        crossing = np.flatnonzero((diff > 0) != (nxt > 0))
        frac = diff[crossing] / (diff[crossing] - nxt[crossing])
        step = 2 * math.pi / n_alpha
        roots_per_radius.append(alpha[crossing] + frac * step)

    if radial_norm is None:
        return [_ray(a) for a in roots_per_radius[0]]
    branches: dict[int, list[tuple[float, float]]] = {}
    for r, roots in zip(radii, roots_per_radius):
        for i, a in enumerate(np.sort(roots)):
            branches.setdefault(i, []).append((r * math.cos(a), r * math.sin(a)))
    return [np.asarray(points) for points in branches.values() if len(points) > 1]


# --------------------------------------------------------------------------- taught in notebook 1


def b1_on_arc(
    margin: Margin | str,
    *,
    phi: float = math.pi / 2,
    norm: float | None = None,
    z_hat: float | None = None,
    mean: float | None = None,
    std: float | None = None,
    t: float = 0.0,
    resolution: int = 4097,
) -> float:
    """Where B1 crosses the arc from W_y to W_j: the angle θ_y (rad) from W_y at which P_y = ½.

    On the arc θ_j = φ − θ_y, and two-class softmax gives P_y = ½ where f(c_y) = logit_j(c_j). The
    first sign change of f − logit_j on ``resolution`` angles in [0, φ] is refined by linear
    interpolation. NaN when P_y stays on one side of ½ along the whole arc (e.g. a margin larger
    than the arc). Softmax's B1 is B0 (φ/2); ArcFace's is (φ − m)/2. The context keywords are
    :func:`feature_plane`'s. Taught in ``notebooks/01_margins_and_gst.ipynb`` (§1.4).
    """
    if isinstance(margin, str):
        margin = build_margin(margin)
    if not 0 < phi <= math.pi:
        raise ValueError(f"phi must lie in (0, π], got {phi}")
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    context = resolve_context(margin, norm=norm, z_hat=z_hat, mean=mean, std=std) if margin.needs else {}
    theta = np.linspace(0.0, phi, resolution)  # (R,) from W_y to W_j
    c_y = np.cos(theta)
    excess = margin.target_logit(c_y, **context) - margin.negative_logit(np.cos(phi - theta), c_y, t=t)  # > 0: P_y > ½
    lost = np.flatnonzero(excess <= 0)
    if len(lost) == 0 or lost[0] == 0:
        return float("nan")
    i = int(lost[0])
    frac = excess[i - 1] / (excess[i - 1] - excess[i])
    return float(theta[i - 1] + frac * (theta[i] - theta[i - 1]))


class AutogradCheck(NamedTuple):
    """The target-class g of each sample found two ways: ``autograd``, ``analytic`` and ``p_y``, (B,) each."""

    autograd: np.ndarray
    analytic: np.ndarray
    p_y: np.ndarray

    @property
    def relative_error(self) -> float:
        """max |analytic − autograd| / max |autograd| over the batch."""
        return float(np.abs(self.analytic - self.autograd).max() / np.abs(self.autograd).max())


def autograd_check(head: "MarginHead", cos: "torch.Tensor", norms: "torch.Tensor",
                   labels: "torch.Tensor") -> AutogradCheck:
    """∂L/∂c_y found by autograd through ``head`` beside the analytic g = (P_y − 1)·df/dc.

    ``cos``: (B, C) cosines (float64 keeps the comparison exact), ``norms``: (B, 1), ``labels``: (B,).
    L is the head's summed loss (cross-entropy plus any auxiliary term). The analytic g uses the
    head's margin, its convention (``detach_margin``) and the per-sample context the head recorded
    (AdaFace's ẑ, MagFace's norm). Calling it updates a stateful head as a training step would.
    Taught in ``notebooks/01_margins_and_gst.ipynb`` (§1.3).
    """
    import torch

    cos = cos.detach().clone().requires_grad_()
    logits = head.logits_from_cos(cos, norms, labels)
    head.loss(logits, labels, reduction="sum").backward()
    rows = torch.arange(len(labels))
    assert cos.grad is not None
    p_y = torch.softmax(logits.detach(), dim=1)[rows, labels].numpy()
    context = {k: head.diagnostics[k].numpy() for k in head.margin.needs}
    convention: Convention = "detached" if head.detach_margin else "official"
    analytic = target_gst(head.margin, cos.detach()[rows, labels].numpy(), p_y, convention, **context)
    return AutogradCheck(autograd=cos.grad[rows, labels].numpy(), analytic=analytic, p_y=p_y)


__all__ = [
    "CONVENTIONS",
    "AutogradCheck",
    "FeaturePlane",
    "Interval",
    "arc_profile",
    "autograd_check",
    "b1_on_arc",
    "feature_plane",
    "negative_gst",
    "resolve_context",
    "target_derivative",
    "target_gst",
    "two_class",
    "where_more_gradient",
    "zero_gradient",
    "zero_gradient_bands",
]
