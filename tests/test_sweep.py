"""Real sweeps on a tiny configuration, through ``adaface-lab sweep`` and submitit's local executor.

A 2 × 2 grid × 2 seeds: its ``runs.csv`` is recomputed here from each run's own files (the records'
correlations with NumPy, the verification AUC of each pair table by the Mann–Whitney count) and its
``summary.csv`` from those values with an independent t-interval; a second invocation trains nothing. Then a
sweep in a subprocess is killed (SIGKILL) once its first run is measured: its workers stop on their own and
leave no half-made run, and running it again finishes it, to the same numbers as the uninterrupted sweep.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from adaface_lab.cli import main
from adaface_lab.experiments import sweep_status
from adaface_lab.experiments.execution import available_cores, process_alive
from tests.app_pages import TINY_BACKBONE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--num-identities", "30", "--images-per-identity", "4", "--holdout-identities", "10", "--epochs", "2",
        "--batch-size", "32", "--probe", "all", "--no-brisque", "--no-eval-each-epoch", "--pairs", "200"]
TINY += [a for k, v in TINY_BACKBONE.items() for a in ("--backbone-param", f"{k}={json.dumps(v)}")]
HEADS = ["--grid", "head=cosface,adaface"]
GRID = [*HEADS, "--grid", "crop-prob=0,0.2"]  # crop-prob 0.2 is the default: the kill test's runs are these
KEYS = ["head", "crop-prob"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "grid"
    assert main(["sweep", *GRID, "--seeds", "2", "--jobs", "2", "--out", str(out), "--baseline", "head=cosface",
                 *TINY]) == 0  # fmt: skip
    return out


def _mann_whitney_auc(score: np.ndarray, genuine: np.ndarray) -> float:
    """P(a genuine pair scores above an impostor pair), ties counting one half."""
    g, i = score[genuine], score[~genuine]
    return float(((g[:, None] > i[None, :]).sum() + 0.5 * (g[:, None] == i[None, :]).sum()) / (len(g) * len(i)))


def _recomputed(out: Path, row: pd.Series) -> dict[str, float]:
    """A run's correlations and AUCs from its own files."""
    run = out / row["run"]
    records = pd.read_parquet(run / "records.parquet")
    last = records[records["epoch"] == records["epoch"].max()]
    values = {f"r_{f}_qseverity": float(np.corrcoef(last[f], 1 - last["severity"])[0, 1]) for f in ("norm", "p_y")}
    pairs = pd.read_parquet(out / "metrics" / f"{run.name}.pairs.parquet")
    quality = pairs[["quality_a", "quality_b"]].to_numpy()
    n_good = (quality >= np.median(quality)).sum(axis=1)
    assert list(pairs["bin"]) == [("low", "mixed", "high")[k] for k in n_good]
    values["ver_auc"] = _mann_whitney_auc(pairs["score"].to_numpy(), pairs["issame"].to_numpy())
    for b in ("high", "mixed", "low"):
        sub = pairs[pairs["bin"] == b]
        values[f"ver_auc_{b}"] = _mann_whitney_auc(sub["score"].to_numpy(), sub["issame"].to_numpy())
    values["train_acc"] = float(pd.read_csv(run / "epochs.csv")["acc"].iloc[-1])
    return values


def test_a_2x2_sweep_measures_every_run_and_summarises_it_over_seeds(sweep: Path) -> None:
    runs = pd.read_csv(sweep / "runs.csv")
    assert len(runs) == 8 and list(runs.columns[:4]) == [*KEYS, "seed", "run"]
    assert sorted(runs.groupby(KEYS).size()) == [2, 2, 2, 2] and set(runs["seed"]) == {0, 1}
    assert {"ver_auc_low", "edc_pauc_norm", "edc_pauc_quality_rel", "r_p_y_qseverity"} <= set(runs.columns)
    for _, row in runs.iterrows():
        config = json.loads((sweep / row["run"] / "config.json").read_text())
        assert (config["head"], config["crop_prob"], config["seed"]) == (row["head"], row["crop-prob"], row["seed"])
        assert config["threads"] == max(1, available_cores() // 2)  # two jobs share the cores
        for metric, value in _recomputed(sweep, row).items():
            assert row[metric] == pytest.approx(value, abs=1e-9), (row["run"], metric)

    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 4 and list(summary["n_seeds"]) == [2, 2, 2, 2]
    metrics = [c for c in runs.columns if c not in (*KEYS, "seed", "run")]
    for _, point in summary.iterrows():
        group = runs[(runs["head"] == point["head"]) & (runs["crop-prob"] == point["crop-prob"])]
        for metric in metrics:
            x = group[metric].dropna().to_numpy()
            if len(x) < 2:
                assert np.isnan(point[f"{metric}_ci_low"])
                continue
            half = stats.t.ppf(0.975, len(x) - 1) * np.std(x, ddof=1) / np.sqrt(len(x))
            assert point[f"{metric}_mean"] == pytest.approx(x.mean(), abs=1e-12)
            assert point[f"{metric}_ci_low"] == pytest.approx(x.mean() - half, abs=1e-12)
            assert point[f"{metric}_ci_high"] == pytest.approx(x.mean() + half, abs=1e-12)

    comparison = pd.read_csv(sweep / "comparison.csv")
    assert list(comparison["head"]) == ["adaface", "adaface"] and set(comparison["n_matched"]) == {2}
    ada = runs[(runs["head"] == "adaface") & (runs["crop-prob"] == 0.2)].set_index("seed")["ver_auc"]
    cos = runs[(runs["head"] == "cosface") & (runs["crop-prob"] == 0.2)].set_index("seed")["ver_auc"]
    assert comparison.iloc[1]["ver_auc_diff"] == pytest.approx((ada - cos).mean(), abs=1e-12)


def test_a_second_invocation_trains_nothing(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folders = {p: p.stat().st_mtime_ns for p in (sweep / "runs").iterdir()}
    before = (sweep / "runs.csv").read_text()
    started = time.monotonic()
    assert main(["sweep", *GRID, "--seeds", "2", "--jobs", "2", "--out", str(sweep), "--baseline", "head=cosface",
                 *TINY]) == 0  # fmt: skip
    queue = sorted((sweep / ".queue").iterdir())[-1]
    tasks = json.loads((queue / "tasks.json").read_text())["tasks"]
    assert len(tasks) == 8 and not any(t["todo"] for t in tasks)
    assert not (queue / "logs").exists()  # no worker was started
    assert {p: p.stat().st_mtime_ns for p in (sweep / "runs").iterdir()} == folders
    assert (sweep / "runs.csv").read_text() == before
    assert set(sweep_status(sweep)["state"]) == {"done"}
    assert time.monotonic() - started < 60
    capsys.readouterr()
    assert main(["sweep", "--out", str(sweep), "--status"]) == 0  # the status table, printed
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["head", "crop-prob", "seed", "label"] and len(lines) == 1 + 8
    assert all("measured before (cached)" in line for line in lines[1:])


def test_a_sweep_judges_its_own_runs_when_another_invocation_starts_meanwhile(
        sweep: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A second invocation of the same folder started while this one runs (its newer queue, nothing done yet)
    does not turn this one's finished runs into failures: each invocation reads its own queue."""
    import adaface_lab.experiments.sweep as sweep_module

    real = sweep_module.run_queue
    other = sweep / ".queue" / "99991231-235959-1"  # newer than any real stamp

    def run_then_another_starts(queue, *args, **kwargs):
        errors = real(queue, *args, **kwargs)
        tasks = json.loads((queue.folder / "tasks.json").read_text())
        for task in tasks["tasks"]:
            task["todo"] = True
        other.mkdir()
        (other / "tasks.json").write_text(json.dumps(tasks))
        return errors

    monkeypatch.setattr(sweep_module, "run_queue", run_then_another_starts)
    try:
        assert main(["sweep", *GRID, "--seeds", "2", "--jobs", "2", "--out", str(sweep), "--baseline",
                     "head=cosface", *TINY]) == 0  # fmt: skip
        assert set(sweep_status(sweep)["state"]) == {"queued"}  # --status shows the newest invocation
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_another_spec_is_refused_while_a_sweep_runs_in_its_folder(
        sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """While a live process runs the folder's sweep, an invocation with another grid would overwrite its
    sweep.json and tables: refused, one error line, nothing written; the same spec may join; a mark whose
    process is gone is taken over."""
    import socket

    from adaface_lab.experiments import SweepBusy, SweepFolder, SweepSpec

    spec = {k: v for k, v in json.loads((sweep / "sweep.json").read_text()).items() if k not in ("execution", "store")}
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    mark = sweep / "running.json"
    try:
        mark.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": time.time(),
                                    "spec": spec}))  # fmt: skip
        before = {name: (sweep / name).read_bytes() for name in ("sweep.json", "summary.csv", "runs.csv")}
        queues = sorted((sweep / ".queue").iterdir())
        capsys.readouterr()
        assert main(["sweep", "--grid", "head=arcface,cosface", "--seeds", "2", "--out", str(sweep), *TINY]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and f"process {holder.pid}" in err[-1] and "Traceback" not in "".join(err)
        assert {name: (sweep / name).read_bytes() for name in before} == before
        assert sorted((sweep / ".queue").iterdir()) == queues  # no queue, nothing trained
        # the same spec joins (nothing to train) and leaves the holder's mark
        assert main(["sweep", *GRID, "--seeds", "2", "--jobs", "2", "--out", str(sweep), "--baseline",
                     "head=cosface", *TINY]) == 0  # fmt: skip
        assert json.loads(mark.read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its mark is stale, taken over and released
    folder = SweepFolder(sweep)
    other = SweepSpec.parse(["head=arcface"], 1, {"epochs": 1})
    folder.claim(other)
    assert json.loads(mark.read_text())["pid"] == os.getpid()
    folder.release()
    assert not mark.exists()
    assert issubclass(SweepBusy, Exception)


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_killed_sweep_stops_its_workers_and_resumes_to_the_same_numbers(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "heads"
    args = ["sweep", *HEADS, "--seeds", "2", "--jobs", "2", "--out", str(out), "--baseline", "head=cosface", *TINY]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "adaface_lab.cli", *args], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    workers: set[int] = set()
    try:
        _wait_for(lambda: any((out / "metrics").glob("*.json")), 300, "the first measured run")
        child.send_signal(signal.SIGKILL)
        child.wait()
        queue = sorted((out / ".queue").iterdir())[-1]
        workers = {json.loads(p.read_text())["pid"] for p in (queue / "states").glob("*.json")}
        workers |= {int(p.name.split("_")[0]) for p in (queue / "logs").glob("*_log.out")}  # the controllers
        _wait_for(lambda: not any(process_alive(pid) for pid in workers), 120, "the workers to stop")
    finally:
        for pid in workers | {child.pid}:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not list((out / "runs").glob(".*partial")), "a half-made run was left behind"
    status = sweep_status(out)
    done = status[status["state"] == "done"]
    assert 1 <= len(done) < 4 and set(status["state"]) <= {"done", "stopped", "queued"}
    kept = {name: (out / "metrics" / f"{name}.json").stat().st_mtime_ns for name in done["run"]}

    assert main(args) == 0
    assert {name: (out / "metrics" / f"{name}.json").stat().st_mtime_ns for name in kept} == kept  # not redone
    resumed = pd.read_csv(out / "summary.csv")
    uninterrupted = pd.read_csv(sweep / "summary.csv")
    same = uninterrupted[uninterrupted["crop-prob"] == 0.2].drop(columns=["crop-prob"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(resumed, same, check_exact=True)
