"""Build the exercises with otter-grader, and grade a notebook against their checks in this process.

::

    python exercises/build.py                  # every master → exercises/dist/<name>/{student,autograder}
    python exercises/build.py --no-run-tests   # skip otter's own run of the solutions in a kernel

Each master notebook here (``NN_*.ipynb``, otter's assign format: solutions, public and hidden tests in
one notebook) becomes, under ``exercises/dist/<name>/`` (git-ignored):

* ``student/<name>.ipynb`` with stubs (``...``) and ``grader.check("qN")`` cells, and ``student/tests/``,
  the public checks a student runs;
* ``autograder/``: the solution notebook, every check (hidden ones too) and otter's autograder zip, which
  grades a submission without docker: ``otter run -a autograder/<name>-autograder_*.zip submission.ipynb``.

:func:`grade` is what the test suite uses to show that the solutions pass every check and untouched stubs
fail them: it runs a notebook's code cells in this process (no kernel, no docker) and the checks on the
namespace they leave.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DIST = HERE / "dist"


def masters() -> list[Path]:
    """The master notebooks, in order."""
    return sorted(HERE.glob("[0-9][0-9]_*.ipynb"))


def build(master: Path, out: Path, run_tests: bool = True) -> Path:
    """``otter assign`` of one master into ``out/<master's stem>/`` (replaced); returns that folder.

    ``run_tests``: otter then runs the solution notebook in a kernel and fails if a check does not pass.
    """
    from otter.assign import main as assign

    target = out / master.stem
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    assign(str(master), str(target), no_run_tests=not run_tests, no_pdfs=True)
    return target


@dataclass
class Graded:
    """The outcome of :func:`grade`: per question, whether each of its checks passed; cell errors."""

    checks: dict[str, list[bool]]
    errors: list[str]

    def passed(self, question: str) -> bool:
        return all(self.checks[question])


def _is_otter_cell(source: str) -> bool:
    return source.lstrip().startswith("# Initialize Otter") or "grader." in source


def run_cells(notebook: Path) -> tuple[dict, list[str]]:
    """Execute the notebook's code cells (otter's own cells left out) in a fresh namespace, from its folder.

    A failing cell is recorded and the next one runs, as in a notebook run top to bottom by hand.
    Returns the namespace and one line per failed cell.
    """
    import nbformat

    cells = [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
    env: dict = {"__name__": "__main__"}
    errors = []
    with contextlib.chdir(notebook.parent), contextlib.redirect_stdout(io.StringIO()):
        for i, source in enumerate(cells):
            if _is_otter_cell(source):
                continue
            try:
                exec(compile(source, f"{notebook.name} cell {i}", "exec"), env)
            except Exception as e:  # a stub (``...``) may fail in use: that is the point
                errors.append(f"cell {i}: {type(e).__name__}: {e}")
    return env, errors


def grade(notebook: Path, tests: Path) -> Graded:
    """Run ``notebook`` (:func:`run_cells`), then every check in ``tests/qN.py`` on what it left."""
    from otter.test_files import create_test_file

    env, errors = run_cells(notebook)
    checks = {}
    for path in sorted(tests.glob("q*.py"), key=lambda p: int(p.stem[1:])):
        test = create_test_file(str(path), None)
        with contextlib.redirect_stdout(io.StringIO()):
            test.run(env)
        checks[path.stem] = [result.passed for result in test.test_case_results]
    return Graded(checks, errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DIST, help="where to build (default: exercises/dist)")
    parser.add_argument("--no-run-tests", action="store_true",
                        help="skip otter's run of each solution notebook in a kernel")
    args = parser.parse_args(argv)
    for master in masters():
        folder = build(master, args.out, run_tests=not args.no_run_tests)
        print(f"{master.name} → {folder}/student (for students), {folder}/autograder (for grading)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
