"""Streamlit AppTest checks of the app's margin pages (explorer and gallery).

Each test acts on a widget and asserts that the figure data changed the way the maths says. The
expected curves are recomputed here from the formulas of DESIGN.md §2, written out independently
of adaface_lab in tests/formulas.py, and compared with the numbers the page put in its plotly
charts.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from adaface_lab.gst import feature_plane

from .figure_arrays import decode as _decode
from .figure_arrays import panel_count, panel_field, panel_titles, picture_quantum
from .formulas import adaface_terms, adaface_zero_band_deg, arc_gst, curricular_arc, filled_area, z_hat

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app" / "streamlit_app.py"
sys.path.insert(0, str(ROOT / "app"))  # for the pure URL-state helpers in app/_state.py


# ----------------------------------------------------------------------------- helpers


def _run(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    if query:
        at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    return at


def _charts(at: AppTest) -> dict[str, dict[str, Any]]:
    """The plotly specs (data + layout) of the charts in ``at``'s tree, by key: drawn in place by
    app/_charts.py's component, or by st.plotly_chart where the app falls back to it."""
    specs = {e.key: json.loads(e.proto.bytes) for e in at.get("bidi_component")}
    specs.update({e.key: json.loads(e.proto.spec) for e in at.get("plotly_chart")})
    return specs


def _chart(at: AppTest, key: str) -> dict[str, Any]:
    """The plotly spec of the chart with ``key``."""
    specs = _charts(at)
    if key not in specs:
        raise AssertionError(f"no chart {key!r}; have {sorted(specs)}")
    return specs[key]


def _trace(spec: dict[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    for trace in spec["data"]:
        if trace.get("name") == name:
            return _decode(trace["x"]), _decode(trace["y"])
    raise AssertionError(f"no trace {name!r}; have {[t.get('name') for t in spec['data']]}")


def _page(at: AppTest) -> AppTest:
    """The whole page in ``at``'s tree. A control reruns only the fragments it affects, so after a
    change the tree holds those alone; a plain run (no widget changed, so no callback) redraws the
    whole page, as a reload would."""
    if not at.title:
        at.run()
        assert not at.exception, at.exception
    return at


def _slider(at: AppTest, page: str, key: str):
    return _page(at).sidebar.slider(key=f"{page}:{key}")


# ---- the maths: tests/formulas.py, written out independently of adaface_lab (DESIGN.md §2)


def _adaface_g(deg: np.ndarray, s: float, norm: float, phi_deg: float, detached: bool = False,
               m: float = 0.4, h: float = 0.333, mean: float = 20.0, std: float = 10.0) -> np.ndarray:
    """AdaFace's |g| along the arc at a norm (the pages' defaults for m, h, μ_z, σ_z)."""
    g_angle, g_add = adaface_terms(float(z_hat(norm, mean, std, h)), m)
    return arc_gst(deg, s, g_angle, g_add, phi_deg, detached)


def _inside(x: np.ndarray, lo: float = 8.0, hi: float = 170.0) -> np.ndarray:
    """Angles (degrees) well away from the clamps at 0° and 180°."""
    return (x > lo) & (x < hi)


# ----------------------------------------------------------------------------- page 1: explorer


def test_explorer_renders_its_four_figures() -> None:
    at = _run()
    assert set(_charts(at)) == {"plane_chart", "gst_chart", "logit_chart", "terms_chart"}
    assert at.title[0].value == "Margin explorer"
    plane = _chart(at, "plane_chart")
    heat = plane["data"][0]
    z = _decode(heat["z"])
    assert heat["type"] == "heatmap" and z.shape == (161, 161)
    assert np.isnan(z[0, 0]) and np.isfinite(z[80, 80])  # NaN outside the unit disc only
    assert plane["layout"]["yaxis"]["scaleanchor"] == "x"  # equal aspect


def test_adaface_gst_matches_the_formula_at_the_default_state() -> None:
    at = _run()
    x, y = _trace(_chart(at, "gst_chart"), "AdaFace")
    expected = _adaface_g(x, 64.0, 30.0, 90.0)  # the page's defaults
    ok = _inside(x)
    np.testing.assert_allclose(y[ok], expected[ok], rtol=1e-6, atol=1e-6)


def test_raising_the_norm_moves_adaface_emphasis_to_hard_samples() -> None:
    at = _run()
    curves = {}
    for norm in (10.0, 50.0):  # ẑ = −0.33 (toward ArcFace) and ẑ ≈ +1 (toward negative angular)
        _slider(at, "explorer", "norm").set_value(norm).run()
        assert not at.exception
        curves[norm] = _trace(_chart(at, "gst_chart"), "AdaFace")
    (x, low), (_, high) = curves[10.0], curves[50.0]
    assert x[np.argmax(high)] > x[np.argmax(low)] + 60  # the peak moves toward θ_y = 180°
    at_150, at_60 = np.argmin(abs(x - 150)), np.argmin(abs(x - 60))
    assert high[at_150] / high[at_60] > 1.5 * (low[at_150] / low[at_60])
    ok = _inside(x)
    np.testing.assert_allclose(high[ok], _adaface_g(x, 64, 50.0, 90)[ok], rtol=1e-6, atol=1e-6)
    # the terms figure marks the new norm
    terms = _chart(at, "terms_chart")
    assert any("‖z‖ = 50" in a.get("text", "") for a in terms["layout"]["annotations"])


def test_h_zero_makes_adaface_equal_cosface() -> None:
    at = _run()
    x, ada = _trace(_chart(at, "gst_chart"), "AdaFace")
    _, cos = _trace(_chart(at, "gst_chart"), "CosFace")
    assert not np.allclose(ada, cos)
    _slider(at, "explorer", "h").set_value(0.0).run()
    assert not at.exception
    gst, logit = _chart(at, "gst_chart"), _chart(at, "logit_chart")
    np.testing.assert_allclose(_trace(gst, "AdaFace")[1], _trace(gst, "CosFace")[1], rtol=1e-9)
    np.testing.assert_allclose(_trace(logit, "AdaFace")[1], _trace(logit, "CosFace")[1], rtol=1e-9)
    # and CosFace is s·(c − m): f/s = cos θ − m
    x, f = _trace(logit, "CosFace")
    np.testing.assert_allclose(f[_inside(x)], (np.cos(np.radians(x)) - 0.4)[_inside(x)], atol=1e-9)


def test_z_hat_minus_one_set_directly_makes_adaface_arcface() -> None:
    at = _run({"zdirect": "1", "zhat": "-1"})
    assert at.sidebar.toggle(key="explorer:zdirect").value is True
    assert _slider(at, "explorer", "zhat").value == -1.0
    _slider(at, "explorer", "m").set_value(0.5).run()
    gst = _chart(at, "gst_chart")
    np.testing.assert_allclose(_trace(gst, "AdaFace")[1], _trace(gst, "ArcFace")[1], rtol=1e-9)


def test_s_scales_the_gradient_and_detached_makes_df_dc_equal_s() -> None:
    at = _run()
    x, arc = _trace(_chart(at, "gst_chart"), "ArcFace")
    hard = np.argmin(abs(x - 135))
    # official ArcFace de-emphasises hard samples: |g| at 135° is well below s
    assert arc[hard] < 0.8 * 64
    _slider(at, "explorer", "s").set_value(32.0).run()
    x, cos32 = _trace(_chart(at, "gst_chart"), "CosFace")
    ok = _inside(x)
    np.testing.assert_allclose(cos32[ok], arc_gst(x, 32, 0.0, 0.4, 90)[ok], rtol=1e-6, atol=1e-9)
    assert 31.0 < cos32[hard] <= 32.0  # CosFace: |g| = (1 − P_y)·s → s for hard samples

    _page(at).sidebar.radio(key="explorer:conv").set_value("detached").run()
    assert not at.exception
    gst = _chart(at, "gst_chart")
    for name, shift, add in (("ArcFace", 0.4, 0.0), ("Negative angular", -0.4, 0.0)):
        x, y = _trace(gst, name)
        expected = arc_gst(x, 32, shift, add, 90, detached=True)
        np.testing.assert_allclose(y[_inside(x)], expected[_inside(x)], rtol=1e-6, atol=1e-9)
        # with the margin detached, df/dc = s, so |g|/s = 1 − P_y ≤ 1 everywhere
        assert np.nanmax(y) <= 32.0 + 1e-9


def test_phi_moves_b0_in_the_feature_plane() -> None:
    at = _run()
    _slider(at, "explorer", "phi").set_value(120.0).run()
    plane = _chart(at, "plane_chart")
    x, y = _trace(plane, "B0: c<sub>y</sub> = c<sub>j</sub>")
    angles = np.degrees(np.arctan2(y, x))
    ends = angles[np.hypot(x, y) > 0.5]
    assert np.any(np.isclose(ends, 60.0, atol=1e-6))  # B0 bisects W_y (0°) and W_j (120°)


@pytest.mark.parametrize("conv", ["official", "detached"])
def test_every_method_draws_its_feature_plane(conv: str) -> None:
    from adaface_lab.margins import list_margins, margin_class

    names = list_margins()
    at = _run({"methods": ",".join(names), "conv": conv, "zdirect": "1", "zhat": "0.5"})
    data = _chart(at, "gst_chart")["data"]
    bands = [t for t in data if "|g| = 0" in t["name"]]
    negatives = [t for t in data if "|g<sub>j</sub>|" in t["name"]]
    assert len(data) - len(bands) - len(negatives) == len(names)  # one |g| curve per method
    assert len(negatives) == sum(margin_class(n).modifies_negatives for n in names) == 1
    assert bool(bands) == (conv == "official")  # df/dc = s when detached: no zero-gradient band
    for name in names:
        at.selectbox(key="explorer:plane").set_value(name).run()
        assert not at.exception, (name, at.exception)
        plane = _chart(at, "plane_chart")
        assert plane["layout"]["title"]["text"].startswith(margin_class(name).label)
        z = _decode(plane["data"][0]["z"])
        inside = np.isfinite(z)
        assert inside.mean() > 0.7 and np.all(z[inside] >= 0)  # |g| over the whole disc
        b1 = _trace(plane, "B1: f(c<sub>y</sub>) = logit<sub>j</sub>")[0]
        assert np.isfinite(b1).sum() >= 2  # B1 was found
        if conv == "detached":  # df/dc = s: |g| = (1 − P_y)·s ≤ s
            assert np.nanmax(z) <= 64.0 + 1e-4


def test_url_state_round_trip() -> None:
    query = {"norm": "45", "s": "32", "methods": "arcface,adaface", "conv": "detached",
             "phi": "100", "plane": "sphereface"}
    at = _run(query)
    assert _slider(at, "explorer", "norm").value == 45.0
    assert _slider(at, "explorer", "s").value == 32.0
    assert _slider(at, "explorer", "phi").value == 100.0
    assert at.sidebar.multiselect(key="explorer:methods").value == ["arcface", "adaface"]
    assert at.sidebar.radio(key="explorer:conv").value == "detached"
    assert at.selectbox(key="explorer:plane").value == "sphereface"
    gst = _chart(at, "gst_chart")
    assert [t["name"] for t in gst["data"]] == ["ArcFace", "AdaFace"]
    x, y = _trace(gst, "AdaFace")
    np.testing.assert_allclose(y[_inside(x)], _adaface_g(x, 32, 45.0, 100, detached=True)[_inside(x)],
                               rtol=1e-6)
    # a change is written back to the URL; defaults stay out of it
    _slider(at, "explorer", "m").set_value(0.35).run()
    assert at.query_params["m"] in ("0.35", ["0.35"])
    assert at.query_params["norm"] in ("45", ["45"])
    assert "h" not in at.query_params


def test_bad_url_values_fall_back_or_clamp() -> None:
    at = _run({"norm": "1e9", "s": "abc", "methods": "nope,cosface", "conv": "bogus",
               "phi": "nan", "m": "-3", "zdirect": "maybe", "plane": "x"})
    assert _slider(at, "explorer", "norm").value == 100.0
    assert _slider(at, "explorer", "s").value == 64.0
    assert _slider(at, "explorer", "phi").value == 90.0
    assert _slider(at, "explorer", "m").value == 0.0
    assert at.sidebar.multiselect(key="explorer:methods").value == ["cosface"]
    assert at.sidebar.radio(key="explorer:conv").value == "official"
    assert at.sidebar.toggle(key="explorer:zdirect").value is False
    assert at.selectbox(key="explorer:plane").value == "adaface"


def test_param_parse_snaps_and_encodes() -> None:
    from _state import Param

    p = Param("x", "x", "float", 1.0, 0.5, 2.0, 0.05)
    assert p.parse("1.234") == pytest.approx(1.25)
    assert p.parse("inf") == 1.0 and p.parse(None) == 1.0 and p.parse("-7") == 0.5
    assert p.parse(p.encode(1.35)) == pytest.approx(1.35)
    q = Param("k", "k", "multi", ["a"], choices=("a", "b", "c"))
    assert q.parse("c,a,c,zz") == ["c", "a"] and q.parse("zz") == ["a"] and q.parse("") == []
    with pytest.raises(ValueError):
        Param("y", "y", "float", 1.0)


# ----------------------------------------------------------------------------- fragments


def _changes(at: AppTest, page: str) -> list[tuple[str, Any]]:
    """One new value for each control in the page's sidebar (a few steps from its current one)."""
    out: list[tuple[str, Any]] = []
    for slider in at.sidebar.slider:
        lo, hi, step = slider.proto.min, slider.proto.max, slider.proto.step
        out.append((slider.key, min(hi, slider.value + 3 * step) if slider.value + 3 * step <= hi
                    else max(lo, slider.value - 3 * step)))
    from _margin_controls import controls

    params = controls()
    for radio in [*at.sidebar.radio, *at.sidebar.selectbox]:
        choices = params[radio.key.split(":", 1)[1]].choices
        out.append((radio.key, next(c for c in choices if c != radio.value)))
    if page == "explorer":
        out.append(("explorer:methods", ["cosface", "magface"]))
    return out


def _widget(at: AppTest, key: str):
    for kind in ("slider", "radio", "multiselect", "selectbox"):
        found = [w for w in getattr(at, kind) if w.key == key]
        if found:
            return found[0]
    raise AssertionError(f"no widget {key!r}")


@pytest.mark.parametrize("page", ["explorer", "gallery"])
def test_a_control_reruns_its_figures_and_leaves_none_stale(page: str) -> None:
    """Each control reruns only the fragments that read it: after a change the tree holds those
    alone (no sidebar, no title), and what the browser then shows (the rerun figures over the
    others) equals what a full run of the page draws, for every control of the page."""
    at = _run() if page == "explorer" else _gallery(_run())
    shown = _charts(at)
    rerun_sizes = []
    for key, value in _changes(at, page):
        _widget(_page(at), key).set_value(value).run()
        assert not at.exception, (key, at.exception)
        assert not at.title and not at.sidebar.slider, f"{key} reran the whole page"
        rerun = _charts(at)
        shown.update(rerun)
        rerun_sizes.append(len(rerun))
        full = _charts(_page(at))
        assert set(full) == set(shown)
        for name, spec in full.items():
            assert shown[name] == spec, f"{name} is stale after a change of {key}"
    assert min(rerun_sizes) < len(shown)  # some control leaves some figure alone


def test_which_figures_a_control_reruns() -> None:
    at = _run()
    _slider(at, "explorer", "phi").set_value(100.0).run()  # φ: not AdaFace's terms
    assert set(_charts(at)) == {"plane_chart", "gst_chart", "logit_chart"}
    _slider(at, "explorer", "norm").set_value(31.0).run()  # ‖z‖: all four
    assert set(_charts(at)) == {"plane_chart", "gst_chart", "logit_chart", "terms_chart"}
    _page(at).sidebar.multiselect(key="explorer:methods").set_value(["arcface"]).run()
    assert set(_charts(at)) == {"gst_chart", "logit_chart"}
    assert "Methods shown: ArcFace." in at.caption[-1].value  # and the footer
    _gallery(at)
    _slider(at, "gallery", "cols").set_value(3).run()  # panels per row: the grid alone
    assert set(_charts(at)) == {"grid_chart"}
    assert at.query_params["cols"] in ("3", ["3"])  # and the URL says so


def test_without_the_component_the_charts_fall_back_to_st_plotly_chart(monkeypatch) -> None:
    import _charts

    monkeypatch.setattr(_charts, "_CHART", None)  # as on a Streamlit without components v2
    at = _run()
    assert {e.key for e in at.get("plotly_chart")} == {"plane_chart", "gst_chart", "logit_chart",
                                                       "terms_chart"}
    assert not at.get("bidi_component")
    _slider(at, "explorer", "norm").set_value(50.0).run()
    terms = _chart(at, "terms_chart")
    assert any("‖z‖ = 50" in a.get("text", "") for a in terms["layout"]["annotations"])


def test_chart_spec_is_plotlys_own_json() -> None:
    """What app/_charts.py sends for a figure parses to exactly what plotly's to_dict + to_json
    write (typed arrays included), for the figures of both pages and for arrays plotly narrows
    (int64), keeps as lists (bool, empty, under "range") or cannot write without its encoder (a
    NaN outside an array)."""
    import plotly.graph_objects as go
    import plotly.io as pio
    from _charts import CHART_CONFIG, chart_spec

    from adaface_lab.gst import feature_plane
    from adaface_lab.margins import build_margin, list_margins
    from adaface_lab.plots import (adaface_terms_figure, feature_plane_figure, feature_plane_grid,
                                   gst_curves_figure, method_spec, target_logit_figure)

    planes = [feature_plane(build_margin(n), resolution=41, norm=30.0, z_hat=0.3, t=0.2)
              for n in list_margins()]
    specs = [method_spec(n, norm=30.0, z_hat=0.3, t=0.2) for n in list_margins()]
    odd = go.Figure({"data": [{"type": "scatter", "x": np.arange(5, dtype=np.int64) * 70_000,
                               "y": np.array([1, 0, 1, 1, 0], dtype=bool),
                               "customdata": np.array([], dtype=float)}],
                     "layout": {"xaxis": {"range": np.array([0.0, 3e5])}}}, _validate=False)
    with_nan = go.Figure({"data": [{"type": "scatter", "x": [1.0, math.nan]}]}, _validate=False)
    figures = [feature_plane_grid(planes, cols=4), feature_plane_grid(planes, cols=4, hover=False),
               feature_plane_figure(planes[-1]),
               gst_curves_figure(specs, 1.2, negatives=True), target_logit_figure(specs, phi=1.2),
               adaface_terms_figure(0.333, 0.4, 20.0, 10.0, 30.0), odd, with_nan]
    for fig in figures:
        expected = fig.to_dict()
        expected["config"] = CHART_CONFIG
        assert json.loads(chart_spec(fig)) == json.loads(pio.to_json(expected, validate=False))
    assert json.loads(chart_spec(odd))["data"][0]["x"]["dtype"] == "i4"  # narrowed like plotly


# ----------------------------------------------------------------------------- page 2: gallery


def _gallery(at: AppTest) -> AppTest:
    at.switch_page("views/gallery.py").run()
    assert not at.exception, at.exception
    return at




def _panel(titles: list[str], words: str) -> int:
    """Index of the one panel whose title contains ``words``."""
    found = [i for i, t in enumerate(titles) if words in t]
    assert len(found) == 1, (words, titles)
    return found[0]


def test_gallery_shows_every_method_and_adaface_low_and_high() -> None:
    at = _gallery(_run())
    assert at.title[0].value == "Method gallery"
    grid = _chart(at, "grid_chart")
    from adaface_lab.margins import list_margins

    # every method, AdaFace at a low and a high norm, CurricularFace's negatives once more
    assert panel_count(grid) == len(list_margins()) + 2
    titles = panel_titles(grid)
    assert len(titles) == panel_count(grid) and sum(t.startswith("AdaFace") for t in titles) == 2
    # the default norms 5 and 35 give a symmetric pair, ẑ = ∓0.5 (tests/formulas.py)
    z_lo, z_hi = z_hat(5.0, 20.0, 10.0, 0.333), z_hat(35.0, 20.0, 10.0, 0.333)
    assert z_lo == pytest.approx(-z_hi) == pytest.approx(-0.5, abs=1e-3)
    assert "ẑ = −0.50" in titles[_panel(titles, "low norm")].replace("-", "−")
    assert "ẑ = +0.50" in titles[_panel(titles, "high norm")]
    # high norm: more gradient on hard samples (θ_y = 150°) than at the low norm
    low = _value_at(grid, _panel(titles, "low norm"), 150.0)[0]
    high = _value_at(grid, _panel(titles, "high norm"), 150.0)[0]
    assert high > 1.5 * low
    # the independent value: ẑ from the gallery's default norms
    expected = _adaface_g(np.array([150.0]), 64, 35.0, 90)[0]
    assert high == pytest.approx(expected, rel=0.03)  # a 121² grid cell, not the exact point
    assert grid["layout"]["coloraxis"]["cmax"] == 128.0  # one scale: |g| clipped at 2s


def test_gallery_uses_the_explorers_s_and_m() -> None:
    at = _run()
    _slider(at, "explorer", "s").set_value(32.0).run()
    _slider(at, "explorer", "m").set_value(0.5).run()
    _gallery(at)
    assert _slider(at, "gallery", "s").value == 32.0
    assert _slider(at, "gallery", "m").value == 0.5
    grid = _chart(at, "grid_chart")
    assert grid["layout"]["coloraxis"]["cmax"] == 64.0
    x, y = _trace(_chart(at, "gallery_gst_chart"), "ArcFace")
    np.testing.assert_allclose(y[_inside(x)], arc_gst(x, 32, 0.5, 0.0, 90)[_inside(x)], rtol=1e-6)
    # changing s on the gallery rescales its colour cap
    _slider(at, "gallery", "s").set_value(48.0).run()
    assert _chart(at, "grid_chart")["layout"]["coloraxis"]["cmax"] == 96.0


# ----------------------------------------------------------------------------- what the maths hides


def _captions(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


def test_explorer_marks_adafaces_band_of_misclassified_samples_with_no_gradient() -> None:
    at = _run({"zdirect": "1", "zhat": "1"})
    lo, hi = adaface_zero_band_deg(0.4, 1.0)  # from B1 to m·ẑ + ε (tests/formulas.py)
    bars = [t for t in _chart(at, "gst_chart")["data"] if t["name"].startswith("AdaFace: |g| = 0")]
    assert len(bars) == 1
    np.testing.assert_allclose(_decode(bars[0]["x"]), [lo, hi], atol=0.01)
    plane = _chart(at, "plane_chart")
    overlay = [t for t in plane["data"] if t.get("fill") == "toself"]
    assert len(overlay) == 1  # the magenta wedge: its outline encloses the marked points' area
    area, centre = filled_area(_decode(overlay[0]["x"]), _decode(overlay[0]["y"]))
    heat = next(t for t in plane["data"] if t["type"] == "heatmap")
    grid = _decode(heat["x"])
    marked = feature_plane("adaface", phi=math.pi / 2, z_hat=1.0, resolution=len(grid)).zero_g  # the page's defaults
    cell = float(grid[1] - grid[0]) ** 2
    assert 100 * cell < area and abs(area - marked.sum() * cell) < 0.15 * marked.sum() * cell
    rows, cols = np.nonzero(marked)  # [y, x]: the outline sits where the marked points are, not mirrored
    np.testing.assert_allclose(centre, [grid[cols].mean(), grid[rows].mean()], atol=2 * (grid[1] - grid[0]))
    assert f"official convention): {lo:.1f}°–{hi:.1f}°." in _captions(at)
    # ẑ = 0.5 (below about 0.75) and the detached convention: no band
    _slider(at, "explorer", "zhat").set_value(0.5).run()
    assert "AdaFace now (ẑ = +0.50, official convention): none" in _captions(at)
    assert not [t for t in _chart(at, "plane_chart")["data"] if t.get("fill") == "toself"]
    _slider(at, "explorer", "zhat").set_value(1.0).run()
    _page(at).sidebar.radio(key="explorer:conv").set_value("detached").run()
    assert "detached convention): none" in _captions(at)
    assert not [t for t in _chart(at, "gst_chart")["data"] if "|g| = 0" in t["name"]]


def _value_at(spec: dict[str, Any], panel: int, angle_deg: float, radius: float = 0.8) -> tuple[float, float]:
    """(value, exact polar angle in degrees) of the heatmap cell of ``panel`` nearest a point: a
    panel of the gallery's grid, or the ``panel``-th heatmap of a single plane."""
    if "meta" in spec["layout"]:
        xs, ys, z = panel_field(spec, panel)
    else:
        heat = [t for t in spec["data"] if t["type"] == "heatmap"][panel]
        xs, ys, z = _decode(heat["x"]), _decode(heat["y"]), _decode(heat["z"])
    a = math.radians(angle_deg)
    i, j = np.argmin(abs(ys - radius * math.sin(a))), np.argmin(abs(xs - radius * math.cos(a)))
    return float(z[i, j]), math.degrees(math.atan2(ys[i], xs[j]))


def test_explorer_shows_curricularfaces_negatives_where_t_acts() -> None:
    at = _run({"plane": "curricularface", "ct": "0.8"})
    assert "plane_gj_chart" in _charts(at)
    value, angle = _value_at(_chart(at, "plane_gj_chart"), 0, 100.0)
    expected = curricular_arc(np.array([angle]), 64.0, 0.4, 0.8, 90.0)[1][0]  # the page's m = 0.4
    assert value == pytest.approx(expected, rel=1e-4)
    negatives = [t for t in _chart(at, "gst_chart")["data"] if "|g<sub>j</sub>|" in t["name"]]
    assert negatives == []  # CurricularFace is not among the default curves
    assert "plane_gj_chart" not in _charts(_run())


def test_gallery_curricularface_t_changes_the_negatives_not_the_target() -> None:
    at = _gallery(_run())
    before = _chart(at, "grid_chart")
    titles = panel_titles(before)
    target, negative = _panel(titles, "CurricularFace<br>t=0"), _panel(titles, "(negative)")
    _slider(at, "gallery", "ct").set_value(0.8).run()
    after = _chart(at, "grid_chart")
    assert "t=0.8" in panel_titles(after)[target]
    for angle in (147.0, 152.0):  # where |g_j| stays under the colour cap 2s at t = 0.8 too
        g0, where = _value_at(before, target, angle)
        g1, _ = _value_at(after, target, angle)
        j0, _ = _value_at(before, negative, angle)
        j1, _ = _value_at(after, negative, angle)
        q = picture_quantum(after)  # the gallery draws pictures: values read back within q
        assert abs(g1 - g0) < 0.02 * g0 + 2 * q  # the target's |g| barely moves
        want = curricular_arc(np.array([where]), 64.0, 0.4, 0.8, 90.0)[1][0] / \
            curricular_arc(np.array([where]), 64.0, 0.4, 0.0, 90.0)[1][0]
        assert abs(j1 / j0 - want) <= want * (q / j1 + q / j0) + 1e-3 * want and want > 1.3


def test_boundary_control_draws_magface_with_its_own_code() -> None:
    at = _gallery(_run())
    titles = panel_titles(_chart(at, "grid_chart"))
    mag = _panel(titles, "MagFace")
    assert "AdaFace-code clip" in titles[mag]
    m = (0.8 - 0.45) / 100 * (30 - 10) + 0.45  # MagFace at the page's ‖z‖ = 30
    clipped, where = _value_at(_chart(at, "grid_chart"), mag, 135.0)
    q = picture_quantum(_chart(at, "grid_chart"))  # a picture's values are read back within q
    assert abs(clipped - arc_gst(np.array([where]), 64, m, 0.0, 90)[0]) <= q + 1e-4 * clipped
    _page(at).radio(key="gallery:boundary").set_value("official").run()
    assert not at.exception, at.exception
    grid = _chart(at, "grid_chart")
    assert "easy margin (MagFace code)" in panel_titles(grid)[mag]
    own, _ = _value_at(grid, mag, 135.0)
    assert abs(own - 64.0) <= q + 0.064 and own > 2 * clipped  # no margin where cos θ ≤ 0
    names = [t["name"] for t in _chart(at, "gallery_gst_chart")["data"]]
    assert any("easy margin (MagFace code)" in n for n in names)
    assert any("c − m·sin m" in n for n in names)
