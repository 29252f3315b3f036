"""Page 5 — Sweeps: a grid of settings × seeds (``adaface-lab sweep``): the state of each run, the summary with
95 % intervals over seeds, each metric against a grid value (intervals and every seed), and the paired
comparison with the baseline."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import _run_folders
from _charts import CHART_CONFIG
from _state import Param, bind, sync_url
from adaface_lab.experiments import (
    SPEC,
    SweepResults,
    beyond_noise,
    find_sweeps,
    format_summary,
    load_sweep,
    metric_label,
    sweep_status,
)
from adaface_lab.plots import comparison_figure, sweep_metric_figure

PAGE = "sweeps"
SWEEPS_ROOT = Path(os.environ.get("ADAFACE_LAB_SWEEPS", _run_folders.ROOT / "sweeps"))
SWEEP = Param("sweep", "Sweep folder, or a folder of sweeps", "text", _run_folders.shown(SWEEPS_ROOT),
              help=f"A folder written by `adaface-lab sweep --out …` (it holds {SPEC}), or a folder of such "
                   "folders. Relative paths start at the repository.")  # fmt: skip
#: Metrics offered first (the others follow in the sweep's order).
FIRST = ("r_norm_qseverity", "r_norm_qbrisque", "ver_auc", "ver_accuracy", "ver_auc_low", "ver_auc_high")


def _chart(fig: go.Figure, key: str) -> None:
    st.plotly_chart(fig, width="stretch", config=CHART_CONFIG, key=key)


def _mtime(path: Path) -> float:
    return max((p.stat().st_mtime for p in path.glob("*.csv")), default=0.0)


@st.cache_data(max_entries=8, show_spinner="Reading the sweep …")
def _load(path: str, modified: float) -> SweepResults:
    del modified  # part of the cache key only
    return load_sweep(path)


def _pick(sweeps: list[Path]) -> Path:
    if len(sweeps) == 1:
        return sweeps[0]
    names = {str(p): p.name for p in sweeps}
    chosen = st.sidebar.selectbox("Sweep", list(names), format_func=names.get, key=f"{PAGE}:pick", help="Newest first.")
    return Path(chosen)


def _status(path: Path) -> None:
    """The state of each run of the latest invocation, and a progress bar while it is under way."""
    try:
        status = sweep_status(path)
    except FileNotFoundError:
        return
    counts = status["state"].value_counts()
    under_way = bool(set(counts.index) - {"done", "failed", "stopped"})
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    with st.expander(f"Runs: {summary}", expanded=under_way or "failed" in counts):
        if under_way:
            st.progress(float(status["fraction"].mean()), text=f"{status['fraction'].sum():.1f} of {len(status)} runs")
            st.button("Refresh", key=f"{PAGE}:refresh")
        st.dataframe(status.drop(columns=["run", "label", "fraction"]), hide_index=True, key=f"{PAGE}:status")
    for _, row in status[status["state"] == "failed"].iterrows():
        st.error(f"{row['label']} failed: {row['detail']}")


def _plain(metric: str) -> str:
    """A metric's label without the HTML the figures use."""
    return metric_label(metric, html=False)


def _metrics(result: SweepResults) -> list[str]:
    """The metrics with at least one value, the usual ones first."""
    present = [m for m in result.metrics if f"{m}_mean" in result.summary and result.summary[f"{m}_mean"].notna().any()]
    return [m for m in FIRST if m in present] + [m for m in present if m not in FIRST]


def _comparison(result: SweepResults, metric: str) -> None:
    """The paired differences with the baseline in ``metric``, and the sentence that says what they show."""
    if result.comparison is None:
        st.caption("No baseline named (`--baseline KEY=VALUE`): no paired comparison.")
        return
    st.subheader("Against the baseline, seed by seed")
    _chart(comparison_figure(result.comparison, metric, result.keys), "compare_chart")
    text = result.verdict(metric, _plain(metric))
    (st.success if beyond_noise(result.comparison, metric).any() else st.info)(text)


def _describe(result: SweepResults) -> str:
    shared = ", ".join(f"{k}={v}" for k, v in result.spec.shared.items()) or "the defaults"
    return (f"**{result.folder.name}**: {result.spec.describe()}; every run with {shared}. "
            f"{len(result.runs)} runs measured; intervals are 95 % t-intervals over seeds.")


st.title("Sweeps")
bind([SWEEP], PAGE)
folder_text = SWEEP.widget(st.sidebar, PAGE)
sync_url([SWEEP])
folder = _run_folders.resolve(folder_text)
sweeps = find_sweeps(folder)
if not sweeps:
    st.info(f"No sweep in `{_run_folders.shown(folder)}`: a sweep folder holds {SPEC}, written by "
            "`adaface-lab sweep --grid head=arcface,adaface --seeds 3 --out sweeps/heads` (see `--help`).")
    st.stop()
path = _pick(sweeps)
_status(path)
try:
    result = _load(str(path), _mtime(path))
except (FileNotFoundError, ValueError, KeyError) as e:
    st.warning(f"Nothing to show yet for `{_run_folders.shown(path)}`: {e}")
    st.stop()
st.markdown(_describe(result))

metrics = _metrics(result)
if not metrics:
    st.warning("The sweep's runs have no metric values yet.")
    st.stop()
c1, c2 = st.columns(2)
metric = c1.selectbox("metric", metrics, format_func=_plain, key=f"{PAGE}:metric")
keys = result.keys or ["point"]  # a sweep without grid axes: one point, all its seeds
runs, summary = (result.runs, result.summary) if result.keys else (
    result.runs.assign(point="all runs"), result.summary.assign(point="all runs"))
x = c2.selectbox("against", keys, key=f"{PAGE}:x") if len(keys) > 1 else keys[0]
_chart(sweep_metric_figure(runs, summary, metric, x, keys), "metric_chart")

st.subheader("Summary: mean [95 % interval] over seeds")
shown = [metric] + [m for m in metrics if m != metric][:3]
table = format_summary(result.summary, shown, result.keys)
st.dataframe(table.rename(columns={m: _plain(m) for m in shown}), hide_index=True, key=f"{PAGE}:summary")
_comparison(result, metric)
with st.expander("Every run"):
    st.dataframe(pd.DataFrame(result.runs), hide_index=True, key=f"{PAGE}:runs")
