"""The course site builds (``make site``: mkdocs with mkdocs-jupyter, notebooks as stored, not executed):
one page per teaching notebook under its own title, the exercises page, and no exercise solutions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a subprocess build: about 15 s


def test_site_builds_a_page_per_notebook_and_publishes_no_solutions(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, str(ROOT / "course" / "build.py"), "--site-dir", str(site)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks
    for notebook in notebooks:
        title = next(line for cell in json.loads(notebook.read_text())["cells"] if cell["cell_type"] == "markdown"
                     for line in "".join(cell["source"]).splitlines() if line.startswith("# "))[2:]
        page = (site / "notebooks" / f"{notebook.stem}.html").read_text(encoding="utf-8")
        assert title.split(":")[0] in page, (notebook.name, title)
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "How to follow it" in index and "notebooks/01_margins_and_gst.html" in index
    assert "grader.check" in (site / "exercises.html").read_text(encoding="utf-8")
    published = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in site.rglob("*.html"))
    assert not re.search(r"#\s*(BEGIN )?SOLUTION", published)  # the masters stay private
