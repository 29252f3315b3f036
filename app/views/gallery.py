"""Page 2 — Method gallery: every method's feature plane side by side (the paper's Fig. 3).

The text, the grid of planes and the curves are keyed fragments that read the controls' values from
the shared store; the number of panels per row reruns the grid alone (see the explorer's page).
"""

from __future__ import annotations

import math

import streamlit as st

from _charts import show_chart
from _margin_controls import (
    context,
    controls,
    label,
    make_margin,
    other_margin_controls,
    plane,
    spec,
    z_hat_now,
)
from _state import bind, fragment_reruns, sync_url, values
from adaface_lab.margins import list_margins, margin_class
from adaface_lab.plots import feature_plane_grid, gst_curves_figure

PAGE = "gallery"
MARGIN, NORMS, MAPPING = ("m", "s", "phi", "conv"), ("nlo", "nhi"), ("h", "mean", "std", "norm")
P = controls()
OTHERS = other_margin_controls((*MARGIN, *MAPPING, "zhat"))  # every other method's parameters
PARAMS = [P[k] for k in (*MARGIN, *NORMS, "cols", *MAPPING, *OTHERS)]
GALLERY_RESOLUTION = 121
GALLERY_PANEL_PX = 260  # a panel's height (disc and labels): four per row fill a wide page's main column
EVERY_BUT_COLS = tuple(p.key for p in PARAMS if p.key != "cols")
RERUNS = fragment_reruns({"gallery:summary": EVERY_BUT_COLS, "gallery:grid": [p.key for p in PARAMS],
                          "gallery:gst": EVERY_BUT_COLS})

bind(PARAMS, PAGE)
side = st.sidebar
side.subheader("Margin")
for key in MARGIN:
    P[key].widget(side, PAGE, RERUNS[key])
side.subheader("AdaFace at a low and a high norm")
for key in NORMS:
    P[key].widget(side, PAGE, RERUNS[key])
with side.expander("ẑ mapping, MagFace norm, other methods"):
    for key in (*MAPPING, *OTHERS):
        P[key].widget(st, PAGE, RERUNS[key])
P["cols"].widget(side, PAGE, RERUNS["cols"])

st.title("Method gallery")


def _values() -> dict:
    return {**values(PARAMS), "zdirect": False}


@st.fragment(key="gallery:summary")
def summary() -> None:
    v = _values()
    z_lo, z_hi = z_hat_now(v, v["nlo"]), z_hat_now(v, v["nhi"])
    st.markdown(
        f"Every method at s = {v['s']:g} and m = {v['m']:g} (SphereFace m = {v['sm']:g}), φ = "
        f"{v['phi']:g}°, {v['conv']} convention. AdaFace is shown at a low norm "
        f"(‖z‖ = {v['nlo']:g} → ẑ = {z_lo:+.2f}, toward ArcFace) and a high norm "
        f"(‖z‖ = {v['nhi']:g} → ẑ = {z_hi:+.2f}, toward the negative angular margin); MagFace at "
        f"‖z‖ = {v['norm']:g}."
    )


def _entries(v: dict) -> list[tuple[str, float | None, str]]:
    """Every method once, as (name, norm, title); a method whose margin follows ẑ (AdaFace) at a
    low and at a high norm."""
    names = list_margins()
    by_z_hat = [n for n in names if "z_hat" in margin_class(n).needs]

    def at_norm(name: str, norm: float, which: str) -> tuple[str, float, str]:
        z = float(make_margin(name, v).resolve_context(norm=norm, mean=v["mean"], std=v["std"])["z_hat"])
        return name, norm, f"{label(name)}, {which} norm<br>ẑ = {z:+.2f}"

    def titled(name: str) -> tuple[str, None, str]:  # two short lines: narrow panels' titles must not meet
        note = make_margin(name, v).context_label(context(name, v))
        return name, None, label(name) + (f"<br>{note}" if note else "")

    return [titled(n) for n in names if n not in by_z_hat] + [
        entry for n in by_z_hat for entry in (at_norm(n, v["nlo"], "low"), at_norm(n, v["nhi"], "high"))
    ]


@st.fragment(key="gallery:grid")
def grid() -> None:
    v = _values()
    # a method that changes the negative logits (CurricularFace) also gets a panel coloured by |g_j|
    panels = [(n, norm, title, field) for n, norm, title in _entries(v)
              for field in (("g", "g_j") if margin_class(n).modifies_negatives else ("g",))]
    planes = [plane(n, v, norm=norm, resolution=GALLERY_RESOLUTION) for n, norm, _, _ in panels]
    titles = [title if field == "g" else "{} · |g<sub>j</sub>| (negative){}{}".format(*title.partition("<br>"))
              for _, _, title, field in panels]  # the |g_j| panel says so on its first line
    # hover=False: each field a picture coloured on the server (the browser neither parses nor colours it)
    show_chart(feature_plane_grid(planes, cols=v["cols"], titles=titles, panel_height=GALLERY_PANEL_PX,
                                  fields=[field for *_, field in panels], hover=False), key="grid_chart")
    st.caption("One colour scale for all panels: |g| clipped at 2s (drawn as pictures, so hovering "
               "shows no values here: the margin explorer's plane shows them). B0 dashed, B1 solid. The dark "
               "bar along −W_y: within a few degrees of θ_y = 180° the official code's ε-clamp of the "
               "cosine sets g to 0 (the grid's cells there are a degree or two wide). Magenta: "
               "misclassified samples (P_y < ½) that get |g| = 0 because the official code's angle "
               "clip is active (ArcFace past π − m; AdaFace near W_y once ẑ exceeds about 0.75). "
               "CurricularFace's curriculum t acts on the negatives, g_j = P_j·s·(t + 2c_j) for a "
               "hard one, so its second panel is coloured by |g_j|. The low and high norms default "
               "to 5 and 35, ẑ = ∓0.5 at μ_z = 20, σ_z = 10, h = 0.333: the widest symmetric pair "
               "those statistics allow (ẑ = −1 would need a negative norm).")


@st.fragment(key="gallery:gst")
def curves() -> None:
    v = _values()
    specs = [spec(n, v, norm=norm, label=title) for n, norm, title in _entries(v)]
    show_chart(gst_curves_figure(specs, math.radians(v["phi"]), v["conv"], negatives=True,
                                 height=440, legend_columns=1), key="gallery_gst_chart")


summary()
grid()
curves()
sync_url(PARAMS)
