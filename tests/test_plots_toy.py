"""Figures of the toy trainer: the animation's frames hold the recorded coordinates, play in the
browser (animate buttons and slider), stay bounded in size; norm and |g| figures show the run's
numbers. Every figure is rebuilt with plotly's full validation (the builder skips it for frames)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from adaface_lab.plots import save_figure, static_image, toy_feature_figure, toy_gst_figure, toy_norm_figure
from adaface_lab.plots.toy import GROUP_LABELS, run_title
from adaface_lab.toy import GROUPS, compare_toy, train_toy

SMALL = dict(n_classes=3, n_per_class=12)


@pytest.fixture(scope="module")
def runs():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return compare_toy(("arcface", "adaface"), steps=25, **SMALL)
    finally:
        torch.set_num_threads(before)


def _validated(fig: go.Figure) -> go.Figure:
    go.Figure(fig.to_dict())  # raises on any invalid property, frames included
    return fig


def _class_points(run, t, c):
    return run.features[t][run.labels == c]


def test_frames_carry_the_recorded_features_and_weights(runs):
    run = runs["adaface"]
    fig = _validated(toy_feature_figure(run, max_frames=6))
    frames = fig.frames
    shown = np.round(np.linspace(0, len(run.step) - 1, 6)).astype(int)
    assert [f.name for f in frames] == [str(s) for s in run.step[shown]]
    C = run.weights.shape[1]
    rms = np.sqrt(np.mean(run.norm[-1] ** 2))
    for frame, t in zip(frames, shown):
        assert list(frame.traces) == list(range(2 * C))
        for c in range(C):
            np.testing.assert_allclose(frame.data[c].x, _class_points(run, t, c)[:, 0])
            np.testing.assert_allclose(frame.data[c].y, _class_points(run, t, c)[:, 1])
            tip = np.array([frame.data[C + c].x[1], frame.data[C + c].y[1]])
            np.testing.assert_allclose(tip / (1.3 * rms), run.weights[t, c], rtol=1e-5)
    # before Play the figure shows the first frame; start=-1 shows the last
    np.testing.assert_allclose(fig.data[0].x, _class_points(run, 0, 0)[:, 0])
    last = toy_feature_figure(run, max_frames=6, start=-1)
    np.testing.assert_allclose(last.data[0].x, _class_points(run, -1, 0)[:, 0])
    assert last.layout.sliders[0].active == 5


def test_animation_runs_in_the_browser_with_fixed_axes(runs):
    run = runs["arcface"]
    fig = toy_feature_figure(run, max_frames=8)
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.method for b in buttons] == ["animate", "animate"]
    assert buttons[0].args[0] is None and buttons[0].args[1]["fromcurrent"]  # play from where it is
    assert list(buttons[1].args[0]) == [None]  # pause
    steps = fig.layout.sliders[0].steps
    assert [list(s.args[0]) for s in steps] == [[f.name] for f in fig.frames]
    assert all(s.method == "animate" for s in steps)
    lim = fig.layout.xaxis.range[1]
    assert fig.layout.yaxis.range[1] == lim and fig.layout.yaxis.scaleanchor == "x"
    shown = np.concatenate([np.r_[trace.x, trace.y] for frame in fig.frames for trace in frame.data])
    assert np.abs(shown).max() <= lim  # every point and arrow of every frame stays in view
    # quality as size, × for samples beyond recognition
    q = run.quality[run.labels == 0]
    size = np.asarray(fig.data[0].marker.size)
    assert np.all(np.diff(size[np.argsort(q)]) >= 0)
    assert list(np.asarray(fig.data[0].marker.symbol) == "x") == list(q == 0)


def test_side_by_side_panels_and_3d():
    three_d = compare_toy(("arcface", "adaface"), steps=4, dim=3, **SMALL)
    fig = _validated(toy_feature_figure(three_d, max_frames=3))
    C, per_panel = 3, 2 * 3 + 1
    assert [t.type for t in fig.data] == (["scatter3d"] * per_panel) * 2
    assert fig.data[per_panel].scene == "scene2"
    frame = fig.frames[-1]
    assert list(frame.traces) == list(range(2 * C)) + list(range(per_panel, per_panel + 2 * C))
    np.testing.assert_allclose(frame.data[2 * C].z, _class_points(three_d["adaface"], -1, 0)[:, 2])
    assert fig.layout.updatemenus[0].buttons[0].args[1]["frame"]["redraw"]  # 3-D frames must redraw
    assert [a.text for a in fig.layout.annotations][:2] == [run_title(r) for r in three_d.values()]


def test_frames_and_points_are_bounded():
    run = train_toy("softmax", steps=40, n_classes=2, n_per_class=400)
    fig = toy_feature_figure(run, max_frames=10, max_points=100)
    assert len(fig.frames) == 10
    assert sum(len(trace.x) for trace in fig.frames[0].data[:2]) == 100
    with pytest.raises(ValueError, match="at least 2"):
        toy_feature_figure(run, max_frames=1)
    with pytest.raises(ValueError, match="share dim and samples"):
        toy_feature_figure([run, train_toy("softmax", steps=2, dim=3, n_classes=2, n_per_class=400)])


def test_norm_figure_draws_each_groups_mean(runs):
    run = runs["adaface"]
    fig = _validated(toy_norm_figure(run))
    for group in GROUPS:
        (trace,) = [t for t in fig.data if t.name == GROUP_LABELS[group]]
        np.testing.assert_allclose(trace.y, run.norm[:, run.group == group].mean(axis=1), rtol=1e-6)
    both = toy_norm_figure(runs)
    assert {t.line.dash for t in both.data if t.showlegend is not False} == {"solid", "dash"}


def test_gst_figure_shows_abs_g_per_group(runs):
    fig = _validated(toy_gst_figure(runs, step=3))
    assert len(fig.data) == 2
    for trace, run in zip(fig.data, runs.values()):
        np.testing.assert_allclose(trace.y, np.abs(run.g[3]))
        assert list(trace.x) == [GROUP_LABELS[g] for g in run.group]
    assert str(runs["adaface"].step[3]) in fig.layout.title.text
    with pytest.raises(ValueError, match="step must index"):
        toy_gst_figure(runs, step=len(runs["adaface"].step))


def test_a_saved_animation_waits_for_play(runs, tmp_path):
    fig = toy_feature_figure(runs, max_frames=6)
    assert "Plotly.animate(" in fig.to_html(include_plotlyjs=False)  # plotly's default: play on load
    html = save_figure(fig, tmp_path / "toy.html", include_plotlyjs=False)["html"].read_text(encoding="utf-8")
    assert "Plotly.addFrames(" in html and "Plotly.animate(" not in html


@pytest.mark.slow
def test_a_static_image_of_an_animation_shows_its_start_frame(runs):
    """Drawn through headless Chromium (or kaleido): with its frames, the picture is the one without them,
    so no frame played before the screenshot; start=-1 draws the last step instead (what reports show)."""
    first = toy_feature_figure(runs, max_frames=6, height=400)
    picture = static_image(first, width=700)
    assert picture == static_image(go.Figure(data=first.data, layout=first.layout), width=700)  # no frames
    assert picture != static_image(toy_feature_figure(runs, max_frames=6, start=-1, height=400), width=700)
