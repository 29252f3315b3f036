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
from adaface_lab.margins import adaface_terms
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
    show_chart(feature_plane_figure(plane(v["plane"], v), height=520), key="plane_chart")
    st.caption("|g| as colour (clipped at 2s; near θ_y = 180° the ε-clamps of the official code "
               "set g to 0). B0 dashed: c_y = c_j; B1 solid: f(c_y) = logit_j.")


@st.fragment(key="explorer:gst")
def gst() -> None:
    v = values(PARAMS)
    if not v["methods"]:
        st.info("Pick one or more methods in the sidebar.")
        return
    specs = [spec(name, v) for name in v["methods"]]
    show_chart(gst_curves_figure(specs, math.radians(v["phi"]), v["conv"], height=600),
               key="gst_chart")


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
sync_url(PARAMS)
footer()
