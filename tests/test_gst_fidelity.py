"""What the pictures must tell beyond the formulas (issue 12, item 4): AdaFace's band of misclassified
samples with no gradient, CurricularFace's negatives, each method's own boundary, and where a high
norm really gets more gradient than a low one.

Expected values come from closed forms and from tests/formulas.py (NumPy only), from autograd, and
from MagFace's and CurricularFace's own forward passes restated in tests/reference_heads.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adaface_lab import gst
from adaface_lab.margins import build_margin, margin_class
from adaface_lab.plots import feature_plane_figure, feature_plane_grid, gst_curves_figure

from . import formulas
from .figure_arrays import panel_field
from .reference_heads import ReferenceHead

def _deg(bands):
    return [tuple(np.degrees(b)) for b in bands]


# ----------------------------------------------------------------------------- 4a: the band


@pytest.mark.parametrize("m, z", [(0.4, 1.0), (0.4, 0.85), (0.5, 0.8), (0.45, 0.9), (0.3, 1.0)])
def test_adaface_zero_band_matches_its_closed_form(m, z):
    """Misclassified samples with θ_y < m·ẑ + ε get no gradient: from B1 (arcsin(cos ε − m(1 + ẑ))
    at φ = 90°) to m·ẑ + ε, and nowhere else on the arc up to W_j (none when B1 lies beyond
    m·ẑ + ε, as at m = 0.3)."""
    ada = build_margin("adaface", m=m)
    bands = gst.zero_gradient_bands(ada, phi=math.pi / 2, upto=math.pi / 2, z_hat=z)
    expected = formulas.adaface_zero_band_deg(m, z)
    assert len(bands) == (expected is not None)
    if expected is not None:
        np.testing.assert_allclose(_deg(bands)[0], expected, atol=0.005)


def test_adaface_zero_band_opens_at_z_hat_about_three_quarters():
    """With m = 0.4 at φ = 90° the band exists for every ẑ above the root of
    arcsin(cos ε − m(1 + ẑ)) = m·ẑ + ε (found here by bisection), and for none below."""
    m = 0.4
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if formulas.adaface_zero_band_deg(m, mid) else (mid, hi)
    assert 0.74 < hi < 0.76  # "for every ẑ above about 0.75"
    ada = build_margin("adaface", m=m)
    for z in (hi - 0.01, 0.5, 0.0, -1.0):
        assert gst.zero_gradient_bands(ada, upto=math.pi / 2, z_hat=z) == [], z
    for z in (hi + 0.01, 0.9, 1.0):
        assert len(gst.zero_gradient_bands(ada, upto=math.pi / 2, z_hat=z)) == 1, z


def test_zero_band_is_where_autograd_finds_no_gradient_on_a_misclassified_sample():
    """Inside the band autograd's ∂L/∂c_y is exactly 0 while P_y < ½; just past it, it is not."""
    ada = build_margin("adaface", m=0.4)
    [(lo, hi)] = gst.zero_gradient_bands(ada, upto=math.pi / 2, z_hat=1.0)
    theta = np.concatenate([np.linspace(lo + 1e-3, hi - 1e-3, 20), [hi + 0.01, hi + 0.05]])
    c_y = torch.tensor(np.cos(theta), requires_grad=True)
    c_j = torch.tensor(np.cos(math.pi / 2 - theta))
    z = torch.ones_like(c_y)
    logits = torch.stack([ada.target_logit(c_y, z_hat=z), ada.negative_logit(c_j, c_y, z_hat=z)], 1)
    F.cross_entropy(logits, torch.zeros(len(theta), dtype=torch.long), reduction="sum").backward()
    p_y = torch.softmax(logits.detach(), 1)[:, 0].numpy()
    assert np.all(c_y.grad.numpy()[:20] == 0) and np.all(p_y[:20] < 0.5)
    assert np.all(np.abs(c_y.grad.numpy()[20:]) > 0.1)


def test_arcface_band_the_detached_convention_and_cosface():
    """ArcFace's clip at θ + m = π − ε stops the gradient of the hardest samples (up to the cosine
    clamp, 2.6° before −W_y, which is left out); the detached convention and CosFace have none."""
    arc = build_margin("arcface", m=0.5)
    [(lo, hi)] = _deg(gst.zero_gradient_bands(arc))
    assert lo == pytest.approx(180 - math.degrees(0.5 + formulas.EPS), abs=0.005)
    assert hi == pytest.approx(math.degrees(math.acos(-1 + formulas.EPS)), abs=0.005)
    assert gst.zero_gradient_bands(arc, convention="detached") == []
    assert gst.zero_gradient_bands("cosface") == []


def test_feature_plane_marks_the_band_and_the_figures_draw_it():
    ada = build_margin("adaface", m=0.4)
    plane = gst.feature_plane(ada, z_hat=1.0, resolution=201)
    lo, hi = formulas.adaface_zero_band_deg(0.4, 1.0)
    polar = np.degrees(np.arctan2(*np.meshgrid(plane.y, plane.x, indexing="ij")))
    marked = polar[plane.zero_g]
    assert marked.size > 50
    assert marked.min() > lo - 1.5 and marked.max() < hi + 1.5  # one wedge, on W_j's side
    inside = (polar > lo + 1) & (polar < hi - 1) & (np.hypot(*np.meshgrid(plane.x, plane.y)) < 0.95)
    assert plane.zero_g[inside].all()
    assert not gst.feature_plane(ada, z_hat=0.5, resolution=101).zero_g.any()

    fig = feature_plane_figure(plane)
    overlay = [t for t in fig.data if getattr(t, "fill", None) == "toself"]
    assert len(overlay) == 1  # the wedge's outline: the marked points' area and place
    area, centre = formulas.filled_area(np.asarray(overlay[0].x, float), np.asarray(overlay[0].y, float))
    step = plane.x[1] - plane.x[0]
    assert abs(area - plane.zero_g.sum() * step**2) < 0.1 * plane.zero_g.sum() * step**2
    rows, cols = np.nonzero(plane.zero_g)
    np.testing.assert_allclose(centre, [plane.x[cols].mean(), plane.y[rows].mean()], atol=2 * step)
    curves = gst_curves_figure([("adaface", {"z_hat": 1.0})], phi=math.pi / 2)
    bars = [t for t in curves.data if "|g| = 0" in t.name]
    assert len(bars) == 1
    np.testing.assert_allclose(bars[0].x, (lo, hi), atol=0.005)
    assert "11.5°–23.0°" in bars[0].name


# ----------------------------------------------------------------------------- 4b: negatives


def test_curricularface_panels_coloured_by_g_j_show_what_t_changes():
    """Early (t = 0) and late (t = 0.8): beyond 45° the target |g| hardly moves, |g_j| grows by
    (t + 2c_j)/(2c_j); both against tests/formulas.py."""
    deg = np.linspace(46.0, 134.0, 89)
    cf = build_margin("curricularface", m=0.5)
    g, g_j = {}, {}
    for t in (0.0, 0.8):
        prof = gst.arc_profile(cf, np.radians(deg), phi=math.pi / 2, t=t)
        want_g, want_gj = formulas.curricular_arc(deg, 64.0, 0.5, t, 90.0)
        np.testing.assert_allclose(np.abs(prof["g"]), want_g, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(np.abs(prof["g_j"]), want_gj, rtol=1e-6, atol=1e-9)
        g[t], g_j[t] = want_g, want_gj
    assert np.max(np.abs(g[0.8] - g[0.0]) / g[0.0]) < 0.02
    assert np.min(g_j[0.8] / g_j[0.0]) > 1.3

    planes = [gst.feature_plane(cf, t=t, resolution=81) for t in (0.0, 0.8)]
    fig = feature_plane_grid(planes * 2, cols=2, fields=["g", "g", "g_j", "g_j"])
    np.testing.assert_allclose(panel_field(fig, 3)[2], np.abs(planes[1].g_j), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(panel_field(fig, 1)[2], np.abs(planes[1].g), rtol=1e-6, equal_nan=True)
    assert "g<sub>j</sub>" in fig.layout.coloraxis.colorbar.title.text
    one = feature_plane_figure(planes[1], field="g_j")
    assert "negative class" in one.layout.title.text and one.data[0].name == "|g<sub>j</sub>|"
    with pytest.raises(ValueError, match="field"):
        feature_plane_figure(planes[1], field="p_y")

    curves = gst_curves_figure([("curricularface", {"t": 0.8}), "arcface"], negatives=True)
    negatives = [t for t in curves.data if "|g<sub>j</sub>|" in t.name]
    assert len(negatives) == 1  # ArcFace leaves its negatives alone
    x = np.asarray(negatives[0].x)
    ok = (x > 46) & (x < 134)
    np.testing.assert_allclose(np.asarray(negatives[0].y)[ok],
                               formulas.curricular_arc(x[ok], 64.0, 0.5, 0.8, 90.0)[1], rtol=1e-6)


# ----------------------------------------------------------------------------- 4c: own boundaries


OWN = [n for n in ("magface", "curricularface") if "boundary" in margin_class(n).param_choices()]


@pytest.mark.parametrize("method", OWN)
def test_official_boundary_gst_is_autograd_of_each_methods_own_code(method):
    """g and g_j of boundary="official" along the arc equal ∂L/∂c from autograd through the
    method's own forward pass (tests/reference_heads.py), every angle from 3° to 177°."""
    assert OWN == ["magface", "curricularface"]
    deg = np.linspace(3.0, 177.0, 349)
    deg = deg[deg != 90.0]  # c_j = 1: the official √(1 − c²) has an infinite derivative (NaN)
    theta = np.radians(deg)
    margin = build_margin(method, boundary="official")
    cos = torch.tensor(np.stack([np.cos(theta), np.cos(math.pi / 2 - theta)], 1), requires_grad=True)
    labels = torch.zeros(len(deg), dtype=torch.long)
    one_hot = F.one_hot(labels, 2).double()
    norms = torch.full((len(deg), 1), 100.0, dtype=torch.float64)
    ref = ReferenceHead(method, torch.eye(2, dtype=torch.float64), **margin.params())
    ref.t = torch.tensor([0.3], dtype=torch.float64)
    logits = ref._own_code(cos, norms, labels, one_hot) * margin.s
    F.cross_entropy(logits, labels, reduction="sum").backward()
    context = {"norm": np.full(len(deg), 100.0)} if method == "magface" else {"t": float(ref.t)}
    prof = gst.arc_profile(margin, theta, phi=math.pi / 2, **context)
    np.testing.assert_allclose(prof["g"], cos.grad[:, 0].numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(prof["g_j"], cos.grad[:, 1].numpy(), rtol=1e-6, atol=1e-9)
    scalar = {k: float(np.mean(v)) for k, v in context.items()}
    assert gst.zero_gradient_bands(margin, **scalar) == []  # neither code stops the gradient


def test_magface_at_a_large_norm_past_w_j_gets_s_in_its_own_code_and_almost_none_clipped():
    """‖z‖ = 100, θ_y = 135°: m(100) ≈ 0.765; the AdaFace clip gives (1 − P_y)·s·sin(θ + m)/sin θ ≈
    1.8, MagFace's easy margin (no margin where cos θ ≤ 0) gives (1 − P_y)·s ≈ 64."""
    m = (0.8 - 0.45) / (110 - 10) * (100 - 10) + 0.45
    theta = np.radians([135.0])
    clipped = gst.arc_profile(build_margin("magface"), theta, norm=np.array([100.0]))["g"]
    own = gst.arc_profile(build_margin("magface", boundary="official"), theta, norm=np.array([100.0]))["g"]
    assert abs(clipped[0]) == pytest.approx(formulas.arc_gst([135.0], 64.0, m, 0.0, 90.0)[0], rel=1e-6)
    assert 1.7 < abs(clipped[0]) < 1.9
    p_y = formulas.two_class_p_y(64 * np.cos(theta), 64 * np.cos(np.radians(45.0)))
    assert abs(own[0]) == pytest.approx(64 * (1 - p_y[0]), rel=1e-9) and abs(own[0]) > 63.9


def test_figures_say_which_boundary_they_draw():
    for boundary, words in (("adaface", "AdaFace-code clip"), ("official", "easy margin (MagFace code)")):
        margin = build_margin("magface", boundary=boundary)
        plane = gst.feature_plane(margin, norm=60.0, resolution=41)
        assert words in feature_plane_figure(plane).layout.title.text
        assert words in feature_plane_grid([plane], titles=["MagFace"]).layout.annotations[0].text
        assert words in gst_curves_figure([("magface", {"norm": 60.0})] if boundary == "adaface"
                                          else [(margin, {"norm": 60.0})]).data[0].name
    cf = build_margin("curricularface", boundary="official")
    assert "c − m·sin m" in feature_plane_figure(gst.feature_plane(cf, resolution=41)).layout.title.text
    with pytest.raises(ValueError, match="boundary must be one of"):
        build_margin("curricularface", boundary="insightface")


# ----------------------------------------------------------------------------- 4f: high vs low norm


def test_where_a_high_norm_gets_more_gradient_than_a_low_one():
    """AdaFace at ẑ = +1 against ẑ = −1 along the arc (φ = 90°), both from tests/formulas.py: the
    high norm gets more only just past its zero band (to about 33°) and past θ_y = 90°, where
    sin(θ − m) overtakes sin(θ + m); from about 33° to 90° the low norm gets as much or more."""
    ada = build_margin("adaface", m=0.4)
    runs = _deg(gst.where_more_gradient((ada, {"z_hat": 1.0}), (ada, {"z_hat": -1.0}), upto=math.pi))
    deg = np.linspace(0.0, 180.0, 36001)
    high = formulas.arc_gst(deg, 64.0, -0.4, 0.8, 90.0)
    low = formulas.arc_gst(deg, 64.0, 0.4, 0.0, 90.0)
    clamp = math.degrees(math.acos(1 - formulas.EPS))  # the cosine clamp: g = 0 for both
    more = (high > low + 1e-9 * 64) & (deg > clamp) & (deg < 180 - clamp)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], more.astype(int), [0]])))
    expected = [(deg[a], deg[b - 1]) for a, b in zip(edges[::2], edges[1::2])]
    assert len(runs) == len(expected) == 2
    np.testing.assert_allclose(runs, expected, atol=0.005)
    (start, end), (past, _) = runs
    assert start == pytest.approx(formulas.adaface_zero_band_deg(0.4, 1.0)[1], abs=0.005)
    assert 30 < end < 35 and past == pytest.approx(90.0, abs=0.005)
