"""Page 5 — Quality as a score: error-versus-discard curves of a run's held-out faces per quality measure, and
one face's norm and SER-FIQ as it is degraded."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
from torch import nn

import _run_folders
from _charts import CHART_CONFIG
from _state import Param, bind, sync_url
from adaface_lab.degrade import DEGRADATION_FIELDS, Degradation, degrade
from adaface_lab.plots import degradation_sweep_figure, edc_figure
from adaface_lab.quality_eval import (
    SWEEP_LEVELS,
    TRUTH,
    EDCComparison,
    ScoredFaces,
    compare_edcs,
    degradation_sweep,
    heldout_faces,
    score_faces,
    sweep_bands,
)
from adaface_lab.runs import RECORDS, Run, RunFolder, load_backbone

PAGE = "qscore"
MEASURES = {"norm": "‖z‖ (feature norm)", "brisque": "1 − BRISQUE/100", "serfiq": "SER-FIQ",
            "truth": "ground truth (1 − severity)"}  # fmt: skip
COLUMN = {"norm": "norm", "brisque": "brisque", "serfiq": "serfiq", "truth": TRUTH}  # URL name -> quality column
KINDS = {"blur_sigma": "blur", "scale": "down-up", "noise_sigma": "noise", "jpeg_quality": "JPEG"}
Q = {
    "run": Param("run", "Run folder, or a folder of runs", "text", _run_folders.shown(_run_folders.runs_root()),
                 help=f"A folder of `adaface-lab train --out …` (with {RECORDS} and a checkpoint), or a folder of "
                      "such folders; the same as on the Training runs page."),  # fmt: skip
    "qm": Param("qm", "Measures", "multi", list(MEASURES), choices=tuple(MEASURES), labels=MEASURES),
    "fmr": Param("fmr", "False match rate of the threshold", "choice", "0.01", choices=("0.1", "0.01", "0.001"),
                 help="The threshold is fixed once, on all pairs, at this FMR; the EDC reads the FNMR left there."),
    "qn": Param("qn", "Held-out faces", "int", 300, 20, 1000, 20,
                help="Faces of the identities the run never trained on (identities take turns); every pair is compared."),
    "face": Param("face", "Face (held-out, by number)", "int", 0, 0, 999, 1),
    "kind": Param("kind", "Degradation", "choice", "blur_sigma", choices=DEGRADATION_FIELDS, labels=KINDS),
    "step": Param("step", "Strength step", "int", 0, 0, 4, 1, help="0: the face itself; 4: the strongest."),
}
PARAMS = list(Q.values())


@st.cache_resource(max_entries=4, show_spinner="Loading the checkpoint …")
def _backbone(checkpoint: str, modified: float) -> nn.Module:
    del modified  # part of the cache key only
    return load_backbone(checkpoint).model


@st.cache_data(max_entries=4, show_spinner="Rating the held-out faces by every measure …")
def _scored(run_dir: str, modified: float, n: int) -> ScoredFaces:
    run = _run_folders.load(Path(run_dir))
    faces = heldout_faces(run, max_images=n)
    return score_faces(_backbone(str(run.folder.checkpoint), modified), faces, run.train_config.channel_order,
                       progress=False)  # fmt: skip


@st.cache_data(max_entries=16, show_spinner="Error versus discard …")
def _edcs(run_dir: str, modified: float, n: int, measures: tuple[str, ...], fmr: float) -> EDCComparison:
    return compare_edcs(_scored(run_dir, modified, n), measures=measures, fmr=fmr, draws=100)


@st.cache_data(max_entries=32, show_spinner="Degrading the face …")
def _face_sweep(run_dir: str, modified: float, n: int, face: int, kind: str) -> pd.DataFrame:
    run = _run_folders.load(Path(run_dir))
    image = _scored(run_dir, modified, n).faces.images[face : face + 1]  # (1, 3, 112, 112)
    return degradation_sweep(_backbone(str(run.folder.checkpoint), modified), image, run.train_config.channel_order,
                             levels={kind: SWEEP_LEVELS[kind]}, measures=("norm", "serfiq"), progress=False)  # fmt: skip


def _pick_run(side: st.delta_generator.DeltaGenerator) -> Run:
    """The run chosen in the sidebar (newest first), read; a message and a stop without a usable one."""
    try:
        folder = _run_folders.resolve(Q["run"].widget(side, PAGE))
    except ValueError as e:  # too long, or outside the course folder
        st.error(f"Cannot open this folder: {e}")
        sync_url(PARAMS)
        st.stop()
    runs = [p for p in _run_folders.find_runs(folder) if RunFolder(p).checkpoint.is_file()]
    if not runs:
        st.info(f"No run with a checkpoint in `{_run_folders.shown(folder)}`. Type a run folder in the sidebar, or "
                "train one on the Training runs page (its demo holds identities out, as this page needs).")
        sync_url(PARAMS)
        st.stop()
    names = {str(p): p.name for p in runs}
    chosen = side.selectbox("Run", list(names), format_func=names.get, key=f"{PAGE}:pick") if len(runs) > 1 else str(runs[0])
    try:
        return _run_folders.load(Path(chosen))
    except (OSError, ValueError) as e:
        st.error(f"Cannot read the run `{_run_folders.shown(Path(chosen))}`: {e}")
        sync_url(PARAMS)
        st.stop()


def _edc_section(key: tuple[str, float, int], scored: ScoredFaces, side: st.delta_generator.DeltaGenerator) -> None:
    """The EDC of each chosen measure over every pair of held-out faces, with the random band, and the pAUCs."""
    chosen = Q["qm"].widget(side, PAGE)
    fmr = float(Q["fmr"].widget(side, PAGE))
    columns = tuple(COLUMN[m] for m in chosen if COLUMN[m] in scored.qualities.columns)
    if "truth" in chosen and TRUTH not in scored.qualities.columns:
        st.caption("No ground truth here: only SyntheticFaces knows each image's degradation.")
    if not columns:
        st.warning("Choose at least one measure in the sidebar.")
        return
    found = _edcs(*key, columns, fmr)
    info = next(iter(found.tables.values())).attrs
    st.markdown(f"**{info['n_pairs']:,} pairs** of {len(scored.faces)} held-out faces ({info['n_genuine']:,} genuine); "
                f"FNMR {next(iter(found.tables.values()))['fnmr'].iloc[0]:.3f} before anything is discarded.")
    left, right = st.columns([3, 2], gap="medium")
    with left:
        st.plotly_chart(edc_figure(found.tables, baseline=found.baseline, limit=found.limit), width="stretch",
                        config=CHART_CONFIG, key="edc_chart")  # fmt: skip
    with right:
        table = found.paucs.rename(columns={"relative": "pAUC ÷ random", "beyond_random": "below the band"})
        st.dataframe(table.round(4), hide_index=True, key=f"{PAGE}:paucs")
        st.caption(f"pAUC: area under the curve up to {found.limit:.0%} discarded. Below the random band (95 % of "
                   "100 random qualities, one per face) a measure finds the failing pairs; above it, it is reversed.")


def _face_section(key: tuple[str, float, int], scored: ScoredFaces) -> None:
    """One held-out face at the chosen step of one degradation: its norm and SER-FIQ, and the whole sweep."""
    c1, c2, c3 = st.columns(3)
    face = min(int(Q["face"].widget(c1, PAGE)), len(scored.faces) - 1)
    kind, step = Q["kind"].widget(c2, PAGE), int(Q["step"].widget(c3, PAGE))
    sweep = _face_sweep(*key, face, kind)
    strength = SWEEP_LEVELS[kind][step]
    image = scored.faces.images[face]
    shown = degrade(image, Degradation(**{kind: int(strength) if kind == "jpeg_quality" else float(strength)}))
    now, base = sweep[sweep["step"] == step].iloc[0], sweep[sweep["step"] == 0].iloc[0]
    left, mid, right = st.columns([1, 1, 3], gap="medium")
    left.image(image.permute(1, 2, 0).numpy(), width=180, caption=f"face {face}")
    mid.image(shown.permute(1, 2, 0).numpy(), width=180, caption=f"{KINDS[kind]} {strength:g}")
    mid.metric("‖z‖", f"{now['norm']:.2f}", f"{now['norm'] - base['norm']:+.2f} vs the face")
    mid.metric("SER-FIQ", f"{now['serfiq']:.4f}", f"{now['serfiq'] - base['serfiq']:+.4f} vs the face")
    with right:
        st.plotly_chart(degradation_sweep_figure({m: sweep_bands(sweep, m) for m in ("norm", "serfiq")}),
                        width="stretch", config=CHART_CONFIG, key="face_chart")  # fmt: skip


bind(PARAMS, PAGE)
side = st.sidebar
st.title("Quality as a score")
st.caption("Is the feature norm a usable image-quality score? Face-quality research asks what discarding the "
           "lowest-rated pairs does to the errors left (the EDC, ISO/IEC 29794-5). Notebook 07 tells the story; "
           "`adaface-lab checkup` checks a checkpoint on your own faces.")
run = _pick_run(side)
n_faces = int(Q["qn"].widget(side, PAGE))
key = (str(run.path), RunFolder(run.path).modified(), n_faces)
try:
    scored = _scored(*key)
except ValueError as e:  # no held-out identities, a data folder that changed, ...
    st.info(f"No held-out faces to compare for `{_run_folders.shown(run.path)}`: {e}")
    sync_url(PARAMS)
    st.stop()
st.subheader("Error versus discard on the held-out faces")
_edc_section(key, scored, side)
st.subheader("One face, degraded: its norm and SER-FIQ")
_face_section(key, scored)
sync_url(PARAMS)
