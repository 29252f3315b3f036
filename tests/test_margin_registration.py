"""A margin a user registers — only a label, one field and ``terms`` — works everywhere the built-in
ones do, with no other edit: ``build_head`` (forward, loss, gradient against autograd), the GST and
``gst.feature_plane``, the plots, and the app's margin explorer and gallery.

The margin is registered by a fixture and removed again afterwards, so no other test sees it.
Expected values come from tests/formulas.py and closed forms written here.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaface_lab import gst
from adaface_lab.heads import MarginHead, build_head, list_heads
from adaface_lab.margins import MARGINS, Margin, build_margin, list_margins, margin_class, register_margin
from adaface_lab.plots import feature_plane_figure, gst_curves_figure, target_logit_figure

from . import formulas
from .figure_arrays import panel_count, panel_field, panel_titles
from .margin_checks import assert_head_gst_matches_autograd, param_strategy
from .test_app import _chart, _decode, _run, _slider, _trace


class Tilted(Margin):
    """f = s·(cos(θ + k) − k/2): an angular and an additive margin tied to one parameter."""

    label = "Tilted"
    k: float = 0.2

    def terms(self, norm=None, z_hat=None):
        return 1.0, self.k, self.k / 2


@pytest.fixture
def tilted() -> Iterator[type[Margin]]:
    cls = register_margin("tilted")(Tilted)
    try:
        yield cls
    finally:
        MARGINS.remove("tilted")
    assert "tilted" not in list_margins() and "tilted" not in list_heads()


def _tilted_logit(c: np.ndarray, s: float, k: float) -> np.ndarray:
    return s * (np.cos(np.arccos(c) + k) - k / 2)


# ----------------------------------------------------------------------------- heads


def test_registering_needs_nothing_else(tilted) -> None:
    assert list_margins()[-1] == "tilted" and "tilted" in list_heads()
    margin = build_margin("tilted", k=0.3)
    assert margin_class("tilted") is tilted and margin.params() == {"s": 64.0, "k": 0.3}
    others = {margin_class(n).color for n in list_margins() if n != "tilted"}
    assert tilted.color and tilted.color not in others  # a colour of its own
    assert tilted.param_ranges()["k"].lo <= 0.2 <= tilted.param_ranges()["k"].hi
    with pytest.raises(ValueError, match="already registered"):
        register_margin("tilted")(Tilted)
    # its parameter is checked like the built-in ones': a finite number (it declares no domain)
    with pytest.raises(ValueError, match="^Tilted parameter k must be finite, got nan"):
        build_margin("tilted", k=float("nan"))
    assert build_margin("tilted", k=-7.0).k == -7.0


def test_build_head_forward_and_loss(tilted) -> None:
    head = build_head("tilted", 8, 5, s=30.0, k=0.25).double()
    assert type(head) is MarginHead and set(head.state_dict()) == {"kernel"}
    gen = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(6, 8, generator=gen, dtype=torch.float64), dim=1)
    norms, labels = torch.full((6, 1), 20.0, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 0])
    logits = head(emb, norms, labels)
    cos = (emb @ F.normalize(head.kernel.detach(), dim=0)).numpy()
    rows = np.arange(6)
    expected = 30.0 * cos
    expected[rows, labels.numpy()] = _tilted_logit(cos[rows, labels.numpy()], 30.0, 0.25)
    np.testing.assert_allclose(logits.detach().numpy(), expected, rtol=1e-9, atol=1e-9)
    loss = head.loss(logits, labels)
    torch.testing.assert_close(loss, F.cross_entropy(torch.as_tensor(expected), labels))
    loss.backward()
    assert torch.isfinite(head.kernel.grad).all() and head.kernel.grad.abs().sum() > 0


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), seed=st.integers(0, 2**31 - 1), detach=st.booleans())
def test_head_gradient_agrees_with_autograd(tilted, data, seed, detach) -> None:
    params = data.draw(param_strategy("tilted"), label="params")
    assert assert_head_gst_matches_autograd("tilted", params, seed, detach) > 0


# ----------------------------------------------------------------------------- GST, plane, plots


def test_feature_plane_b1_matches_the_closed_form(tilted) -> None:
    phi, k = math.radians(100), 0.2
    plane = gst.feature_plane("tilted", phi=phi, resolution=64)
    # on the arc between the classes B1 solves cos(α + k) − k/2 = cos(φ − α); bisection on (0, φ/2)
    lo, hi = 0.0, phi / 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.cos(mid + k) - k / 2 - math.cos(phi - mid) > 0 else (lo, mid)
    angles = [math.atan2(b[-1, 1], b[-1, 0]) for b in plane.b1]
    assert min(abs(a - lo) for a in angles) < 2e-3
    inside = np.isfinite(plane.g)
    assert inside.mean() > 0.7 and np.all(plane.g[inside] <= 0)


def test_plots_label_colour_and_curve(tilted) -> None:
    margin = build_margin("tilted")
    plane = feature_plane_figure(gst.feature_plane(margin, resolution=41))
    assert plane.layout.title.text == "Tilted (s=64, k=0.2)"
    fig = gst_curves_figure([margin, "arcface"], phi=math.pi / 2)
    curves = [t for t in fig.data if "|g| = 0" not in t.name]  # the rest mark zero-gradient bands
    assert [t.name for t in curves] == ["Tilted", "ArcFace"]
    assert curves[0].line.color == tilted.color != curves[1].line.color
    x, y = np.asarray(fig.data[0].x), np.asarray(fig.data[0].y)
    ok = (x > 5) & (x < 170)
    np.testing.assert_allclose(y[ok], formulas.arc_gst(x, 64.0, 0.2, 0.1, 90.0)[ok], rtol=1e-6, atol=1e-9)
    logit = target_logit_figure([margin])
    trace = next(t for t in logit.data if t.name == "Tilted")
    unclipped = (x > 5) & (x < 160)  # θ + k below π − ε
    np.testing.assert_allclose(np.asarray(trace.y)[unclipped],
                               np.cos(np.radians(x[unclipped]) + 0.2) - 0.1, atol=1e-9)


# ----------------------------------------------------------------------------- the app


def test_margin_explorer_lists_draws_and_controls_it(tilted) -> None:
    at = _run({"methods": "arcface,tilted"})
    assert "Tilted" in at.sidebar.multiselect(key="explorer:methods").options
    x, y = _trace(_chart(at, "gst_chart"), "Tilted")
    ok = (x > 8) & (x < 170)
    np.testing.assert_allclose(y[ok], formulas.arc_gst(x, 64.0, 0.2, 0.1, 90.0)[ok], rtol=1e-6, atol=1e-9)
    # its parameter has a slider of its own, in the URL like every control
    _slider(at, "explorer", "k").set_value(0.3).run()
    assert not at.exception, at.exception
    x, y = _trace(_chart(at, "gst_chart"), "Tilted")
    np.testing.assert_allclose(y[ok], formulas.arc_gst(x, 64.0, 0.3, 0.15, 90.0)[ok], rtol=1e-6, atol=1e-9)
    assert at.query_params["k"] in ("0.3", ["0.3"])
    at.selectbox(key="explorer:plane").set_value("tilted").run()
    assert not at.exception, at.exception
    plane = _chart(at, "plane_chart")
    assert plane["layout"]["title"]["text"] == "Tilted (s=64, k=0.3)"
    assert np.isfinite(_decode(plane["data"][0]["z"])).mean() > 0.7


def test_gallery_shows_it(tilted) -> None:
    at = _run()
    at.switch_page("views/gallery.py").run()
    assert not at.exception, at.exception
    grid = _chart(at, "grid_chart")
    # every method, AdaFace twice, a |g_j| panel for each method that changes its negatives
    extra = 1 + sum(margin_class(n).modifies_negatives for n in list_margins())
    assert panel_count(grid) == len(list_margins()) + extra
    titles = panel_titles(grid)
    assert "Tilted" in titles
    x, y, z = panel_field(grid, titles.index("Tilted"))
    assert np.isfinite(z).mean() > 0.7  # its |g| is drawn
    _, y = _trace(_chart(at, "gallery_gst_chart"), "Tilted")
    assert np.isfinite(y).all()
