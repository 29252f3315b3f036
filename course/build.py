"""Build the course site: stage its pages, then ``mkdocs build`` (mkdocs-jupyter renders the notebooks).

::

    python course/build.py              # site/ from the notebooks as stored (no outputs), in seconds
    SITE_EXECUTE=true python course/build.py   # each notebook run first, in its small mode (minutes)

Staged into ``course/_pages/`` (git-ignored, as is mkdocs-jupyter's ``course/.cache/``): ``course/*.md``, every ``notebooks/NN_*.ipynb`` (under
``notebooks/``, so new ones join the site with no edit here) and ``exercises/README.md`` as
``exercises.md``. The exercise masters hold the solutions and are never published.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PAGES = HERE / "_pages"


def stage() -> Path:
    """Fill ``course/_pages`` afresh; returns it."""
    shutil.rmtree(PAGES, ignore_errors=True)
    (PAGES / "notebooks").mkdir(parents=True)
    for page in HERE.glob("*.md"):
        shutil.copy2(page, PAGES / page.name)
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        shutil.copy2(notebook, PAGES / "notebooks" / notebook.name)
    shutil.copy2(ROOT / "exercises" / "README.md", PAGES / "exercises.md")
    return PAGES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site-dir", type=Path, default=ROOT / "site", help="where to build (default: site/)")
    args = parser.parse_args(argv)
    stage()
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(HERE / "mkdocs.yml"),
               "--site-dir", str(args.site_dir.resolve())]
    return subprocess.call(command, cwd=HERE, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


if __name__ == "__main__":
    sys.exit(main())
