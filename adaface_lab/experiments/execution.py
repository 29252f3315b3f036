"""Running a sweep's runs in separate processes through submitit: on this machine (its local executor,
the default) or on a Slurm cluster, by one code path.

A sweep writes its runs as a queue of tasks in a folder (:class:`TaskQueue`) and submits ``jobs`` workers
(:func:`work`); each worker claims the next unclaimed task (an exclusive file creation, which also works on
a cluster's shared file system), trains and measures it, and takes the next, until none is left. So
``--jobs N`` means N runs at a time on either executor, each process pays its start-up (Python, torch) once
rather than per run, and a long run does not hold up the others. On the local executor:

- the cores are shared out: each worker's torch, OpenMP and BLAS get ``cores // jobs`` threads
  (:meth:`Execution.threads`), so N jobs do not oversubscribe the machine;
- a worker watches the sweep's process and stops when it is gone (killed, or its terminal closed):
  it interrupts its run the way Ctrl-C does, so the half-trained run leaves nothing behind, and the next
  invocation of the sweep trains it again. On Slurm, workers run on to the end of the queue.

Slurm: ``Execution(executor="slurm", partition=..., time_min=..., gpus_per_job=..., cpus_per_job=...)``;
the sweep's folder must be on a file system the nodes share. Worker logs are under the queue folder's
``logs/``.
"""

from __future__ import annotations

import _thread
import json
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from .._atomic import write_text_atomic

__all__ = ["EXECUTORS", "Execution", "Task", "TaskQueue", "work", "run_queue", "available_cores", "process_alive"]

EXECUTORS: tuple[str, ...] = ("local", "slurm")

#: What a worker does with one task: ``body(task, context, report)``, ``report(state)`` saying where it is.
Body = Callable[[dict[str, Any], dict[str, Any], Callable[[str], None]], None]


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Execution:
    """Where and how a sweep's runs execute.

    ``executor``: ``"local"`` (separate processes on this machine) or ``"slurm"``; ``jobs``: runs at a time;
    ``partition``, ``time_min`` (each worker job's time limit, minutes), ``gpus_per_job``, ``cpus_per_job``:
    the cluster's job options (``cpus_per_job`` also sets a Slurm worker's threads).
    """

    executor: str = "local"
    jobs: int = 2
    partition: str | None = None
    time_min: int = 24 * 60
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    poll_s: float = 0.5

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {self.jobs}")
        if self.time_min < 1 or self.gpus_per_job < 0 or (self.cpus_per_job is not None and self.cpus_per_job < 1):
            raise ValueError("need time ≥ 1 minute, GPUs per job ≥ 0 and CPUs per job ≥ 1")

    def threads(self) -> int:
        """Torch/OpenMP/BLAS threads of each worker: the local cores shared out, or the Slurm CPUs per job."""
        if self.executor == "slurm":
            return self.cpus_per_job or 1
        return max(1, available_cores() // self.jobs)

    def submitit_parameters(self) -> dict[str, Any]:
        """The parameters given to submitit's ``AutoExecutor.update_parameters``."""
        params: dict[str, Any] = {"timeout_min": self.time_min, "name": "adaface-sweep"}
        if self.executor == "slurm":
            params.update(gpus_per_node=self.gpus_per_job, cpus_per_task=self.threads())
            if self.partition:
                params["slurm_partition"] = self.partition
        elif self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        return params

    def make_executor(self, folder: Path) -> Any:
        """A submitit executor writing its job files and logs under ``folder``."""
        import submitit

        executor = submitit.AutoExecutor(folder=str(folder), cluster=self.executor)
        executor.update_parameters(**self.submitit_parameters())
        return executor


# --------------------------------------------------------------------------- the queue


@dataclass(frozen=True)
class Task:
    """One run to make: its ``name`` (unique in the queue), a ``label`` for people, and what the worker's
    body needs (``spec``, JSON-able); ``todo`` False for a run already made (listed for its status)."""

    name: str
    label: str
    spec: dict[str, Any]
    todo: bool = True


class TaskQueue:
    """A folder of tasks: ``tasks.json`` (the tasks and a shared ``context``), ``claims/<name>`` (created
    exclusively by the worker that takes a task) and ``states/<name>.json`` (where each task is).

    A queue whose ``context["queue"]`` names another queue folder is a view of some of that queue's tasks:
    their claims and states are the other queue's (several sweeps run by one set of workers)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        data = json.loads((self.folder / "tasks.json").read_text())
        self.context: dict[str, Any] = data["context"]
        self.tasks = [Task(**t) for t in data["tasks"]]
        self.work_dir = Path(self.context.get("queue", self.folder))

    @classmethod
    def create(cls, folder: Path, tasks: Sequence[Task], context: dict[str, Any]) -> "TaskQueue":
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError("two tasks of a queue share a name")
        for sub in ("claims", "states"):
            (Path(context.get("queue", folder)) / sub).mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / "tasks.json", json.dumps(
            {"context": context, "tasks": [t.__dict__ for t in tasks]}, indent=1, default=str))
        return cls(folder)

    @property
    def todo(self) -> list[Task]:
        return [t for t in self.tasks if t.todo]

    def claim(self, name: str) -> bool:
        """Take task ``name`` for this process; False when another already has."""
        try:
            os.close(os.open(self.work_dir / "claims" / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def set_state(self, name: str, state: str, **info: Any) -> None:
        record = {"state": state, "pid": os.getpid(), "host": socket.gethostname(), "updated": time.time(), **info}
        write_text_atomic(self.work_dir / "states" / f"{name}.json", json.dumps(record, default=str))

    def states(self) -> dict[str, dict[str, Any]]:
        """{task name: its last state record} for the tasks a worker has taken."""
        out = {}
        for path in (self.work_dir / "states").glob("*.json"):
            try:
                out[path.stem] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):  # being replaced: read it at the next poll
                continue
        return out


# --------------------------------------------------------------------------- the worker


def work(queue_dir: str, watch_pid: int | None, body: Body) -> dict[str, int]:
    """A worker job: take tasks from the queue until none is left; returns {state: count}.

    A task whose body raises is marked ``failed`` (with the error) and the worker goes on; Ctrl-C, or the
    end of ``watch_pid`` (the sweep's process), marks the task ``stopped`` and ends the worker.
    """
    # Ctrl-C raises KeyboardInterrupt here even when the sweep was started in the background, where
    # SIGINT comes ignored (the watch below interrupts this process the same way)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if watch_pid is not None:
        _stop_when_gone(watch_pid)
    queue = TaskQueue(Path(queue_dir))
    counts: dict[str, int] = {}
    for task in queue.todo:
        if not queue.claim(task.name):
            continue
        started = time.time()
        queue.set_state(task.name, "starting", started=started)
        try:
            body(task.spec, queue.context, lambda state: queue.set_state(task.name, state, started=started))
        except KeyboardInterrupt:
            queue.set_state(task.name, "stopped", started=started, ended=time.time())
            raise
        except Exception as e:  # one run's failure is reported; the other runs go on
            queue.set_state(task.name, "failed", started=started, ended=time.time(),
                            error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())  # fmt: skip
            counts["failed"] = counts.get("failed", 0) + 1
            continue
        queue.set_state(task.name, "done", started=started, ended=time.time())
        counts["done"] = counts.get("done", 0) + 1
    return counts


def process_alive(pid: int) -> bool:
    """Is process ``pid`` running (a zombie, killed but not yet reaped, counts as gone)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here: the signal test above is all we have
    return state not in ("Z", "X")


def _stop_when_gone(pid: int, interval_s: float = 0.5, grace_s: float = 60.0) -> None:
    """When process ``pid`` ends, interrupt this process's main thread as Ctrl-C would (the training loop
    stops after its step and the run cache removes the half-made run); exit for good ``grace_s`` later."""

    def watch() -> None:
        while process_alive(pid):
            time.sleep(interval_s)
        _thread.interrupt_main()
        time.sleep(grace_s)
        os._exit(3)

    threading.Thread(target=watch, name="adaface-sweep-watch", daemon=True).start()


# --------------------------------------------------------------------------- submitting


@contextmanager
def _job_environment(threads: int) -> Iterator[None]:
    """The environment the workers start with: ``threads`` threads for OpenMP and BLAS, OpenMP threads
    that sleep when idle, and this checkout's ``adaface_lab`` first on the import path."""
    import adaface_lab

    root = str(Path(adaface_lab.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    new = {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    new.update(OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=root + (os.pathsep + path if path else ""))
    with mock.patch.dict(os.environ, new):  # restored afterwards, whatever happens
        yield


def run_queue(queue: TaskQueue, execution: Execution, body: Body, on_poll: Callable[[], None]) -> list[str]:
    """Submit ``min(jobs, tasks to do)`` workers, call ``on_poll()`` every ``poll_s`` seconds until they
    have all ended, and return the errors of workers that died (a failed run is a task state, not this)."""
    n = min(execution.jobs, len(queue.todo))
    if n == 0:
        on_poll()
        return []
    executor = execution.make_executor(queue.folder / "logs")
    watch = os.getpid() if execution.executor == "local" else None
    with _job_environment(execution.threads()):
        jobs = [executor.submit(work, str(queue.folder), watch, body) for _ in range(n)]
    while not all(job.done() for job in jobs):
        on_poll()
        time.sleep(execution.poll_s)
    on_poll()
    errors = []
    for job in jobs:
        try:
            error = job.exception()
        except Exception as e:  # the worker left no result (killed)
            error = e
        if error is not None:
            lines = str(error).strip().splitlines() or [type(error).__name__]
            errors.append(f"worker {job.job_id}: {lines[-1]}")
    return errors
