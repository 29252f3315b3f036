"""Run folders for the app's pages: where they are, which folders hold a run, and reading one (cached).

No analysis and no file layout here: a folder's files are :mod:`adaface_lab.runs`' to know
(:class:`~adaface_lab.runs.RunFolder`, :func:`~adaface_lab.runs.load_run`).

Environment:

- ``ADAFACE_LAB_RUNS``: the default runs folder (default: ``runs/`` in the repository, or the course folder).
- ``ADAFACE_LAB_ROOT``: a course folder, for an instructor who serves the app to a class. The run-folder field
  and the checkpoint path then read only folders and files under it (relative paths start there, ``~`` is not
  expanded); any other path is refused with the same message whether or not it exists, and without being
  looked at.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from adaface_lab.runs import Run, RunFolder, load_run

ROOT = Path(__file__).resolve().parents[1]
#: The longest path the app's path fields take (Linux's PATH_MAX).
MAX_PATH_CHARS = 4096


class OutsideRootError(ValueError):
    """A typed path outside the course folder (``ADAFACE_LAB_ROOT``), refused without being looked at."""


def course_root() -> Path | None:
    """``ADAFACE_LAB_ROOT``, resolved: the only folder the app reads runs and checkpoints from; None when unset."""
    text = os.environ.get("ADAFACE_LAB_ROOT", "").strip()
    return Path(os.path.realpath(text)) if text else None


def runs_root() -> Path:
    """The default folder holding run folders."""
    return Path(os.environ.get("ADAFACE_LAB_RUNS") or course_root() or ROOT / "runs")


def resolve(path_text: str) -> Path:
    """A user-typed path: relative paths start at the repository (``~`` expanded), or, on a course server, at
    the course folder, outside which nothing is read (:class:`OutsideRootError`, the same message for every
    path). ValueError for a path longer than :data:`MAX_PATH_CHARS`."""
    text = path_text.strip()
    if len(text) > MAX_PATH_CHARS:
        raise ValueError(f"a path of {len(text):,} characters is longer than any this app reads ({MAX_PATH_CHARS:,})")
    root = course_root()
    if root is None:
        path = Path(text).expanduser()
        return path if path.is_absolute() else ROOT / path
    real = Path(os.path.realpath(root / text))  # `..` and links followed: where it really is
    if not real.is_relative_to(root):
        raise OutsideRootError(f"`{text[:200]}` is outside the folder this server shares: type a path under it "
                               "(relative paths start there)")  # fmt: skip
    return real


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the course folder, or to the repository, when inside it."""
    try:
        return str(path.resolve().relative_to(course_root() or ROOT.resolve()))
    except (ValueError, OSError):
        return str(path)


def find_runs(path: Path) -> list[Path]:
    """``[path]`` if it holds a recorded run, else its sub-folders that do, newest first (none when the path
    cannot be looked at: a name too long for the file system, a folder without permission)."""
    try:
        if RunFolder(path).has_records():
            return [path]
        if not path.is_dir():
            return []
        runs = [p for p in path.iterdir() if p.is_dir() and RunFolder(p).has_records()]
        return sorted(runs, key=lambda p: (-RunFolder(p).modified(), p.name))
    except OSError:
        return []


def checkpoint_file(path_text: str) -> Path:
    """A typed checkpoint path, as a file the app may read. Every path that is not one (missing, a folder, a
    name the file system refuses, outside the course folder) gets the same ValueError: the field never says
    whether a path exists."""
    try:
        path = resolve(path_text)
        if path.is_file():
            return path
    except OutsideRootError:
        raise
    except (OSError, ValueError):
        pass
    raise ValueError(f"no checkpoint this app can read at `{path_text.strip()}`")


def find_checkpoints(root: Path) -> list[Path]:
    """The checkpoints of the run folders under ``root``, newest first."""
    if not root.is_dir():
        return []
    found = [RunFolder(p).checkpoint for p in root.iterdir() if RunFolder(p).checkpoint.is_file()]
    return sorted(found, key=lambda p: -p.stat().st_mtime)


def load(path: Path) -> Run:
    """:func:`load_run`, cached on the folder and its files' latest modification time (a run still being
    written is read again after each epoch)."""
    return _load(str(path), RunFolder(path).modified())


@st.cache_data(max_entries=8, show_spinner="Reading the run …")
def _load(path: str, modified: float) -> Run:
    del modified  # part of the cache key only
    return load_run(path)
