"""What every registered margin must satisfy, built from its own declarations.

Parameters and per-sample context are drawn from the ranges each margin class declares
(:meth:`adaface_lab.margins.Margin.param_ranges`), so the registry-wide tests (test_heads,
test_gst) and the test that registers a new margin (test_margin_registration) run the same checks
with no per-method table. The context a head should have computed is written out independently
(tests/formulas.py).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from hypothesis import strategies as st

from adaface_lab.heads import build_head
from adaface_lab.margins import Margin, Range, margin_class

from . import formulas


def param_strategy(name: str) -> st.SearchStrategy[dict[str, float | str]]:
    """Parameters of the margin ``name``: each number drawn from its declared range, each named
    value (e.g. MagFace's ``boundary``) from its options."""
    cls = margin_class(name)
    numbers = {k: st.floats(r.lo, r.hi) for k, r in cls.param_ranges().items()}
    choices = {k: st.sampled_from(c.options) for k, c in cls.param_choices().items()}
    return st.fixed_dictionaries({**numbers, **choices})


def context_strategy(name: str) -> st.SearchStrategy[dict[str, float]]:
    """A value of each per-sample context item the margin ``name`` needs, from its declared range."""
    cls = margin_class(name)
    declared = cls.input_ranges()
    ranges = {k: declared.get(k, Range(0.0, 1.0)) for k in cls.needs}
    return st.fixed_dictionaries({k: st.floats(r.lo, r.hi) for k, r in ranges.items()})


def sample_params(name: str) -> dict[str, float]:
    """Fixed numeric parameters for ``name`` inside its ranges, away from the defaults (to catch
    wiring); the same in every run. Named values keep their defaults."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return {k: float(rng.uniform(r.lo, r.hi)) for k, r in margin_class(name).param_ranges().items()}


def smooth(margin: Margin, c: np.ndarray, context: dict, h: float = 1e-7) -> np.ndarray:
    """Where the analytic df/dc is continuous around ``c`` (no clamp or clip switches within ±h):
    autograd and the analytic form may legitimately differ exactly at a kink."""
    d = [margin.target_derivative(c + dc, **context) for dc in (-h, 0.0, h)]
    tol = dict(rtol=1e-4, atol=1e-9 * margin.s)
    return np.isclose(d[0], d[1], **tol) & np.isclose(d[2], d[1], **tol)


def head_context(margin: Margin, norms: np.ndarray, c_y: np.ndarray) -> dict[str, np.ndarray]:
    """The context a fresh head in training mode computes in its first step: AdaFace's ẑ after one
    EMA step from μ_z = 20, σ_z = 100; the raw norm (MagFace); CurricularFace's t after one step
    from t₀ = 0."""
    context = {}
    if "z_hat" in margin.needs:
        mu = formulas.ema(20.0, norms.mean(), margin.t_alpha)
        sigma = formulas.ema(100.0, norms.std(ddof=1), margin.t_alpha)
        context["z_hat"] = formulas.z_hat(norms, mu, sigma, margin.h)
    if "norm" in margin.needs:
        context["norm"] = norms
    if "t" in margin.needs:
        context["t"] = np.full_like(c_y, formulas.ema(0.0, c_y.mean(), 0.01))
    return context


def assert_head_gst_matches_autograd(name: str, params: dict[str, float], seed: int,
                                     detach: bool) -> int:
    """Through ``build_head(name)``: ∂L/∂c from autograd equals the analytic GST of the margin,
    (P_y − 1)·df/dc for the targets and P_j·d logit_j/dc_j for the negatives. Returns how many
    target entries were compared (those away from a kink)."""
    gen = torch.Generator().manual_seed(seed)
    batch, classes = 12, 7
    head = build_head(name, 4, classes, detach_margin=detach, **params).double()
    margin, s = head.margin, head.margin.s

    cos = (torch.rand(batch, classes, generator=gen, dtype=torch.float64) * 1.9 - 0.95).requires_grad_()
    norms = torch.rand(batch, 1, generator=gen, dtype=torch.float64) * 60 + 5
    labels = torch.randint(0, classes, (batch,), generator=gen)
    logits = head.logits_from_cos(cos, norms, labels)
    head.loss(logits, labels, reduction="sum").backward()

    rows, y = np.arange(batch), labels.numpy()
    c = cos.detach().numpy()
    c_y = c[rows, y]
    context = head_context(margin, norms.detach().numpy().ravel(), c_y)
    p = torch.softmax(logits.detach(), dim=1).numpy()
    dfdc = np.full(batch, s) if detach else margin.target_derivative(c_y, **context)
    ok = smooth(margin, c_y, context)
    np.testing.assert_allclose(cos.grad.numpy()[rows, y][ok], ((p[rows, y] - 1) * dfdc)[ok],
                               rtol=1e-5, atol=1e-9 * s)

    negative = np.ones_like(p, dtype=bool)
    negative[rows, y] = False
    column = {k: v[:, None] for k, v in context.items()}
    dneg = np.full_like(c, s) if detach else margin.negative_derivative(c, c_y[:, None], **column)
    np.testing.assert_allclose(cos.grad.numpy()[negative], (p * dneg)[negative], rtol=1e-5,
                               atol=1e-9 * s)
    return int(ok.sum())
