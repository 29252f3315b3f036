"""Interaction speed of the Streamlit app's margin explorer (issue [app]: ≤ 250 ms per slider move).

    python bench/bench_app.py [--moves 40] [--repeats 20]

1. Server time per rerun: Streamlit's AppTest runs the app (router + page 1) as the server would,
   and each slider move is timed from the widget change to the finished rerun of the fragments that
   read that slider (script, figures, plotly JSON, protobuf), as a slider move reruns in the
   browser. Moves cycle through ‖z‖, m, s, h, φ, μ_z, σ_z with a new value every time; a second
   pass revisits earlier values (no cache of planes or figures: it should cost the same).
2. Where the time goes: each library call and figure builder alone, and the plotly JSON that
   st.plotly_chart writes, at the page's sizes (161² feature plane, 4 methods × 361 points).
3. The gallery (page 2) once, for reference.

Timings on a shared 2-core machine are noisy: read the median and p90, not single numbers.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app" / "streamlit_app.py"
TARGET_MS = 250.0


def _ms(seconds: list[float]) -> tuple[float, float]:
    ms = [1000 * s for s in seconds]
    return statistics.median(ms), float(np.percentile(ms, 90))


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return _ms(out)


def _moves(n: int) -> list[tuple[str, float]]:
    """n (slider, new value) pairs cycling through the explorer's sliders, never repeating."""
    plans = {
        "norm": lambda i: 30.0 + 0.5 * (i + 1),
        "m": lambda i: round(0.40 + 0.01 * (i + 1), 2),
        "s": lambda i: 64.0 - (i + 1),
        "h": lambda i: round(0.333 + 0.004 * (i + 1), 3),
        "phi": lambda i: 90.0 + (i + 1),
        "mean": lambda i: 20.0 + 0.5 * (i + 1),
        "std": lambda i: 10.0 + 0.5 * (i + 1),
    }
    keys = list(plans)
    return [(keys[i % len(keys)], plans[keys[i % len(keys)]](i // len(keys))) for i in range(n)]


def bench_reruns(moves: int) -> dict[str, tuple[float, float]]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    t0 = time.perf_counter()
    at.run()
    first = time.perf_counter() - t0
    assert not at.exception, at.exception
    plan = _moves(moves)
    fresh, again = [], []
    for timings, steps in ((fresh, plan), (again, plan[::-1])):
        for key, value in steps:
            slider = at.sidebar.slider(key=f"explorer:{key}")
            slider.set_value(value)
            t0 = time.perf_counter()
            at.run()  # what a slider move runs: the fragments that read it
            timings.append(time.perf_counter() - t0)
            assert not at.exception, at.exception
            at.run()  # untimed: AppTest's tree after a fragment rerun holds only the fragments' elements
            assert not at.exception, at.exception
    return {"first run (imports, cold caches)": (1000 * first, 1000 * first),
            "slider move, new values": _ms(fresh),
            "slider move, revisited values": _ms(again)}


def bench_parts(repeats: int) -> dict[str, tuple[float, float]]:
    import plotly.graph_objects as go
    import plotly.io as pio

    from adaface_lab.gst import feature_plane
    from adaface_lab.margins import build_margin
    from adaface_lab.plots import (
        adaface_terms_figure,
        feature_plane_figure,
        gst_curves_figure,
        method_spec,
        target_logit_figure,
    )

    ada = build_margin("adaface")
    plane = feature_plane(ada, resolution=161, norm=30.0, mean=20.0, std=10.0)
    specs = [method_spec("arcface"), method_spec("cosface"), method_spec("negative_angular"),
             method_spec("adaface", norm=30.0, mean=20.0, std=10.0)]
    phi = math.pi / 2
    figs = {
        "feature_plane_figure": lambda: feature_plane_figure(plane),
        "gst_curves_figure (4 methods)": lambda: gst_curves_figure(specs, phi),
        "target_logit_figure (4 methods)": lambda: target_logit_figure(specs, phi=phi),
        "adaface_terms_figure": lambda: adaface_terms_figure(0.333, 0.4, 20.0, 10.0, 30.0),
    }
    out = {"feature_plane (library, 161²)":
           _time(lambda: feature_plane(ada, resolution=161, norm=30.0, mean=20.0, std=10.0), repeats)}
    for name, build in figs.items():
        out[name] = _time(build, repeats)
        fig = build()
        # what st.plotly_chart does with a figure: to_dict, then plotly's JSON
        out[f"{name} → JSON"] = _time(
            lambda fig=fig: pio.to_json(fig.to_dict(), validate=False), repeats)
    # for comparison: the same figures built with plotly's per-property validation
    validated = {name: build().to_dict() for name, build in figs.items()}
    out["all four, rebuilt WITH plotly validation (not used)"] = _time(
        lambda: [go.Figure(d) for d in validated.values()], max(3, repeats // 4))
    return out


def bench_gallery() -> float:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("views/gallery.py")
    at.run()
    slider = at.sidebar.slider(key="gallery:s")
    slider.set_value(60.0)
    t0 = time.perf_counter()
    at.run()
    assert not at.exception, at.exception
    return 1000 * (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=42, help="slider moves to time (default 42)")
    parser.add_argument("--repeats", type=int, default=20, help="repeats per part (default 20)")
    args = parser.parse_args()

    print(f"Margin explorer, server time per rerun (AppTest), target ≤ {TARGET_MS:.0f} ms")
    print(f"{'':44s} {'median ms':>10s} {'p90 ms':>10s}   vs target")
    for name, (med, p90) in bench_reruns(args.moves).items():
        verdict = "" if name.startswith("first") else (
            f"   {'OK' if med <= TARGET_MS else 'OVER'} ({med / TARGET_MS:.2f}× target)")
        print(f"{name:44s} {med:10.1f} {p90:10.1f}{verdict}")
    print("\nWhere the time goes (each part alone)")
    for name, (med, p90) in bench_parts(args.repeats).items():
        print(f"  {name:52s} {med:8.2f} {p90:8.2f}")
    print(f"\nMethod gallery (11 planes at 121², one slider move): "
          f"{bench_gallery():.0f} ms")


if __name__ == "__main__":
    main()
