"""Sweeps: a grid of training settings × seeds, each an ordinary cached run, measured, and summarised with
confidence intervals — the paper's ablations asked over several seeds (``notebooks/06_ablations.ipynb``).

::

    from adaface_lab.experiments import Execution, SweepSpec, run_sweep, load_sweep
    spec = SweepSpec.parse(grid=["head=arcface,adaface"], seeds=3, shared={"epochs": 4}, baseline="head=arcface")
    result = run_sweep(spec, "sweeps/heads", Execution(jobs=2))
    result.summary                  # per grid point: <metric>_mean, _ci_low, _ci_high (95 % t-interval), n_seeds
    result.comparison               # per point: <metric>_diff and its interval, paired over matched seeds
    result.verdict("ver_auc")       # one sentence: which differences lie beyond the seeds' noise

    adaface-lab sweep --grid head=arcface,adaface --seeds 3 --epochs 4 --out sweeps/heads --baseline head=arcface

- :mod:`.grid` — grid keys and values, read by the train command's own option parser;
- :mod:`.metrics` — what is measured on each run (a registry: one function per metric family);
- :mod:`.stats` — t-intervals over seeds and paired differences with a baseline;
- :mod:`.execution` — submitit (local processes or Slurm), a queue of runs, ``--jobs`` workers;
- :mod:`.sweep` — the sweep folder, :func:`run_sweep`, :func:`load_sweep`, :func:`sweep_status`;
- :mod:`.monitor` — the progress bar; :mod:`.cli` — ``adaface-lab sweep``;
- :mod:`.ablations` — the paper's ablation questions as sweeps, and each mode's settings (notebook 6).
"""

from .ablations import ABLATIONS, Ablation, AblationPlan, ablation_plan
from .execution import EXECUTORS, Execution
from .grid import Axis, GridError, grid_points, parse_grid, parse_point, point_label
from .metrics import BINS, METRICS, MetricSettings, RunMetrics, compute_metrics, metric_label, metric_names, register_metric
from .stats import (
    CONFIDENCE,
    Interval,
    beyond_noise,
    compare_with_baseline,
    interval_sign,
    noise_verdict,
    sign_verdict,
    summarise,
    t_interval,
)
from .sweep import (
    COMPARISON_CSV,
    RUNS_CSV,
    SPEC,
    SUMMARY_CSV,
    PlannedRun,
    SweepBusy,
    SweepFolder,
    SweepResults,
    SweepSpec,
    find_sweeps,
    format_summary,
    full_head_params,
    load_sweep,
    queue_status,
    run_sweep,
    run_sweeps,
    sweep_status,
)

__all__ = [
    "ABLATIONS", "Ablation", "AblationPlan", "ablation_plan",
    "EXECUTORS", "Execution",
    "Axis", "GridError", "grid_points", "parse_grid", "parse_point", "point_label",
    "BINS", "METRICS", "MetricSettings", "RunMetrics", "compute_metrics", "metric_label", "metric_names",
    "register_metric",
    "CONFIDENCE", "Interval", "beyond_noise", "compare_with_baseline", "interval_sign", "noise_verdict", "sign_verdict",
    "summarise", "t_interval",
    "SPEC", "RUNS_CSV", "SUMMARY_CSV", "COMPARISON_CSV", "PlannedRun", "SweepBusy", "SweepFolder", "SweepResults",
    "SweepSpec",
    "find_sweeps", "format_summary", "full_head_params", "load_sweep", "queue_status", "run_sweep", "run_sweeps",
    "sweep_status",
]  # fmt: skip
