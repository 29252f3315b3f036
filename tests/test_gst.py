"""The gradient scaling term and the Fig. 3 feature plane, checked against autograd and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adaface_lab import gst
from adaface_lab.margins import build_margin, list_margins

from .margin_checks import context_strategy, param_strategy, smooth


@settings(max_examples=40, deadline=None)
@given(method=st.sampled_from(list_margins()), data=st.data(), seed=st.integers(0, 10_000),
       phi=st.floats(0.3, math.pi), convention=st.sampled_from(gst.CONVENTIONS))
def test_two_class_gst_equals_autograd_of_the_two_class_loss(method, data, seed, phi, convention):
    """NumPy g and g_j agree with autograd of −log softmax([f(c_y), logit_j(c_j)]), for every
    registered margin at parameters and context drawn from its declared ranges."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.1, math.pi - 0.1, 64)
    margin = build_margin(method, **data.draw(param_strategy(method), label="params"))
    ctx = {k: np.full(theta.size, v) for k, v in data.draw(context_strategy(method), label="context").items()}
    out = gst.arc_profile(margin, theta, phi=phi, convention=convention, **ctx)

    c_y = torch.tensor(np.cos(out["theta_y"]), requires_grad=True)
    c_j = torch.tensor(np.cos(out["theta_j"]), requires_grad=True)
    tctx = {k: torch.tensor(v) for k, v in ctx.items()}
    f = margin.target_logit(c_y, **tctx)
    lj = margin.negative_logit(c_j, c_y.detach(), **tctx)
    if convention == "detached":
        f = margin.s * c_y + (f - margin.s * c_y).detach()
        lj = margin.s * c_j + (lj - margin.s * c_j).detach()
    loss = -torch.log_softmax(torch.stack([f, lj], dim=1), dim=1)[:, 0].sum()
    loss.backward()
    # where an ε clamp switches, autograd and the analytic form legitimately disagree at the kink
    ok = smooth(margin, np.cos(out["theta_y"]), ctx)
    assert ok.mean() > 0.9
    np.testing.assert_allclose(out["g"][ok], c_y.grad.numpy()[ok], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out["g_j"], c_j.grad.numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out["p_y"], torch.softmax(torch.stack([f, lj], 1), 1)[:, 0].detach().numpy(),
                               rtol=1e-9, atol=1e-12)


def test_gst_shapes_the_paper_describes():
    """ArcFace's |g| peaks between the boundary and W_j and falls toward W_j; negative angular
    does the opposite; CosFace's df/dc is constant (it scales nothing)."""
    theta = np.linspace(0.05, math.pi - 0.05, 2000)
    arc = gst.arc_profile(build_margin("arcface", m=0.5), theta, phi=math.pi)
    neg = gst.arc_profile(build_margin("negative_angular", m=0.5), theta, phi=math.pi)
    cos = build_margin("cosface", m=0.4)
    g_arc, g_neg = np.abs(arc["g"]), np.abs(neg["g"])
    peak = theta[np.argmax(g_arc)]
    assert 0.3 < peak < math.pi - 0.5, "ArcFace's emphasis must peak inside, not at the hardest samples"
    assert g_arc[-1] < 0.2 * g_arc.max(), "ArcFace de-emphasises the hardest samples"
    assert np.all(np.diff(g_neg) >= -1e-9), "negative angular: |g| never falls as samples get harder"
    assert np.argmax(g_neg) == len(theta) - 1 and g_neg[-1] > 2 * g_arc.max()
    np.testing.assert_allclose(cos.target_derivative(np.cos(theta)), 64.0)


def test_adaface_moves_emphasis_with_the_norm():
    """High norm (ẑ = +1) emphasises hard samples, low norm (ẑ = −1) de-emphasises them."""
    theta = np.linspace(0.45, 2.6, 500)  # beyond the ε clip of θ − m
    c = np.cos(theta)
    ada = build_margin("adaface", m=0.4, h=0.333)
    low = ada.z_hat(np.full_like(c, 2.0), 20.0, 5.0)     # far below the mean: ẑ clipped to −1
    high = ada.z_hat(np.full_like(c, 40.0), 20.0, 5.0)   # far above: ẑ clipped to +1
    assert np.all(low == -1) and np.all(high == 1)
    d_low = ada.target_derivative(c, z_hat=low)
    d_high = ada.target_derivative(c, z_hat=high)
    # ẑ = −1 (low norm) is ArcFace: df/dc falls with θ (hard samples de-emphasised)
    assert np.all(np.diff(d_low) < 0)
    # ẑ = +1 (high norm) is negative angular: df/dc rises with θ (hard samples emphasised)
    assert np.all(np.diff(d_high) > 0)


@pytest.mark.parametrize("phi_deg", [60, 90, 150])
def test_feature_plane_boundaries_match_closed_forms(phi_deg):
    phi = math.radians(phi_deg)
    # B0 is the bisector: every point has θ_y = θ_j
    plane = gst.feature_plane("softmax", phi=phi, resolution=64)
    ends = [np.degrees(np.arctan2(b[-1, 1], b[-1, 0])) % 360 for b in plane.b0]
    assert sorted(np.round(ends, 6)) == sorted(np.round([phi_deg / 2, phi_deg / 2 + 180], 6))
    # ArcFace: θ_y + m = θ_j on the arc between the classes → α = (φ − m)/2
    m = 0.3
    arc = gst.feature_plane(build_margin("arcface", m=m), phi=phi, resolution=64)
    angles = [math.atan2(b[-1, 1], b[-1, 0]) for b in arc.b1]
    assert min(abs(a - (phi - m) / 2) for a in angles) < 2e-3
    # CosFace: cos α − m = cos(α − φ) → solve independently by bisection on (0, φ/2)
    cos = gst.feature_plane(build_margin("cosface", m=m), phi=phi, resolution=64)
    lo, hi = 0.0, phi / 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if math.cos(mid) - m - math.cos(mid - phi) > 0:
            lo = mid
        else:
            hi = mid
    angles = [math.atan2(b[-1, 1], b[-1, 0]) for b in cos.b1]
    assert min(abs(a - lo) for a in angles) < 2e-3
    # B1 with a margin lies on W_y's side of B0 (the margin shrinks the target's region)
    assert min(abs(a) for a in angles) < phi / 2


def test_feature_plane_fields_are_consistent():
    plane = gst.feature_plane("adaface", norm=30.0, mean=20.0, std=10.0, resolution=101)
    inside = ~np.isnan(plane.g)
    rr = np.hypot(*np.meshgrid(plane.x, plane.y))
    assert np.array_equal(inside, rr <= 1.0)
    assert np.all((plane.p_y[inside] >= 0) & (plane.p_y[inside] <= 1))
    assert np.all(plane.g[inside] <= 0), "the target GST is (P_y − 1)·df/dc ≤ 0 while df/dc ≥ 0"
    # points along W_y have θ_y ≈ 0 and θ_j ≈ φ
    mid = len(plane.y) // 2
    assert plane.theta_y[mid, -1] == pytest.approx(0.0, abs=1e-6)
    assert plane.theta_j[mid, -1] == pytest.approx(math.pi / 2, abs=1e-6)


def test_adaface_plane_from_norm_equals_plane_from_z_hat():
    ada = build_margin("adaface", h=0.5)
    z = float(ada.z_hat(np.array(26.0), 20.0, 8.0))
    a = gst.feature_plane(ada, norm=26.0, mean=20.0, std=8.0, resolution=40)
    b = gst.feature_plane(ada, z_hat=z, resolution=40)
    np.testing.assert_allclose(a.g, b.g, equal_nan=True, rtol=1e-4, atol=1e-4)


def test_radial_norm_bends_adafaces_b1():
    plane = gst.feature_plane("adaface", radial_norm=(5.0, 40.0), mean=20.0, std=8.0, resolution=64)
    main = min(plane.b1, key=lambda b: abs(np.arctan2(b[:, 1], b[:, 0]).mean() - math.pi / 4))
    angles = np.arctan2(main[:, 1], main[:, 0])
    assert angles.max() - angles.min() > 0.05, "B1 moves as the margin changes with the norm"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="convention"):
        gst.feature_plane("arcface", convention="insightface")
    with pytest.raises(ValueError, match="needs z_hat"):
        gst.feature_plane("adaface")
    with pytest.raises(ValueError, match="needs the feature norm"):
        gst.feature_plane("magface")
    with pytest.raises(ValueError, match="phi"):
        gst.feature_plane("arcface", phi=0.0)


# --------------------------------------------------------------------------- B1 on the arc, autograd check


@pytest.mark.parametrize("phi", [math.pi / 3, math.pi / 2, 2.0])
def test_b1_on_the_arc_solves_f_equal_to_the_negative_logit_by_hand(phi):
    """f(cos θ) = s·cos(φ − θ) solved on paper: softmax φ/2, ArcFace (φ − m)/2, negative angular
    (φ + m)/2, CosFace φ/2 − arcsin(m / (2 sin(φ/2)))."""
    arc, neg, cos = build_margin("arcface"), build_margin("negative_angular"), build_margin("cosface")
    assert gst.b1_on_arc("softmax", phi=phi) == pytest.approx(phi / 2, abs=1e-9)
    assert gst.b1_on_arc(arc, phi=phi) == pytest.approx((phi - arc.m) / 2, abs=1e-7)
    assert gst.b1_on_arc(neg, phi=phi) == pytest.approx((phi + neg.m) / 2, abs=1e-7)
    assert gst.b1_on_arc(cos, phi=phi) == pytest.approx(phi / 2 - math.asin(cos.m / (2 * math.sin(phi / 2))), abs=1e-7)


ARC_CONTEXT = {"adaface": dict(norm=26.0, mean=20.0, std=3.0), "magface": dict(norm=60.0), "curricularface": dict(t=0.4)}


@pytest.mark.parametrize("method", list_margins())
def test_p_y_passes_one_half_where_b1_crosses_the_arc(method):
    phi = 1.4
    kw = ARC_CONTEXT.get(method, {})
    theta = gst.b1_on_arc(method, phi=phi, **kw)
    margin, t = build_margin(method), kw.get("t", 0.0)
    context = gst.resolve_context(margin, **{k: v for k, v in kw.items() if k != "t"})
    p_y = gst.arc_profile(margin, np.array([theta - 1e-3, theta, theta + 1e-3]), phi=phi, t=t, **context)["p_y"]
    assert 0 < theta < phi
    assert p_y[1] == pytest.approx(0.5, abs=1e-5)
    assert p_y[0] > 0.5 > p_y[2], "P_y falls through ½ there, moving from W_y toward W_j"


def test_b1_on_the_arc_is_nan_where_p_y_never_reaches_one_half():
    # φ = 0.2 rad: at W_y itself CosFace's target s(1 − 0.35) is below s·cos φ, so P_y < ½ all along
    assert math.isnan(gst.b1_on_arc("cosface", phi=0.2))
    with pytest.raises(ValueError, match="phi"):
        gst.b1_on_arc("arcface", phi=4.0)


@pytest.mark.parametrize("method, detach", [("cosface", False), ("cosface", True), ("arcface", False), ("arcface", True)])
def test_autograd_check_recovers_the_gradient_written_out_by_hand(method, detach):
    """P_y from a softmax written out here; g = (P_y − 1)·df/dc with df/dc = s for CosFace and for the
    detached convention, s·sin(θ + m)/sin θ for ArcFace's official one."""
    from adaface_lab.heads import build_head

    gen = torch.Generator().manual_seed(3)
    batch, classes = 16, 5
    head = build_head(method, 4, classes, detach_margin=detach)
    cos = 1.4 * torch.rand(batch, classes, generator=gen, dtype=torch.float64) - 0.5  # θ + m stays below π
    labels = torch.randint(0, classes, (batch,), generator=gen)
    check = gst.autograd_check(head, cos, torch.full((batch, 1), 30.0, dtype=torch.float64), labels)

    s, m = head.margin.s, head.margin.m
    rows, y = np.arange(batch), labels.numpy()
    c_y = cos.numpy()[rows, y]
    theta = np.arccos(c_y)
    logits = s * cos.numpy()
    logits[rows, y] = s * (c_y - m) if method == "cosface" else s * np.cos(theta + m)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p_y = p[rows, y] / p.sum(axis=1)
    dfdc = s if detach or method == "cosface" else s * np.sin(theta + m) / np.sin(theta)
    np.testing.assert_allclose(check.p_y, p_y, rtol=1e-10)
    np.testing.assert_allclose(check.autograd, (p_y - 1) * dfdc, rtol=1e-9)
    np.testing.assert_allclose(check.analytic, (p_y - 1) * dfdc, rtol=1e-9)
    assert check.relative_error < 1e-9
