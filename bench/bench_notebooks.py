"""Notebook costs: a figure's static PNG next to building it, and (``--run``) each notebook in small mode.

Why the notebooks add a static PNG beside each figure only in full mode: the PNG goes through headless
Chromium (``adaface_lab.plots.static_image``), which costs seconds per figure against milliseconds to
build it. Measured side by side in one run on the same figure. With ``--run`` every notebook is
executed headless in small mode (papermill, the test suite's settings) and its wall time printed; a
run folder the notebooks train is cached (``adaface_lab.runs.get_or_train``), so ``--cold`` points the
cache at an empty temporary folder to time training too.

    python bench/bench_notebooks.py                 # PNG export against figure building
    python bench/bench_notebooks.py --run --cold    # plus every notebook, training included
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from adaface_lab import gst, plots


def _time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="also execute every notebook in small mode")
    parser.add_argument("--cold", action="store_true", help="with --run: train into an empty run cache")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else 3

    planes = [gst.feature_plane(m, resolution=150) for m in ("cosface", "arcface", "negative_angular")]
    build = _time(lambda: plots.feature_plane_grid(planes, cols=3), repeat)
    fig = plots.feature_plane_grid(planes, cols=3)
    try:
        png = _time(lambda: plots.static_image(fig), repeat)
    except RuntimeError as e:
        print(f"static PNG export unavailable here: {e}")
        png = float("nan")
    print(f"feature-plane grid (3 panels): build {1000 * build:.1f} ms, static PNG {1000 * png:.0f} ms "
          f"-> PNG costs {png / build:.0f}x the figure")

    if args.run:
        from adaface_lab.reports import list_notebooks, render_notebooks

        with tempfile.TemporaryDirectory(prefix="bench_notebooks_") as tmp:
            params = {"OUT": os.path.join(tmp, "runs")} if args.cold else {}
            total = 0.0
            for nb in list_notebooks():
                [report] = render_notebooks([nb.stem], mode="small", parameters=params, out=os.path.join(tmp, "reports"),
                                            png=False, progress=False)
                total += report.seconds
                print(f"{nb.stem}: {report.seconds:.0f} s {'ok' if report.ok else 'FAILED: ' + str(report.error)}")
            print(f"all notebooks, small mode{' (cold cache)' if args.cold else ''}: {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
