"""Helpers of the AppTest checks of the app's pages: open a page as the server would (through the router,
with a query string), read its messages, and an empty runs folder for every test (the repository's runs/
is never read)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app" / "streamlit_app.py"
sys.path.insert(0, str(ROOT / "app"))  # the pages' helpers (app/_run_folders.py, app/_uploads.py, ...)

RUNS_PAGE = "views/training_runs.py"
INSPECT_PAGE = "views/quality_inspector.py"
#: A small ir_tiny (a few channels, 32 px) that trains in seconds.
TINY_BACKBONE = {"input_size": 32, "channels": [8, 16, 16, 32], "stem_channels": 8, "embedding_size": 32}


def open_page(page: str, query: dict[str, str] | None = None) -> AppTest:
    """The app run from its router, switched to ``page`` (with ``query`` in the URL); no exception."""
    at = AppTest.from_file(str(APP), default_timeout=90)
    if query:
        at.query_params.update(query)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest, kind: str) -> list[str]:
    """The texts of the page's elements of one kind ("info", "error", "warning", "success", ...)."""
    return [e.value for e in getattr(at, kind)]


@pytest.fixture(autouse=True)
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty runs folder the app uses by default (import this fixture into a test module to use it)."""
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("ADAFACE_LAB_RUNS", str(root))
    return root
