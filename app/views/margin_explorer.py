"""Page 1 — Margin explorer: move m, h, s, the norm and watch B0/B1 and the GST change."""

from __future__ import annotations

import math

import streamlit as st

from _charts import CHART_CONFIG
from _margin_controls import controls, label, other_margin_controls, plane, spec, z_hat_now
from _state import bind, sync_url, value
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

bind(PARAMS, PAGE)
side = st.sidebar
v = {"methods": P["methods"].widget(side, PAGE)}
side.subheader("Margin")
for key in MARGIN:
    v[key] = P[key].widget(side, PAGE)
side.subheader("AdaFace: norm → ẑ")
for key in ADAFACE:
    v[key] = P[key].widget(side, PAGE)
v["zhat"] = P["zhat"].widget(side, PAGE) if v["zdirect"] else value("zhat", P["zhat"].default)
side.subheader("Geometry and gradient")
for key in GEOMETRY:
    v[key] = P[key].widget(side, PAGE)
with side.expander("Other methods' parameters"):
    for key in OTHERS:
        v[key] = P[key].widget(st, PAGE)

st.title("Margin explorer")
z = z_hat_now(v)
g_angle, g_add = adaface_terms(z, v["m"])
source = "set directly" if v["zdirect"] else (
    f"from ‖z‖ = {v['norm']:g}, μ_z = {v['mean']:g}, σ_z = {v['std']:g}, h = {v['h']:g}")
st.markdown(
    f"AdaFace now: **ẑ = {z:+.2f}** ({source}) → g_angle = {g_angle:+.3f} rad, "
    f"g_add = {g_add:.3f}. ẑ = −1 is ArcFace, 0 CosFace, +1 a negative angular margin + 2m. "
    f"Gradient convention: **{v['conv']}**."
)

left, right = st.columns(2, gap="medium")
with left:
    v["plane"] = P["plane"].widget(st, PAGE)
    fp = plane(v["plane"], v)
    st.plotly_chart(feature_plane_figure(fp, height=520), width="stretch", config=CHART_CONFIG,
                    key="plane_chart")
    st.caption("|g| as colour (clipped at 2s; near θ_y = 180° the ε-clamps of the official code "
               "set g to 0). B0 dashed: c_y = c_j; B1 solid: f(c_y) = logit_j. Magenta: "
               "misclassified samples that an angle clip gives |g| = 0 (below the charts).")
    if margin_class(v["plane"]).modifies_negatives:
        st.plotly_chart(feature_plane_figure(fp, height=440, field="g_j"), width="stretch",
                        config=CHART_CONFIG, key="plane_gj_chart")
        st.caption("The same plane coloured by the negative class's |g_j| = P_j·d logit_j/dc_j: "
                   "CurricularFace's t acts here (a hard negative's logit is s·c_j·(t + c_j), so "
                   "g_j = P_j·s·(t + 2c_j)), where the target's |g| above barely changes.")

specs = [spec(name, v) for name in v["methods"]]
phi = math.radians(v["phi"])
with right:
    if specs:
        st.plotly_chart(gst_curves_figure(specs, phi, v["conv"], negatives=True, height=600),
                        width="stretch", config=CHART_CONFIG, key="gst_chart")
    else:
        st.info("Pick one or more methods in the sidebar.")

left2, right2 = st.columns(2, gap="medium")
with left2:
    if specs:
        st.plotly_chart(target_logit_figure(specs, phi=phi), width="stretch", config=CHART_CONFIG,
                        key="logit_chart")
with right2:
    st.plotly_chart(
        adaface_terms_figure(v["h"], v["m"], v["mean"], v["std"], v["norm"],
                             z_hat=v["zhat"] if v["zdirect"] else None),
        width="stretch", config=CHART_CONFIG, key="terms_chart")

ada = spec("adaface", v)
bands = zero_gradient_bands(ada.margin, phi=phi, convention=v["conv"], **ada.context)
now = ", ".join(f"{math.degrees(lo):.1f}°–{math.degrees(hi):.1f}°" for lo, hi in bands) or "none"
st.caption(
    "**No gradient although misclassified.** The official code clips the angle θ_y + g_angle to "
    "[ε, π − ε], and a clipped angle has no derivative: g = 0. For AdaFace with ẑ > 0, "
    "g_angle = −m·ẑ, so every θ_y < m·ẑ + ε is clipped — and its additive term m·ẑ + m makes "
    "samples from B1 on misclassified. With m = 0.4 and φ = 90° the two overlap once ẑ exceeds "
    "about 0.75; at ẑ = +1 misclassified samples between 11.5° and 23° get no gradient. The thick "
    "bars on the θ_y axis of the GST chart and the magenta area of the plane mark it (ArcFace's "
    f"θ_y > π − m − ε too). AdaFace now (ẑ = {z:+.2f}, {v['conv']} convention): {now}. The "
    "detached convention (df/dc = s) has no such band."
)
sync_url(PARAMS)
st.caption("The view is in the address bar: copy it to share exactly this state. "
           f"Methods shown: {', '.join(label(n) for n in v['methods']) or 'none'}.")
