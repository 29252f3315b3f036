"""Margin functions: the target logit f(c) of every margin-based softmax and its derivative df/dc.

This module is where the maths of DESIGN.md §2 lives, and where each method declares itself once:
a small frozen dataclass registered under its name, with its display ``label`` and ``color``, its
parameters as fields with defaults, the per-sample context it ``needs`` and the :class:`Range` of
each parameter (the app's sliders and the property tests are built from these; nothing else in the
lab lists the methods), and the :class:`Domain` of values each parameter may take at all: a margin
refuses, when it is made, a parameter that is not a finite number in its domain (one ValueError
naming it and its domain). ``build_margin(name, **params)`` makes one. Each works on NumPy arrays (fast,
for the app and the plots) and on torch tensors (inside the heads, where autograd sees it).

A new method needs only a label, its fields and :meth:`Margin.terms`::

    @register_margin("tilted")
    class Tilted(Margin):
        label = "Tilted"
        k: float = 0.2

        def terms(self, norm=None, z_hat=None):
            return 1.0, self.k, self.k / 2    # f = s·(cos(θ + k) − k/2)

and then works in ``build_head``, ``gst.feature_plane``, the plots and the app (registering makes
it a frozen dataclass and gives it a colour).

Notation (per sample): ``c = cos θ_y`` between the unit feature and the unit target-class weight,
``θ = arccos c`` in radians, ``s`` the scale. All logits returned here are already multiplied by s.

Most methods are one formula with per-sample terms (the "combined" margin of insightface)::

    f(c) = s · (cos(m1·θ + m2) − m3),   df/dc = s · m1 · sin(m1·θ + m2) / sin θ

  softmax (1, 0, 0) · CosFace (1, 0, m) · ArcFace (1, m, 0) · negative angular (1, −m, 0)
  MagFace (1, m(a), 0) · AdaFace (1, −m·ẑ, m·ẑ + m) · CurricularFace's target = ArcFace's

so each class only says what its terms are (:meth:`Margin.terms`). SphereFace's piecewise ψ(θ)
overrides the formula itself, and CurricularFace also changes the hard negatives' logits.

Clamps follow the official AdaFace code: cosines clamped to [−1+ε, 1−ε] and the angle
m1·θ + m2 clipped to [ε, π−ε] (ε = 1e-3); where a clamp is active the derivative is 0. MagFace and
CurricularFace take ``boundary="official"`` for what their own code does past that point (MagFace's
easy margin, CurricularFace's c − m·sin m). Where the paper and the official code differ, and where
the lab differs from either, is listed in ``docs/paper_vs_code.md``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, ClassVar, Mapping, Union

import numpy as np
import torch

from ._registry import Registry

Array = Union[np.ndarray, torch.Tensor]
Scalar = Union[float, np.ndarray, torch.Tensor]

EPS = 1e-3
"""ε of the official AdaFace code: cosine clamp, angle clip and the ẑ denominator (the same
repository's ArcFace and CosFace heads use 1e-4; the lab uses 1e-3 for every method, see
docs/paper_vs_code.md)."""

# ----------------------------------------------------------------------------- array helpers


def _is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _acos(x: Array) -> Array:
    return torch.acos(x) if _is_torch(x) else np.arccos(x)


def _cos(x: Array) -> Array:
    return torch.cos(x) if _is_torch(x) else np.cos(x)


def _sin(x: Array) -> Array:
    return torch.sin(x) if _is_torch(x) else np.sin(x)


def _clip(x: Array, lo: Scalar, hi: Scalar) -> Array:
    if _is_torch(x):
        return torch.clamp(x, lo, hi)
    return np.minimum(np.maximum(x, lo), hi)  # np.clip's dtype handling is slower


def _inside(x: Array, lo: Scalar, hi: Scalar) -> Array:
    """1.0 where lo ≤ x ≤ hi (the clamp passes the gradient), else 0.0; same type as x."""
    mask = (x >= lo) & (x <= hi)
    return mask.to(x.dtype) if _is_torch(x) else mask.astype(np.result_type(x, np.float32))


def _floor(x: Array) -> Array:
    return torch.floor(x) if _is_torch(x) else np.floor(x)


def _where(mask: Array, a: Array, b: Array) -> Array:
    return torch.where(mask, a, b) if _is_torch(mask) else np.where(mask, a, b)


def _as_array_like(value: Any, like: Array) -> Array:
    """A per-sample quantity (norm, ẑ) as the same kind of array as ``like``."""
    if _is_torch(like):
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return np.asarray(value, dtype=np.result_type(like, np.float32))


def clamp_cos(c: Array, eps: float = EPS) -> Array:
    """Clamp cosines to [−1+ε, 1−ε] so that arccos has a finite derivative."""
    return _clip(c, -1.0 + eps, 1.0 - eps)


# ----------------------------------------------------------------------------- AdaFace terms


def adaface_z_hat(norm: Array, mean: Scalar, std: Scalar, h: float, eps: float = EPS) -> Array:
    """ẑ = clip(h · (‖z‖ − μ_z) / (σ_z + ε), −1, 1), with ‖z‖ clipped to [0.001, 100].

    ``norm``: feature norms (any shape), ``mean``/``std``: the (EMA) batch statistics μ_z, σ_z.
    In the heads ẑ is computed without gradient (DESIGN.md §2); here it is a plain function. The
    ε and the norm clip are the official code's, not the paper's (docs/paper_vs_code.md).
    """
    safe = _clip(norm, 0.001, 100.0)
    return _clip(h * (safe - mean) / (std + eps), -1.0, 1.0)


def adaface_terms(z_hat: Array, m: float) -> tuple[Array, Array]:
    """AdaFace's adaptive terms: g_angle = −m·ẑ and g_add = m·ẑ + m (radians and cosine units)."""
    return -m * z_hat, m * z_hat + m


def magface_margin(norm: Array, l_a: float, u_a: float, l_m: float, u_m: float) -> Array:
    """MagFace's margin m(a) = (u_m − l_m)/(u_a − l_a) · (a − l_a) + l_m with a = clamp(‖z‖, l_a, u_a)."""
    a = _clip(norm, l_a, u_a)
    return (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m


def magface_regularizer(norm: Array, l_a: float, u_a: float) -> Array:
    """MagFace's norm regulariser g(a) = 1/a + a/u_a² (per sample; the loss adds λ_g · mean g)."""
    a = _clip(norm, l_a, u_a)
    return 1.0 / a + a / (u_a**2)


# ----------------------------------------------------------------------------- declarations

CONTEXT_INPUTS: tuple[str, ...] = ("norm", "z_hat", "mean", "std", "t")
"""What a caller may know about a sample: its norm ‖z‖, AdaFace's ẑ, the batch statistics μ_z and
σ_z (from which AdaFace computes ẑ) and CurricularFace's t. Each margin reads the ones it needs."""


@dataclass(frozen=True, kw_only=True)
class _Control:
    """How a declared parameter shows in the app (shared by :class:`Range` and :class:`Choice`).

    ``key``: its short name in the app's controls and URLs (default: the parameter's name; margins
    whose parameters share a key share one control, as every method's m does). ``label``, ``help``:
    the control's text. ``default``: the control's start value (default: the parameter's own).
    ``shown=False``: kept at its default in the app and left out of figure titles (settings that
    act in training only, such as AdaFace's t_alpha).
    """

    key: str | None = None
    label: str | None = None
    help: str | None = None
    default: Any = None
    shown: bool = True


@dataclass(frozen=True)
class Range(_Control):
    """Where a parameter (or a context input) is varied: a slider's bounds and step in the app, and
    the interval the property tests draw from; the rest as :class:`_Control`."""

    lo: float
    hi: float
    step: float | None = None

    def __post_init__(self) -> None:
        if not self.hi > self.lo:
            raise ValueError(f"a range needs hi > lo, got [{self.lo}, {self.hi}]")
        if self.step is None:
            object.__setattr__(self, "step", (self.hi - self.lo) / 100)

    @classmethod
    def around(cls, default: float) -> "Range":
        """The range of a parameter that declares none: [0, 2·default] (or [2·default, 0]; [0, 1]
        for a default of 0)."""
        if default == 0:
            return cls(0.0, 1.0)
        return cls(min(0.0, 2.0 * default), max(0.0, 2.0 * default))


@dataclass(frozen=True)
class Choice(_Control):
    """A parameter that takes one of a few named values (MagFace's and CurricularFace's
    ``boundary``): a select box in the app, each value drawn by the property tests.

    ``options``: the values; ``labels``: each value's text in the app's control; ``short``: each
    value's text in figure titles and legends (what the figure draws); the rest as
    :class:`_Control`.
    """

    options: tuple[str, ...]
    labels: Mapping[str, str] | None = None
    short: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if len(self.options) < 2:
            raise ValueError(f"a choice needs at least two options, got {self.options}")
        if self.default is not None and self.default not in self.options:
            raise ValueError(f"default {self.default!r} is not one of {self.options}")

    def check(self, name: str, value: Any) -> None:
        """ValueError naming the options when ``value`` is not one of them."""
        if value not in self.options:
            raise ValueError(f"{name} must be one of {self.options}, got {value!r}")


@dataclass(frozen=True)
class Domain:
    """The values a parameter may take at all: a margin refuses any other when it is made. (A
    :class:`Range` is only where the app and the tests vary it, inside this.)

    ``lo``/``hi``: the bounds (±inf for none), each closed unless ``lo_open``/``hi_open``;
    ``why``: what goes wrong outside, for the error message.
    """

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    why: str = ""

    def __contains__(self, x: float) -> bool:
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return bool(above and below)

    def __str__(self) -> str:
        lo, hi = _bound(self.lo), _bound(self.hi)
        if math.isinf(self.hi):
            return f"{'>' if self.lo_open else '≥'} {lo}"
        if math.isinf(self.lo):
            return f"{'<' if self.hi_open else '≤'} {hi}"
        return f"{'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"


def _bound(x: float) -> str:
    """A domain bound as written: π/2 and π by name."""
    for value, name in ((math.pi / 2, "π/2"), (math.pi, "π")):
        if x == value:
            return name
    return f"{x:g}"


_ANGLE = Domain(0.0, math.pi / 2, why="an angular margin is ≥ 0, and beyond π/2 a perfect match "
                                       "(θ_y = 0) scores below a class orthogonal to it")
"""The domain of an angular margin m."""

_PALETTE = ("#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
            "#f7b6d2", "#dbdb8d", "#9edae5")
"""Colours given to margins that declare none, in registration order (the first one unused)."""

# ----------------------------------------------------------------------------- registry

MARGINS: Registry[type["Margin"]] = Registry("margin")


def register_margin(name: str) -> Callable[[type["Margin"]], type["Margin"]]:
    """Class decorator: register a :class:`Margin` subclass under ``name``.

    The class becomes a frozen dataclass if it is not one already; without a ``label`` of its own
    it is labelled ``name``, without a ``color`` it gets the first palette colour no registered
    margin uses.
    """

    def deco(cls: type[Margin]) -> type[Margin]:
        if "__dataclass_fields__" not in cls.__dict__:
            cls = dataclass(frozen=True)(cls)
        cls.name = name
        if "label" not in cls.__dict__:
            cls.label = name
        if cls.__dict__.get("color") is None:
            used = {MARGINS.get(n).color for n in MARGINS.names()}
            free = [c for c in _PALETTE if c not in used]
            cls.color = free[0] if free else _PALETTE[len(MARGINS.names()) % len(_PALETTE)]
        return MARGINS.add(name, cls)

    return deco


def list_margins() -> list[str]:
    """Names of every registered margin, in registration order."""
    return MARGINS.names()


def margin_class(name: str) -> type["Margin"]:
    """The class registered under ``name``; ValueError naming the known ones otherwise."""
    return MARGINS.get(name)


def build_margin(name: str, /, **params: Any) -> "Margin":
    """Make the margin ``name`` with ``params``: ValueError for an unknown parameter name, or a value
    outside the parameter's :class:`Domain`."""
    cls = margin_class(name)
    known = [f.name for f in fields(cls)]
    unknown = set(params) - set(known)
    if unknown:
        raise ValueError(
            f"margin {name!r} takes {known}; unknown parameter(s): {sorted(unknown)}"
        )
    return cls(**params)


# ----------------------------------------------------------------------------- base class


@dataclass(frozen=True)
class Margin:
    """A margin-based softmax: how the target logit (and, rarely, the negatives) change.

    Per-sample context is passed by keyword: ``norm`` (the feature norm ‖z‖, used by MagFace and,
    through ẑ, by AdaFace), ``z_hat`` (AdaFace's normalised norm, in [−1, 1]) and ``t``
    (CurricularFace's curriculum parameter, read by the negatives only; t₀ = 0).
    """

    name: ClassVar[str] = "margin"
    """The registered name (set by :func:`register_margin`)."""
    label: ClassVar[str] = "Margin"
    """Display name in every figure and in the app."""
    color: ClassVar[str | None] = None
    """One colour per method, the same in every figure (given at registration when None)."""
    needs: ClassVar[tuple[str, ...]] = ()
    """The per-sample context the formulas read: any of "norm", "z_hat" and "t"."""
    inputs: ClassVar[tuple[str, ...] | None] = None
    """What a caller may give to make that context, among :data:`CONTEXT_INPUTS` (default:
    ``needs``); see :meth:`resolve_context`."""
    ranges: ClassVar[Mapping[str, Range | Choice]] = {
        "s": Range(1.0, 128.0, 1.0, label="scale s"),
        "norm": Range(0.5, 100.0, 0.5, label="feature norm ‖z‖", default=30.0),
    }
    """:class:`Range` of parameters and context inputs, merged with the parents' (see
    :meth:`param_ranges`); a parameter without one varies over :meth:`Range.around` its default.
    A parameter with named values declares a :class:`Choice` here instead (see
    :meth:`param_choices`)."""
    domains: ClassVar[Mapping[str, Domain]] = {
        "s": Domain(1.0, 1000.0,
                    why="below 1 the softmax over cosines in [−1, 1] stays close to uniform, and "
                        "beyond 1000 it is a hard maximum in float32 (e^(−s·Δc) underflows for "
                        "Δc > 0.09)"),
    }
    """:class:`Domain` of parameters, merged with the parents'. Every numeric parameter must also
    be a finite real number; one without a domain may take any such value."""
    modifies_negatives: ClassVar[bool] = False

    s: float = 64.0

    def __post_init__(self) -> None:
        for name, choice in self.param_choices().items():
            choice.check(f"{self.name}'s {name}", getattr(self, name))
        self._check_params()

    # -- declarations, derived ---------------------------------------------------------------
    @classmethod
    def _merged(cls, attribute: str) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            merged.update(klass.__dict__.get(attribute, {}))
        return merged

    @classmethod
    def _all_ranges(cls) -> dict[str, Range | Choice]:
        return cls._merged("ranges")

    @classmethod
    def param_domains(cls) -> dict[str, Domain]:
        """The :class:`Domain` of every parameter that declares one."""
        declared = cls._merged("domains")
        return {f.name: declared[f.name] for f in fields(cls) if f.name in declared}

    def _check_params(self) -> None:
        """ValueError naming the first numeric parameter that is not a finite real number inside
        its domain (parameters whose default is not a number, such as flags, are left alone)."""
        domains = self.param_domains()
        for f in fields(self):
            if isinstance(f.default, bool) or not isinstance(f.default, numbers.Real):
                continue
            value, domain = getattr(self, f.name), domains.get(f.name)
            where = f" (valid: {domain})" if domain is not None else ""
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{self.label} parameter {f.name} must be a number{where}, "
                                 f"got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{self.label} parameter {f.name} must be finite{where}, got {value}")
            if domain is not None and value not in domain:
                reason = f": {domain.why}" if domain.why else ""
                raise ValueError(f"{self.label} parameter {f.name} = {value:g} is outside {domain}"
                                 f"{reason}")

    @classmethod
    def param_ranges(cls) -> dict[str, Range]:
        """The :class:`Range` of every numeric parameter (all but the :meth:`param_choices`), in
        field order."""
        declared = cls._all_ranges()
        return {f.name: declared.get(f.name) or Range.around(f.default) for f in fields(cls)
                if not isinstance(declared.get(f.name), Choice)}

    @classmethod
    def param_choices(cls) -> dict[str, Choice]:
        """The :class:`Choice` of every parameter with named values, in field order."""
        declared = cls._all_ranges()
        return {f.name: declared[f.name] for f in fields(cls) if isinstance(declared.get(f.name), Choice)}

    def choice_note(self) -> str:
        """What this margin's named values draw, for titles and legends ("" when it has none):
        e.g. MagFace's "easy margin (MagFace code)"."""
        notes = []
        for name, choice in self.param_choices().items():
            value = getattr(self, name)
            notes.append((choice.short or {}).get(value, f"{name}={value}"))
        return ", ".join(notes)

    @classmethod
    def input_names(cls) -> tuple[str, ...]:
        """What a caller may give for the context (``inputs``, or else ``needs``)."""
        return cls.inputs if cls.inputs is not None else cls.needs

    @classmethod
    def input_ranges(cls) -> dict[str, Range]:
        """The :class:`Range` of each context input that declares one."""
        declared = cls._all_ranges()
        return {k: declared[k] for k in cls.input_names() if isinstance(declared.get(k), Range)}

    def resolve_context(self, *, norm: Any = None, z_hat: Any = None, mean: Any = None,
                        std: Any = None, t: Any = None) -> dict[str, Any]:
        """The context keywords this margin's formulas read, from what the caller knows.

        ValueError when a needed ``norm`` or ``z_hat`` is missing; ``t`` may be left out (t₀ = 0).
        """
        given = {"norm": norm, "z_hat": z_hat, "t": t}
        context = {k: given[k] for k in self.needs if given.get(k) is not None}
        self._check_context(context.get("norm"), context.get("z_hat"))
        return context

    def context_label(self, context: Mapping[str, Any]) -> str:
        """What the per-sample ``context`` (as given to :meth:`resolve_context`) sets in a picture,
        for figure titles ("" when nothing)."""
        if "norm" in self.needs and context.get("norm") is not None:
            return f"‖z‖={context['norm']:g}"
        return ""

    # -- the one hook most methods override ------------------------------------------------
    def terms(self, norm: Any = None, z_hat: Any = None) -> tuple[Scalar, Scalar, Scalar]:
        """(m1, m2, m3) of f = s·(cos(m1·θ + m2) − m3); scalars or per-sample arrays."""
        return 1.0, 0.0, 0.0

    # -- derived ---------------------------------------------------------------------------
    def params(self) -> dict[str, float | str]:
        """The method's parameters as a dict (for labels and serialisation)."""
        return asdict(self)

    def _check_context(self, norm: Any, z_hat: Any) -> None:
        if "z_hat" in self.needs and z_hat is None:
            raise ValueError(f"{self.name} needs z_hat (AdaFace's normalised norm)")
        if "norm" in self.needs and norm is None:
            raise ValueError(f"{self.name} needs the feature norm ‖z‖ (norm)")

    def _angle(self, c: Array, norm: Any, z_hat: Any) -> tuple[Array, Array, Array]:
        """(θ, (m1, m2, m3), m1·θ + m2 before its clip) for clamped cosines."""
        self._check_context(norm, z_hat)
        m1, m2, m3 = self.terms(norm=norm, z_hat=z_hat)
        theta = _acos(clamp_cos(c))
        return theta, (m1, m2, m3), m1 * theta + m2

    def target_logit(self, c: Array, *, norm: Any = None, z_hat: Any = None,
                     t: Any = None) -> Array:
        """f(c): the scaled target logit for target cosines ``c`` (any shape); ``t`` is unused."""
        theta, (m1, m2, m3), angle = self._angle(c, norm, z_hat)
        return self.s * (_cos(_clip(angle, EPS, math.pi - EPS)) - m3)

    def target_derivative(self, c: Array, *, norm: Any = None, z_hat: Any = None,
                          t: Any = None) -> Array:
        """df/dc, analytic: s · m1 · sin(m1θ + m2) / sin θ, 0 where a clamp is active."""
        theta, (m1, m2, m3), angle = self._angle(c, norm, z_hat)
        active = _inside(c, -1.0 + EPS, 1.0 - EPS) * _inside(angle, EPS, math.pi - EPS)
        return self.s * m1 * _sin(angle) / _sin(theta) * active

    def margin_terms(self, c: Array, *, norm: Any = None, z_hat: Any = None,
                     t: Any = None) -> dict[str, Array]:
        """Per-sample margin actually applied: ``margin_angle`` (m2, rad), ``margin_add`` (m3)."""
        self._check_context(norm, z_hat)
        _, m2, m3 = self.terms(norm=norm, z_hat=z_hat)
        return {
            "margin_angle": _as_array_like(m2, c) + 0 * c,
            "margin_add": _as_array_like(m3, c) + 0 * c,
        }

    # -- negatives (only CurricularFace changes them) ----------------------------------------
    def negative_logit(self, c_j: Array, c_y: Array, *, norm: Any = None, z_hat: Any = None,
                       t: Scalar = 0.0) -> Array:
        """Scaled logit of a negative class with cosine ``c_j`` (broadcast against ``c_y``)."""
        return self.s * c_j

    def negative_derivative(self, c_j: Array, c_y: Array, *, norm: Any = None,
                            z_hat: Any = None, t: Scalar = 0.0) -> Array:
        """d logit_j / d c_j."""
        return self.s + 0 * c_j


# ----------------------------------------------------------------------------- the methods

_M = Range(0.0, 1.0, 0.01, label="margin m", default=0.4, help="The method's own margin.")
"""The m of every method with an additive or angular m: one shared control in the app."""

_ADDITIVE = Domain(0.0, 1.0, why="an additive margin is ≥ 0, and beyond 1 a perfect match (c_y = 1) "
                                 "scores below a class orthogonal to it")
"""The domain of an additive margin m (cosine units)."""


@register_margin("softmax")
@dataclass(frozen=True)
class Softmax(Margin):
    """Normalised softmax: f = s·c (no margin)."""

    label = "Softmax"
    color = "#7f7f7f"


@register_margin("cosface")
@dataclass(frozen=True)
class CosFace(Margin):
    """CosFace / additive margin: f = s·(c − m). (The AdaFace repository's CosFace head clamps
    cosines with ε = 1e-4, the lab with 1e-3: docs/paper_vs_code.md.)"""

    label = "CosFace"
    color = "#1f77b4"
    ranges = {"m": _M}
    domains = {"m": _ADDITIVE}

    m: float = 0.4

    def terms(self, norm: Any = None, z_hat: Any = None) -> tuple[Scalar, Scalar, Scalar]:
        return 1.0, 0.0, self.m


@register_margin("arcface")
@dataclass(frozen=True)
class ArcFace(Margin):
    """ArcFace / positive angular margin: f = s·cos(θ + m). Past θ = π − m − ε the clip gives
    misclassified samples no gradient (:func:`adaface_lab.gst.zero_gradient_bands`); the AdaFace
    repository's ArcFace head uses ε = 1e-4, the lab 1e-3 (docs/paper_vs_code.md)."""

    label = "ArcFace"
    color = "#d62728"
    ranges = {"m": _M}
    domains = {"m": _ANGLE}

    m: float = 0.5

    def terms(self, norm: Any = None, z_hat: Any = None) -> tuple[Scalar, Scalar, Scalar]:
        return 1.0, self.m, 0.0


@register_margin("negative_angular")
@dataclass(frozen=True)
class NegativeAngular(Margin):
    """Negative angular margin: f = s·cos(θ − m) (easy-sample emphasis)."""

    label = "Negative angular"
    color = "#2ca02c"
    ranges = {"m": _M}
    domains = {"m": _ANGLE}

    m: float = 0.4

    def terms(self, norm: Any = None, z_hat: Any = None) -> tuple[Scalar, Scalar, Scalar]:
        return 1.0, -self.m, 0.0


@register_margin("sphereface")
@dataclass(frozen=True)
class SphereFace(Margin):
    """SphereFace / multiplicative margin: f = s·ψ(θ), ψ = (−1)^k cos(mθ) − 2k, k = ⌊mθ/π⌋.

    ψ is monotone decreasing on [0, π], unlike cos(mθ). No angle clip applies here. The default
    m = 1.35 is the multiplicative term insightface trains with (its "combined" m1); SphereFace's
    paper uses m = 4 with a softmax blend annealed during training, which this formula omits.
    """

    label = "SphereFace"
    color = "#9467bd"
    ranges = {"m": Range(1.0, 4.0, 0.05, key="sm", label="SphereFace multiplicative m")}
    domains = {"m": Domain(1.0, 10.0, why="the angle is multiplied by m: 1 is no margin, the paper "
                                          "uses 4")}

    m: float = 1.35

    def terms(self, norm: Any = None, z_hat: Any = None) -> tuple[Scalar, Scalar, Scalar]:
        return self.m, 0.0, 0.0

    def _k(self, theta: Array) -> tuple[Array, Array]:
        k = _floor(self.m * theta / math.pi)
        odd = torch.remainder(k, 2) if _is_torch(k) else (k.astype(np.int64) & 1).astype(k.dtype)
        return k, 1.0 - 2.0 * odd  # (−1)^k

    def target_logit(self, c: Array, *, norm: Any = None, z_hat: Any = None,
                     t: Any = None) -> Array:
        theta = _acos(clamp_cos(c))
        k, sign = self._k(theta)
        return self.s * (sign * _cos(self.m * theta) - 2.0 * k)

    def target_derivative(self, c: Array, *, norm: Any = None, z_hat: Any = None,
                          t: Any = None) -> Array:
        theta = _acos(clamp_cos(c))
        _, sign = self._k(theta)
        active = _inside(c, -1.0 + EPS, 1.0 - EPS)
        return self.s * sign * self.m * _sin(self.m * theta) / _sin(theta) * active

    def margin_terms(self, c: Array, *, norm: Any = None, z_hat: Any = None,
                     t: Any = None) -> dict[str, Array]:
        return {"margin_mult": _as_array_like(self.m, c) + 0 * c}


@register_margin("combined")
@dataclass(frozen=True)
class Combined(Margin):
    """insightface's combined margin: f = s·(cos(m1·θ + m2) − m3)."""

    label = "Combined"
    color = "#8c564b"
    ranges = {"m1": Range(0.5, 2.0, 0.05, label="combined m1"),
              "m2": Range(0.0, 1.0, 0.01, label="combined m2"),
              "m3": Range(0.0, 0.6, 0.01, label="combined m3")}
    domains = {"m1": Domain(0.0, 10.0, lo_open=True, why="the angle is multiplied by m1 (1: none)"),
               "m2": _ANGLE, "m3": _ADDITIVE}

    m1: float = 1.0
    m2: float = 0.3
    m3: float = 0.2

    def terms(self, norm: Any = None, z_hat: Any = None) -> tuple[Scalar, Scalar, Scalar]:
        return self.m1, self.m2, self.m3

    def margin_terms(self, c: Array, *, norm: Any = None, z_hat: Any = None,
                     t: Any = None) -> dict[str, Array]:
        out = super().margin_terms(c, norm=norm, z_hat=z_hat)
        out["margin_mult"] = _as_array_like(self.m1, c) + 0 * c
        return out


def _boundary_choice(official: str) -> Choice:
    """The ``boundary`` of an angular margin whose own code differs from the AdaFace code's clip
    where θ + m passes π; ``official``: what its own code does, for figure titles."""
    return Choice(
        ("adaface", "official"), key="boundary", label="past θ + m = π (MagFace, CurricularFace)",
        labels={"adaface": "AdaFace code: clip θ + m at π − ε (g = 0)",
                "official": "each method's own code"},
        short={"adaface": "AdaFace-code clip", "official": official},
        help="The lab's default draws every method with the AdaFace code's clip. MagFace's own code "
             "uses an easy margin (no margin where cos θ ≤ 0); CurricularFace's falls back to "
             "cos θ − m·sin m where θ > π − m. Both keep df/dc = s there. See docs/paper_vs_code.md.",
    )


class _OwnBoundary(Margin):
    """An angular margin m (f = s·cos(θ + m)) whose own official code, unlike the AdaFace code, does
    not clip θ + m at π − ε. With ``boundary="official"`` the target logit is s·cos(θ + m) where
    :meth:`_fallback`'s ``keep`` holds and s·(c − drop) elsewhere, where df/dc = s; the default
    ``boundary="adaface"`` is the base class's clip. (The cosine stays clamped to [−1+ε, 1−ε] inside
    cos(θ + m): the official codes clamp to [−1, 1] and differentiate √(1 − c²), which is infinite at
    c = ±1.) Subclasses declare the ``boundary`` field and :meth:`_fallback`.
    """

    def _official(self) -> bool:
        return getattr(self, "boundary") == "official"

    def _fallback(self, c: Array, norm: Any) -> tuple[Array, Array, Array]:
        """(m, keep, drop) per sample: the angular margin, where cos(θ + m) is kept, and the additive
        term of the fallback c − drop elsewhere."""
        raise NotImplementedError

    def _own(self, c: Array, norm: Any, z_hat: Any) -> tuple[Array, Array, Array, Array]:
        """(m, keep, drop, θ) of the official boundary, the context checked."""
        self._check_context(norm, z_hat)
        return (*self._fallback(c, norm), _acos(clamp_cos(c)))

    def target_logit(self, c: Array, *, norm: Any = None, z_hat: Any = None,
                     t: Any = None) -> Array:
        if not self._official():
            return super().target_logit(c, norm=norm, z_hat=z_hat, t=t)
        m, keep, drop, theta = self._own(c, norm, z_hat)
        return self.s * _where(keep, _cos(theta + m), c - drop)

    def target_derivative(self, c: Array, *, norm: Any = None, z_hat: Any = None,
                          t: Any = None) -> Array:
        if self._official():
            m, keep, _, theta = self._own(c, norm, z_hat)
            arc = _sin(theta + m) / _sin(theta) * _inside(c, -1.0 + EPS, 1.0 - EPS)
            return self.s * _where(keep, arc, 1.0 + 0 * c)
        return super().target_derivative(c, norm=norm, z_hat=z_hat, t=t)

    def margin_terms(self, c: Array, *, norm: Any = None, z_hat: Any = None,
                     t: Any = None) -> dict[str, Array]:
        if self._official():
            m, keep, drop, _ = self._own(c, norm, z_hat)
            zero = 0 * c
            return {"margin_angle": _where(keep, m + zero, zero),
                    "margin_add": _where(keep, zero, drop + zero)}
        return super().margin_terms(c, norm=norm, z_hat=z_hat, t=t)


@register_margin("magface")
@dataclass(frozen=True)
class MagFace(_OwnBoundary):
    """MagFace: f = s·cos(θ + m(a)), m(a) linear in a = clamp(‖z‖, l_a, u_a).

    The loss adds λ_g · (1/a + a/u_a²) (see :func:`magface_regularizer`). Defaults are the
    MagFace paper's (l_a = 10, u_a = 110, l_m = 0.45, u_m = 0.8, λ_g = 35). ``boundary``:
    "adaface" (default) clips θ + m(a) at π − ε as the AdaFace code does; "official" is MagFace's
    own code, whose ``easy_margin`` (on in its training) keeps s·cos(θ + m(a)) only where cos θ > 0
    and uses s·cos θ, with no margin, elsewhere (docs/paper_vs_code.md).
    """

    label = "MagFace"
    color = "#e377c2"
    needs: ClassVar[tuple[str, ...]] = ("norm",)
    ranges = {"l_a": Range(1.0, 20.0, shown=False), "u_a": Range(60.0, 150.0, shown=False),
              "l_m": Range(0.2, 0.5, shown=False), "u_m": Range(0.6, 1.0, shown=False),
              "lambda_g": Range(0.0, 50.0, shown=False),
              "boundary": _boundary_choice("easy margin (MagFace code)")}
    domains = {"l_a": Domain(0.0, lo_open=True, why="the regulariser divides by a ≥ l_a"),
               "u_a": Domain(0.0, lo_open=True, why="the norm a is clamped to [l_a, u_a]"),
               "l_m": _ANGLE, "u_m": _ANGLE,
               "lambda_g": Domain(0.0, why="a negative weight rewards the regulariser")}

    l_a: float = 10.0
    u_a: float = 110.0
    l_m: float = 0.45
    u_m: float = 0.8
    lambda_g: float = 35.0
    boundary: str = "adaface"

    def _check_params(self) -> None:
        super()._check_params()
        if not self.u_a > self.l_a:
            raise ValueError(f"MagFace needs u_a > l_a (the norm a is clamped to [l_a, u_a]), got "
                             f"l_a = {self.l_a:g}, u_a = {self.u_a:g}")

    def terms(self, norm: Any = None, z_hat: Any = None) -> tuple[Scalar, Scalar, Scalar]:
        return 1.0, magface_margin(norm, self.l_a, self.u_a, self.l_m, self.u_m), 0.0

    def _fallback(self, c: Array, norm: Any) -> tuple[Array, Array, Array]:
        m = _as_array_like(magface_margin(norm, self.l_a, self.u_a, self.l_m, self.u_m), c)
        return m, c > 0, 0 * c  # easy margin: no margin where cos θ ≤ 0

    def context_label(self, context: Mapping[str, Any]) -> str:
        if context.get("norm") is None:
            return ""
        norm = np.asarray(context["norm"], dtype=float)
        m = float(magface_margin(norm, self.l_a, self.u_a, self.l_m, self.u_m))
        return f"m(‖z‖={context['norm']:g})={m:.2f}"


@register_margin("curricularface")
@dataclass(frozen=True)
class CurricularFace(_OwnBoundary):
    """CurricularFace: target as ArcFace; a hard negative (c_j > cos(θ_y + m)) gets s·c_j·(t + c_j).

    ``t`` is the adaptive curriculum parameter, t ← 0.01·mean(c_y) + 0.99·t, t₀ = 0 (the head
    keeps it); pass it by keyword to the negative functions. ``boundary``: "adaface" (default)
    clips θ + m at π − ε as the AdaFace code does; "official" is CurricularFace's own code, whose
    target falls back to s·(cos θ − m·sin m) where θ > π − m and whose hard negatives are those
    above the unclipped cos(θ_y + m) (docs/paper_vs_code.md).
    """

    label = "CurricularFace"
    color = "#bcbd22"
    needs: ClassVar[tuple[str, ...]] = ("t",)
    ranges = {"m": _M,
              "t": Range(0.0, 1.0, 0.01, key="ct", label="CurricularFace t", default=0.0,
                         help="The curriculum parameter: 0 early in training, it grows toward the "
                              "mean target cosine (about 0.5 late)."),
              "boundary": _boundary_choice("c − m·sin m past π − m (CurricularFace code)")}
    domains = {"m": _ANGLE}
    modifies_negatives: ClassVar[bool] = True

    m: float = 0.5
    boundary: str = "adaface"

    def terms(self, norm: Any = None, z_hat: Any = None) -> tuple[Scalar, Scalar, Scalar]:
        return 1.0, self.m, 0.0

    def context_label(self, context: Mapping[str, Any]) -> str:
        return f"t={context['t']:g}" if context.get("t") is not None else ""

    def _fallback(self, c: Array, norm: Any) -> tuple[Array, Array, Array]:
        keep = c > math.cos(math.pi - self.m)  # θ < π − m
        return _as_array_like(self.m, c), keep, self.m * math.sin(self.m) + 0 * c

    def _hard(self, c_j: Array, c_y: Array) -> Array:
        """Mask (0/1 floats) of the hard negatives: c_j > cos(θ_y + m) (clipped as the target, or,
        with the official boundary, unclipped as CurricularFace's code computes it)."""
        if self._official():
            threshold = _cos(_acos(_clip(c_y, -1.0, 1.0)) + self.m)
        else:
            threshold = self.target_logit(c_y) / self.s
        hard = c_j > threshold
        return hard.to(c_j.dtype) if _is_torch(hard) else hard.astype(np.result_type(c_j, np.float32))

    def negative_logit(self, c_j: Array, c_y: Array, *, norm: Any = None, z_hat: Any = None,
                       t: Scalar = 0.0) -> Array:
        hard = self._hard(c_j, c_y)
        return self.s * (c_j + hard * (c_j * (t + c_j) - c_j))

    def negative_derivative(self, c_j: Array, c_y: Array, *, norm: Any = None,
                            z_hat: Any = None, t: Scalar = 0.0) -> Array:
        hard = self._hard(c_j, c_y)
        return self.s * (1.0 + hard * (t + 2.0 * c_j - 1.0))


@register_margin("adaface")
@dataclass(frozen=True)
class AdaFace(Margin):
    """AdaFace: f = s·(cos(θ + g_angle) − g_add), g_angle = −m·ẑ, g_add = m·ẑ + m.

    ẑ = −1 is ArcFace(m), ẑ = 0 is CosFace(m), ẑ = +1 is a negative angular margin plus 2m.
    Give ``z_hat`` directly, or compute it with :func:`adaface_z_hat` from (‖z‖, μ_z, σ_z, h).
    Defaults are the official training scripts' (m = 0.4, h = 0.333, s = 64, t_alpha = 0.01).
    The formula is the code's, s·(cos(θ + g_angle) − g_add), not Eq. 18 as printed, and t_alpha
    weighs the batch value as in the code, not the paper's α = 0.99 (docs/paper_vs_code.md). For
    ẑ > 0 the angle clip at ε leaves samples with θ < m·ẑ + ε without gradient, misclassified ones
    included once ẑ exceeds about 0.75 (:func:`adaface_lab.gst.zero_gradient_bands`).
    """

    label = "AdaFace"
    color = "#ff7f0e"
    needs: ClassVar[tuple[str, ...]] = ("z_hat",)
    inputs: ClassVar[tuple[str, ...] | None] = ("z_hat", "norm", "mean", "std")
    ranges = {
        "m": _M,
        "h": Range(0.0, 1.0, 0.001, label="AdaFace h",
                   help="How strongly the norm moves ẑ: ẑ = clip(h·(‖z‖ − μ_z)/(σ_z + ε), −1, 1)."),
        "t_alpha": Range(0.001, 0.1, shown=False),
        "z_hat": Range(-1.0, 1.0, 0.01, key="zhat", label="ẑ", default=0.0,
                       help="−1: ArcFace, 0: CosFace, +1: negative angular margin + 2m."),
        "mean": Range(0.0, 100.0, 0.5, label="batch mean μ_z", default=20.0),
        "std": Range(0.5, 100.0, 0.5, label="batch std σ_z", default=10.0),
    }
    domains = {
        "m": Domain(0.0, 1.0, why="a margin is ≥ 0, and g_add = m·(ẑ + 1) reaches 2m: beyond 1 the "
                                  "target logit at ẑ = +1 is below every negative logit, whatever θ"),
        "h": Domain(-1.0, 1.0, why="ẑ = clip(h·(‖z‖ − μ_z)/σ_z, −1, 1): beyond ±1 a third of a "
                                   "batch sits on the clip (the paper uses 0.33); a negative h flips "
                                   "which norms count as high quality"),
        "t_alpha": Domain(0.0, 1.0, lo_open=True,
                          why="the weight of the new batch in the EMA of μ_z and σ_z"),
    }

    m: float = 0.4
    h: float = 0.333
    t_alpha: float = 0.01

    def terms(self, norm: Any = None, z_hat: Any = None) -> tuple[Scalar, Scalar, Scalar]:
        g_angle, g_add = adaface_terms(z_hat, self.m)
        return 1.0, g_angle, g_add

    def z_hat(self, norm: Array, mean: Scalar, std: Scalar) -> Array:
        """ẑ for this margin's h (see :func:`adaface_z_hat`)."""
        return adaface_z_hat(norm, mean, std, self.h)

    def resolve_context(self, *, norm: Any = None, z_hat: Any = None, mean: Any = None,
                        std: Any = None, t: Any = None) -> dict[str, Any]:
        """``z_hat`` as given, or computed from ``norm`` with ``mean`` and ``std`` (μ_z, σ_z)."""
        if z_hat is None:
            if norm is None or mean is None or std is None:
                raise ValueError("AdaFace needs z_hat, or norm together with mean and std")
            z_hat = self.z_hat(np.asarray(norm, dtype=float), mean, std)
        return {"z_hat": z_hat}

    def context_label(self, context: Mapping[str, Any]) -> str:
        if context.get("z_hat") is not None:
            return f"ẑ={context['z_hat']:.2f}"
        if context.get("norm") is not None:
            return f"‖z‖={context['norm']:g}"
        return ""


__all__ = [
    "CONTEXT_INPUTS",
    "EPS",
    "Margin",
    "Range",
    "Choice",
    "Domain",
    "Softmax",
    "CosFace",
    "ArcFace",
    "NegativeAngular",
    "SphereFace",
    "Combined",
    "MagFace",
    "CurricularFace",
    "AdaFace",
    "adaface_z_hat",
    "adaface_terms",
    "magface_margin",
    "magface_regularizer",
    "clamp_cos",
    "MARGINS",
    "register_margin",
    "build_margin",
    "list_margins",
    "margin_class",
]
