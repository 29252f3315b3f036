"""The shape rules of the code base that a reader relies on, checked so they stay true.

No function in ``adaface_lab/`` or ``app/`` is longer than :data:`MAX_LINES` lines, and neither is a page's
top-level script (``app/views/*.py`` outside its functions): a reader takes in either in one screenful or two.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 100
"""The longest a function (or a page's top-level script) may be, counted from its ``def`` to its last line."""


def _python_files() -> list[Path]:
    return sorted(p for folder in ("adaface_lab", "app") for p in (ROOT / folder).rglob("*.py"))


def _functions(tree: ast.AST) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function and method, nested ones included."""
    return [(node.name, node.lineno, node.end_lineno - node.lineno + 1)  # type: ignore[operator]
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _script_lines(tree: ast.Module) -> int:
    """Lines of a module's top-level statements other than imports, definitions and its docstring."""
    skip = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    body = [s for s in tree.body if not isinstance(s, skip)]
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return sum(s.end_lineno - s.lineno + 1 for s in body)  # type: ignore[operator]


def test_the_scan_sees_the_code() -> None:
    files = _python_files()
    assert len(files) > 30 and any(p.name == "train.py" for p in files)
    longest = max(length for p in files for _, _, length in _functions(ast.parse(p.read_text())))
    assert longest > 40  # a scan that found nothing would pass every limit


def test_the_length_rule_catches_a_long_function() -> None:
    source = "def long():\n" + "    x = 1\n" * MAX_LINES + "    return x\n"
    assert [length for _, _, length in _functions(ast.parse(source))] == [MAX_LINES + 2]


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_is_longer_than_the_limit(path: Path) -> None:
    tree = ast.parse(path.read_text())
    too_long = [f"{name} (line {line}): {length} lines" for name, line, length in _functions(tree)
                if length > MAX_LINES]
    assert not too_long, f"{path.relative_to(ROOT)}: split these (limit {MAX_LINES} lines): {too_long}"
    if path.parent.name == "views":
        assert _script_lines(tree) <= MAX_LINES, (
            f"{path.relative_to(ROOT)}: the page's top-level script is {_script_lines(tree)} lines; "
            f"move sections into functions (limit {MAX_LINES})")
