"""Streamlit AppTest checks of the app's Sweeps page (page 5).

A sweep folder is written here as ``adaface-lab sweep`` writes one (``sweep.json``, ``runs.csv``,
``summary.csv``, ``comparison.csv`` and a task queue with one failed run), with a built-in effect: AdaFace's
AUC above ArcFace's by 0.05 while the seeds vary by 0.01. The page's chart must show the means and 95 %
intervals recomputed here from ``runs.csv`` (an independent t-interval), every seed's value, and follow the
metric and axis chosen; the comparison must say the effect lies beyond the seeds' noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from adaface_lab.experiments import SweepSpec, compare_with_baseline, summarise
from adaface_lab.experiments.execution import Task, TaskQueue
from tests.app_pages import open_page, runs, texts  # noqa: F401
from tests.test_app import _chart, _decode, _trace

SWEEPS_PAGE = "views/sweeps.py"
KEYS = ["head", "num-identities"]


def _write_sweep(out: Path) -> pd.DataFrame:
    spec = SweepSpec.parse(["head=arcface,adaface", "num-identities=100,300,3000"], seeds=3,
                           baseline="head=arcface")  # fmt: skip
    rng = np.random.default_rng(0)
    rows = []
    for point in spec.points():
        for seed in range(3):
            effect = 0.05 if point["head"] == "adaface" else 0.0
            rows.append({**point, "seed": seed, "run": f"runs/{point['head']}-{seed}",
                         "ver_auc": 0.7 + effect + 0.01 * seed + rng.normal(0, 0.001),
                         "r_norm_qseverity": rng.normal(0.2, 0.1)})  # fmt: skip
    frame = pd.DataFrame(rows)
    out.mkdir(parents=True)
    (out / "sweep.json").write_text(json.dumps(spec.to_json()))
    frame.to_csv(out / "runs.csv", index=False)
    summarise(frame, KEYS, ["ver_auc", "r_norm_qseverity"]).to_csv(out / "summary.csv", index=False)
    compare_with_baseline(frame, KEYS, ["ver_auc", "r_norm_qseverity"], spec.baseline).to_csv(
        out / "comparison.csv", index=False)
    tasks = [Task(f"{r['head']}-{r['num-identities']}-{r['seed']}", f"run {i}",
                  {"point": {k: r[k] for k in KEYS}, "seed": r["seed"]}, todo=i == 0) for i, r in frame.iterrows()]
    queue = TaskQueue.create(out / ".queue" / "20260101-000000-1", tasks, {"cache_dir": str(out / "runs")})
    queue.set_state(tasks[0].name, "failed", error="ValueError: a broken run", started=0.0, ended=1.0)
    return frame


def test_sweeps_page_without_a_sweep_says_how_to_make_one(tmp_path: Path) -> None:
    at = open_page(SWEEPS_PAGE, {"sweep": str(tmp_path)})
    assert at.title[0].value == "Sweeps"
    assert any("No sweep in" in t and "adaface-lab sweep" in t for t in texts(at, "info"))
    assert not at.get("plotly_chart")


def test_sweeps_page_charts_means_intervals_and_seeds(tmp_path: Path) -> None:
    frame = _write_sweep(tmp_path / "heads")
    at = open_page(SWEEPS_PAGE, {"sweep": str(tmp_path)})  # a folder of sweeps: the one found is shown
    assert at.selectbox(key="sweeps:metric").value == "r_norm_qseverity"
    at.selectbox(key="sweeps:metric").set_value("ver_auc").run()
    at.selectbox(key="sweeps:x").set_value("head").run()
    assert not at.exception, at.exception
    chart = _chart(at, "metric_chart")
    for n in (100, 300, 3000):
        group = frame[frame["num-identities"] == n]
        trace = next(t for t in chart["data"] if t["name"] == f"num-identities={n} (mean, 95 % CI)")
        for i, head in enumerate(("arcface", "adaface")):
            x = group[group["head"] == head]["ver_auc"].to_numpy()
            half = stats.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
            assert _decode(trace["y"])[i] == x.mean()
            np.testing.assert_allclose(_decode(trace["error_y"]["array"])[i], half, rtol=1e-9)
        _, seeds = _trace(chart, f"num-identities={n} (seeds)")
        np.testing.assert_allclose(np.sort(seeds), np.sort(group["ver_auc"]))
    assert chart["layout"]["xaxis"]["ticktext"] == ["arcface", "adaface"]
    # the other axis on x: a log number line, one colour per head
    at.selectbox(key="sweeps:x").set_value("num-identities").run()
    chart = _chart(at, "metric_chart")
    assert chart["layout"]["xaxis"]["type"] == "log"
    assert [t["name"] for t in chart["data"]][::2] == ["head=arcface (mean, 95 % CI)", "head=adaface (mean, 95 % CI)"]
    # the comparison: AdaFace − ArcFace per size, beyond the noise, said in a sentence
    compare = next(t for t in _chart(at, "compare_chart")["data"] if t["name"] == "difference (95 % CI)")
    assert compare["y"] == [f"head=adaface, num-identities={n}" for n in (100, 300, 3000)]
    np.testing.assert_allclose(_decode(compare["x"]), 0.05, atol=0.005)
    assert any("beyond the seeds' noise" in t and "head=adaface, num-identities=3000" in t for t in texts(at, "success"))
    summary = next(d.value for d in at.dataframe if "n_seeds" in d.value.columns)
    assert list(summary.columns[:2]) == KEYS and summary["n_seeds"].tolist() == [3] * 6


def test_the_state_of_each_run_and_a_failure_are_shown(tmp_path: Path) -> None:
    _write_sweep(tmp_path / "heads")
    at = open_page(SWEEPS_PAGE, {"sweep": str(tmp_path / "heads")})
    assert any("a broken run" in t for t in texts(at, "error"))
    status = next(d.value for d in at.dataframe if "state" in d.value.columns)
    assert status["state"].tolist() == ["failed"] + ["done"] * 17
