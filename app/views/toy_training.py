"""Page 5 — Toy training: train any head on a 2-D or 3-D toy in seconds and watch the features move.

The training is :func:`adaface_lab.toy.train_toy` (cached per settings); the figures are
:mod:`adaface_lab.plots.toy`. The animation's frames play in the browser: Play, Pause and the step slider
never rerun this script (tests/test_app_browser_toy.py checks that against the run counter at the end).
"""

from __future__ import annotations

from typing import Any

import streamlit as st
import torch

from _charts import CHART_CONFIG
from _margin_controls import controls, label, make_margin
from _state import Param, bind, sync_url
from adaface_lab.heads import list_heads
from adaface_lab.margins import margin_class
from adaface_lab.plots import toy_feature_figure, toy_gst_figure, toy_norm_figure
from adaface_lab.toy import ToyRun, train_toy

PAGE = "toy"
RUNS = f"{PAGE}:script_runs"
TRAINED = f"{PAGE}:trained"
MAX_RECORDED = 300
"""Record every k-th step so that a run keeps about this many (a cached run stays a few MB at 1,500 steps)."""
HEADS = tuple(list_heads())
NAMES = {name: label(name) for name in HEADS}
OWN = {p.key: p for p in (
    Param("loss", "loss (head)", "choice", "adaface", choices=HEADS, labels=NAMES),
    Param("pair", "side by side with a second head", "bool", False,
          help="The same data, initialisation and seed under a second head."),
    Param("versus", "second head", "choice", "arcface", choices=HEADS, labels=NAMES),
    Param("ts", "scale s", "float", 4.0, 1.0, 64.0, 0.5, fmt="%.1f",
          help="The toy's own s (default 4, not the heads' 64): five classes on a circle trained full-batch "
               "get stuck at a large s (adaface_lab.toy explains)."),
    Param("degraded", "degraded fraction", "float", 0.3, 0.0, 1.0, 0.05, fmt="%.2f",
          help="The fraction of each class whose quality is below 1."),
    Param("lost", "of those, beyond recognition", "float", 0.5, 0.0, 1.0, 0.05, fmt="%.2f",
          help="The share of the degraded samples that are pure noise (q = 0)."),
    Param("steps", "steps", "int", 300, 20, 1500, 10),
    Param("dim", "embedding", "choice", "2", choices=("2", "3"), labels={"2": "2-D: circle", "3": "3-D: sphere"}),
    Param("seed", "seed", "int", 0, 0, 99, 1),
)}
SHARED = controls()  # m, h and every other margin parameter: the margin pages' controls, shared with them


def _margin_keys(head: str) -> list[str]:
    """The margin pages' control keys of ``head``'s shown parameters, s excepted (the toy has its own)."""
    cls = margin_class(head)
    found = {**cls.param_ranges(), **cls.param_choices()}
    return [r.key or item for item, r in found.items() if r.shown and item != "s"]


def _head_options(head: str, v: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The keyword arguments of ``head`` at the page's values, as a sorted tuple (a cache key)."""
    params = make_margin(head, {**v, "s": v["ts"]}).params()
    return tuple(sorted({**params, "detach_margin": v["conv"] == "detached"}.items()))


@st.cache_data(max_entries=16, show_spinner=False)
def _train(head: str, options: tuple[tuple[str, Any], ...], steps: int, dim: int, seed: int,
           degraded: float, lost: float) -> ToyRun:
    """One toy run, with a progress bar while it trains (replayed, already emptied, on a cache hit)."""
    bar = st.progress(0.0, text=f"Training {NAMES[head]} …")
    every = max(1, steps // 20)

    def progress(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            bar.progress(done / total, text=f"Training {NAMES[head]}: step {done} of {total}")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: on shared cores two threads ran 30x slower than one
    try:
        run = train_toy(head, steps, dim, seed, progress=progress, degraded=degraded, lost=lost,
                        record_every=max(1, steps // MAX_RECORDED), **dict(options))
    finally:
        torch.set_num_threads(threads)
    bar.empty()
    return run


def _sidebar() -> dict[str, Any]:
    """Draw the controls (those of the chosen heads' parameters only); the values by key."""
    side, v = st.sidebar, {}

    def draw(p: Param, container: Any = side) -> None:
        v[p.key] = p.widget(container, PAGE)

    side.subheader("Loss")
    for key in ("loss", "pair"):
        draw(OWN[key])
    if v["pair"]:
        draw(OWN["versus"])
    heads = [v["loss"], v["versus"]] if v["pair"] and v["versus"] != v["loss"] else [v["loss"]]
    draw(OWN["ts"])
    for key in dict.fromkeys(k for head in heads for k in _margin_keys(head)):
        draw(SHARED[key])
    side.subheader("Data and training")
    for key in ("degraded", "lost", "steps", "dim", "seed"):
        draw(OWN[key])
    with side.expander("Gradient convention"):
        draw(SHARED["conv"], st)
    v["heads"] = heads
    return v


def _settings(v: dict[str, Any]) -> tuple:
    """What a training depends on: per head its options, and the shared data and run settings."""
    heads = tuple((head, _head_options(head, v)) for head in v["heads"])
    return heads, v["steps"], int(v["dim"]), v["seed"], v["degraded"], v["lost"]


def _summary(runs: dict[str, ToyRun]) -> None:
    """Per run: clean samples recognised at the end, and how much lower the degraded samples' norms end."""
    columns = iter(st.columns(2 * len(runs)))
    for head, run in runs.items():
        table = run.norm_by_group()
        last = table[table["step"] == run.step[-1]].set_index("group")["mean"]
        clean = run.correct[-1][run.quality >= 1].mean()
        next(columns).metric(f"{NAMES[head]}: clean samples nearest their class", f"{100 * clean:.0f} %")
        gap = f"{last['clean'] - last.drop('clean').mean():+.1f}" if "clean" in last and len(last) > 1 else "—"
        next(columns).metric(f"{NAMES[head]}: mean ‖z‖ of clean − the rest", gap,
                             help="At the last step. Positive: the samples the network can recognise end with "
                                  "larger norms. '—' when every sample is clean or none is.")


@st.fragment
def _gst_section(runs: dict[str, ToyRun]) -> None:
    """|g| per quality group at a chosen step (a fragment: moving its slider reruns only this)."""
    steps = [int(s) for s in next(iter(runs.values())).step]
    at = st.select_slider("|g| at step", steps, value=steps[-1], key=f"{PAGE}:gst_step")
    st.plotly_chart(toy_gst_figure(runs, step=steps.index(at)), width="stretch", config=CHART_CONFIG,
                    key="toy_gst_chart")


def _figures(runs: dict[str, ToyRun]) -> None:
    """The animated features and, beside them (below them for two heads), the norms and |g|."""
    one = len(runs) == 1
    features, others = st.columns([3, 2], gap="medium") if one else (st.container(), st.container())
    with features:
        st.plotly_chart(toy_feature_figure(runs, start=-1, height=600 if one else 560), width="stretch",
                        config=CHART_CONFIG, key="toy_feature_chart")
        st.caption("Colour = class, marker size = quality, × = beyond recognition (q = 0); lines from the origin "
                   "= the unit class weights; dotted = the RMS norm, which the BatchNorm at the end of the network "
                   "fixes. The figure opens at the last step; ▶ Play runs from the first, the slider scrubs.")
    with others:
        left, right = (st.container(), st.container()) if one else st.columns(2, gap="medium")
        with left:
            st.plotly_chart(toy_norm_figure(runs), width="stretch", config=CHART_CONFIG, key="toy_norm_chart")
        with right:
            _gst_section(runs)


st.session_state[RUNS] = st.session_state.get(RUNS, 0) + 1
PARAMS = [*OWN.values(), *(SHARED[k] for k in dict.fromkeys(k for h in HEADS for k in _margin_keys(h))),
          SHARED["conv"]]
bind(PARAMS, PAGE)
v = _sidebar()
sync_url(PARAMS)

st.title("Toy training")
st.markdown(
    "A small network maps noisy clusters of 5 classes to a 2-D or 3-D embedding and trains with the head "
    "you pick (the lab's real heads, AdaFace's ẑ and EMA included) for a few hundred full-batch steps. "
    "Press **Play** under the features: each class gathers around its weight, and the radius of a point is "
    "its norm ‖z‖. Clean samples (large markers) and degraded ones (small; × for beyond recognition) start "
    "with the same norms; watch which end nearer the centre.")
settings = _settings(v)
if st.button("Train", type="primary", key=f"{PAGE}:train") or TRAINED not in st.session_state:
    st.session_state[TRAINED] = settings
trained = st.session_state[TRAINED]
if trained != settings:
    st.info("The settings changed since the last training: press **Train** to train them.")
head_options, *run_settings = trained
runs = {head: _train(head, options, *run_settings) for head, options in head_options}
_summary(runs)
_figures(runs)
st.html(f'<span id="toy-script-runs" data-runs="{st.session_state[RUNS]}" hidden></span>')
