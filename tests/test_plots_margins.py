"""adaface_lab.plots (margin figures): what each figure shows, checked against hand formulas.

The builders skip plotly's per-property validation for speed, so every figure is also rebuilt
here with full validation: a misspelt property would fail these tests.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from adaface_lab.gst import feature_plane
from adaface_lab.margins import build_margin, list_margins
from adaface_lab.plots import (
    adaface_terms_figure,
    feature_plane_figure,
    feature_plane_grid,
    gst_curves_figure,
    method_spec,
    save_figure,
    target_logit_figure,
)

from . import formulas
from .figure_arrays import panel_count, panel_field, panel_titles, picture_quantum


def _validated(fig: go.Figure) -> go.Figure:
    """``fig`` itself, after rebuilding a copy with full validation (raises on any invalid
    property)."""
    go.Figure(fig.to_dict())
    return fig


def _y(fig: go.Figure, name: str) -> tuple[np.ndarray, np.ndarray]:
    for trace in fig.data:
        if trace.name == name:
            return np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)
    raise AssertionError(f"no trace {name!r}")


def test_feature_plane_figure_shows_the_planes_fields() -> None:
    plane = feature_plane(build_margin("arcface", s=32.0, m=0.5), resolution=41, phi=math.radians(80))
    fig = _validated(feature_plane_figure(plane))
    heat = fig.data[0]
    z = np.asarray(heat.z, dtype=float)
    np.testing.assert_allclose(z, np.abs(plane.g), rtol=1e-6, equal_nan=True)
    assert heat.zmax == 64.0 and "2s = 64" in heat.colorbar.title.text  # default cap, said so
    b0 = fig.data[2]
    ends = np.degrees(np.arctan2(np.asarray(b0.y, dtype=float), np.asarray(b0.x, dtype=float)))
    assert np.any(np.isclose(ends, 40.0))  # B0 halves φ = 80°
    assert fig.data[3].line.dash in (None, "solid") and b0.line.dash == "dash"
    arrows = fig.data[-1]  # W_y and W_j: lines from the origin with an arrowhead at each tip
    heads = {(round(x, 6), round(y, 6)) for x, y, size in zip(arrows.x, arrows.y, arrows.marker.size)
             if size > 0}
    assert arrows.marker.symbol == "arrow" and arrows.marker.angleref == "previous"
    assert heads == {(1.0, 0.0), (round(math.cos(math.radians(80)), 6), round(math.sin(math.radians(80)), 6))}
    assert arrows.x[0] == arrows.y[0] == arrows.x[3] == arrows.y[3] == 0.0  # both from the origin
    assert [a.text for a in fig.layout.annotations] == ["W<sub>y</sub>", "W<sub>j</sub>"]
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.uirevision
    custom = feature_plane_figure(plane, title="mine", g_range=(0, 10))
    assert custom.data[0].zmax == 10 and custom.layout.title.text == "mine"
    with pytest.raises(ValueError):
        feature_plane_figure(plane, g_range=(5, 5))


def test_feature_plane_grid_has_one_panel_per_plane_on_one_scale() -> None:
    names = list_margins()
    planes = [feature_plane(build_margin(n), resolution=21, norm=30.0, z_hat=0.5) for n in names]
    fig = _validated(feature_plane_grid(planes, cols=4))
    assert panel_count(fig) == len(names)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 1 and heatmaps[0].coloraxis == "coloraxis"  # one scale
    assert fig.layout.coloraxis.cmax == 128.0
    assert fig.layout.yaxis.scaleanchor == "x"  # discs stay round
    for i, plane in enumerate(planes):  # each panel shows its own plane's |g|, nothing else
        x, y, z = panel_field(fig, i)
        np.testing.assert_allclose(x, plane.x, atol=1e-6)
        np.testing.assert_allclose(y, plane.y, atol=1e-6)
        np.testing.assert_allclose(z, np.abs(plane.g), rtol=1e-6, equal_nan=True)
    centres = np.array(fig.layout.meta["panels"])
    assert len(set(np.round(centres[:, 0], 6))) == 4 and len(set(np.round(centres[:, 1], 6))) == 3
    gaps = np.diff(sorted(set(np.round(centres[:, 0], 6))))
    assert np.all(gaps > 2.4)  # discs and their W labels (at 1.12) never overlap
    assert panel_titles(fig) == [a.text for a in fig.layout.annotations]
    assert all(t.startswith(build_margin(n).label) for t, n in zip(panel_titles(fig), names))
    # the lines of all panels joined: one trace per kind, each panel's lines moved to its centre
    b1 = next(t for t in fig.data if t.name and t.name.startswith("B1"))
    xy = np.column_stack([np.asarray(b1.x, dtype=float), np.asarray(b1.y, dtype=float)])
    assert len(xy[np.isfinite(xy[:, 0])]) == sum(len(line) for p in planes for line in p.b1)
    gap = np.full((1, 2), np.nan)
    last = np.concatenate([part for line in planes[-1].b1 for part in (line, gap)][:-1]) + centres[-1]
    np.testing.assert_allclose(xy[-len(last):], last, equal_nan=True)  # the last panel's B1, moved
    arrows = next(t for t in fig.data if t.name == "W<sub>y</sub>, W<sub>j</sub>")
    tips = np.array([(x, y) for x, y, size in zip(arrows.x, arrows.y, arrows.marker.size) if size > 0])
    want = np.array([centre + vec for p, centre in zip(planes, centres) for vec in (p.w_y, p.w_j)])
    np.testing.assert_allclose(tips, want, atol=1e-9)  # W_y and W_j arrowheads, in every panel
    labels = next(t for t in fig.data if t.name == "W labels")
    assert sum(t == "W<sub>y</sub>" for t in labels.text) == len(planes)
    np.testing.assert_allclose(np.column_stack([labels.x, labels.y])[-1], centres[-1] + 1.12 * planes[-1].w_j)
    # one panel, and more columns than panels: a single row
    one = feature_plane_grid(planes[:1], cols=4)
    assert one.layout.meta["panels"] == [[0.0, 0.0]]
    np.testing.assert_allclose(panel_field(one, 0)[2], np.abs(planes[0].g), rtol=1e-6, equal_nan=True)
    assert {cy for _, cy in feature_plane_grid(planes[:3], cols=6).layout.meta["panels"]} == {0.0}
    with pytest.raises(ValueError, match="one grid"):
        feature_plane_grid([planes[0], feature_plane("arcface", resolution=31)])
    with pytest.raises(ValueError):
        feature_plane_grid([], cols=3)
    with pytest.raises(ValueError):
        feature_plane_grid(planes, cols=0)
    with pytest.raises(ValueError):
        feature_plane_grid(planes, titles=["one"])


def test_feature_plane_grid_as_pictures_draws_what_the_heatmaps_hold() -> None:
    """hover=False (the app's gallery): each field a PNG coloured as the browser colours the heatmap
    (read back through the colour axis's own stops, tests/figure_arrays.py), NaN transparent, the
    same panels, lines and colour bar; a |g_j| panel amid the |g| panels shows in neither picture of
    the other field."""
    planes = [feature_plane(build_margin(n), resolution=41, norm=30.0, z_hat=0.5, t=0.5)
              for n in ("arcface", "curricularface", "sphereface")]
    panels, fields = [planes[0], planes[1], planes[1], planes[2]], ["g", "g_j", "g", "g"]
    heat = feature_plane_grid(panels, cols=3, fields=fields)
    fig = _validated(feature_plane_grid(panels, cols=3, fields=fields, hover=False))
    assert [t.type for t in fig.data if t.type in ("heatmap", "image")] == ["image", "image"]  # |g|, |g_j|
    assert all(t.hoverinfo == "skip" for t in fig.data if t.type != "scatter" or t.mode != "text")
    q = picture_quantum(fig)
    assert q == pytest.approx(128.0 / 254)  # one colour level of 0…2s (255 levels)
    for i, (plane, field) in enumerate(zip(panels, fields)):
        x, y, z = panel_field(fig, i)
        want = np.minimum(np.abs(getattr(plane, field)), 128.0)  # clamped at the cap, like the heatmap
        np.testing.assert_array_equal(np.isnan(z), np.isnan(want))
        assert np.nanmax(np.abs(z - want)) <= q * (1 + 1e-6)
        np.testing.assert_allclose(x, panel_field(heat, i)[0], atol=1e-6)
    assert np.nanmax(np.abs(planes[2].g)) > 128  # SphereFace saturates: the clamp was tested
    # the browser colours with the stops the pictures were coloured with: an explicit list, not the
    # name "Viridis" (plotly.js has its own Viridis, with other stops)
    assert not isinstance(fig.layout.coloraxis.colorscale, str) and len(fig.layout.coloraxis.colorscale) > 2
    assert fig.layout.coloraxis.colorscale == heat.layout.coloraxis.colorscale
    assert feature_plane_figure(planes[0]).data[0].colorscale == fig.layout.coloraxis.colorscale
    # the colour bar: one shared axis, shown through a trace that draws nothing
    keys = [t for t in fig.data if t.type == "scatter" and t.marker.coloraxis == "coloraxis"]
    assert len(keys) == 1 and fig.layout.coloraxis.cmax == 128.0
    def kinds(f: go.Figure) -> list[tuple[str, str]]:
        return [(t.type, t.name) for t in f.data if t.type == "scatter" and t.name != "colour scale"]

    assert kinds(fig) == kinds(heat)
    assert panel_titles(fig) == panel_titles(heat)


def test_gst_curves_match_the_hand_formula_and_cut_the_axis() -> None:
    specs = [method_spec(build_margin("arcface", s=64.0, m=0.5)),
             method_spec(build_margin("cosface", s=64.0, m=0.4)),
             method_spec("adaface", label="AdaFace high", norm=60.0, mean=20.0, std=10.0)]
    fig = _validated(gst_curves_figure(specs, phi=math.radians(70)))
    x, y = _y(fig, "ArcFace")
    ok = (x > 5) & (x < 150)
    np.testing.assert_allclose(y[ok], formulas.arc_gst(x, 64, 0.5, 0.0, 70)[ok], rtol=1e-6, atol=1e-9)
    x, y = _y(fig, "CosFace")
    hard = (x > 90) & (x < 170)
    assert np.all(y[hard] <= 64.0) and np.all(y[hard] > 60.0)  # |g| = (1 − P_y)·s → s
    # AdaFace at ẑ = +1 grows without bound near 180°: the axis is cut at 2s and says so
    assert fig.layout.yaxis.range == (0, 128.0)
    assert any("cut at 2s = 128" in a.text for a in fig.layout.annotations)
    assert any(shape.x0 == 35.0 for shape in fig.layout.shapes)  # B0 at φ/2
    detached = gst_curves_figure(specs[:1], phi=math.radians(70), convention="detached")
    x, y = _y(detached, "ArcFace")
    assert np.nanmax(y) <= 64.0
    with pytest.raises(ValueError):
        gst_curves_figure(specs, convention="other")
    with pytest.raises(TypeError):
        gst_curves_figure([42])


def test_target_logit_figure_is_f_over_s() -> None:
    fig = _validated(target_logit_figure([build_margin("arcface", s=30.0, m=0.3),
                                          ("cosface", {})], phi=math.pi / 2))
    x, y = _y(fig, "ArcFace")
    ok = (x > 3) & (x < 160)  # away from the cosine clamp at cos θ = 1 − ε (θ ≈ 2.6°)
    np.testing.assert_allclose(y[ok], np.cos(np.radians(x[ok]) + 0.3), atol=1e-9)
    x, y = _y(fig, "CosFace")
    np.testing.assert_allclose(y[ok], np.cos(np.radians(x[ok])) - 0.4, atol=1e-9)
    x, cj = _y(fig, "cos θ<sub>j</sub> (negative logit / s)")
    np.testing.assert_allclose(cj, np.cos(np.radians(np.abs(x - 90.0))), atol=1e-12)
    x, cy = _y(fig, "cos θ<sub>y</sub> (no margin)")
    np.testing.assert_allclose(cy, np.cos(np.radians(x)), atol=1e-12)


def test_adaface_terms_figure_marks_the_current_norm() -> None:
    h, m, mean, std, norm = 0.5, 0.4, 20.0, 8.0, 26.0
    fig = _validated(adaface_terms_figure(h, m, mean, std, norm))
    z = float(formulas.z_hat(norm, mean, std, h))
    markers = [t for t in fig.data if t.mode == "markers"][0]
    np.testing.assert_allclose(markers.y, [z, *formulas.adaface_terms(z, m)], atol=1e-12)
    assert set(markers.x) == {norm}
    x, zh = _y(fig, "ẑ")
    assert zh[0] == -1.0 and zh[-1] == 1.0  # the range shows both saturations
    direct = adaface_terms_figure(h, m, mean, std, norm, z_hat=-0.7)
    assert any("ẑ set directly" in a.text for a in direct.layout.annotations)


def test_method_spec_rejects_unknown_context() -> None:
    with pytest.raises(ValueError):
        method_spec("arcface", bogus=1.0)


def test_save_figure_writes_html_and_png(tmp_path: Path) -> None:
    fig = target_logit_figure(["arcface"])
    written = save_figure(fig, tmp_path / "f.html", tmp_path / "f.png", width=500, height=300)
    html = written["html"].read_text(encoding="utf-8")
    assert "plotly" in html.lower() and "ArcFace" in html
    png = written["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes left no temp files


def test_gst_curves_legend_in_columns_grows_the_figure_not_squeezes_the_plot() -> None:
    """A long legend below the plot, in set columns: the figure is taller by the legend's rows, so the
    plot keeps the height it was given (a legend left to flow pushes the plot's bottom margin up)."""
    methods = ["arcface", "cosface", "negative_angular", ("magface", {"norm": 30.0})]
    flowing = gst_curves_figure(methods, height=440)
    one = gst_curves_figure(methods, height=440, legend_columns=1)
    two = gst_curves_figure(methods, height=440, legend_columns=2)
    entries = len(one.data)
    assert one.layout.height == 440 + 21 * entries and two.layout.height == 440 + 21 * math.ceil(entries / 2)
    assert two.layout.legend.entrywidth == 0.5 and two.layout.legend.entrywidthmode == "fraction"
    assert flowing.layout.height == 440 and one.layout.legend.y < 0  # below the plot, under the axis title
    with pytest.raises(ValueError, match="legend_columns"):
        gst_curves_figure(methods, legend_columns=0)
