"""Run folders for the training-runs page: finding them, loading them (cached), and the demo training.

No analysis here: loading is :func:`adaface_lab.analysis.load_run`; the demo is the ``adaface-lab train``
command (:mod:`adaface_lab.train`) run in a child process, whose progress is read from the files it
writes (``epochs.csv``) and from its tqdm bar on stderr (``train()`` takes no progress callback yet).

Environment (for tests and for people who keep runs elsewhere):

- ``ADAFACE_LAB_RUNS``: the default runs folder (default: ``runs/`` in the repository).
- ``ADAFACE_LAB_DEMO_ARGS``: extra ``adaface-lab train`` options for the demo, e.g. a smaller model.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from adaface_lab.analysis import Run, load_run

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("records.parquet", "steps.parquet", "epochs.csv", "config.json")
DEMO_NAME = "demo"
_LOG = "train.log"
_PID = ".demo.pid"
# tqdm's bar: "epoch 2/4:  40%|████      | 15/38 [00:05<00:08, ...]"
_BAR = re.compile(r"(?P<desc>[^\r\n|]*?):\s*(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)")
_EPOCH = re.compile(r"epoch (\d+)/(\d+)")


def runs_root() -> Path:
    """The default folder holding run folders."""
    return Path(os.environ.get("ADAFACE_LAB_RUNS", ROOT / "runs"))


def resolve(path_text: str) -> Path:
    """A user-typed path: ``~`` expanded, relative paths taken from the repository root."""
    path = Path(path_text.strip()).expanduser()
    return path if path.is_absolute() else ROOT / path


def is_run(path: Path) -> bool:
    """True when ``path`` holds a run's ``records.parquet`` (file or dataset folder)."""
    return (path / "records.parquet").exists()


def find_runs(path: Path) -> list[Path]:
    """``[path]`` if it is a run folder, else its sub-folders that are runs, newest first."""
    if is_run(path):
        return [path]
    if not path.is_dir():
        return []
    runs = [p for p in path.iterdir() if p.is_dir() and is_run(p)]
    return sorted(runs, key=lambda p: (-mtime(p), p.name))


def mtime(run_dir: Path) -> float:
    """Latest modification time of a run's files (the records folder's part files included)."""
    latest = 0.0
    for name in RUN_FILES:
        p = run_dir / name
        if p.is_dir():
            for q in p.iterdir():
                latest = max(latest, q.stat().st_mtime)
        if p.exists():
            latest = max(latest, p.stat().st_mtime)
    return latest


@st.cache_data(max_entries=8, show_spinner="Reading the run …")
def load(path: str, modified: float) -> Run:
    """:func:`load_run` cached on the folder and its modification time (a run still being written
    is read again after each epoch)."""
    del modified  # part of the cache key only
    return load_run(path)


# --------------------------------------------------------------------------- the demo training


@dataclass
class DemoStatus:
    """What the demo run in ``run_dir`` is doing: ``running``, ``fraction`` done, a ``text`` line."""

    running: bool
    fraction: float
    text: str
    returncode: int | None = None
    log_tail: str = ""


def demo_dir() -> Path:
    return runs_root() / DEMO_NAME


def demo_command(run_dir: Path, epochs: int) -> list[str]:
    """The ``adaface-lab train`` command of the demo: the default config, ``epochs`` epochs."""
    extra = shlex.split(os.environ.get("ADAFACE_LAB_DEMO_ARGS", ""))
    return [sys.executable, "-m", "adaface_lab.cli", "train", "--out", str(run_dir),
            "--epochs", str(int(epochs)), *extra]


def start_demo(epochs: int) -> Path:
    """Start the demo training in a child process (it outlives page reruns); returns its run folder."""
    run_dir = demo_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(run_dir / _LOG, "wb") as log:
        proc = subprocess.Popen(demo_command(run_dir, epochs), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    (run_dir / _PID).write_text(f"{proc.pid} {int(epochs)}\n")
    _CHILDREN[proc.pid] = proc
    return run_dir


_CHILDREN: dict[int, subprocess.Popen] = {}  # children of this server, so their exit codes are read


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


def demo_status(run_dir: Path | None = None) -> DemoStatus | None:
    """The demo's progress, or None when no demo was started in ``run_dir`` (default the demo folder)."""
    run_dir = run_dir or demo_dir()
    pid_file = run_dir / _PID
    if not pid_file.is_file():
        return None
    try:
        pid_text, epochs_text = pid_file.read_text().split()
        pid, epochs = int(pid_text), int(epochs_text)
    except ValueError:
        return None
    log = run_dir / _LOG
    tail = log.read_bytes()[-4000:].decode("utf-8", "replace") if log.is_file() else ""
    done = _epochs_done(run_dir)
    running = _alive(pid)
    fraction, text = done / max(epochs, 1), f"{done} of {epochs} epochs done"
    bars = list(_BAR.finditer(tail))
    if running and bars:
        bar = bars[-1]
        n, total = int(bar["n"]), max(int(bar["total"]), 1)
        epoch = _EPOCH.search(bar["desc"])
        if epoch:
            fraction = (int(epoch[1]) - 1 + n / total) / max(int(epoch[2]), 1)
            text = f"epoch {epoch[1]}/{epoch[2]}: step {n}/{total}"
        else:
            text = f"{bar['desc'].strip() or 'preparing'}: {n}/{total}"
    elif running:
        text = "starting (building the data set and the model) …"
    code = None
    if not running:
        proc = _CHILDREN.pop(pid, None)  # its pid may be reused later: forget it
        code = proc.returncode if proc is not None else None
        pid_file.unlink(missing_ok=True)
    return DemoStatus(running, min(max(fraction, 0.0), 1.0), text, code, tail)


def stop_demo(run_dir: Path | None = None) -> None:
    """Interrupt the demo (SIGINT: it checkpoints and exits)."""
    pid_file = (run_dir or demo_dir()) / _PID
    if pid_file.is_file():
        pid = int(pid_file.read_text().split()[0])
        if _alive(pid):
            os.kill(pid, signal.SIGINT)


def _epochs_done(run_dir: Path) -> int:
    path = run_dir / "epochs.csv"
    if not path.is_file():
        return 0
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return max(len(lines) - 1, 0)
