"""``adaface-lab sweep``: a grid of train options × seeds, run in parallel, summarised with confidence intervals.

::

    adaface-lab sweep --grid head=arcface,cosface,adaface --seeds 3 --epochs 4 \\
        --out sweeps/heads --baseline head=arcface --jobs 2
    adaface-lab sweep --grid head-param.h=0,0.333 --grid head-param.m=0.4,0.5 --seeds 3 --out sweeps/hm
    adaface-lab sweep --out sweeps/heads --status          # the state of each run (also while it runs)
    adaface-lab sweep ... --executor slurm --partition gpu --time 120 --gpus-per-job 1

Every train option (``adaface-lab train --help``) may be given once, for every run; ``--grid`` varies one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any

from .execution import EXECUTORS, Execution
from .grid import SET_BY_THE_SWEEP, GridError
from .metrics import MetricSettings
from .sweep import COMPARISON_CSV, RUNS_CSV, SUMMARY_CSV, format_summary, run_sweep, sweep_status

__all__ = ["add_sweep_subparser", "sweep_main"]

#: Metrics the command prints at the end (those a run has).
_SHOWN = ("r_norm_qseverity", "r_norm_qbrisque", "ver_accuracy", "ver_auc")


def add_sweep_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``sweep``: its own options, then every train option (shared by all runs)."""
    from ..cli import add_train_options  # here: adaface_lab.cli imports this module

    p = subparsers.add_parser(
        "sweep", help="train a grid of settings × seeds in parallel; every metric with a 95 %% interval",
        description="Train every combination of the --grid values once per seed (each an ordinary run in the "
        "run cache under --out, so a second invocation trains nothing that is done, and one that was killed "
        "resumes), measure each run, and write runs.csv, summary.csv (95 % t-intervals over seeds) and, with "
        "--baseline, comparison.csv (paired differences over matched seeds).",
    )  # fmt: skip
    sweep = p.add_argument_group("the sweep")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="a train option and its values, repeatable; every combination is run. E.g. head=arcface,adaface "
                            "or head-param.h=0,0.333 or epochs=2,4 (values split at ';' when the text has one, for lr-milestones)")  # fmt: skip
    sweep.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds 0..N-1 per grid point (default 1)")
    sweep.add_argument("--out", required=True, help="the sweep folder (its tables; its runs unless --store)")
    sweep.add_argument("--store", default=None, metavar="DIR",
                       help="where runs and their metrics are kept (default: --out); sweeps that share one train "
                            "a setting they have in common once")  # fmt: skip
    sweep.add_argument("--baseline", default=None, metavar="KEY=VALUE[,KEY=VALUE]",
                       help="the grid point each point is compared with over matched seeds (e.g. head=arcface)")
    sweep.add_argument("--pairs", type=int, default=MetricSettings().pairs, metavar="N",
                       help="verification pairs drawn from each run's held-out identities (default %(default)s)")
    sweep.add_argument("--status", action="store_true", help="print the state of each run of --out and exit")
    run = p.add_argument_group("execution (submitit)")
    run.add_argument("--executor", choices=EXECUTORS, default="local",
                     help="local: separate processes here (default); slurm: jobs on a Slurm cluster")
    run.add_argument("--jobs", type=int, default=2, metavar="N",
                     help="runs at a time (default 2); locally each gets cores/N threads")
    run.add_argument("--partition", default=None, help="Slurm partition")
    run.add_argument("--time", type=int, default=Execution().time_min, metavar="MIN",
                     help="time limit of each worker job, minutes (default %(default)s)")
    run.add_argument("--gpus-per-job", type=int, default=0, metavar="N", help="GPUs per job (default 0)")
    run.add_argument("--cpus-per-job", type=int, default=None, metavar="N", help="Slurm: CPUs (and threads) per job")
    own = [s[2:] for group in (sweep, run) for a in group._group_actions for s in a.option_strings]
    add_train_options(p.add_argument_group("train options, shared by every run"), skip=frozenset(SET_BY_THE_SWEEP))
    p.set_defaults(func=sweep_main, sweep_options=tuple(own))
    return p


def _execution(args: argparse.Namespace) -> Execution:
    execution = Execution(args.executor, args.jobs, args.partition, args.time, args.gpus_per_job, args.cpus_per_job)
    if execution.executor == "slurm" and shutil.which("sbatch") is None:
        raise ValueError("--executor slurm: no Slurm here (sbatch is not on the PATH); use --executor local")
    if args.pairs < 20:
        raise ValueError(f"--pairs must be at least 20 (ten folds of genuine and impostor pairs), got {args.pairs}")
    return execution


def sweep_main(args: argparse.Namespace) -> int:
    """Run the sweep the parsed ``args`` describe; exit code 0 (all done), 1 (a run failed), 2 (bad input)
    or 130 (interrupted)."""
    from ..cli import train_overrides
    from .sweep import SweepSpec

    if args.status:
        try:
            table = sweep_status(args.out)
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(table.drop(columns=["run", "fraction"]).to_string(index=False))
        return 0
    try:
        execution = _execution(args)
        shared = {k: v for k, v in train_overrides(args).items() if k not in SET_BY_THE_SWEEP}  # --out is ours
        spec = SweepSpec.parse(args.grid, args.seeds, shared, args.baseline,
                               MetricSettings(pairs=args.pairs), args.sweep_options)  # fmt: skip
    except (GridError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        result = run_sweep(spec, args.out, execution, store=args.store)
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to continue", file=sys.stderr)
        return 130
    shown = [m for m in _SHOWN if f"{m}_mean" in result.summary and result.summary[f"{m}_mean"].notna().any()]
    files = [RUNS_CSV, SUMMARY_CSV] + ([COMPARISON_CSV] if result.comparison is not None else [])
    print(f"{len(result.runs)} runs measured; {', '.join(files)} in {result.folder}")
    print(format_summary(result.summary, shown, result.keys).to_string(index=False))
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if result.errors else 0
