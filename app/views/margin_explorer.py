"""Page 1 — Margin explorer: move m, h, s, the norm and watch B0/B1 and the GST change.

Each figure is a keyed fragment that reads the controls' values from the shared store, and each
control reruns only the fragments that read it (``READS``), so a slider move sends and redraws only
the figures it changes; the sidebar is drawn on full runs only.
"""

from __future__ import annotations

import math

import streamlit as st

from _charts import show_chart
from _margin_controls import controls, label, other_margin_controls, plane, spec, z_hat_now
from _state import bind, fragment_reruns, sync_url, values
from adaface_lab.gst import zero_gradient_bands
from adaface_lab.margins import adaface_terms, margin_class
from adaface_lab.plots import (
    adaface_terms_figure,
    feature_plane_figure,
    gst_curves_figure,
    target_logit_figure,
)

PAGE = "explorer"
MARGIN, ADAFACE, GEOMETRY = ("m", "s"), ("h", "norm", "mean", "std", "zdirect"), ("phi", "conv")
P = controls()
OTHERS = other_margin_controls((*MARGIN, *ADAFACE, "zhat"))  # every other method's parameters
PARAMS = [P[k] for k in ("methods", *MARGIN, *ADAFACE, "zhat", *GEOMETRY, *OTHERS, "plane")]

Z_HAT = ("m", "h", "norm", "mean", "std", "zhat")  # what AdaFace's ẑ and terms follow


def _all_but(*keys: str) -> tuple[str, ...]:
    """Every control but ``keys`` and zdirect (which shows or hides the ẑ slider: the whole page
    reruns when it changes)."""
    return tuple(p.key for p in PARAMS if p.key not in (*keys, "zdirect"))


READS = {  # each fragment of the page and the controls it reads
    "explorer:summary": (*Z_HAT, "conv"),
    "explorer:plane": _all_but("methods"),
    "explorer:gst": _all_but("plane"),
    "explorer:logit": _all_but("plane", "conv"),
    "explorer:terms": Z_HAT,
    "explorer:bands": (*Z_HAT, "phi", "conv"),
    "explorer:footer": ("methods",),
}
RERUNS = fragment_reruns(READS)

bind(PARAMS, PAGE)
side = st.sidebar
P["methods"].widget(side, PAGE, RERUNS["methods"])
side.subheader("Margin")
for key in MARGIN:
    P[key].widget(side, PAGE, RERUNS[key])
side.subheader("AdaFace: norm → ẑ")
for key in ADAFACE:
    P[key].widget(side, PAGE, RERUNS.get(key))
if values(PARAMS)["zdirect"]:
    P["zhat"].widget(side, PAGE, RERUNS["zhat"])
side.subheader("Geometry and gradient")
for key in GEOMETRY:
    P[key].widget(side, PAGE, RERUNS[key])
with side.expander("Other methods' parameters"):
    for key in OTHERS:
        P[key].widget(st, PAGE, RERUNS[key])

st.title("Margin explorer")


@st.fragment(key="explorer:summary")
def summary() -> None:
    v = values(PARAMS)
    z = z_hat_now(v)
    g_angle, g_add = adaface_terms(z, v["m"])
    source = "set directly" if v["zdirect"] else (
        f"from ‖z‖ = {v['norm']:g}, μ_z = {v['mean']:g}, σ_z = {v['std']:g}, h = {v['h']:g}")
    st.markdown(
        f"AdaFace now: **ẑ = {z:+.2f}** ({source}) → g_angle = {g_angle:+.3f} rad, "
        f"g_add = {g_add:.3f}. ẑ = −1 is ArcFace, 0 CosFace, +1 a negative angular margin + 2m. "
        f"Gradient convention: **{v['conv']}**."
    )


@st.fragment(key="explorer:plane")
def plane_panel() -> None:
    P["plane"].widget(st, PAGE, RERUNS["plane"])
    v = values(PARAMS)
    fp = plane(v["plane"], v)
    show_chart(feature_plane_figure(fp, height=520), key="plane_chart")
    st.caption("|g| as colour (clipped at 2s; near θ_y = 180° the ε-clamps of the official code "
               "set g to 0). B0 dashed: c_y = c_j; B1 solid: f(c_y) = logit_j. Magenta: "
               "misclassified samples that an angle clip gives |g| = 0 (below the charts).")
    if margin_class(v["plane"]).modifies_negatives:
        show_chart(feature_plane_figure(fp, height=440, field="g_j"), key="plane_gj_chart")
        st.caption("The same plane coloured by the negative class's |g_j| = P_j·d logit_j/dc_j: "
                   "CurricularFace's t acts here (a hard negative's logit is s·c_j·(t + c_j), so "
                   "g_j = P_j·s·(t + 2c_j)), where the target's |g| above barely changes.")


@st.fragment(key="explorer:gst")
def gst() -> None:
    v = values(PARAMS)
    if not v["methods"]:
        st.info("Pick one or more methods in the sidebar.")
        return
    specs = [spec(name, v) for name in v["methods"]]
    show_chart(gst_curves_figure(specs, math.radians(v["phi"]), v["conv"], negatives=True,
                                 height=600), key="gst_chart")


@st.fragment(key="explorer:logit")
def logit() -> None:
    v = values(PARAMS)
    if v["methods"]:
        specs = [spec(name, v) for name in v["methods"]]
        show_chart(target_logit_figure(specs, phi=math.radians(v["phi"])), key="logit_chart")


@st.fragment(key="explorer:terms")
def terms() -> None:
    v = values(PARAMS)
    show_chart(adaface_terms_figure(v["h"], v["m"], v["mean"], v["std"], v["norm"],
                                    z_hat=v["zhat"] if v["zdirect"] else None), key="terms_chart")


@st.fragment(key="explorer:bands")
def bands() -> None:
    v = values(PARAMS)
    ada = spec("adaface", v)
    found = zero_gradient_bands(ada.margin, phi=math.radians(v["phi"]), convention=v["conv"],
                                **ada.context)
    now = ", ".join(f"{math.degrees(lo):.1f}°–{math.degrees(hi):.1f}°" for lo, hi in found) or "none"
    st.caption(
        "**No gradient although misclassified.** The official code clips the angle θ_y + g_angle "
        "to [ε, π − ε], and a clipped angle has no derivative: g = 0. For AdaFace with ẑ > 0, "
        "g_angle = −m·ẑ, so every θ_y < m·ẑ + ε is clipped — and its additive term m·ẑ + m makes "
        "samples from B1 on misclassified. With m = 0.4 and φ = 90° the two overlap once ẑ "
        "exceeds about 0.75; at ẑ = +1 misclassified samples between 11.5° and 23° get no "
        "gradient. The thick bars on the θ_y axis of the GST chart and the magenta area of the "
        f"plane mark it (ArcFace's θ_y > π − m − ε too). AdaFace now (ẑ = {z_hat_now(v):+.2f}, "
        f"{v['conv']} convention): {now}. The detached convention (df/dc = s) has no such band."
    )


@st.fragment(key="explorer:footer")
def footer() -> None:
    st.caption("The view is in the address bar: copy it to share exactly this state. "
               f"Methods shown: {', '.join(label(n) for n in values(PARAMS)['methods']) or 'none'}.")


summary()
left, right = st.columns(2, gap="medium")
with left:
    plane_panel()
with right:
    gst()
left2, right2 = st.columns(2, gap="medium")
with left2:
    logit()
with right2:
    terms()
bands()
sync_url(PARAMS)
footer()
