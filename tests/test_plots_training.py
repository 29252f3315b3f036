"""Training figures build from the analysis frames and carry exactly their data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from adaface_lab.analysis import (
    correlation_by_epoch,
    ema_over_steps,
    least_squares,
    margin_distribution,
    trajectories,
    with_quality_columns,
    z_hat_distribution,
)
from adaface_lab.evaluate import verification_by_bin, verification_metrics
from adaface_lab.plots.training import (
    correlation_figure,
    margin_distribution_figure,
    norm_ema_figure,
    quality_scatter_figure,
    roc_figure,
    training_curves_figure,
    trajectory_figure,
    verification_bins_figure,
    z_hat_figure,
)

from .fake_runs import fake_records as make_records
from .fake_runs import fake_steps


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return with_quality_columns(make_records(n=300, epochs=4))


def _xy(trace: go.BaseTraceType) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)


def test_correlation_figure_carries_r_per_epoch(records: pd.DataFrame) -> None:
    corr = correlation_by_epoch(records)
    fig = correlation_figure(corr)
    assert len(fig.data) == 2
    for trace, col in zip(fig.data, ("r_norm", "r_p_y")):
        x, y = _xy(trace)
        np.testing.assert_array_equal(x, corr["epoch"])
        np.testing.assert_array_equal(y, corr[col])
    both = correlation_figure(pd.concat([corr, correlation_by_epoch(records, quality="severity_quality")]))
    assert len(both.data) == 4 and both.data[2].line.dash == "dash"


def test_quality_scatter_has_points_and_least_squares_lines(records: pd.DataFrame) -> None:
    fig = quality_scatter_figure(records, epoch=-1)
    pts_norm, line_norm, pts_py, line_py = fig.data
    last = records[(records["epoch"] == 4) & records["quality"].notna()]
    x, y = _xy(pts_norm)
    np.testing.assert_array_equal(x, last["quality"])
    np.testing.assert_array_equal(y, last["norm"])
    np.testing.assert_array_equal(_xy(pts_py)[1], last["p_y"])
    fit = least_squares(records, "quality", "p_y", epoch=-1)
    np.testing.assert_allclose(_xy(line_py)[1], fit.line["y"])
    slope = np.diff(_xy(line_norm)[1]) / np.diff(_xy(line_norm)[0])
    assert slope[0] == pytest.approx(np.polyfit(last["quality"], last["norm"], 1)[0])
    assert pts_norm.xaxis != pts_py.xaxis  # side by side


def test_trajectory_figure_points_and_colour_by_last_norm(records: pd.DataFrame) -> None:
    traj = trajectories(records, n=20, seed=1)
    fig = trajectory_figure(traj, n_colors=5)
    markers = fig.data[-1]
    x, y = _xy(markers)
    np.testing.assert_array_equal(x, traj.paths["norm"])
    np.testing.assert_array_equal(y, traj.paths["p_y"])
    last = traj.summary.set_index("sample_id")["last_norm"]
    np.testing.assert_allclose(np.asarray(markers.marker.color, float), last.loc[traj.paths["sample_id"]].to_numpy())
    # the line traces hold every point once, one NaN-separated segment per sample
    lines = fig.data[:-1]
    xs = np.concatenate([_xy(t)[0] for t in lines])
    assert np.sort(xs[np.isfinite(xs)]).tolist() == np.sort(traj.paths["norm"].to_numpy()).tolist()
    assert sum(np.isnan(_xy(t)[0]).sum() + 1 for t in lines) == 20
    assert len(lines) <= 5


def test_correlations_and_trajectories_on_a_step_or_image_axis(records: pd.DataFrame) -> None:
    """Steps (or images seen) as the x-axis, with the length of an epoch in the axis title: each epoch's
    correlation at the step that ended it; each trajectory point at the step its record was taken."""
    steps = fake_steps(4)  # 10 steps of 32 images per epoch
    corr = correlation_by_epoch(records)
    for x, factor in (("step", 1), ("images", 32)):
        fig = correlation_figure(corr, x=x, steps=steps)
        xs, ys = _xy(fig.data[0])
        np.testing.assert_array_equal(xs, factor * 10 * corr["epoch"].to_numpy())
        np.testing.assert_array_equal(ys, corr["r_norm"])
        assert fig.layout.xaxis.title.text.endswith("(an epoch: 10 steps, 320 images)")
    with pytest.raises(ValueError, match="needs the run's steps"):
        correlation_figure(corr, x="step")

    traj = trajectories(records, n=12, seed=2)
    fig = trajectory_figure(traj, x="step", steps=steps)
    markers = fig.data[-1]  # ‖z‖ against each record's step, on the top panel
    np.testing.assert_array_equal(_xy(markers)[0], traj.paths["step"])
    np.testing.assert_array_equal(_xy(markers)[1], traj.paths["norm"])
    p_y_lines = [t for t in fig.data if t.yaxis == "y2"]  # the bottom panel: P_y over the same steps
    ys = np.concatenate([_xy(t)[1] for t in p_y_lines])
    assert sorted(ys[np.isfinite(ys)]) == sorted(traj.paths["p_y"])
    assert fig.layout.xaxis2.title.text == "optimiser step (an epoch: 10 steps, 320 images)"


def test_over_time_figures_carry_their_frames(records: pd.DataFrame) -> None:
    zd = z_hat_distribution(records)
    box = z_hat_figure(zd).data[0]
    np.testing.assert_array_equal(np.asarray(box.x, float), zd["epoch"])
    np.testing.assert_array_equal(np.asarray(box.median, float), zd["q50"])
    np.testing.assert_array_equal(np.asarray(box.q1, float), zd["q25"])
    assert len(z_hat_figure(z_hat_distribution(records.assign(z_hat=np.nan))).data) == 0  # "not AdaFace" note

    md = margin_distribution(records)
    fig = margin_distribution_figure(md)
    medians = [t for t in fig.data if t.mode == "lines+markers"]
    add = md[md["term"] == "margin_add"]
    np.testing.assert_array_equal(_xy(medians[1])[1], add["q50"])

    steps = pd.DataFrame({"epoch": np.repeat([1, 2], 5), "step": np.arange(10), "loss": np.linspace(5, 1, 10),
                          "acc": np.linspace(0, 0.5, 10), "batch_mean": np.linspace(20, 15, 10),
                          "batch_std": np.linspace(100, 4, 10)})
    ema = ema_over_steps(steps)
    mu, sigma = norm_ema_figure(ema).data
    np.testing.assert_array_equal(_xy(mu)[0], ema["global_step"])
    np.testing.assert_array_equal(_xy(mu)[1], ema["mu_z"])
    np.testing.assert_array_equal(_xy(sigma)[1], ema["sigma_z"])

    epochs = pd.DataFrame({"epoch": [1, 2], "loss": [3.0, 1.5], "acc": [0.2, 0.5]})
    curves = training_curves_figure(epochs, ema)
    by_name = {t.name: t for t in curves.data}
    np.testing.assert_array_equal(_xy(by_name["loss (smoothed)"])[1], ema["loss_ema"])
    x_ep, y_ep = _xy(by_name["acc per epoch"])
    np.testing.assert_array_equal(x_ep, [4, 9])  # each epoch at its last step
    np.testing.assert_array_equal(y_ep, [0.2, 0.5])
    np.testing.assert_array_equal(_xy(training_curves_figure(epochs).data[0])[0], [1, 2])


def test_verification_figures_carry_roc_and_bins() -> None:
    rng = np.random.default_rng(0)
    issame = np.arange(2000) % 2 == 0
    scores = np.where(issame, 0.6, 0.1) + rng.normal(0, 0.2, 2000)
    m = verification_metrics(scores, issame)
    fig = roc_figure({"model A": m, "model B": m})
    x, y = _xy(fig.data[0])
    np.testing.assert_array_equal(x, m["fpr"])
    np.testing.assert_array_equal(y, m["tpr"])
    np.testing.assert_allclose(_xy(fig.data[1])[1], [m["tar_at_far"][1e-2], m["tar_at_far"][1e-3]])
    assert fig.layout.xaxis.type == "log" and "AUC" in fig.data[0].name
    assert len(roc_figure(m, log_x=False).data) == 3  # curve, TAR markers, chance line

    bins = np.array(["high", "low"])[rng.integers(0, 2, 2000)]
    table = verification_by_bin(scores, issame, bins)
    bar = verification_bins_figure(table).data[0]
    assert list(bar.x) == ["high", "low"]
    np.testing.assert_array_equal(np.asarray(bar.y, float), table["accuracy"])
