"""The teaching notebooks' shape (without running them: pytest --nbval-lax notebooks/ does that), the
run cache they share (adaface_lab.runs.get_or_train), their figure display (adaface_lab.notebook_display)
and the headless renderer (adaface_lab.reports)."""

from __future__ import annotations

import ast
import base64
import json
import sys
from pathlib import Path

import nbformat
import plotly.graph_objects as go
import pytest

from adaface_lab import notebook_display, reports, runs

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXPECTED = ["01_margins_and_gst", "02_adaptive_margin", "03_norm_vs_quality", "04_trajectories",
            "05_adaface_vs_arcface", "07_norm_as_quality"]
COMMON_PARAMETERS = {"MODE", "DATA", "EPOCHS", "DEVICE", "OUT", "STATIC_IMAGES"}

# Modules a notebook may import: the lab, array/frame/tensor containers, the display, the stdlib.
ALLOWED_IMPORTS = {"adaface_lab", "numpy", "pandas", "torch", "IPython"}
# Elementary maths a notebook must not compute itself (it calls adaface_lab for that).
MATH_FUNCTIONS = {
    "cos", "sin", "tan", "acos", "asin", "atan", "atan2", "arccos", "arcsin", "arctan", "arctan2",
    "cosh", "sinh", "tanh", "exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "erf",
    "corrcoef", "pearsonr", "spearmanr", "polyfit", "lstsq",
}
# Figure construction belongs in adaface_lab.plots.
PLOTTING_CALLS = {"Figure", "make_subplots", "add_trace", "add_scatter", "Scatter", "Heatmap", "Bar"}


def _notebook(name: str) -> nbformat.NotebookNode:
    return nbformat.read(str(NOTEBOOKS / f"{name}.ipynb"), as_version=4)


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def _parse(cell: nbformat.NotebookNode) -> ast.Module:
    lines = [line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines))


def test_the_notebooks_exist_and_are_listed_in_order() -> None:
    assert [p.stem for p in reports.list_notebooks(NOTEBOOKS)] == EXPECTED
    assert [p.stem for p in reports.list_notebooks(NOTEBOOKS, ["3", "01_margins_and_gst"])] == [EXPECTED[2], EXPECTED[0]]
    with pytest.raises(ValueError, match="no notebook"):
        reports.list_notebooks(NOTEBOOKS, ["99"])


@pytest.mark.parametrize("name", EXPECTED)
def test_first_code_cell_is_the_papermill_parameters_cell(name: str) -> None:
    cells = _code_cells(_notebook(name))
    first = cells[0]
    assert "parameters" in first.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    assert not any("parameters" in c.metadata.get("tags", []) for c in cells[1:]), "one parameters cell only"
    names = set()
    for node in _parse(first).body:  # only NAME = literal lines: papermill overrides them one by one
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), (
            f"parameters cell holds more than assignments: {ast.unparse(node)}")
        ast.literal_eval(node.value)
        names.add(node.targets[0].id)
    assert COMMON_PARAMETERS <= names, f"missing parameters {COMMON_PARAMETERS - names}"
    assert ast.literal_eval(next(n.value for n in _parse(first).body if n.targets[0].id == "MODE")) == "small"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebooks_are_committed_without_outputs(name: str) -> None:
    nb = _notebook(name)
    for cell in _code_cells(nb):
        assert cell.get("outputs", []) == [], f"stored outputs in cell {cell.get('id')}"
        assert cell.get("execution_count") is None, f"stored execution count in cell {cell.get('id')}"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebooks_import_the_lab_and_define_no_maths_or_plots(name: str) -> None:
    nb = _notebook(name)
    stdlib = set(sys.stdlib_module_names)
    used_lab = False
    asserts = 0
    for cell in _code_cells(nb):
        tree = _parse(cell)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                raise AssertionError(f"{name}: defines a function or class: {ast.unparse(node)[:80]}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for module in modules:
                    top = module.split(".")[0]
                    assert top in ALLOWED_IMPORTS or top in stdlib, f"{name}: imports {module}"
                    used_lab |= top == "adaface_lab"
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
                assert called not in MATH_FUNCTIONS, f"{name}: computes {ast.unparse(func)} itself"
                assert called not in PLOTTING_CALLS, f"{name}: builds a figure itself ({ast.unparse(func)})"
            asserts += isinstance(node, ast.Assert)
    assert used_lab, f"{name} does not use adaface_lab"
    assert asserts >= 2, f"{name} asserts fewer than two findings"
    markdown = sum(len(c.source) for c in nb.cells if c.cell_type == "markdown")
    assert markdown > 1500, f"{name}: too little narrative ({markdown} characters of markdown)"


@pytest.mark.parametrize("name", EXPECTED)
def test_links_to_the_library_point_at_existing_files(name: str) -> None:
    import re

    text = "\n".join(c.source for c in _notebook(name).cells if c.cell_type == "markdown")
    links = re.findall(r"\]\((\.\./[^)#\s]+)", text)
    assert links, f"{name} points to no library file"
    for link in links:
        assert (NOTEBOOKS / link).resolve().exists(), f"{name}: broken link {link}"


# --------------------------------------------------------------------------- the shared run cache


def test_run_key_depends_on_recorded_settings_not_on_runtime_ones() -> None:
    small = runs.notebook_config("small")
    assert runs.run_key(small) == runs.run_key(
        runs.notebook_config("small", device="cpu", out="elsewhere", num_workers=0, overwrite=True))
    assert runs.run_key(small) != runs.run_key(runs.notebook_config("small", head="arcface"))
    assert runs.run_key(small) != runs.run_key(runs.notebook_config("small", epochs=2))
    with pytest.raises(ValueError, match="small mode"):
        runs.notebook_config("small", data=str(ROOT))
    with pytest.raises(ValueError, match="mode"):
        runs.notebook_config("medium")
    with pytest.raises(ValueError, match="unknown TrainConfig"):
        runs.notebook_config("small", epoch=3)


def test_get_or_train_trains_once_then_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = dict(num_identities=6, images_per_identity=4, holdout_identities=0, epochs=2, batch_size=8,
                probe="all", brisque=False, num_workers=0, progress=False, backbone_params={"input_size": 32})
    config = runs.notebook_config("small", device="cpu", **tiny)
    run = runs.get_or_train(config, cache_dir=tmp_path)
    assert run.path.parent == tmp_path and run.path.name.startswith("adaface-")
    assert run.recorded_epochs == [1, 2] and len(run.records) == 2 * 6 * 4
    assert not list(tmp_path.glob(".*partial"))  # the work folder was moved into place

    import adaface_lab.train as train_module

    def _no_training(config: object) -> None:
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(train_module, "train", _no_training)
    again = runs.get_or_train(runs.notebook_config("small", device="cpu", **{**tiny, "num_workers": 2}),
                              cache_dir=tmp_path)
    assert again.path == run.path and again.records.equals(run.records)

    backbone = run.backbone()
    assert not backbone.training and backbone.input_size == 32
    images = run.images([0, 5], size=40)
    assert images.shape == (2, 3, 40, 40) and images.dtype.is_floating_point is False


# --------------------------------------------------------------------------- the renderer


def test_extract_figures_reads_plotly_outputs_and_their_static_images() -> None:
    fig1 = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]), layout=dict(title=dict(text="first")))
    fig2 = go.Figure(go.Bar(x=["a"], y=[1]))
    png = b"\x89PNG\r\n\x1a\nfake"
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show(fig)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"application/vnd.plotly.v1+json": json.loads(fig1.to_json()),
                                                     "text/html": "<div></div>"}),
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(png).decode()},
                               metadata={notebook_display.STATIC_MARK: True}),
        nbformat.v4.new_output("display_data", data={"application/vnd.plotly.v1+json": json.loads(fig2.to_json())}),
        nbformat.v4.new_output("stream", name="stdout", text="done"),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# x"), cell]
    found = reports.extract_figures(nb)
    assert len(found) == 2
    assert found[0][0].layout.title.text == "first" and list(found[0][0].data[0].y) == [3, 4]
    assert found[0][1] == png and found[1][1] is None
    assert found[1][0].data[0].type == "bar"


def _tiny_notebook(path: Path, *cells: str) -> None:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    parameters = nbformat.v4.new_code_cell('MODE = "full"')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, str(path))


def test_render_notebooks_writes_each_notebook_its_html_and_figures_and_reports_failures(tmp_path: Path) -> None:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _tiny_notebook(folder / "01_tiny.ipynb", "import plotly.graph_objects as go\n"
                   "from adaface_lab.notebook_display import notebook_setup, show\n"
                   "notebook_setup(MODE, False)\n"
                   "show(go.Figure(go.Bar(x=['a'], y=[1]), layout=dict(title=dict(text=f'Tiny in {MODE} mode'))))")
    _tiny_notebook(folder / "02_broken.ipynb", "print('before')", "1 / 0", "print('never')")
    ok, broken = reports.render_notebooks(mode="small", out=tmp_path / "reports", notebooks_dir=folder, png=False,
                                          progress=False)
    assert ok.ok and ok.executed == tmp_path / "reports" / "01_tiny" / "01_tiny.ipynb"
    figures = ok.folder / "figures"
    assert ok.figures == [figures / "01_tiny_in_small_mode.html"]  # MODE reached the notebook
    assert (figures / "plotly.min.js").is_file() and 'src="plotly.min.js"' in ok.figures[0].read_text()
    assert ok.html is not None and "Tiny in small mode" in ok.html.read_text()
    assert not broken.ok and "ZeroDivisionError" in (broken.error or "")
    assert broken.executed is not None  # the partly executed notebook is kept, for reading the failure
    outputs = "".join(str(o) for c in nbformat.read(str(broken.executed), as_version=4).cells for o in c.get("outputs", []))
    assert "before" in outputs and "never" not in outputs
    assert not list(tmp_path.rglob(".*.ipynb"))  # papermill's temporary files are gone


def test_figures_reuse_the_static_image_a_notebook_showed(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\nnot really"
    fig = go.Figure(go.Scatter(x=[1], y=[2]), layout=dict(title=dict(text="<b>A</b> title")))
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show(fig)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"application/vnd.plotly.v1+json": json.loads(fig.to_json())}),
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(png).decode()},
                               metadata={notebook_display.STATIC_MARK: True}),
    ]
    nb.cells = [cell]
    stale = tmp_path / "figures" / "99_old.html"
    stale.parent.mkdir()
    stale.write_text("from an earlier render")
    written = reports._write_figures(nb, tmp_path / "figures", png=True)
    assert [p.name for p in written] == ["01_a_title.html", "01_a_title.png"]
    assert written[1].read_bytes() == png and not stale.exists()


def test_reports_command_line_is_wired_into_the_cli() -> None:
    from adaface_lab.cli import build_parser

    args = build_parser().parse_args(["reports", "03", "--mode", "small", "--data", "x", "--param", "EPOCHS=2"])
    assert args.notebooks == ["03"] and args.mode == "small" and args.data == "x" and args.param == [("EPOCHS", 2)]
    assert reports.reports_main(["99", "--notebooks-dir", str(NOTEBOOKS)]) == 2  # unknown notebook: exit code 2


def test_show_rejects_non_figures_and_setup_decides_static_images() -> None:
    with pytest.raises(TypeError):
        notebook_display.show("not a figure")  # type: ignore[arg-type]
    assert notebook_display.notebook_setup("full") is True and notebook_display.static_images_enabled()
    assert notebook_display.notebook_setup("small") is False
    assert notebook_display.notebook_setup("small", static_images=True) is True
    notebook_display.notebook_setup("small")
    with pytest.raises(ValueError):
        notebook_display.notebook_setup("huge")
