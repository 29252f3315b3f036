"""A sweep: a grid of train options × seeds, each point and seed an ordinary cached run, measured and
summarised with confidence intervals.

::

    spec = SweepSpec.parse(grid=["head=arcface,adaface"], seeds=3, shared={"epochs": 3}, baseline="head=arcface")
    result = run_sweep(spec, "sweeps/heads", Execution(jobs=2))   # trains what is not done yet
    result.runs, result.summary, result.comparison                 # runs.csv, summary.csv, comparison.csv
    load_sweep("sweeps/heads")                                     # the same, read back
    sweep_status("sweeps/heads")                                   # each run's state, also while it runs

The sweep folder (``out``):

- ``sweep.json`` — what the latest invocation ran (grid, seeds, shared options, baseline, metric settings);
- ``runs.csv`` — one row per run: the grid values (a column per axis, named as the option: ``head``,
  ``head-param.h``), ``seed``, ``run`` (its folder, relative to ``out``) and one column per metric
  (:mod:`.metrics`); ``summary.csv`` — one row per grid point: ``<metric>_mean``, ``<metric>_ci_low``,
  ``<metric>_ci_high`` (95 % t-interval over seeds, :mod:`.stats`) and ``n_seeds``; ``comparison.csv`` —
  with a baseline, each point minus its baseline over matched seeds, with the difference's interval;
- ``runs/`` and ``metrics/`` — the store: the run cache (:func:`adaface_lab.runs.get_or_train`, one folder
  per distinct config) and each run's metrics. ``store=`` puts them elsewhere, so that several sweeps
  share runs: a setting two sweeps have in common is trained once;
- ``.queue/<time>/`` — each invocation's tasks, the state of each, and the workers' logs;
- ``running.json`` — while an invocation runs: its process, host, start and spec. A second invocation with
  another spec is refused while that process lives on this host (the two would overwrite each other's
  ``sweep.json`` and tables); one with the same spec may join it (its runs are trained once, in the cache).

Runs are trained in the cache's way (into a temporary folder, moved into place when complete), so a second
invocation trains nothing that is done and one killed half-way resumes with the runs it had not finished.
Head parameters are written out in full (every margin parameter, AdaFace's ``proxy``) before a run's key
is taken, so ``head-param.h=0.333`` and the default are the same run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .._atomic import atomic_path, write_text_atomic
from ..config import TrainConfig
from ..errors import LabError
from ..heads import HEADS, build_head
from ..margins import build_margin
from ..runs import cached_progress, cached_run_path
from .execution import Execution, Task, TaskQueue, process_alive, run_queue
from .grid import Axis, GridError, grid_points, parse_grid, parse_point, point_label, point_overrides
from .metrics import MetricSettings, compute_metrics, metric_names
from .stats import compare_with_baseline, noise_verdict, summarise

__all__ = ["SweepSpec", "PlannedRun", "SweepFolder", "SweepResults", "SweepBusy", "run_sweep", "run_sweeps",
           "load_sweep", "sweep_status", "queue_status", "find_sweeps", "format_summary", "full_head_params",
           "SPEC", "RUNS_CSV", "SUMMARY_CSV", "COMPARISON_CSV"]  # fmt: skip

SPEC, RUNS_CSV, SUMMARY_CSV, COMPARISON_CSV = "sweep.json", "runs.csv", "summary.csv", "comparison.csv"
RUNNING = "running.json"


class SweepBusy(LabError):
    """Another invocation with another spec is running in the sweep's folder."""


# --------------------------------------------------------------------------- what to run


@dataclass(frozen=True)
class PlannedRun:
    """One (grid point, seed): its config and the cache folder it lives in."""

    point: dict[str, Any]
    seed: int
    config: TrainConfig
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        return f"{point_label(self.point)}, seed {self.seed}"


@dataclass
class SweepSpec:
    """A grid (its :class:`~.grid.Axis` list), ``seeds`` (0..seeds−1), the TrainConfig options every run
    shares, an optional ``baseline`` point (some or all axes) and how the runs are measured."""

    axes: list[Axis]
    seeds: int = 1
    shared: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    metrics: MetricSettings = field(default_factory=MetricSettings)

    @classmethod
    def parse(cls, grid: Sequence[str] = (), seeds: int = 1, shared: Mapping[str, Any] | None = None,
              baseline: str | None = None, metrics: MetricSettings | None = None,
              sweep_options: Sequence[str] = ()) -> "SweepSpec":  # fmt: skip
        """A spec from ``--grid`` texts, checked whole (every grid point makes a valid config and head).
        Raises :class:`~.grid.GridError` with one plain line."""
        if seeds < 1:
            raise GridError(f"--seeds must be at least 1, got {seeds}")
        axes = parse_grid(grid, sweep_options)
        spec = cls(axes, seeds, dict(shared or {}), parse_point(baseline, axes) if baseline else None,
                   metrics or MetricSettings())  # fmt: skip
        spec.configs()
        return spec

    @property
    def keys(self) -> list[str]:
        return [a.key for a in self.axes]

    def points(self) -> list[dict[str, Any]]:
        return grid_points(self.axes)

    def configs(self) -> list[tuple[dict[str, Any], int, TrainConfig]]:
        """(point, seed, config) of every run; GridError naming the point whose options are invalid."""
        out = []
        for point in self.points():
            overrides = point_overrides(point, self.axes, self.shared)
            for seed in range(self.seeds):
                try:
                    config = TrainConfig.from_overrides({**overrides, "seed": seed, "progress": False})
                    config.head_params = full_head_params(config.head, config.head_params)
                except (ValueError, TypeError) as e:
                    raise GridError(f"grid point {point_label(point)}: {e}") from None
                out.append((point, seed, config))
        return out

    def plan(self, cache_dir: Path) -> list[PlannedRun]:
        """Every run and its cache folder; GridError when two grid points are one run."""
        planned = [PlannedRun(p, s, c, cached_run_path(c, cache_dir)) for p, s, c in self.configs()]
        seen: dict[Path, PlannedRun] = {}
        for run in planned:
            if run.path in seen:
                raise GridError(f"{seen[run.path].label} and {run.label} are the same run (their settings agree)")
            seen[run.path] = run
        return planned

    def describe(self) -> str:
        """``head-param.h ∈ {0, 0.333} × 2 seeds`` (the grid in words)."""
        grid = " × ".join(f"{a.key} ∈ {{{', '.join(map(str, a.values))}}}" for a in self.axes)
        return f"{grid or 'one setting'} × {self.seeds} seed{'s' if self.seeds != 1 else ''}"

    def to_json(self) -> dict[str, Any]:
        return {"grid": {a.key: list(a.values) for a in self.axes}, "seeds": self.seeds, "shared": self.shared,
                "baseline": self.baseline, "metrics": self.metrics.to_dict()}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SweepSpec":
        axes = [Axis.of(k, v) for k, v in data["grid"].items()]
        return cls(axes, int(data["seeds"]), dict(data["shared"]), data.get("baseline"),
                   MetricSettings.from_dict(data["metrics"]))  # fmt: skip


def full_head_params(head: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter of ``head`` spelled out (defaults filled in, numbers of float parameters as floats),
    so that equal settings make equal run keys; ValueError for a parameter the head does not take."""
    options = HEADS.get(head).head_options
    margin_params = {k: v for k, v in params.items() if k not in options and k not in ("detach_margin", "validate")}
    margin = build_margin(head, **margin_params)
    full: dict[str, Any] = {}
    for f in dataclasses.fields(margin):
        value = getattr(margin, f.name)
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        full[f.name] = float(value) if f.type in ("float", float) and is_number else value
    full.update({k: params.get(k, default) for k, default in options.items()})
    full.update({k: params[k] for k in ("detach_margin", "validate") if k in params})
    build_head(head, 2, 2, **full)  # the head's own options are checked too (e.g. AdaFace's proxy)
    return full


# --------------------------------------------------------------------------- the folder


class SweepFolder:
    """A sweep's folder and its store (see the module's docstring for the files)."""

    def __init__(self, out: str | os.PathLike[str], store: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(out)
        self.store = Path(store) if store is not None else self.path
        self.spec_file = self.path / SPEC
        self.cache = self.store / "runs"
        self.metrics = self.store / "metrics"

    def csv(self, name: str) -> Path:
        return self.path / name

    def claim(self, spec: "SweepSpec") -> None:
        """Mark the folder as run by this process for ``spec`` (``running.json``); raise :class:`SweepBusy`
        when another live process on this host runs another spec there. A mark whose process is gone is
        stale and taken over."""
        mark = self.path / RUNNING
        try:
            held = json.loads(mark.read_text())
            pid, host, their_spec = int(held["pid"]), held["host"], held["spec"]
        except (OSError, ValueError, KeyError, TypeError):
            held = None  # none, or damaged: nothing to respect
        mine = spec.to_json()
        if held is not None and host == socket.gethostname() and pid != os.getpid() and process_alive(pid):
            if their_spec != json.loads(json.dumps(mine, default=str)):
                since = time.strftime("%H:%M:%S", time.localtime(float(held.get("started", 0))))
                raise SweepBusy(f"{self.path}: another sweep with a different grid or settings is running there "
                                f"(process {pid}, since {since}); wait for it to end, or give another --out")
            return  # the same spec, live: joined, and the mark stays its holder's
        write_text_atomic(mark, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                            "started": time.time(), "spec": mine}, indent=1, default=str))

    def release(self) -> None:
        """Remove this process's ``running.json`` (another invocation's is left alone)."""
        mark = self.path / RUNNING
        try:
            if int(json.loads(mark.read_text())["pid"]) == os.getpid():
                mark.unlink()
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def latest_queue(self) -> Path | None:
        queues = sorted((self.path / ".queue").glob("*/tasks.json"))
        return queues[-1].parent if queues else None

    def read_metrics(self, name: str, settings: MetricSettings) -> dict[str, float] | None:
        """A run's stored metrics, or None when absent, damaged, taken with other settings or lacking a
        metric registered since (the run is then measured again, not trained again)."""
        try:
            data = json.loads((self.metrics / f"{name}.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if data.get("settings") != settings.to_dict() or set(metric_names(settings)) - set(data["values"]):
            return None
        return data["values"]

    def write_metrics(self, name: str, settings: MetricSettings, values: dict[str, float],
                      pairs: pd.DataFrame | None) -> None:  # fmt: skip
        if pairs is not None:
            with atomic_path(self.metrics / f"{name}.pairs.parquet") as tmp:
                pairs.to_parquet(tmp, index=False)
        write_text_atomic(self.metrics / f"{name}.json", json.dumps(
            {"settings": settings.to_dict(), "values": values, "written": time.time()}, default=float))


# --------------------------------------------------------------------------- results


@dataclass
class SweepResults:
    """A sweep's tables (``comparison`` None without a baseline) and the errors of this invocation."""

    folder: Path
    spec: SweepSpec
    runs: pd.DataFrame
    summary: pd.DataFrame
    comparison: pd.DataFrame | None
    errors: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return self.spec.keys

    @property
    def metrics(self) -> list[str]:
        """The metric columns of ``runs``."""
        return [c for c in self.runs.columns if c not in (*self.keys, "seed", "run")]

    def verdict(self, metric: str, label: str | None = None) -> str:
        """One sentence on which differences from the baseline lie beyond the seeds' noise in ``metric``."""
        if self.comparison is None:
            return f"{label or metric}: no baseline named, no comparison."
        return noise_verdict(self.comparison, metric, self.keys, label)


def _tables(spec: SweepSpec, runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    metrics = [c for c in runs.columns if c not in (*spec.keys, "seed", "run")]
    summary = summarise(runs, spec.keys, metrics)
    comparison = compare_with_baseline(runs, spec.keys, metrics, spec.baseline) if spec.baseline else None
    return summary, comparison


def _collect(folder: SweepFolder, spec: SweepSpec, planned: Sequence[PlannedRun]) -> pd.DataFrame:
    """runs.csv: a row for each run with metrics (a run without, which failed, is left out)."""
    rows = []
    for run in planned:
        values = folder.read_metrics(run.name, spec.metrics)
        if values is not None:
            rows.append({**run.point, "seed": run.seed, "run": os.path.relpath(run.path, folder.path), **values})
    return pd.DataFrame(rows, columns=[*spec.keys, "seed", "run", *metric_names(spec.metrics)])


def _write_tables(folder: SweepFolder, runs: pd.DataFrame, summary: pd.DataFrame,
                  comparison: pd.DataFrame | None) -> None:  # fmt: skip
    for name, frame in ((RUNS_CSV, runs), (SUMMARY_CSV, summary), (COMPARISON_CSV, comparison)):
        if frame is None:
            folder.csv(name).unlink(missing_ok=True)  # an earlier invocation's baseline no longer applies
            continue
        with atomic_path(folder.csv(name)) as tmp:
            frame.to_csv(tmp, index=False)


def load_sweep(out: str | os.PathLike[str]) -> SweepResults:
    """A sweep's tables, read back from its folder (FileNotFoundError naming what is missing)."""
    path = Path(out)
    if not (path / SPEC).is_file():
        raise FileNotFoundError(f"no {SPEC} in {path}: not a sweep folder (`adaface-lab sweep --out {path} ...`)")
    spec = SweepSpec.from_json(json.loads((path / SPEC).read_text()))
    if not (path / RUNS_CSV).is_file():
        raise FileNotFoundError(f"no {RUNS_CSV} in {path} yet: the sweep has not finished a first time")
    runs = pd.read_csv(path / RUNS_CSV)
    summary, comparison = _tables(spec, runs)  # what the files hold, unless they are missing
    if (path / SUMMARY_CSV).is_file():
        summary = pd.read_csv(path / SUMMARY_CSV)
    if comparison is not None and (path / COMPARISON_CSV).is_file():
        comparison = pd.read_csv(path / COMPARISON_CSV)
    return SweepResults(path, spec, runs, summary, comparison)


def find_sweeps(path: str | os.PathLike[str]) -> list[Path]:
    """``[path]`` if it is a sweep folder (it holds ``sweep.json``), else its sub-folders that are, newest first."""
    path = Path(path)
    if (path / SPEC).is_file():
        return [path]
    if not path.is_dir():
        return []
    found = [p for p in path.iterdir() if (p / SPEC).is_file()]
    return sorted(found, key=lambda p: (-(p / SPEC).stat().st_mtime, p.name))


# --------------------------------------------------------------------------- running


def _train_and_measure(task: dict[str, Any], context: dict[str, Any], report: Callable[[str], None]) -> None:
    """A worker's body: the run of ``task`` from the cache (trained now if it is not there), its metrics."""
    from ..runs import get_or_train
    from ..train import pick_device

    config = TrainConfig.from_overrides(task["config"])
    report("training")
    run = get_or_train(config, cache_dir=context["cache_dir"])
    report("measuring")
    settings = MetricSettings.from_dict(task["metrics"])
    device = pick_device(config.device)
    values, pairs = compute_metrics(run, settings, device="cpu" if device.type == "mps" else device)
    SweepFolder(context["store"]).write_metrics(task["name"], settings, values, pairs)


def _prepare(spec: SweepSpec, out: str | os.PathLike[str], store: str | os.PathLike[str] | None,
             execution: Execution) -> tuple[SweepFolder, list[PlannedRun], list[Task]]:  # fmt: skip
    """The sweep's folder (with its ``sweep.json``), its runs, and a task per run (done: not to do)."""
    folder = SweepFolder(out, store)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.claim(spec)  # before sweep.json: another spec's live invocation keeps its own
    write_text_atomic(folder.spec_file, json.dumps({**spec.to_json(), "execution": dataclasses.asdict(execution),
                                                    "store": str(folder.store.resolve())}, indent=1, default=str))
    planned = spec.plan(folder.cache)
    tasks = []
    for run in planned:
        config = run.config.to_dict()
        if "threads" not in spec.shared:
            config["threads"] = execution.threads()
        if "num_workers" not in spec.shared:
            config["num_workers"] = 0  # the jobs are the parallelism: no loader processes of their own
        done = folder.read_metrics(run.name, spec.metrics) is not None
        tasks.append(Task(run.name, run.label, {"name": run.name, "config": config, "point": run.point,
                                                "seed": run.seed, "metrics": spec.metrics.to_dict()},
                          todo=not done))  # fmt: skip
    return folder, planned, tasks


def run_sweeps(sweeps: Sequence[tuple[SweepSpec, str | os.PathLike[str]]], execution: Execution | None = None,
               store: str | os.PathLike[str] | None = None, progress: bool = True) -> list[SweepResults]:  # fmt: skip
    """Several sweeps ``(spec, out)`` sharing one ``store``, run by one set of workers (a run two sweeps have in
    common is made once); the results in the same order. See :func:`run_sweep`."""
    execution = execution or Execution()
    if len(sweeps) > 1 and store is None:
        raise ValueError("sweeps run together share one store: give store=")
    prepared: list[tuple[SweepFolder, list[PlannedRun], list[Task]]] = []
    try:
        for spec, out in sweeps:
            prepared.append(_prepare(spec, out, store, execution))
        return _run_prepared(sweeps, prepared, execution, progress)
    finally:
        for folder, _, _ in prepared:
            folder.release()


def _run_prepared(sweeps: Sequence[tuple[SweepSpec, str | os.PathLike[str]]],
                  prepared: Sequence[tuple[SweepFolder, list[PlannedRun], list[Task]]], execution: Execution,
                  progress: bool) -> list[SweepResults]:  # fmt: skip
    """:func:`run_sweeps` once every folder is claimed: one queue for all, run; each sweep's tables."""
    from .monitor import Monitor

    union: dict[str, Task] = {}
    for _, _, tasks in prepared:
        for task in tasks:
            union.setdefault(task.name, task)
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    first = prepared[0][0]
    context = {"store": str(first.store.resolve()), "cache_dir": str(first.cache.resolve())}
    queue = TaskQueue.create(first.path / ".queue" / stamp, list(union.values()), context)
    views = [queue.folder]
    for folder, _, tasks in prepared[1:]:  # each sweep's view of the shared queue: its status reads it
        views.append(TaskQueue.create(folder.path / ".queue" / stamp, tasks,
                                      {**context, "queue": str(queue.folder.resolve())}).folder)
    monitor = Monitor(lambda: queue_status(queue.folder), len(union), progress)
    try:
        errors = run_queue(queue, execution, _train_and_measure, monitor.poll)
    finally:
        monitor.close()
    results = []
    for (spec, _), (folder, planned, _), view in zip(sweeps, prepared, views):
        runs = _collect(folder, spec, planned)
        summary, comparison = _tables(spec, runs)
        _write_tables(folder, runs, summary, comparison)
        # this invocation's own queue, not the folder's latest: another invocation may have started since
        failed = [f"{row['label']}: {row['state']}" + (f" ({row['detail']})" if row["detail"] else "")
                  for _, row in queue_status(view).iterrows() if row["state"] != "done"]  # fmt: skip
        results.append(SweepResults(folder.path, spec, runs, summary, comparison, errors + failed))
    return results


def run_sweep(spec: SweepSpec, out: str | os.PathLike[str], execution: Execution | None = None,
              store: str | os.PathLike[str] | None = None, progress: bool = True) -> SweepResults:  # fmt: skip
    """Make every run of ``spec`` not yet done (``execution``: local processes by default), measure them,
    and write ``runs.csv``, ``summary.csv`` and (with a baseline) ``comparison.csv`` under ``out``.

    Runs already in the store with their metrics are not run again. A run that fails is reported in
    ``errors`` (and left out of the tables); the others go on. Ctrl-C stops the workers after their step.
    """
    return run_sweeps([(spec, out)], execution, store, progress)[0]


# --------------------------------------------------------------------------- where each run is


def _detail(task: Task, record: dict[str, Any] | None, cache_dir: Path) -> tuple[str, str, float]:
    """(state, detail, fraction done) of one task."""
    if not task.todo:
        return "done", "measured before (cached)", 1.0
    if record is None:
        return "queued", "", 0.0
    state = record["state"]
    took = f"{record.get('ended', time.time()) - record.get('started', time.time()):.0f} s"
    if state == "done":
        return "done", f"in {took}", 1.0
    if state == "failed":
        return "failed", str(record.get("error", "")), 0.0
    here = record.get("host") in (None, socket.gethostname())
    if state == "stopped" or (here and not process_alive(int(record.get("pid", 0)))):
        return "stopped", "interrupted: run the sweep again to continue", 0.0
    if state == "measuring":
        return "measuring", f"verification pairs ({took})", 0.95
    progress = cached_progress(cache_dir / task.name)
    if progress is None:
        return "training", "preparing", 0.0
    left = f", about {progress.eta_s:.0f} s left" if np.isfinite(progress.eta_s) and progress.step else ""
    detail = f"epoch {progress.epoch}/{progress.epochs}, step {progress.step}/{progress.total_steps}{left}"
    return "training", detail, 0.9 * progress.fraction


def sweep_status(out: str | os.PathLike[str]) -> pd.DataFrame:
    """The state of each run of the sweep's latest invocation: its grid values, ``seed``, ``run`` (the cache
    folder's name), ``label``, ``state`` (queued, training, measuring, done, failed, stopped), ``detail``
    (epoch and step, time, or the error) and ``fraction`` (of the run done, in [0, 1])."""
    folder = SweepFolder(out)
    queue_dir = folder.latest_queue()
    if queue_dir is None:
        raise FileNotFoundError(f"no sweep has run in {folder.path} (no .queue folder)")
    return queue_status(queue_dir)


def queue_status(queue_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """:func:`sweep_status` of one queue folder."""
    queue = TaskQueue(Path(queue_dir))
    records = queue.states()
    cache_dir = Path(queue.context["cache_dir"])
    rows = []
    for task in queue.tasks:
        state, detail, fraction = _detail(task, records.get(task.name), cache_dir)
        rows.append({**task.spec["point"], "seed": task.spec["seed"], "run": task.name, "label": task.label,
                     "state": state, "detail": detail, "fraction": fraction})  # fmt: skip
    return pd.DataFrame(rows)


def format_summary(summary: pd.DataFrame, metrics: Sequence[str], keys: Sequence[str], digits: int = 3) -> pd.DataFrame:
    """``summary`` for reading: per metric one column ``mean [ci_low, ci_high]`` (the grid values kept)."""
    out = summary[list(keys)].copy()
    for m in metrics:
        mean, low, high = (summary[f"{m}_{s}"] for s in ("mean", "ci_low", "ci_high"))
        out[m] = [f"{a:.{digits}f}" + (f" [{b:.{digits}f}, {c:.{digits}f}]" if np.isfinite(b) else "")
                  if np.isfinite(a) else "—" for a, b, c in zip(mean, low, high)]  # fmt: skip
    out["n_seeds"] = summary["n_seeds"]
    return out
