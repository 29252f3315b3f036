"""Page 3 — Training runs: what a run recorded, epoch by epoch (the paper's Fig. 4 and 5, the EMA, ẑ)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import _run_folders
from _charts import CHART_CONFIG
from _demo_training import DemoStatus, DemoTraining
from _state import Param, bind, set_value, sync_url
from adaface_lab.analysis import (
    TIME_AXES,
    available_qualities,
    correlation_by_epoch,
    ema_over_steps,
    sign_check,
    trajectories,
    z_hat_distribution,
)
from adaface_lab.errors import USER_ERRORS, one_line
from adaface_lab.plots import (
    correlation_figure,
    norm_ema_figure,
    quality_scatter_figure,
    training_curves_figure,
    trajectory_figure,
    z_hat_figure,
)
from adaface_lab.runs import RECORDS, RUN_FILES, Run

PAGE = "runs"
QUALITY_LABELS = {"quality": "1 − BRISQUE/100", "severity_quality": "1 − severity (ground truth)"}
DEMO_EPOCHS = 3
FAILED = f"{PAGE}:demo_failed"
RUN = Param("run", "Run folder, or a folder of runs", "text", _run_folders.shown(_run_folders.runs_root()),
            help=f"A folder written by `adaface-lab train --out …` (it holds {RECORDS}), or a folder of such "
                 "folders. Relative paths start at the repository.")  # fmt: skip
demo = DemoTraining()


def _chart(fig: go.Figure, key: str) -> None:
    st.plotly_chart(fig, width="stretch", config=CHART_CONFIG, key=key)


st.title("Training runs")

# ------------------------------------------------------------------ which run (in the URL: ?run=…)
bind([RUN], PAGE)
side = st.sidebar
folder_text = RUN.widget(side, PAGE)
sync_url([RUN])
try:
    folder: Path | None = _run_folders.resolve(folder_text)
except ValueError as e:  # too long, or outside the course folder
    folder, folder_error = None, str(e)


# ------------------------------------------------------------------ the demo training, while it runs
def _ended(status: DemoStatus) -> None:
    """The demo has ended: keep a failure for the next run, point the page at the run, rerun the app."""
    if status.returncode not in (0, None):
        st.session_state[FAILED] = (status.returncode, status.log_tail)
    set_value(RUN.key, _run_folders.shown(status.run_dir))


@st.fragment(run_every=1.0)
def _demo_progress() -> None:
    """Redrawn every second (only this fragment, not the page) until the demo ends."""
    status = demo.status()
    if status is None or not status.running:
        if status is not None:
            _ended(status)
        st.rerun(scope="app")
    st.progress(status.fraction, text=f"Demo training: {status.text}")


def _follow_demo() -> None:
    """While the demo trains, show its progress and stop the page; when it has just ended, show the run."""
    status = demo.status()
    if status is not None and status.running:
        st.info(f"The demo training is running in `{_run_folders.shown(status.run_dir)}`; the page shows the run "
                "when it ends.")  # fmt: skip
        if st.button("Stop the demo training", key=f"{PAGE}:stop",
                     help="Interrupts it: the last completed step is checkpointed (`adaface-lab train --resume`)."):
            demo.stop()
        _demo_progress()
        st.stop()
    if status is not None:  # it ended between two runs of the page
        _ended(status)
        st.rerun()
    if FAILED in st.session_state:
        code, tail = st.session_state.pop(FAILED)
        st.error(f"The demo training ended with exit code {code}"
                 + (" (stopped)." if code in (130, -2) else ". The end of its log:"))
        st.code(tail[-2000:] or "(empty log)")


def _no_run(folder_text: str, folder: Path | None) -> None:
    """Say why there is no run to show, offer the demo training, and stop the page."""
    if folder is None:
        st.error(f"Cannot open this folder: {folder_error}")
    elif not folder_text.strip():
        st.warning("Type a run folder in the sidebar.")
    elif not _exists(folder):
        st.error(f"No such folder: `{_run_folders.shown(folder)}`. Type a run folder (or a folder of runs) in the "
                 "sidebar.")  # fmt: skip
    elif not folder.is_dir():
        st.error(f"`{_run_folders.shown(folder)}` is a file; a run is a folder holding {', '.join(RUN_FILES)}.")
    else:
        st.info(f"No training run in `{_run_folders.shown(folder)}`: a run folder holds {RECORDS} (written at the "
                "end of each epoch by `adaface-lab train --out …`).")  # fmt: skip
    st.subheader("Run the built-in demo training")
    epochs = st.number_input("epochs", min_value=1, max_value=8, value=DEMO_EPOCHS, key=f"{PAGE}:demo_epochs")
    st.markdown(
        f"It trains on {demo.describe(int(epochs))}: seconds per epoch on a CPU for the built-in demo. It writes "
        f"a new folder, `{_run_folders.shown(demo.next_dir())}` (no run is ever replaced). A progress bar shows "
        "the steps; the run keeps going if you leave the page.")  # fmt: skip
    if st.button("Run the demo training", key=f"{PAGE}:demo", type="primary"):
        demo.start(int(epochs))
        st.rerun()
    st.stop()


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; False for a name the file system refuses (too long, no permission)."""
    try:
        return path.exists()
    except OSError:
        return False


def _open_run(runs: list[Path]) -> Run:
    """The run picked in the sidebar (newest first), read; an error box and a stop when it cannot be read."""
    run_dir = runs[0]
    if len(runs) > 1:
        names = {str(p): p.name for p in runs}
        chosen = side.selectbox("Run", list(names), format_func=names.get, key=f"{PAGE}:pick",
                                help="Newest first.")
        run_dir = next(p for p in runs if str(p) == chosen)
    try:
        return _run_folders.load(run_dir)
    except USER_ERRORS as e:
        st.error(f"Cannot read the run `{_run_folders.shown(run_dir)}`: {one_line(e)}")
        st.stop()


def _norm_versus_quality(run: Run, x: str) -> None:
    """Paper Fig. 4: r(‖z‖, q) and r(P_y, q) per epoch (on the time axis ``x``), the sign check, and a scatter
    at one epoch."""
    records, epochs_seen = run.records, run.recorded_epochs
    st.subheader("Feature norm versus image quality")
    qualities = available_qualities(records)
    if not qualities:
        st.warning("These records hold no quality (neither BRISQUE nor a severity): nothing to correlate with.")
        return
    c1, c2 = st.columns(2)
    quality = c1.radio("quality", qualities, format_func=QUALITY_LABELS.get, horizontal=True,
                       key=f"{PAGE}:quality",
                       help="1 − BRISQUE/100 is the paper's proxy; 1 − severity is SyntheticFaces' truth.")
    method = c2.radio("correlation", ["pearson", "spearman"], format_func=str.capitalize, horizontal=True,
                      key=f"{PAGE}:method")
    corr = correlation_by_epoch(records, quality=quality, method=method)
    check = sign_check(corr)
    left, right = st.columns([3, 2], gap="medium")
    with left:
        _chart(correlation_figure(corr, x=x, steps=run.steps), "corr_chart")
    with right:
        st.markdown("**Does the norm track quality, as in the paper?**")
        {"matches": st.success, "reversed": st.warning}.get(check.verdict, st.info)(str(check))

    if len(epochs_seen) > 1:
        if st.session_state.get(f"{PAGE}:epoch") not in epochs_seen:
            st.session_state[f"{PAGE}:epoch"] = epochs_seen[-1]
        epoch = st.select_slider("scatter at epoch", epochs_seen, key=f"{PAGE}:epoch")
    else:
        epoch = epochs_seen[0]
        st.caption(f"One epoch recorded: {epoch}.")
    try:
        _chart(quality_scatter_figure(records, epoch=epoch, quality=quality), "scatter_chart")
    except ValueError as e:
        st.warning(f"No scatter at epoch {epoch}: {e}")


def _time_axis(run: Run) -> str:
    """The x-axis of the figures over training, chosen in the sidebar (epochs when the run has no steps)."""
    if run.steps.empty or not {"epoch", "step", "batch"} <= set(run.steps.columns):
        return "epoch"
    return side.radio("time axis", list(TIME_AXES), format_func=TIME_AXES.get, key=f"{PAGE}:x",
                      help="On a small data set an epoch is a few optimiser steps; the paper's 'early in "
                           "training' counts tens of thousands. Steps and images seen make runs comparable.")


def _trajectories(run: Run, x: str) -> None:
    """Paper Fig. 5: sampled trajectories, in the (‖z‖, P_y) plane or over time."""
    st.subheader("Trajectories of (‖z‖, P_y)")
    t1, t2, t3 = st.columns([2, 1, 2])
    n_traj = t1.slider("samples", 8, 256, 64, step=8, key=f"{PAGE}:traj_n")
    seed = t2.number_input("draw seed", 0, 10_000, 0, key=f"{PAGE}:traj_seed")
    view = t3.radio("view", ["plane", "time"], horizontal=True, key=f"{PAGE}:traj_view",
                    format_func={"plane": "‖z‖ against P_y (Fig. 5)", "time": "both over time"}.get)
    traj = trajectories(run.records, n=int(n_traj), seed=int(seed))
    _chart(trajectory_figure(traj, x=None if view == "plane" else x, steps=run.steps,
                             height=480 if view == "plane" else 560), "traj_chart")  # fmt: skip


_follow_demo()
runs = _run_folders.find_runs(folder) if folder is not None else []
if not runs:
    _no_run(folder_text, folder)
run = _open_run(runs)
records, epochs_seen, cfg = run.records, run.recorded_epochs, run.config
planned = cfg.get("epochs")
st.markdown(
    f"**{run.name}** (`{_run_folders.shown(run.path)}`): {cfg.get('head', '?')} head on "
    f"{cfg.get('backbone', '?')}, data {cfg.get('data', '?')}; {len(epochs_seen)} epoch(s) recorded"
    + (f" of {planned}" if planned else "")
    + f", {records['sample_id'].nunique()} probe samples, {len(records)} records."
    + (f" BRISQUE on the augmented {found['brisque_size']} px image; the network's input {found['input_size']} px."
       if (found := cfg.get("run", {})).get("brisque_size") else ""))

# ------------------------------------------------------------------ loss and accuracy
ema = ema_over_steps(run.steps)
_chart(training_curves_figure(run.epochs, ema), "curves_chart")
time_axis = _time_axis(run)
_norm_versus_quality(run, time_axis)
_trajectories(run, time_axis)

# ------------------------------------------------------------------ the head's statistics over time
st.subheader("AdaFace's batch statistics and ẑ over training")
left, right = st.columns(2, gap="medium")
with left:
    _chart(norm_ema_figure(ema), "ema_chart")
with right:
    _chart(z_hat_figure(z_hat_distribution(records)), "zhat_chart")
