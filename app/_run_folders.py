"""Run folders for the app's pages: where they are, which folders hold a run, and reading one (cached).

No analysis and no file layout here: a folder's files are :mod:`adaface_lab.runs`' to know
(:class:`~adaface_lab.runs.RunFolder`, :func:`~adaface_lab.runs.load_run`).

Environment (for tests and for people who keep runs elsewhere): ``ADAFACE_LAB_RUNS``, the default runs
folder (default: ``runs/`` in the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from adaface_lab.runs import Run, RunFolder, load_run

ROOT = Path(__file__).resolve().parents[1]


def runs_root() -> Path:
    """The default folder holding run folders."""
    return Path(os.environ.get("ADAFACE_LAB_RUNS", ROOT / "runs"))


def resolve(path_text: str) -> Path:
    """A user-typed path: ``~`` expanded, relative paths taken from the repository root."""
    path = Path(path_text.strip()).expanduser()
    return path if path.is_absolute() else ROOT / path


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return str(path)


def find_runs(path: Path) -> list[Path]:
    """``[path]`` if it holds a recorded run, else its sub-folders that do, newest first."""
    if RunFolder(path).has_records():
        return [path]
    if not path.is_dir():
        return []
    runs = [p for p in path.iterdir() if p.is_dir() and RunFolder(p).has_records()]
    return sorted(runs, key=lambda p: (-RunFolder(p).modified(), p.name))


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
