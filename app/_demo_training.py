"""The Training runs page's demo training: ``adaface-lab train`` in a child process that outlives page
reruns, followed through the progress file the run writes (:class:`adaface_lab.runs.Progress`).

Environment: ``ADAFACE_LAB_DEMO_ARGS``, extra ``adaface-lab train`` options for the demo (e.g. a smaller
model, for tests).
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _run_folders import ROOT, runs_root
from adaface_lab.runs import Progress, RunFolder

_CHILDREN: dict[int, subprocess.Popen] = {}  # children of this server, so their exit codes are read


@dataclass
class DemoStatus:
    """What the demo is doing: ``running``, ``fraction`` of its steps done, a ``text`` line; when it has
    ended, its ``returncode`` (None when another server started it) and the end of its log."""

    running: bool
    fraction: float
    text: str
    returncode: int | None = None
    log_tail: str = ""


class DemoTraining:
    """The demo run in ``run_dir`` (default ``<runs root>/demo``): start it, follow it, stop it.

    A pid file beside the run says which process trains it and since when; the run's own progress file
    says how far it is.
    """

    LOG = "train.log"
    PID = ".demo.pid"

    def __init__(self, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir or runs_root() / "demo"

    def command(self, epochs: int) -> list[str]:
        """``adaface-lab train`` on the default config with ``epochs`` epochs. ``--overwrite``: the page
        offers the demo only where no recorded run is, so what it replaces is a demo that never finished
        an epoch."""
        extra = shlex.split(os.environ.get("ADAFACE_LAB_DEMO_ARGS", ""))
        return [sys.executable, "-m", "adaface_lab.cli", "train", "--out", str(self.run_dir),
                "--epochs", str(int(epochs)), "--overwrite", *extra]  # fmt: skip

    def start(self, epochs: int) -> None:
        """Start the training in a child process (its output goes to the run's ``train.log``)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        started = time.time()
        with open(self.run_dir / self.LOG, "wb") as log:
            proc = subprocess.Popen(self.command(epochs), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)  # fmt: skip
        (self.run_dir / self.PID).write_text(f"{proc.pid} {int(epochs)} {started!r}\n")
        _CHILDREN[proc.pid] = proc

    def _pid_file(self) -> tuple[int, int, float] | None:
        try:
            pid, epochs, started = (self.run_dir / self.PID).read_text().split()
            return int(pid), int(epochs), float(started)
        except (OSError, ValueError):
            return None

    def progress(self, since: float = 0.0) -> Progress | None:
        """The run's progress file, when written at or after ``since`` (a Unix time) and readable."""
        try:
            progress = RunFolder(self.run_dir).read_progress()
        except ValueError:
            return None
        return progress if progress is not None and progress.updated >= since else None

    def status(self) -> DemoStatus | None:
        """How the demo is doing, or None when none was started in this folder (or its end was reported)."""
        found = self._pid_file()
        if found is None:
            return None
        pid, epochs, started = found
        running = _alive(pid)
        progress = self.progress(since=started)
        fraction = progress.fraction if progress is not None else 0.0
        if running:
            return DemoStatus(True, fraction, _describe(progress))
        log = self.run_dir / self.LOG
        tail = log.read_bytes()[-4000:].decode("utf-8", "replace") if log.is_file() else ""
        proc = _CHILDREN.pop(pid, None)  # its pid may be reused later: forget it
        (self.run_dir / self.PID).unlink(missing_ok=True)
        done = progress.step // progress.steps_per_epoch if progress is not None and progress.steps_per_epoch else 0
        return DemoStatus(False, fraction, f"{done} of {epochs} epochs done",
                          proc.returncode if proc is not None else None, tail)  # fmt: skip

    def stop(self) -> None:
        """Interrupt the demo (SIGINT: it checkpoints and exits)."""
        found = self._pid_file()
        if found is not None and _alive(found[0]):
            os.kill(found[0], signal.SIGINT)


def _describe(progress: Progress | None) -> str:
    """A line for the progress bar."""
    if progress is None or progress.state == "preparing":
        return "starting (building the data set and the model) …"
    text = f"epoch {progress.epoch}/{progress.epochs}: step {progress.step_in_epoch}/{progress.steps_per_epoch}"
    if math.isfinite(progress.eta_s):
        text += f", about {_duration(progress.eta_s)} left"
    return text


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _alive(pid: int) -> bool:
    proc = _CHILDREN.get(pid)
    if proc is not None:
        return proc.poll() is None
    proc_dir = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():  # Linux: a reused pid is not ours, a zombie is not running
        try:
            cmdline = (proc_dir / "cmdline").read_bytes()
            state = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        # the command line reads empty for a moment around exec: judge by the state alone then
        return state != "Z" and (not cmdline or b"adaface_lab" in cmdline)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
