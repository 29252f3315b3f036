"""Streamlit AppTest checks of the app's Training runs page (page 3) and its demo training.

The page reads run folders written here in the training loop's format (:mod:`tests.fake_runs`), with a
norm–quality relation built in; the numbers the page charts are compared with correlations and records
computed here from those records (NumPy), and widget changes (epoch, quality column) must move the charts to
exactly the data they name. The demo-training button is run for real, on a tiny model
(``ADAFACE_LAB_DEMO_ARGS``), in a temporary runs folder; its progress bar reads the run's progress file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from adaface_lab.runs import Progress, RunFolder
from tests import formulas
from tests.app_pages import INSPECT_PAGE, RUNS_PAGE, TINY_BACKBONE, open_page, runs, texts  # noqa: F401
from tests.fake_runs import write_fake_run
from tests.test_app import _chart, _decode, _trace


def _pearson_by_epoch(records: pd.DataFrame, feature: str, quality: pd.Series) -> np.ndarray:
    """Pearson r per epoch over the rows where both values are finite (the page leaves the others out)."""
    out = []
    for _, g in records.groupby("epoch", sort=True):
        x, y = g[feature].to_numpy(float), quality.loc[g.index].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        out.append(np.corrcoef(x[ok], y[ok])[0, 1])
    return np.array(out)


def test_runs_page_without_a_run_offers_the_demo(runs: Path) -> None:
    at = open_page(RUNS_PAGE)
    assert at.title[0].value == "Training runs"
    assert any("No training run" in t for t in texts(at, "info"))
    assert at.button(key="runs:demo").label == "Run the demo training"
    assert not at.get("plotly_chart")
    # a folder that does not exist: a clear error, still no exception, the demo still offered
    at.sidebar.text_input(key="runs:run").set_value(str(runs / "nope")).run()
    assert not at.exception
    assert any("No such folder" in t for t in texts(at, "error"))
    assert at.button(key="runs:demo")
    # a folder that is not a run: said so
    (runs / "empty_run").mkdir()
    at.sidebar.text_input(key="runs:run").set_value(str(runs / "empty_run")).run()
    assert not at.exception and any("No training run" in t for t in texts(at, "info"))


def test_runs_page_charts_what_the_run_recorded(runs: Path) -> None:
    records = write_fake_run(runs / "mine")
    at = open_page(RUNS_PAGE)
    keys = {e.key for e in at.get("plotly_chart")}
    assert keys == {"curves_chart", "corr_chart", "scatter_chart", "traj_chart", "ema_chart", "zhat_chart"}
    # correlation per epoch: Pearson r of the files' columns, recomputed here
    corr = _chart(at, "corr_chart")
    x, r_norm = _trace(corr, "r(‖z‖, q)")
    np.testing.assert_array_equal(x, [1, 2, 3, 4])
    quality = pd.Series(formulas.quality(records["brisque"]), index=records.index)
    np.testing.assert_allclose(r_norm, _pearson_by_epoch(records, "norm", quality), atol=1e-9)
    _, r_py = _trace(corr, "r(P<sub>y</sub>, q)")
    np.testing.assert_allclose(r_py, _pearson_by_epoch(records, "p_y", quality), atol=1e-9)
    # the built-in relation: the norm tracks quality more and more; the sign check says it matches the paper
    assert r_norm[-1] > 0.5 and np.all(np.diff(r_norm) > 0)
    assert any("as the paper finds" in t for t in texts(at, "success"))
    # μ_z over steps as recorded
    x, mu = _trace(_chart(at, "ema_chart"), "μ<sub>z</sub> (EMA of batch mean ‖z‖)")
    np.testing.assert_allclose(mu, 20 + 0.3 * np.arange(40))
    # ẑ boxes: one per epoch, medians of the records
    box = _chart(at, "zhat_chart")["data"][0]
    np.testing.assert_allclose(_decode(box["median"]), records.groupby("epoch")["z_hat"].median().to_numpy())


def test_choosing_an_epoch_moves_the_scatter_to_that_epochs_records(runs: Path) -> None:
    records = write_fake_run(runs / "mine")
    records = records.assign(quality=formulas.quality(records["brisque"])).dropna(subset=["quality"])  # as plotted

    def scatter_points(at: AppTest) -> tuple[np.ndarray, np.ndarray]:
        data = _chart(at, "scatter_chart")["data"]
        return _decode(data[0]["x"]), _decode(data[0]["y"])  # panel 1: ‖z‖ against quality

    at = open_page(RUNS_PAGE)
    assert at.select_slider(key="runs:epoch").value == 4  # the last epoch by default
    x4, y4 = scatter_points(at)
    last = records[records["epoch"] == 4]
    np.testing.assert_allclose(x4, last["quality"]) and np.testing.assert_allclose(y4, last["norm"])
    at.select_slider(key="runs:epoch").set_value(1).run()
    assert not at.exception
    x1, y1 = scatter_points(at)
    first = records[records["epoch"] == 1]
    np.testing.assert_allclose(x1, first["quality"])
    np.testing.assert_allclose(y1, first["norm"])
    # epoch 1's slope of ‖z‖ on quality is flatter than epoch 4's (the run's norm learns quality)
    assert np.polyfit(x1, y1, 1)[0] < np.polyfit(x4, y4, 1)[0]


def test_ground_truth_quality_and_spearman_recompute_the_correlations(runs: Path) -> None:
    records = write_fake_run(runs / "mine")
    at = open_page(RUNS_PAGE)
    assert at.radio(key="runs:quality").options == ["1 − BRISQUE/100", "1 − severity (ground truth)"]
    at.radio(key="runs:quality").set_value("severity_quality").run()
    assert not at.exception
    _, r_norm = _trace(_chart(at, "corr_chart"), "r(‖z‖, q)")
    np.testing.assert_allclose(r_norm, _pearson_by_epoch(records, "norm", 1 - records["severity"]), atol=1e-9)
    at.radio(key="runs:method").set_value("spearman").run()
    _, r_rank = _trace(_chart(at, "corr_chart"), "r(‖z‖, q)")
    ranks = records.groupby("epoch")[["norm", "severity"]].rank()
    np.testing.assert_allclose(r_rank, _pearson_by_epoch(ranks.assign(epoch=records["epoch"]), "norm",
                                                         -ranks["severity"]), atol=1e-9)


def test_a_damaged_run_is_an_error_that_names_the_file(runs: Path) -> None:
    write_fake_run(runs / "mine")
    epochs = runs / "mine" / "epochs.csv"
    epochs.write_bytes(epochs.read_bytes()[:-7])  # cut inside its last line
    at = open_page(RUNS_PAGE)
    assert any(f"{epochs} is truncated" in t for t in texts(at, "error")), texts(at, "error")
    assert not at.get("plotly_chart")


def test_a_reversed_run_is_flagged_not_hidden(runs: Path) -> None:
    write_fake_run(runs / "reversed", sign=-1.0)
    at = open_page(RUNS_PAGE)
    warnings = texts(at, "warning")
    assert any("REVERSED" in t and "flip the sign of h" in t for t in warnings), warnings
    assert not texts(at, "success")


def test_several_runs_are_listed_and_one_is_picked(runs: Path) -> None:
    write_fake_run(runs / "a", epochs=2)
    write_fake_run(runs / "b", epochs=3)
    at = open_page(RUNS_PAGE)
    box = at.sidebar.selectbox(key="runs:pick")
    assert sorted(Path(o).name for o in box.options) == ["a", "b"]
    box.set_value(str(runs / "a")).run()
    assert not at.exception
    x, _ = _trace(_chart(at, "corr_chart"), "r(‖z‖, q)")
    np.testing.assert_array_equal(x, [1, 2])


def test_a_run_still_being_made_by_the_notebook_cache_is_not_listed(runs: Path) -> None:
    """The run cache trains in a hidden ``.<name>.partial`` folder: neither picker offers it."""
    write_fake_run(runs / "done", epochs=2)
    write_fake_run(runs / ".adaface-1234.x.partial", epochs=1)
    (runs / ".adaface-1234.x.partial" / "checkpoint.pt").write_bytes(b"")
    at = open_page(RUNS_PAGE)
    assert not at.exception
    assert len(at.sidebar.selectbox) == 0  # one run found, so no picker: the partial one is not a candidate
    assert any(t.startswith("**done**") for t in texts(at, "markdown"))
    at = open_page(INSPECT_PAGE)
    at.radio(key="inspect:ckpt_src").set_value("path").run()
    assert not at.exception
    assert all(".partial" not in str(o) for o in at.selectbox(key="inspect:ckpt_pick").options)


def test_steps_or_images_seen_as_the_time_axis(runs: Path) -> None:
    """The sidebar's time axis puts each epoch's correlation at the step that ended it (or the images seen by
    then), says how long an epoch was, and draws the trajectories over time at each record's own step."""
    records = write_fake_run(runs / "mine")  # 10 steps of 32 images per epoch
    at = open_page(RUNS_PAGE)
    assert at.sidebar.radio(key="runs:x").options == ["epoch", "optimiser step", "images seen"]
    for axis, expected in (("step", [10, 20, 30, 40]), ("images", [320, 640, 960, 1280])):
        at.sidebar.radio(key="runs:x").set_value(axis).run()
        assert not at.exception
        spec = _chart(at, "corr_chart")
        x, r_norm = _trace(spec, "r(‖z‖, q)")
        np.testing.assert_array_equal(x, expected)
        quality = pd.Series(formulas.quality(records["brisque"]), index=records.index)
        np.testing.assert_allclose(r_norm, _pearson_by_epoch(records, "norm", quality), atol=1e-9)
        assert "(an epoch: 10 steps, 320 images)" in spec["layout"]["xaxis"]["title"]["text"]
    at.radio(key="runs:traj_view").set_value("time").run()
    assert not at.exception
    markers = _chart(at, "traj_chart")["data"][-1]  # every sampled record's ‖z‖, at the images seen by its step
    sample_epoch = _decode(markers["customdata"])[:, :2].astype(int)  # (rows, 2): sample id, epoch
    assert len(sample_epoch) == 64 * 4
    steps = records.set_index(["sample_id", "epoch"])["step"].loc[[tuple(r) for r in sample_epoch]]
    np.testing.assert_array_equal(_decode(markers["x"]), 32 * steps.to_numpy())


@pytest.mark.slow
def test_demo_button_trains_with_a_progress_bar_then_shows_the_run(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a tiny model so the real `adaface-lab train` finishes in seconds
    args = ["--num-identities", "6", "--images-per-identity", "4", "--holdout-identities", "0",
            "--batch-size", "8", "--probe", "12", "--num-workers", "0", "--no-eval-each-epoch"]
    args += [a for k, v in TINY_BACKBONE.items() for a in ("--backbone-param", f"{k}={json.dumps(v)}")]
    monkeypatch.setenv("ADAFACE_LAB_DEMO_ARGS", " ".join(f"'{a}'" for a in args))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the child trains beside this test process: no oversubscription
    write_fake_run(runs / "demo", epochs=3)  # an earlier demo's run: the button must not replace it
    before = {p: p.read_bytes() for p in sorted((runs / "demo").rglob("*")) if p.is_file()}
    (runs / "other").mkdir()
    at = open_page(RUNS_PAGE, {"run": str(runs / "other")})
    at.number_input(key="runs:demo_epochs").set_value(2).run()
    # the page says what the demo trains, as its options make it, and that it writes a new folder
    said = " ".join(m.value for m in at.markdown)
    for part in ("SyntheticFaces (6 rendered identities × 4 images", "scored with BRISQUE at 112 px",
                 "`ir_tiny` IResNet fed at 32 px", "adaface head",
                 "2 epochs", "12 probe samples", f"`{runs / 'demo-2'}`"):
        assert part in said, (part, said)
    at.button(key="runs:demo").click().run()
    # while it trains: a progress bar (a fragment redraws it every second in the browser; here each run)
    fractions, states = [], []
    deadline = time.monotonic() + 240
    while not at.get("plotly_chart") and time.monotonic() < deadline:
        assert not at.exception, at.exception
        assert not texts(at, "error"), [c.value for c in at.code]
        fractions += [float(p.proto.value) / 100 for p in at.get("progress")]
        progress = RunFolder(runs / "demo-2").read_progress()  # valid whenever it is there (written atomically)
        states += [progress.state] if progress is not None else []
        time.sleep(0.5)
        at.run()
    assert fractions and all(0 <= f <= 1 for f in fractions) and fractions == sorted(fractions)
    progress = RunFolder(runs / "demo-2").read_progress()
    assert progress.state == "finished" and progress.step == progress.total_steps == 2 * 3 and progress.eta_s == 0
    assert set(states) <= {"preparing", "running", "finished"}
    assert not at.exception and not texts(at, "error"), [c.value for c in at.code]
    # then the page shows the run it wrote, in a new folder; the earlier run is as it was, byte for byte
    run = runs / "demo-2"
    assert (run / "records.parquet").exists() and (run / "checkpoint.pt").is_file()
    assert at.sidebar.text_input(key="runs:run").value.endswith("demo-2")
    assert {p: p.read_bytes() for p in sorted((runs / "demo").rglob("*")) if p.is_file()} == before
    x, _ = _trace(_chart(at, "corr_chart"), "r(‖z‖, q)")
    np.testing.assert_array_equal(x, [1, 2])
    written = pd.read_parquet(run / "records.parquet")
    assert len(written) == 2 * 12
    # the inspector finds the run's checkpoint and takes μ_z, σ_z from its AdaFace head's buffers
    at.switch_page(INSPECT_PAGE).run()
    at.radio(key="inspect:ckpt_src").set_value("path").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="inspect:ckpt_pick").value == str(run / "checkpoint.pt")  # the newest run first
    head = torch.load(run / "checkpoint.pt", weights_only=True)["head"]
    mean, std = float(head["batch_mean"][0]), float(head["batch_std"][0])
    shown = " ".join(m.value for m in at.markdown)
    assert f"μ_z = {mean:.2f}, σ_z = {std:.2f}" in shown and "from the checkpoint" in shown
    margins = next(d.value for d in at.dataframe if "‖z‖" in d.value.columns)
    z = formulas.z_hat(margins["‖z‖"].to_numpy(), mean, std, 0.333)
    np.testing.assert_allclose(margins["ẑ"].to_numpy(), z, atol=1e-3)


def test_demo_progress_is_read_from_the_runs_progress_file(runs: Path) -> None:
    from _demo_training import DemoTraining

    demo = DemoTraining(runs)
    assert demo.next_dir() == runs / "demo"
    (runs / "demo").mkdir()
    assert demo.next_dir() == runs / "demo-2"  # a folder already there is never the next demo's
    folder = RunFolder(runs / "demo")
    # a live stand-in for the training process (its command line names adaface_lab, as the demo's does)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "adaface_lab"])
    started = time.time()
    try:
        (runs / DemoTraining.PID).write_text(f"{child.pid} 4 {started!r} demo\n")
        # a progress file left by an earlier run is not this demo's
        folder.write_progress(Progress("finished", 4, 4, 40, 40, 10, updated=started - 60))
        status = demo.status()
        assert status.running and status.fraction == 0 and status.text.startswith("starting")
        assert status.run_dir == runs / "demo"
        folder.write_progress(Progress("running", epoch=2, epochs=4, step=15, total_steps=40, steps_per_epoch=10,
                                       eta_s=12.4))
        status = demo.status()
        assert status.running and status.text == "epoch 2/4: step 5/10, about 12 s left"
        assert status.fraction == pytest.approx(15 / 40)
        folder.write_progress(Progress("stopped", epoch=2, epochs=4, step=15, total_steps=40, steps_per_epoch=10))
    finally:
        child.kill()
        child.wait()
    status = demo.status()  # ended: one epoch of four done, and the pid file is cleared
    assert not status.running and status.text == "1 of 4 epochs done" and status.fraction == pytest.approx(15 / 40)
    assert demo.status() is None


def test_the_run_folder_is_in_the_url(runs: Path) -> None:
    write_fake_run(runs / "a", epochs=2)
    write_fake_run(runs / "b", epochs=3)
    at = open_page(RUNS_PAGE, {"run": str(runs / "a")})  # a shared address opens that run
    assert at.sidebar.text_input(key="runs:run").value == str(runs / "a")
    x, _ = _trace(_chart(at, "corr_chart"), "r(‖z‖, q)")
    np.testing.assert_array_equal(x, [1, 2])
    at.sidebar.text_input(key="runs:run").set_value(str(runs / "b")).run()  # typing a folder puts it there
    assert not at.exception and at.query_params["run"] in (str(runs / "b"), [str(runs / "b")])
    at.sidebar.text_input(key="runs:run").set_value(str(runs)).run()
    assert "run" not in at.query_params  # the default folder leaves the address short
