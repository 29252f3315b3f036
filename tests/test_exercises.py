"""The exercises (exercises/*.ipynb, otter-grader masters): built with otter assign, the solutions pass every
check, hidden ones included, and the untouched student stubs fail every question's checks, public and hidden.

The notebooks run in this process (exercises/build.py: ``grade``), not in a kernel or docker, so this stays
fast; ``make exercises`` also has otter run each solution notebook in a real kernel.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _build_module():
    spec = importlib.util.spec_from_file_location("exercises_build", ROOT / "exercises" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


build = _build_module()
MASTERS = build.masters()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("exercises")
    return {master.stem: build.build(master, out, run_tests=False) for master in MASTERS}


def test_three_sets_of_five_to_ten_exercises() -> None:
    assert [m.stem for m in MASTERS] == ["01_margins_and_gst", "02_adaptive_margin", "03_toy"]
    questions = [line for m in MASTERS for line in m.read_text().splitlines() if '"name: q' in line]
    assert 5 <= len(questions) <= 10, questions


@pytest.mark.parametrize("name", [m.stem for m in MASTERS])
def test_solutions_pass_every_check(built: dict[str, Path], name: str) -> None:
    folder = built[name] / "autograder"
    graded = build.grade(folder / f"{name}.ipynb", folder / "tests")
    assert not graded.errors, graded.errors
    assert graded.checks and all(graded.passed(q) for q in graded.checks), graded.checks


@pytest.mark.parametrize("name", [m.stem for m in MASTERS])
def test_untouched_stubs_fail_every_question(built: dict[str, Path], name: str) -> None:
    student = built[name] / "student" / f"{name}.ipynb"
    for tests in (built[name] / "student" / "tests", built[name] / "autograder" / "tests"):
        graded = build.grade(student, tests)
        failing = {q for q in graded.checks if not graded.passed(q)}
        assert graded.checks and failing == set(graded.checks), (tests, graded.checks)


@pytest.mark.parametrize("name", [m.stem for m in MASTERS])
def test_students_get_stubs_checks_and_no_answers(built: dict[str, Path], name: str) -> None:
    notebook = json.loads((built[name] / "student" / f"{name}.ipynb").read_text())
    sources = ["".join(cell["source"]) for cell in notebook["cells"]]
    checked = [s for s in sources if s.startswith("grader.check(")]
    assert len(checked) == len(list((built[name] / "autograder" / "tests").glob("q*.py")))
    assert not any("SOLUTION" in s for s in sources)
    assert any("..." in s for s in sources)
    for public in (built[name] / "student" / "tests").glob("q*.py"):
        assert "'hidden': True" not in public.read_text()  # hidden checks stay with the autograder
