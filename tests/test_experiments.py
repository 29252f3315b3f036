"""The sweep's parts without training: grid keys and values read as `adaface-lab train` reads them, the
95 % t-interval and paired differences against independent computations, the verdict sentence, the
executors' settings, and one plain ``error:`` line for each kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from adaface_lab.cli import main
from adaface_lab.config import TrainConfig
from adaface_lab.experiments import (
    Execution,
    GridError,
    SweepSpec,
    compare_with_baseline,
    ablation_plan,
    full_head_params,
    interval_sign,
    noise_verdict,
    parse_grid,
    sign_verdict,
    summarise,
    t_interval,
)
from adaface_lab.experiments import execution as execution_module
from adaface_lab.runs import run_key

# --------------------------------------------------------------------------- the grid


def test_grid_values_are_converted_by_the_train_options_own_parser() -> None:
    axes = parse_grid(["head=arcface,adaface", "head-param.h=0,0.333", "epochs=2,3", "crop_prob=0,0.2",
                       "brisque=true,off", "lr-milestones=0.5,0.8;0.3", "backbone-param.input_size=32,64"])
    by_key = {a.key: a for a in axes}
    assert list(by_key) == ["head", "head-param.h", "epochs", "crop-prob", "brisque", "lr-milestones",
                            "backbone-param.input_size"]  # option spelling, in the order given
    assert by_key["head"].values == ("arcface", "adaface") and by_key["head"].field == "head"
    assert by_key["head-param.h"].values == (0, 0.333) and by_key["head-param.h"].field == "head_params"
    assert by_key["epochs"].values == (2, 3) and all(type(v) is int for v in by_key["epochs"].values)
    assert by_key["crop-prob"].values == (0.0, 0.2) and by_key["crop-prob"].field == "crop_prob"
    assert by_key["brisque"].values == (True, False)
    assert by_key["lr-milestones"].values == ((0.5, 0.8), (0.3,))
    spec = SweepSpec.parse(["head=cosface,adaface", "epochs=2,3"], seeds=2, shared={"num_identities": 10})
    configs = spec.configs()
    assert len(configs) == 2 * 2 * 2
    point, seed, config = configs[-1]
    assert point == {"head": "adaface", "epochs": 3} and seed == 1
    assert (config.head, config.epochs, config.seed, config.num_identities) == ("adaface", 3, 1, 10)


def test_head_parameters_are_written_out_so_equal_settings_are_one_run() -> None:
    full = full_head_params("adaface", {"h": 0})
    assert full == {"s": 64.0, "m": 0.4, "h": 0.0, "t_alpha": 0.01, "proxy": "norm"}
    assert type(full["h"]) is float
    given = TrainConfig(head="adaface", head_params=full_head_params("adaface", {"h": 0.333, "proxy": "norm"}))
    default = TrainConfig(head="adaface", head_params=full_head_params("adaface", {}))
    assert run_key(given) == run_key(default)
    assert run_key(TrainConfig(head_params=full_head_params("adaface", {"h": 0.0}))) != run_key(default)
    with pytest.raises(ValueError, match="proxy must be one of"):
        full_head_params("adaface", {"proxy": "brisque"})
    with pytest.raises(ValueError, match="unknown parameter"):
        full_head_params("arcface", {"h": 0.3})


def test_two_grid_points_that_are_one_run_are_refused(tmp_path) -> None:
    spec = SweepSpec.parse(["head-param.h=0.333"], shared={"head": "adaface"})
    spec.axes.append(spec.axes[0].__class__("head-param.proxy", "head_params", "proxy", ("norm",)))
    assert len(spec.plan(tmp_path)) == 1
    twice = SweepSpec.parse(["head=adaface,arcface"], shared={})
    assert len({run.path for run in twice.plan(tmp_path)}) == 2


# --------------------------------------------------------------------------- statistics


def test_t_interval_matches_the_textbook_formula_and_covers_95_percent() -> None:
    x = np.array([0.61, 0.64, 0.58, 0.70])
    ci = t_interval(x)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert ci.n == 4 and ci.mean == pytest.approx(x.mean())
    assert (ci.low, ci.high) == pytest.approx((low, high))
    assert t_interval([0.5, np.nan]).n == 1 and np.isnan(t_interval([0.5]).low)  # one value: no interval
    assert np.isnan(t_interval([]).mean)
    # coverage over many simulated sweeps of three seeds: close to 95 %
    rng = np.random.default_rng(0)
    hits = [(c.low <= 1.0 <= c.high) for c in (t_interval(rng.normal(1.0, 0.2, 3)) for _ in range(4000))]
    assert 0.93 < np.mean(hits) < 0.97


def _runs_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for head in ("arcface", "adaface"):
        for h in (0.0, 0.333):
            for seed in range(3):
                shift = 0.05 if head == "adaface" else 0.0
                rows.append({"head": head, "h": h, "seed": seed, "auc": 0.7 + shift + 0.01 * seed + rng.normal(0, 0.002),
                             "r": rng.normal(0.1, 0.1)})
    return pd.DataFrame(rows)


def test_summary_and_paired_comparison_recomputed_by_hand() -> None:
    runs = _runs_frame().drop(index=[11])  # adaface, h=0.333 lost its seed 2
    summary = summarise(runs, ["head", "h"], ["auc", "r"])
    assert list(summary["n_seeds"]) == [3, 3, 3, 2]
    row = summary.iloc[1]
    values = runs[(runs["head"] == "arcface") & (runs["h"] == 0.333)]["auc"].to_numpy()
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
    assert row["auc_mean"] == pytest.approx(values.mean())
    assert (row["auc_ci_low"], row["auc_ci_high"]) == pytest.approx((values.mean() - half, values.mean() + half))

    compare = compare_with_baseline(runs, ["head", "h"], ["auc", "r"], {"head": "arcface"})
    assert list(compare["baseline"]) == ["head=arcface, h=0.0", "head=arcface, h=0.333"]
    assert list(compare["n_matched"]) == [3, 2]  # seeds run at both
    ada, arc = runs[runs["head"] == "adaface"], runs[runs["head"] == "arcface"]
    d = ada[ada["h"] == 0.333].set_index("seed")["auc"] - arc[arc["h"] == 0.333].set_index("seed")["auc"]
    d = d.dropna().to_numpy()
    half = stats.t.ppf(0.975, 1) * d.std(ddof=1) / np.sqrt(2)
    last = compare.iloc[1]
    assert last["auc_diff"] == pytest.approx(d.mean())
    assert (last["auc_diff_ci_low"], last["auc_diff_ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    # the seed-to-seed spread is shared by both heads: pairing removes it, the 0.05 shift stands out
    assert compare["auc_diff_ci_low"].iloc[0] > 0
    sentence = noise_verdict(compare, "auc", ["head", "h"], "AUC")
    assert sentence.startswith("AUC: beyond the seeds' noise")
    assert f"head=adaface, h=0.0 (+{compare['auc_diff'].iloc[0]:.3g} against head=arcface, h=0.0)" in sentence
    verdict_r = noise_verdict(compare, "r", ["head", "h"], "r")
    assert "no difference" in verdict_r or "within the noise" in verdict_r


# --------------------------------------------------------------------------- execution


def test_jobs_share_the_cores_and_slurm_gets_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execution_module, "available_cores", lambda: 8)
    assert Execution(jobs=3).threads() == 2 and Execution(jobs=16).threads() == 1
    slurm = Execution("slurm", jobs=4, partition="gpu", time_min=90, gpus_per_job=1, cpus_per_job=6)
    assert slurm.threads() == 6
    assert slurm.submitit_parameters() == {"timeout_min": 90, "name": "adaface-sweep", "gpus_per_node": 1,
                                           "cpus_per_task": 6, "slurm_partition": "gpu"}
    import submitit.slurm.slurm as slurm_module

    monkeypatch.setattr(slurm_module.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    executor = slurm.make_executor(__import__("pathlib").Path("/tmp") / "adaface-sweep-test-executor")
    script = executor._executor._make_submission_file_text("python -m worker", "uid")
    assert "--partition=gpu" in script and "--time=90" in script and "--gpus-per-node=1" in script
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        Execution(jobs=0)


# --------------------------------------------------------------------------- bad input: one line each


@pytest.mark.parametrize("args, message", [
    (["--grid", "hed=arcface,adaface"], "unknown key 'hed'; did you mean 'head'?"),
    (["--grid", "head="], "--grid head=: no values"),
    (["--grid", "head=arcface,,adaface"], "an empty value in the list"),
    (["--grid", "jobs=1,2"], "'jobs' is an option of the sweep, not a train option"),
    (["--seeds", "0", "--grid", "head=arcface"], "--seeds must be at least 1, got 0"),
    (["--grid", "device=cpu,cuda"], "'device' does not change what a run records"),
    (["--grid", "seed=0,1"], "the seeds are the sweep's own axis: use --seeds N"),
    (["--grid", "epochs=2,two"], "invalid int value: 'two'"),
    (["--grid", "head-param.zz=1"], "unknown parameter(s): ['zz']"),
    (["--grid", "head=arcface,arcface"], "the value 'arcface' is listed twice"),
    (["--grid", "head=arcface", "--head", "adaface"], "head is both a grid axis and a shared option"),
    (["--grid", "head=arcface,adaface", "--baseline", "head=cosface"], "'cosface' is not among the grid's values"),
    (["--grid", "head=arcface", "--executor", "slurm"], "no Slurm here"),
])  # fmt: skip
def test_bad_sweep_input_is_one_error_line(args: list[str], message: str, tmp_path, capsys) -> None:
    code = main(["sweep", "--out", str(tmp_path / "s"), *args])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert message in lines[0], lines[0]
    assert not (tmp_path / "s").exists()  # nothing started


def test_grid_errors_are_value_errors_for_library_callers() -> None:
    with pytest.raises(GridError):
        SweepSpec.parse(["nope=1"])
    assert issubclass(GridError, ValueError)


def test_options_joined_by_plus_take_each_value_together() -> None:
    spec = SweepSpec.parse(["crop-prob+lowres-prob+photometric_prob=0,0.2"], shared={"head": "cosface"})
    assert spec.keys == ["crop-prob+lowres-prob+photometric-prob"]
    probs = [(c.crop_prob, c.lowres_prob, c.photometric_prob) for _, _, c in spec.configs()]
    assert probs == [(0.0, 0.0, 0.0), (0.2, 0.2, 0.2)]
    again = SweepSpec.from_json(json.loads(json.dumps(spec.to_json())))  # as sweep.json stores it
    assert [c.to_dict() for _, _, c in again.configs()] == [c.to_dict() for _, _, c in spec.configs()]
    with pytest.raises(GridError, match="named twice"):
        parse_grid(["crop-prob+crop-prob=0,1"])


def test_the_sign_verdict_says_where_the_sign_settles() -> None:
    def summary(lows, highs):
        return pd.DataFrame({"n": [100, 300, 1000], "r_mean": [(a + b) / 2 for a, b in zip(lows, highs)],
                             "r_ci_low": lows, "r_ci_high": highs})

    assert interval_sign(0.1, 0.3) == "positive" and interval_sign(-0.3, -0.1) == "negative"
    assert interval_sign(-0.1, 0.3) == "unsettled" and interval_sign(np.nan, np.nan) == "unsettled"
    text = sign_verdict(summary([-0.2, 0.05, 0.1], [0.1, 0.3, 0.4]), "r", "n", "r(‖z‖, q)")
    assert text.startswith("r(‖z‖, q) (95 % interval over seeds) — n=100: -0.050 [-0.200, +0.100], unsettled")
    assert text.endswith("The sign settles positive from n=300 on, beyond the seeds' noise.")
    assert sign_verdict(summary([0.1, 0.1, 0.1], [0.2, 0.2, 0.2]), "r", "n").endswith("positive at every value, "
                                                                                    "beyond the seeds' noise.")
    assert "not settled at the largest value" in sign_verdict(summary([0.1, 0.1, -0.1], [0.2, 0.2, 0.2]), "r", "n")
    # settled on the wrong side first, then reversed: only the last stretch counts
    flip = sign_verdict(summary([-0.3, 0.1, 0.1], [-0.1, 0.2, 0.2]), "r", "n")
    assert flip.endswith("settles positive from n=300 on, beyond the seeds' noise.")


def test_the_ablation_questions_share_adafaces_default_run(tmp_path) -> None:
    plan = ablation_plan("small", store=tmp_path)
    paths = {a.key: {run.path for run in plan.spec(a).plan(plan.store / "runs")} for a in plan.ablations}
    shared = set.intersection(*(paths[k] for k in "abcde"))
    assert len(shared) == plan.seeds  # AdaFace with its official settings: one run per seed for (a)-(e)
    assert paths["f"] & shared  # the scale study's default size is that run too
    points = {"a": 4, "b": 3, "c": 2, "d": 2, "e": 5, "f": 3}
    assert {k: len(v) for k, v in paths.items()} == {k: n * plan.seeds for k, n in points.items()}
    assert len(set().union(*paths.values())) == (4 + 2 + 1 + 1 + 4 + 2) * plan.seeds
    assert plan.metric(plan.ablations[-1]) == "r_norm_qseverity"
    full = ablation_plan("full", store=tmp_path)
    sizes = [c.num_identities for _, _, c in full.spec(full.ablations[-1]).configs()]
    assert sorted(set(sizes)) == [100, 300, 800, 3000] and full.seeds == 3
    assert all(c.epochs == 10 and c.brisque for a in full.ablations for _, _, c in full.spec(a).configs())
    with pytest.raises(ValueError, match="small mode trains on SyntheticFaces only"):
        ablation_plan("small", data=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        ablation_plan("full", data=str(tmp_path / "nope"))
    folder = ablation_plan("full", data=str(tmp_path))  # any folder: nothing is read until a run starts
    config = folder.spec(folder.ablations[0]).configs()[0][2]
    assert (config.data, config.center_crop, config.epochs) == (str(tmp_path.resolve()), 112, 8)
    assert folder.metric(folder.ablations[-1]) == "r_norm_qseverity" and folder.quality_metric == "r_norm_qbrisque"
    # a folder's epochs and overrides are its own runs': its scale study is the SyntheticFaces plan's, same folder
    shorter = ablation_plan("full", data=str(tmp_path), epochs=4, overrides={"lr": 0.05}, store=tmp_path)
    scale = full.ablations[-1]
    assert shorter.spec(scale).to_json() == full.spec(scale).to_json() and shorter.out(scale) == full.out(scale)
    assert shorter.spec(shorter.ablations[0]).configs()[0][2].epochs == 4


def test_the_edc_metric_reads_the_pair_table() -> None:
    """The EDC pAUCs of the norm and of the data's quality, as adaface_lab.quality_eval computes them: a norm
    that is low exactly on the genuine pairs that fail beats random (relative pAUC < 1); reversed, it loses."""
    from types import SimpleNamespace

    from adaface_lab.experiments import METRICS
    from adaface_lab.quality_eval import edc, edc_pauc

    rng = np.random.default_rng(0)
    n = 600
    issame = np.arange(n) % 2 == 0
    score = np.where(issame, rng.normal(0.6, 0.2, n), rng.normal(0.0, 0.1, n))
    hard = issame & (score < 0.35)  # the genuine pairs a threshold near the impostors' tail rejects
    norm = np.where(hard, rng.uniform(1, 5, n), rng.uniform(10, 20, n))
    table = pd.DataFrame({"score": score, "issame": issame, "valid": True, "norm_a": norm, "norm_b": norm + 1,
                          "quality_a": -norm, "quality_b": -norm, "bin": "mixed"})
    values = METRICS.get("edc").compute(SimpleNamespace(pair_table=table))
    expected = edc_pauc(edc(score, issame, norm, norm + 1, fmr=0.01), limit=0.2)
    assert values["edc_pauc_norm"] == pytest.approx(expected.value)
    assert values["edc_pauc_norm_rel"] < 0.5 and values["edc_pauc_quality_rel"] > 1.0  # the reversed norm
    few = METRICS.get("edc").compute(SimpleNamespace(pair_table=table.iloc[:100]))  # 50 impostors: no FMR of 1 %
    assert few == {}
