"""Server time per rerun of the app's pages 3 (training runs) and 4 (image quality inspector).

    python bench/bench_app_runs_and_inspector.py [--moves 12]

Streamlit's AppTest runs the app as the server would and each widget change is timed from the
change to the finished rerun:

- page 3 on a run folder written in the training loop's format (1,536 probe samples × 8 epochs,
  as the default `adaface-lab train` records): moving the scatter's epoch, switching the quality
  column; the first load (Parquet read, then cached on the folder's modification time) separately.
- page 4 on the astronaut face: moving each degradation slider to a new value (BRISQUE from both
  backends on the pair, and a 9–11-image sweep, cold cache), then with a small checkpoint loaded
  (the feature norm, ẑ, the adaptive-terms figure and a 161² feature plane on top).

Timings on a shared 2-core machine are noisy: read the median and p90.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app" / "streamlit_app.py"
sys.path.insert(0, str(ROOT))


def _ms(seconds: list[float]) -> tuple[float, float]:
    ms = [1000 * s for s in seconds]
    return statistics.median(ms), float(np.percentile(ms, 90))


def _timed_run(at) -> float:
    t0 = time.perf_counter()
    at.run()
    dt = time.perf_counter() - t0
    assert not at.exception, at.exception
    return dt


def bench_runs_page(moves: int, root: Path) -> dict[str, tuple[float, float]]:
    from streamlit.testing.v1 import AppTest

    from tests.fake_runs import write_fake_run

    write_fake_run(root / "bench", epochs=8, n=1536)
    os.environ["ADAFACE_LAB_RUNS"] = str(root)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("views/training_runs.py")
    first = _timed_run(at)
    epochs, quality = [], []
    for i in range(moves):
        at.select_slider(key="runs:epoch").set_value(1 + i % 8)
        epochs.append(_timed_run(at))
        at.radio(key="runs:quality").set_value("severity_quality" if i % 2 == 0 else "quality")
        quality.append(_timed_run(at))
    return {"first load (Parquet read, 12,288 records)": (1000 * first, 1000 * first),
            "scatter epoch moved": _ms(epochs), "quality column switched": _ms(quality)}


def bench_inspector(moves: int, root: Path) -> dict[str, tuple[float, float]]:
    from streamlit.testing.v1 import AppTest

    from tests.test_app_quality_inspector import _save_lightning, _tiny_weights

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("views/quality_inspector.py")
    first = _timed_run(at)
    plans = {"blur": lambda i: round(0.2 + 0.1 * i, 1), "noise": lambda i: float(1 + i),
             "scale": lambda i: round(0.95 - 0.05 * i, 2)}
    out = {"first load (face, BRISQUE ×2 backends, sweep)": (1000 * first, 1000 * first)}
    for key, value in plans.items():
        times = []
        for i in range(moves):
            at.sidebar.slider(key=f"inspect:{key}").set_value(value(i))
            times.append(_timed_run(at))
        out[f"{key} slider moved (new value)"] = _ms(times)
        at.sidebar.slider(key=f"inspect:{key}").set_value({"blur": 0.0, "noise": 0.0, "scale": 1.0}[key])
        _timed_run(at)
    ckpt = root / "tiny.ckpt"
    _save_lightning(ckpt, _tiny_weights(), 25.0, 5.0)
    at.radio(key="inspect:ckpt_src").set_value("path")
    _timed_run(at)
    at.text_input(key="inspect:ckpt_path").set_value(str(ckpt))
    load = _timed_run(at)
    times = []
    for i in range(moves):  # blur values not seen above (no BRISQUE or sweep cache hit)
        at.sidebar.slider(key="inspect:blur").set_value(round(min(2.0 + 0.1 * i, 5.0), 1))
        times.append(_timed_run(at))
    out["checkpoint loaded (ir_tiny)"] = (1000 * load, 1000 * load)
    out["blur moved, with checkpoint (norm, ẑ, plane)"] = _ms(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=12, help="widget changes timed per control (default 12)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for title, bench in (("Training runs (page 3)", bench_runs_page), ("Image quality inspector (page 4)",
                                                                          bench_inspector)):
            print(f"{title}: server time per rerun (AppTest)")
            print(f"  {'':50s} {'median ms':>10s} {'p90 ms':>10s}")
            for name, (med, p90) in bench(args.moves, Path(tmp)).items():
                print(f"  {name:50s} {med:10.1f} {p90:10.1f}")


if __name__ == "__main__":
    main()
