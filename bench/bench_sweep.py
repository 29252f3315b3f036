"""Sweep parallel efficiency: the same four tiny runs with ``--jobs 2`` against ``--jobs 1``.

Each sweep starts from an empty store (nothing cached), trains and measures the four runs of
``--grid head=cosface,adaface --seeds 2`` on notebook 6's small setting (60 SyntheticFaces identities, a tiny
IResNet at 32 px; ``--epochs`` of them), through submitit's local executor. With one job the worker gets
every core's threads; with two, each gets half. Reported: the wall time of each and their ratio (target
≥ 1.7x on two cores: two processes of one thread each keep both cores busier than one process of two
threads, whose small convolutions hand off between threads).

    python bench/bench_sweep.py            # 6 epochs per run
    python bench/bench_sweep.py --quick    # 3 epochs
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `adaface-lab` sets it (see adaface_lab/cli.py)

from adaface_lab.experiments import Execution, SweepSpec, run_sweep  # noqa: E402
from adaface_lab.experiments.ablations import SMALL  # noqa: E402
from adaface_lab.experiments.execution import available_cores  # noqa: E402


def sweep_seconds(jobs: int, epochs: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the worker processes) of the four-run sweep with ``jobs`` workers, from
    an empty store. The workers' CPU time reaches this process through the executor's controller
    processes, which wait for them (``os.times`` of children)."""
    spec = SweepSpec.parse(["head=cosface,adaface"], seeds=2, shared={**SMALL, "epochs": epochs})
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as out:
        before, started = os.times(), time.perf_counter()
        result = run_sweep(spec, out, Execution(jobs=jobs), progress=False)
        seconds, after = time.perf_counter() - started, os.times()
    if result.errors or len(result.runs) != 4:
        raise RuntimeError(f"the sweep with {jobs} job(s) did not measure its four runs: {result.errors}")
    cpu = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    return seconds, cpu


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run (default 6)")
    parser.add_argument("--quick", action="store_true", help="3 epochs per run")
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    cores = available_cores()
    print(f"{cores} cores; four runs ({epochs} epochs each, notebook 6's small setting), submitit local executor, "
          f"{time.strftime('%Y-%m-%d')}")  # fmt: skip
    one, one_cpu = sweep_seconds(1, epochs)
    print(f"  --jobs 1 ({Execution(jobs=1).threads()} threads)   : {one:6.1f} s wall, {one_cpu:6.1f} s CPU of its workers")
    two, two_cpu = sweep_seconds(2, epochs)
    print(f"  --jobs 2 ({Execution(jobs=2).threads()} thread each): {two:6.1f} s wall, {two_cpu:6.1f} s CPU of its workers")
    print(f"  ratio --jobs 1 / --jobs 2 = {one / two:.2f}x (target ≥ 1.7x on 2 cores; parallel efficiency "
          f"{one / two / min(2, cores):.0%})")  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"  load average during the measurement: {load:.1f} (other processes on the machine make the ratio "
          "meaningless: measure on an idle machine)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
