"""The Training runs page's demo training: ``adaface-lab train`` in a child process that outlives page
reruns, followed through the progress file the run writes (:class:`adaface_lab.runs.Progress`). Each demo
trains into a new folder of the runs folder (``demo``, ``demo-2``, …): no run is ever replaced, whoever
presses the button on a shared server.

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

import torch

from _run_folders import ROOT, runs_root
from adaface_lab.backbones import build_backbone
from adaface_lab.cli import build_parser, train_overrides
from adaface_lab.config import TrainConfig
from adaface_lab.runs import Progress, RunFolder

_CHILDREN: dict[int, subprocess.Popen] = {}  # children of this server, so their exit codes are read


@dataclass
class DemoStatus:
    """What the demo is doing: ``running``, ``fraction`` of its steps done, a ``text`` line; when it has
    ended, its ``returncode`` (None when another server started it) and the end of its log."""

    running: bool
    fraction: float
    text: str
    run_dir: Path
    returncode: int | None = None
    log_tail: str = ""


class DemoTraining:
    """The demo runs in the runs folder ``root`` (default :func:`runs_root`): start one, follow it, stop it.

    A pid file in ``root`` says which process trains which folder, and since when; the run's own progress
    file says how far it is.
    """

    LOG = "train.log"
    PID = ".demo.pid"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or runs_root()

    def next_dir(self) -> Path:
        """The folder the next demo trains into: ``demo``, else ``demo-2``, ``demo-3``, … (the first that does
        not exist)."""
        names = ("demo", *(f"demo-{k}" for k in range(2, 10_000)))
        return next(self.root / n for n in names if not os.path.lexists(self.root / n))

    def command(self, epochs: int, run_dir: Path) -> list[str]:
        """``adaface-lab train`` on the default config (and ``ADAFACE_LAB_DEMO_ARGS``) with ``epochs`` epochs,
        into ``run_dir`` (a new folder: nothing is overwritten)."""
        extra = shlex.split(os.environ.get("ADAFACE_LAB_DEMO_ARGS", ""))
        return [sys.executable, "-m", "adaface_lab.cli", "train", "--out", str(run_dir), "--epochs",
                str(int(epochs)), *extra]  # fmt: skip

    def describe(self, epochs: int) -> str:
        """What the demo trains, read from its own command line (so the page says what it will do)."""
        try:
            cfg = TrainConfig.from_overrides(train_overrides(build_parser().parse_args(
                self.command(epochs, self.next_dir())[3:])))  # fmt: skip
            if not cfg.chosen_from_data:
                with torch.device("meta"):
                    size = build_backbone(cfg.backbone, **cfg.backbone_params).input_size
        except (SystemExit, ValueError, TypeError) as e:
            return f"`adaface-lab train` with the options of ADAFACE_LAB_DEMO_ARGS, which it refuses ({e})"
        if cfg.chosen_from_data:  # a folder: its crop, image size and backbone are chosen when the run starts
            model = "the crop, image size and backbone chosen from its images (printed in the log)"
        else:
            model = (f"images made, augmented and scored with BRISQUE at {cfg.image_size} px, the `{cfg.backbone}` "
                     f"IResNet fed at {size} px")
        data = (f"SyntheticFaces ({cfg.num_identities:,} rendered identities × {cfg.images_per_identity} images, "
                f"each with a known severity)" if cfg.data == "synthetic" else f"the identity folder `{cfg.data}`")
        probe = "every sample" if cfg.probe == "all" else f"{cfg.probe:,} probe samples"
        return (f"{data}, {model}, the {cfg.head} head, {epochs} epoch"
                f"{'s' * (epochs != 1)} of the default recipe of `adaface-lab train`, recording {probe} each epoch")

    def start(self, epochs: int) -> Path:
        """Start the training in a child process, in a new folder (its output goes to the run's ``train.log``);
        returns the folder."""
        run_dir = self.next_dir()
        run_dir.mkdir(parents=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        started = time.time()
        with open(run_dir / self.LOG, "wb") as log:
            proc = subprocess.Popen(self.command(epochs, run_dir), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)  # fmt: skip
        (self.root / self.PID).write_text(f"{proc.pid} {int(epochs)} {started!r} {run_dir.name}\n")
        _CHILDREN[proc.pid] = proc
        return run_dir

    def _pid_file(self) -> tuple[int, int, float, Path] | None:
        try:
            pid, epochs, started, name = (self.root / self.PID).read_text().split(maxsplit=3)
            return int(pid), int(epochs), float(started), self.root / name.strip()
        except (OSError, ValueError):
            return None

    def status(self) -> DemoStatus | None:
        """How the demo is doing, or None when none was started in this folder (or its end was reported)."""
        found = self._pid_file()
        if found is None:
            return None
        pid, epochs, started, run_dir = found
        running = _alive(pid)
        progress = _progress(run_dir, since=started)
        fraction = progress.fraction if progress is not None else 0.0
        if running:
            return DemoStatus(True, fraction, _describe(progress), run_dir)
        log = run_dir / self.LOG
        tail = log.read_bytes()[-4000:].decode("utf-8", "replace") if log.is_file() else ""
        proc = _CHILDREN.pop(pid, None)  # its pid may be reused later: forget it
        (self.root / self.PID).unlink(missing_ok=True)
        done = progress.step // progress.steps_per_epoch if progress is not None and progress.steps_per_epoch else 0
        return DemoStatus(False, fraction, f"{done} of {epochs} epochs done", run_dir,
                          proc.returncode if proc is not None else None, tail)  # fmt: skip

    def stop(self) -> None:
        """Interrupt the demo (SIGINT: it checkpoints and exits)."""
        found = self._pid_file()
        if found is not None and _alive(found[0]):
            os.kill(found[0], signal.SIGINT)


def _progress(run_dir: Path, since: float = 0.0) -> Progress | None:
    """A run's progress file, when written at or after ``since`` (a Unix time) and readable."""
    try:
        progress = RunFolder(run_dir).read_progress()
    except ValueError:
        return None
    return progress if progress is not None and progress.updated >= since else None


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
