"""Toy trainer: seconds for 300 steps of the 2-D toy on one CPU thread (target ≤ 3 s, issue #11).

The default run of :func:`adaface_lab.toy.train_toy` (AdaFace, 300 samples, every step recorded:
features, class weights, g by autograd, ẑ, margins) is timed next to the same run recording only
its last step (what the recording costs), a 3-D run, and ArcFace; then the animated figure of
:func:`adaface_lab.plots.toy_feature_figure` for one run and for two side by side: build time and
JSON size. Medians of interleaved rounds; the machine's load average is printed with them.

    python bench/bench_toy.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adaface_lab.plots import toy_feature_figure  # noqa: E402
from adaface_lab.toy import compare_toy, train_toy  # noqa: E402

TARGET_S = 3.0


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    print(f"CPU, {torch.get_num_threads()} torch thread, torch {torch.__version__}, {os.cpu_count()} cores, "
          f"load average {load_before:.1f}")

    contenders = {
        "2-D AdaFace, every step recorded (the default)": lambda: train_toy("adaface", steps=300, dim=2),
        "2-D AdaFace, last step recorded only": lambda: train_toy("adaface", steps=300, dim=2, record_every=300),
        "2-D ArcFace, every step recorded": lambda: train_toy("arcface", steps=300, dim=2),
        "3-D AdaFace, every step recorded": lambda: train_toy("adaface", steps=300, dim=3),
    }
    train_toy("adaface", steps=5)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        order = list(contenders)
        random.shuffle(order)
        for key in order:
            times[key].append(_timed(contenders[key]))
    print(f"\n300 training steps, 300 samples, median of {rounds} interleaved rounds")
    for key, values in times.items():
        print(f"  {key:<48}{statistics.median(values):6.2f} s   (min {min(values):.2f})")
    default = statistics.median(times["2-D AdaFace, every step recorded (the default)"])
    verdict = "meets" if default <= TARGET_S else "MISSES"
    print(f"  => 2-D toy, 300 steps: {default:.2f} s, {verdict} the target of ≤ {TARGET_S:.0f} s")

    runs = compare_toy(("arcface", "adaface"), steps=300)
    for label, what in (("one run", runs["adaface"]), ("two runs side by side", runs)):
        build = []
        for _ in range(rounds):
            build.append(_timed(lambda: toy_feature_figure(what)))
        size = len(toy_feature_figure(what).to_json()) / 2**20
        print(f"animated figure, {label} (60 frames): built in {statistics.median(build) * 1e3:.0f} ms, "
              f"JSON {size:.2f} MiB")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
