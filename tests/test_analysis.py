"""Run analyses on synthetic records with a known correlation structure, checked against SciPy/NumPy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from adaface_lab.analysis import (
    correlation_by_epoch,
    correlations_by_quality,
    ema_over_steps,
    ema_start_weight,
    epoch_clock,
    histogram_by_epoch,
    least_squares,
    margin_distribution,
    means_by_bin,
    norm_growth,
    pick_images_along_norm,
    quality_correlations,
    sign_check,
    time_axis,
    trajectories,
    with_quality_columns,
    z_hat_distribution,
    z_hat_from_steps,
)
from adaface_lab.margins import adaface_z_hat
from tests.fake_runs import fake_records as make_records

from . import formulas


# --------------------------------------------------------------------------- correlations


@pytest.mark.parametrize("method", ["pearson", "spearman"])
@pytest.mark.parametrize("quality", ["quality", "severity_quality"])
def test_correlation_per_epoch_equals_scipy_on_each_slice(method: str, quality: str) -> None:
    rec = make_records()
    corr = correlation_by_epoch(rec, quality=quality, method=method)
    assert list(corr["epoch"]) == [1, 2, 3, 4, 5]
    full = rec.assign(quality=formulas.quality(rec["brisque"]), severity_quality=1 - rec["severity"])
    fn = stats.pearsonr if method == "pearson" else stats.spearmanr
    for _, row in corr.iterrows():
        sl = full[(full["epoch"] == row["epoch"]) & full[quality].notna()]
        r_norm, p_norm = fn(sl["norm"], sl[quality])
        r_py, p_py = fn(sl["p_y"], sl[quality])
        assert row["n"] == len(sl)
        assert row["r_norm"] == pytest.approx(r_norm, abs=1e-10)
        assert row["r_p_y"] == pytest.approx(r_py, abs=1e-10)
        assert row["p_norm"] == pytest.approx(p_norm, rel=1e-6, abs=1e-300)
        assert row["p_p_y"] == pytest.approx(p_py, rel=1e-6, abs=1e-12)
    # the structure built in: the norm tracks quality, increasingly, and more than P_y
    assert corr["r_norm"].is_monotonic_increasing
    assert (corr["r_norm"] > corr["r_p_y"]).all()


def test_correlation_of_a_missing_or_empty_quality() -> None:
    rec = make_records(n=50, epochs=2).drop(columns=["severity"])
    with pytest.raises(ValueError, match="severity"):
        correlation_by_epoch(rec, quality="severity_quality")
    real = make_records(n=50, epochs=2).assign(severity=np.nan)  # real data: no ground truth
    corr = correlation_by_epoch(real, quality="severity_quality")
    assert list(corr["n"]) == [0, 0] and corr["r_norm"].isna().all()


def test_least_squares_equals_polyfit() -> None:
    rec = with_quality_columns(make_records())
    fit = least_squares(rec, x="quality", y="norm", epoch=-1)
    sl = rec[(rec["epoch"] == 5) & rec["quality"].notna()]
    slope, intercept = np.polyfit(sl["quality"], sl["norm"], 1)
    assert fit.epoch == 5 and fit.n == len(sl)
    assert fit.slope == pytest.approx(slope, rel=1e-10)
    assert fit.intercept == pytest.approx(intercept, rel=1e-10)
    assert fit.r == pytest.approx(np.corrcoef(sl["quality"], sl["norm"])[0, 1], abs=1e-12)
    line = fit.line
    np.testing.assert_allclose(line["x"], [sl["quality"].min(), sl["quality"].max()])
    np.testing.assert_allclose(line["y"], slope * line["x"] + intercept)
    # epoch by value and all epochs pooled
    assert least_squares(rec, "severity_quality", "p_y", epoch=2).epoch == 2
    pooled = least_squares(rec, "severity_quality", "norm", epoch=None)
    assert pooled.n == len(rec) and pooled.epoch is None
    with pytest.raises(ValueError, match="not recorded"):
        least_squares(rec, epoch=9)


# --------------------------------------------------------------------------- trajectories and picks


def test_trajectories_are_deterministic_per_seed() -> None:
    rec = make_records(n=200, epochs=4)
    a, b, c = trajectories(rec, n=12, seed=3), trajectories(rec, n=12, seed=3), trajectories(rec, n=12, seed=4)
    pd.testing.assert_frame_equal(a.paths, b.paths)
    pd.testing.assert_frame_equal(a.summary, b.summary)
    assert set(a.paths["sample_id"]) != set(c.paths["sample_id"])
    assert a.paths["sample_id"].nunique() == 12 and len(a.paths) == 12 * 4
    assert set(a.paths["sample_id"]) <= set(rec["sample_id"])
    # the summary's last norm is the record at the last epoch, and it is sorted by it
    last = rec[rec["epoch"] == 4].set_index("sample_id")["norm"]
    np.testing.assert_allclose(a.summary["last_norm"], last.loc[a.summary["sample_id"]].to_numpy())
    assert a.summary["last_norm"].is_monotonic_increasing
    assert len(trajectories(rec, n=10_000, seed=0).summary) == 200  # n larger than the probe set: all


def test_picks_are_evenly_spaced_along_the_norm() -> None:
    rec = make_records(n=400, epochs=3)
    picks = pick_images_along_norm(rec, k=8, epoch=-1)
    last = rec[rec["epoch"] == 3]
    assert len(picks) == 8 and picks["sample_id"].is_unique
    assert picks["norm"].iloc[0] == last["norm"].min() and picks["norm"].iloc[-1] == last["norm"].max()
    targets = np.linspace(last["norm"].min(), last["norm"].max(), 8)
    np.testing.assert_allclose(picks["target"], targets)
    # every pick is the sample nearest to its target (400 samples: nothing nearer was taken before)
    for _, row in picks.iterrows():
        assert abs(row["norm"] - row["target"]) == pytest.approx(np.min(np.abs(last["norm"] - row["target"])))
    pd.testing.assert_frame_equal(picks, pick_images_along_norm(rec, k=8, epoch=-1))
    with pytest.raises(ValueError, match="asked"):
        pick_images_along_norm(rec, k=401)


# --------------------------------------------------------------------------- distributions


def test_z_hat_and_margin_distributions_equal_numpy_per_epoch() -> None:
    rec = make_records(n=300, epochs=3)
    zd = z_hat_distribution(rec)
    for _, row in zd.iterrows():
        z = rec.loc[rec["epoch"] == row["epoch"], "z_hat"].to_numpy()
        np.testing.assert_allclose(row[["q05", "q25", "q50", "q75", "q95"]].to_numpy(float),
                                   np.quantile(z, [0.05, 0.25, 0.5, 0.75, 0.95]))
        assert row["frac_low"] == pytest.approx(np.mean(z == -1)) and row["frac_high"] == pytest.approx(np.mean(z == 1))
        assert row["n"] == len(z)
    md = margin_distribution(rec)
    assert set(md["term"]) == {"margin_angle", "margin_add"} and len(md) == 6
    row = md[(md["term"] == "margin_add") & (md["epoch"] == 2)].iloc[0]
    assert row["q50"] == pytest.approx(np.median(rec.loc[rec["epoch"] == 2, "margin_add"]))
    # a head other than AdaFace: ẑ all NaN, no margin columns -> empty frames, not errors
    arc = rec.assign(z_hat=np.nan).drop(columns=["margin_angle", "margin_add"])
    assert len(z_hat_distribution(arc)) == 0 and "q50" in z_hat_distribution(arc).columns
    assert len(margin_distribution(arc)) == 0


def test_histogram_by_epoch_equals_numpy_histogram() -> None:
    rec = make_records(n=300, epochs=3)
    h = histogram_by_epoch(rec, "norm", bins=12)
    lo, hi = rec["norm"].min(), rec["norm"].max()
    for e in (1, 2, 3):
        counts, edges = np.histogram(rec.loc[rec["epoch"] == e, "norm"], bins=12, range=(lo, hi))
        he = h[h["epoch"] == e]
        np.testing.assert_array_equal(he["count"], counts)
        np.testing.assert_allclose(he["left"], edges[:-1])
        assert (he["density"] * (edges[1] - edges[0])).sum() == pytest.approx(1.0)


def test_ema_over_steps_numbers_steps_and_smooths_by_hand() -> None:
    steps = pd.DataFrame({
        "epoch": np.repeat([0, 1], 4), "step": np.tile(np.arange(4), 2),  # step restarts each epoch
        "loss": [4.0, 2.0, 3.0, 1.0, 2.0, 0.5, 1.5, 1.0], "acc": np.linspace(0, 0.7, 8),
        "batch_mean": np.linspace(20, 16, 8), "batch_std": np.linspace(100, 3, 8),
    }).sample(frac=1.0, random_state=0)  # order on disk need not be sorted
    out = ema_over_steps(steps, smoothing=0.6)
    np.testing.assert_array_equal(out["global_step"], np.arange(8))
    np.testing.assert_allclose(out["mu_z"], np.linspace(20, 16, 8))
    loss = np.array([4.0, 2.0, 3.0, 1.0, 2.0, 0.5, 1.5, 1.0])
    num, den, expected = 0.0, 0.0, []
    for v in loss:  # bias-corrected EMA: weighted mean with weights 0.6^age
        num, den = 0.6 * num + v, 0.6 * den + 1.0
        expected.append(num / den)
    np.testing.assert_allclose(out["loss_ema"], expected)
    glob = ema_over_steps(steps.assign(step=steps["epoch"] * 4 + steps["step"] + 10))
    np.testing.assert_array_equal(glob["global_step"], np.arange(10, 18))  # a global step counter is kept
    assert "mu_z" not in ema_over_steps(steps.drop(columns=["batch_mean"])).columns


# --------------------------------------------------------------------------- sign of the finding


def test_sign_check_says_matches_reversed_or_unclear() -> None:
    pos = sign_check(correlation_by_epoch(make_records(sign=1.0)))
    neg = sign_check(correlation_by_epoch(make_records(sign=-1.0)))
    assert pos.verdict == "matches" and "as the paper finds" in str(pos)
    assert neg.verdict == "reversed" and "reversed" in str(neg).lower() and "flip the sign of h" in str(neg)
    assert neg.r_norm < -0.1 and neg.epoch == 5
    flat = pd.DataFrame({"epoch": [1, 2], "r_norm": [0.02, -0.03], "r_p_y": [0.1, 0.2]})
    assert sign_check(flat).verdict == "unclear"


def test_tiny_but_varying_probabilities_still_correlate():
    """Early in a run with s = 64 the margined P_y is ~1e-15 yet varies; r must not be NaN."""
    rng = np.random.default_rng(0)
    q = rng.uniform(0, 1, 300)
    p_y = 1e-15 * (1 + q + rng.normal(0, 0.3, 300))
    frame = pd.DataFrame({"sample_id": np.arange(300), "epoch": 1, "norm": q + rng.normal(0, 1, 300),
                          "p_y": p_y, "quality": q})
    out = correlation_by_epoch(frame)
    assert out["r_p_y"].iloc[0] == pytest.approx(stats.pearsonr(p_y, q)[0], rel=1e-6)
    constant = frame.assign(p_y=1e-15)
    assert np.isnan(correlation_by_epoch(constant)["r_p_y"].iloc[0])


def test_quality_correlations_of_one_epoch_are_pearson_over_its_rows():
    """The numbers epochs.csv holds: Pearson r over the finite rows, by correlation_by_epoch's own rules."""
    rec = make_records(n=300, epochs=1)
    out = quality_correlations(rec)
    assert list(out) == ["r_norm_qseverity", "r_p_y_qseverity", "r_norm_qbrisque", "r_p_y_qbrisque"]
    scored = rec[rec["brisque"].notna()]
    assert out["r_norm_qbrisque"] == pytest.approx(stats.pearsonr(scored["norm"], formulas.quality(scored["brisque"]))[0])
    assert out["r_p_y_qseverity"] == pytest.approx(stats.pearsonr(rec["p_y"], 1 - rec["severity"])[0])
    # real data (no severity) and no records at all: NaN, not an error
    real = quality_correlations(rec.assign(severity=np.nan))
    assert np.isnan(real["r_norm_qseverity"]) and real["r_norm_qbrisque"] == out["r_norm_qbrisque"]
    assert all(np.isnan(v) for v in quality_correlations(rec.iloc[:0]).values())
    # a P_y that saturated at 1 up to rounding is constant: r is undefined, as on the app's page
    saturated = rec.assign(p_y=np.where(np.arange(len(rec)) % 2, 1.0, np.nextafter(1.0, 0.0)))
    assert np.isnan(quality_correlations(saturated)["r_p_y_qbrisque"])
    assert np.isnan(correlation_by_epoch(saturated)["r_p_y"].iloc[0])


# --------------------------------------------------------------------------- what the notebooks compute


def test_correlations_by_quality_equal_scipy_for_every_quality_and_epoch() -> None:
    rec = make_records(n=120, epochs=3)
    out = correlations_by_quality(rec, method="spearman", features=("norm",))
    full = with_quality_columns(rec)
    assert list(out.groupby("quality", sort=False).size().index) == ["quality", "severity_quality"]
    for row in out.itertuples():
        sub = full[full["epoch"] == row.epoch][["norm", row.quality]].dropna()
        assert row.r_norm == pytest.approx(stats.spearmanr(sub["norm"], sub[row.quality])[0], abs=1e-12)
        assert row.n == len(sub)
    with pytest.raises(ValueError, match="no quality column"):
        correlations_by_quality(rec.drop(columns=["brisque", "severity"]))


def test_norm_growth_is_each_samples_last_minus_first_norm() -> None:
    rec = make_records(n=50, epochs=4)
    rec = rec.drop(rec.index[(rec["epoch"] == 1) & (rec["sample_id"] == 7)])  # not seen in the first epoch
    norm_at = {(r.sample_id, r.epoch): r.norm for r in rec.itertuples()}
    out = norm_growth(rec)
    assert (out["epoch"] == 4).all() and len(out) == 50
    for r in out.itertuples():
        expected = norm_at[(r.sample_id, 4)] - norm_at.get((r.sample_id, 1), np.nan)
        assert r.norm_growth == pytest.approx(expected, nan_ok=True)
    assert np.isnan(out.loc[out["sample_id"] == 7, "norm_growth"]).all()
    between = norm_growth(rec, start=2, end=-2)  # epochs by value or from the end
    assert (between["epoch"] == 3).all()
    r = between.iloc[5]
    assert r["norm_growth"] == pytest.approx(norm_at[(r["sample_id"], 3)] - norm_at[(r["sample_id"], 2)])


def test_means_by_bin_equal_masks_written_out_by_hand() -> None:
    rec = make_records(n=300, epochs=2)
    last = rec[rec["epoch"] == 2]
    edges = [0.0, 0.2, 0.5, 1.0]
    out = means_by_bin(rec, "severity", edges, columns=["brisque", "norm"])
    assert out.index.name == "severity bin" and len(out) == 3
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (last["severity"] > lo) & (last["severity"] <= hi) | ((last["severity"] == lo) if k == 0 else False)
        assert out["n"].iloc[k] == inside.sum()
        assert out["norm"].iloc[k] == pytest.approx(last.loc[inside, "norm"].mean())
        assert out["brisque"].iloc[k] == pytest.approx(np.nanmean(last.loc[inside, "brisque"]))  # NaN left out

    quartiles = means_by_bin(rec, "norm", 4, columns=["severity"], epoch=1, equal_counts=True)
    first = rec[rec["epoch"] == 1]
    cuts = np.quantile(first["norm"], [0.25, 0.5, 0.75])
    which = np.searchsorted(cuts, first["norm"].to_numpy(), side="left")  # (q_k, q_k+1], the lowest closed
    assert list(quartiles["n"]) == [int((which == k).sum()) for k in range(4)] == [75] * 4
    for k in range(4):
        assert quartiles["severity"].iloc[k] == pytest.approx(first["severity"].to_numpy()[which == k].mean())
    with pytest.raises(ValueError, match="number of bins"):
        means_by_bin(rec, "norm", [0, 20, 40], columns=["p_y"], equal_counts=True)


def test_z_hat_from_steps_uses_the_ema_of_each_records_step() -> None:
    rec = make_records(n=40, epochs=3)  # one step per epoch
    ema = dict(zip(sorted(rec["step"].unique()), [(18.0, 60.0), (22.0, 9.0), (30.0, 4.0)]))
    steps = pd.DataFrame([{"step": k, "batch_mean": m, "batch_std": s} for k, (m, s) in ema.items()])
    out = z_hat_from_steps(rec, steps, h=0.333)
    for r, z in zip(rec.itertuples(), out):
        mean, std = ema[r.step]
        assert z == pytest.approx(float(adaface_z_hat(np.array(r.norm), mean, std, 0.333)))
    assert np.isnan(z_hat_from_steps(rec.assign(step=max(ema) + 1), steps, h=0.333)).all()  # a step never logged


def test_ema_start_weight_equals_the_recursion_run_by_hand() -> None:
    for t_alpha, n in ((0.01, 0), (0.01, 370), (0.1, 25), (1.0, 3)):
        value = 1.0  # the start's weight: feed zeros, the start alone is left
        for _ in range(n):
            value = t_alpha * 0.0 + (1 - t_alpha) * value
        assert ema_start_weight(n, t_alpha) == pytest.approx(value, rel=1e-12, abs=1e-300)
    with pytest.raises(ValueError, match="t_alpha"):
        ema_start_weight(10, 0.0)


# --------------------------------------------------------------------------- time: epochs, steps, images


def _uneven_steps() -> pd.DataFrame:
    """Two epochs of 3 steps; batches of 8 with a short last batch (5 in epoch 1, 4 in epoch 2)."""
    return pd.DataFrame({"epoch": [1, 1, 1, 2, 2, 2], "step": [1, 2, 3, 4, 5, 6], "batch": [8, 8, 5, 8, 8, 4]})


def test_epoch_clock_counts_each_epochs_steps_and_images_by_hand() -> None:
    clock = epoch_clock(_uneven_steps().sample(frac=1.0, random_state=0))  # row order does not matter
    assert clock["epoch"].tolist() == [1, 2] and clock["steps"].tolist() == [3, 3]
    assert clock["images"].tolist() == [21, 20] and clock["last_step"].tolist() == [3, 6]
    assert clock["images_seen"].tolist() == [21, 41]


def test_time_axis_places_records_at_their_step_and_epochs_at_their_end() -> None:
    steps = _uneven_steps()
    records = pd.DataFrame({"epoch": [1, 1, 2, 2], "step": [1, 3, 4, 6]})
    assert time_axis(records, None, "epoch").tolist() == [1, 1, 2, 2]
    assert time_axis(records, steps, "step").tolist() == [1, 3, 4, 6]
    assert time_axis(records, steps, "images").tolist() == [8, 21, 29, 41]  # images seen through that step
    per_epoch = pd.DataFrame({"epoch": [2, 1]})
    assert time_axis(per_epoch, steps, "step").tolist() == [6, 3]
    assert time_axis(per_epoch, steps, "images").tolist() == [41, 21]
    with pytest.raises(ValueError, match="needs the run's steps"):
        time_axis(per_epoch, None, "step")
    with pytest.raises(ValueError, match="axis must be one of"):
        time_axis(per_epoch, steps, "seconds")
