"""Rendering the teaching notebooks headless into ``reports/``, and the ``adaface-lab reports`` command.

Every notebook executed top to bottom with papermill and written out::

    adaface-lab reports                              # full mode, all notebooks, into reports/
    adaface-lab reports --mode small 01 02           # the fast CPU settings, two notebooks
    adaface-lab reports 03 --data ../shared/data/lfw_min20
    python -m adaface_lab.reports --help             # the same without the CLI

Each notebook gets ``reports/<notebook>/`` holding the executed ``<notebook>.ipynb``, its HTML
(nbconvert, plotly.js embedded once: it works offline) and ``figures/NN_<title>.html`` + ``.png`` for
every Plotly figure it showed (the HTML files share ``figures/plotly.min.js``). Inside a notebook,
figures are shown with :mod:`adaface_lab.notebook_display`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from ._atomic import write_bytes_atomic, write_text_atomic
from .notebook_display import STATIC_MARK

__all__ = [
    "default_notebooks_dir",
    "list_notebooks",
    "NotebookReport",
    "render_notebooks",
    "extract_figures",
    "add_reports_subparser",
    "reports_main",
]

_PLOTLY_MIME = "application/vnd.plotly.v1+json"


# --------------------------------------------------------------------------- finding notebooks


def default_notebooks_dir() -> Path:
    """``notebooks/`` of the source checkout (where the package sits beside pyproject.toml), else ./notebooks."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "notebooks").is_dir():
        return checkout / "notebooks"
    return Path("notebooks").resolve()


def list_notebooks(notebooks_dir: str | os.PathLike[str] | None = None,
                   names: Sequence[str] | None = None) -> list[Path]:
    """The teaching notebooks (``NN_*.ipynb``, sorted), or those matching ``names``.

    A name matches a notebook by its stem (``03_norm_vs_quality``), its number (``03`` or ``3``) or
    its file name. Unknown names raise ValueError listing the notebooks.
    """
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder not found: {folder}")
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if p.is_file())
    if names is None or len(names) == 0:
        return found
    chosen: list[Path] = []
    for name in names:
        key = str(name).removesuffix(".ipynb")
        hits = [p for p in found if p.stem == key or p.stem.split("_", 1)[0] == key.zfill(2)]
        if not hits:
            raise ValueError(f"no notebook {name!r} in {folder}; have: {', '.join(p.stem for p in found)}")
        chosen += [p for p in hits if p not in chosen]
    return chosen


# --------------------------------------------------------------------------- figures of an executed notebook


def _slug(text: str, limit: int = 48) -> str:
    text = re.sub(r"<[^>]+>", "", text or "")
    text = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    return text[:limit].rstrip("_") or "figure"


def extract_figures(notebook: Any) -> list[tuple[go.Figure, bytes | None]]:
    """The Plotly figures an executed notebook displayed, in order, each with the PNG that
    :func:`~adaface_lab.notebook_display.show` placed right after it (``None`` when there is none)."""
    import base64

    import plotly.io as pio

    out: list[tuple[go.Figure, bytes | None]] = []
    for cell in notebook.cells:
        outputs = cell.get("outputs", []) if cell.get("cell_type") == "code" else []
        for i, output in enumerate(outputs):
            data = output.get("data", {})
            if _PLOTLY_MIME not in data:
                continue
            spec = data[_PLOTLY_MIME]
            spec = json.loads(spec) if isinstance(spec, str) else spec
            fig = pio.from_json(json.dumps({k: spec[k] for k in ("data", "layout", "frames") if k in spec}),
                                skip_invalid=True)
            png = None
            nxt = outputs[i + 1] if i + 1 < len(outputs) else None
            if nxt is not None and nxt.get("metadata", {}).get(STATIC_MARK) and "image/png" in nxt.get("data", {}):
                png = base64.b64decode(nxt["data"]["image/png"])
            out.append((fig, png))
    return out


# --------------------------------------------------------------------------- rendering


@dataclass
class NotebookReport:
    """What rendering one notebook produced."""

    name: str
    folder: Path
    executed: Path | None = None
    html: Path | None = None
    figures: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def render_notebooks(
    names: Sequence[str] | None = None,
    mode: str = "full",
    parameters: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] = "reports",
    notebooks_dir: str | os.PathLike[str] | None = None,
    png: bool = True,
    kernel_name: str | None = None,
    progress: bool = True,
) -> list[NotebookReport]:
    """Execute notebooks headless with papermill and write HTML and figures into ``out/<notebook>/``.

    Args:
        names: notebooks to render (see :func:`list_notebooks`); ``None``: all of them.
        mode: ``"full"`` or ``"small"``, passed as the ``MODE`` parameter.
        parameters: further papermill parameters (``DATA``, ``EPOCHS``, ``DEVICE``, ...); a notebook
            without a parameter simply ignores it. ``DATA`` and ``OUT`` paths are taken relative to
            the current directory (the notebooks run in their own folder).
        out: the reports folder.
        png: also write each figure as PNG (reusing the notebook's static image when it made one).
        kernel_name: the Jupyter kernel; ``None`` uses the notebook's (``python3``, which Jupyter
            starts with the running interpreter).

    A notebook that fails is reported (``error``, and its partly executed notebook is still
    written) and the others still run. Returns one :class:`NotebookReport` per notebook.
    """
    if mode not in ("small", "full"):
        raise ValueError(f"mode must be 'small' or 'full', got {mode!r}")
    notebooks = list_notebooks(notebooks_dir, names)
    if not notebooks:
        raise FileNotFoundError(f"no notebooks to render in {notebooks_dir or default_notebooks_dir()}")
    params = _papermill_parameters(mode, parameters)
    reports: list[NotebookReport] = []
    for src in notebooks:
        report = NotebookReport(name=src.stem, folder=Path(out) / src.stem)
        nb = _execute(src, report, params, kernel_name, progress)
        if nb is not None:
            report.html = _write_html(nb, report.folder / f"{src.stem}.html")
            report.figures = _write_figures(nb, report.folder / "figures", png)
        reports.append(report)
        if progress:
            state = "ok" if report.ok else f"FAILED ({report.error})"
            print(f"{src.stem}: {state} in {report.seconds:.0f} s; {len(report.figures)} figure files in {report.folder}",
                  file=sys.stderr, flush=True)
    return reports


def _papermill_parameters(mode: str, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """``MODE`` and the caller's parameters, with ``DATA`` and ``OUT`` paths made absolute.

    The notebooks run with their own folder as working directory: paths given here are relative to ours.
    """
    params = {"MODE": mode, **dict(parameters or {})}
    if isinstance(params.get("DATA"), str) and params["DATA"] != "synthetic" and Path(params["DATA"]).exists():
        params["DATA"] = str(Path(params["DATA"]).resolve())
    if isinstance(params.get("OUT"), str):
        params["OUT"] = str(Path(params["OUT"]).resolve())
    return params


def _execute(src: Path, report: NotebookReport, params: Mapping[str, Any], kernel_name: str | None,
             progress: bool) -> Any:
    """Run ``src`` with papermill and write the executed notebook into ``report.folder``.

    Fills ``report.seconds``, ``report.error`` (a failing cell) and ``report.executed``. Returns the
    executed notebook (as far as it ran), or ``None`` when papermill wrote nothing.
    """
    import nbformat
    import papermill as pm
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    report.folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    fd, tmp = tempfile.mkstemp(dir=report.folder, prefix=f".{src.stem}.", suffix=".ipynb")
    os.close(fd)
    try:
        try:
            pm.execute_notebook(str(src), tmp, parameters=dict(params), cwd=str(src.parent), kernel_name=kernel_name,
                                progress_bar=progress, request_save_on_cell_execute=False)
        except Exception as e:  # papermill still wrote the partly executed notebook
            text = str(e).strip()
            report.error = f"{type(e).__name__}: {text.splitlines()[-1] if text else ''}"
        report.seconds = time.perf_counter() - start
        if os.path.getsize(tmp) == 0:
            return None
        nb = nbformat.read(tmp, as_version=4)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    # progress bars arrive as thousands of small stream outputs: merge them, keep the last state
    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
    report.executed = write_text_atomic(report.folder / src.name, nbformat.writes(nb))
    return nb


def _write_html(nb: Any, path: Path) -> Path:
    """The executed notebook as one HTML page (nbconvert)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    return write_text_atomic(path, body)


def _write_figures(nb: Any, folder: Path, png: bool) -> list[Path]:
    """Every figure the notebook showed as ``folder/NN_<title>.html`` (and ``.png``); replaces ``folder``.

    The HTML files load plotly.js from one shared ``folder/plotly.min.js`` by relative path.
    """
    from plotly.offline import get_plotlyjs

    from .plots import save_figure

    if folder.exists():
        shutil.rmtree(folder)
    figures = extract_figures(nb)
    if figures:
        write_text_atomic(folder / "plotly.min.js", get_plotlyjs())
    written: list[Path] = []
    for k, (fig, png_bytes) in enumerate(figures, start=1):
        stem = folder / f"{k:02d}_{_slug(_figure_title(fig))}"
        written.append(save_figure(fig, stem.with_suffix(".html"), include_plotlyjs="directory")["html"])
        if png and png_bytes is None:
            written.append(save_figure(fig, None, stem.with_suffix(".png"))["png"])
        elif png:
            written.append(write_bytes_atomic(stem.with_suffix(".png"), png_bytes))
    return written


def _figure_title(fig: go.Figure) -> str:
    """The figure's title; small multiples without one are named after their first panel."""
    if fig.layout.title and fig.layout.title.text:
        return str(fig.layout.title.text)
    if fig.layout.annotations:
        return f"grid {fig.layout.annotations[0].text or ''}"
    return ""


# --------------------------------------------------------------------------- command line


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), _parse_value(raw)


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                   help="notebooks to render, by number (03) or name; default: all")
    p.add_argument("--mode", choices=("full", "small"), default="full",
                   help="full: the complete runs (default); small: the fast CPU settings of the test suite")
    p.add_argument("--data", help="data set for the training notebooks: 'synthetic' or a folder root/<identity>/*.jpg")
    p.add_argument("--epochs", type=int, help="epochs of the training runs (default: the mode's)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--param", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="any further notebook parameter (VALUE read as JSON where it parses), repeatable")
    p.add_argument("--out", default="reports", help="reports folder (default: reports)")
    p.add_argument("--notebooks-dir", default=None, help="where the notebooks are (default: the checkout's notebooks/)")
    p.add_argument("--no-png", dest="png", action="store_false", help="write figures as HTML only")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    for key, flag in (("DATA", args.data), ("EPOCHS", args.epochs), ("DEVICE", args.device)):
        if flag is not None:
            params[key] = flag
    params.update(dict(args.param))
    try:
        reports = render_notebooks(args.notebooks or None, mode=args.mode, parameters=params, out=args.out,
                                   notebooks_dir=args.notebooks_dir, png=args.png)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = [r for r in reports if not r.ok]
    for r in failed:
        print(f"{r.name} failed: {r.error} (see {r.executed or r.folder})", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} of {len(reports)} notebooks failed (listed above)", file=sys.stderr)
    return 1 if failed else 0


def add_reports_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``adaface-lab reports`` (the hook :mod:`adaface_lab.cli` looks for)."""
    p = subparsers.add_parser(
        "reports", help="run the teaching notebooks headless; write HTML and figures (HTML, PNG) into reports/",
        description="Execute the notebooks with papermill and write, per notebook, the executed notebook, "
        "its HTML and every figure as HTML and PNG into OUT/<notebook>/.",
    )
    return _configure(p)


def reports_main(argv: Sequence[str] | None = None) -> int:
    """``python -m adaface_lab.reports [options]``: as ``adaface-lab reports``; returns the exit code."""
    parser = _configure(argparse.ArgumentParser(prog="python -m adaface_lab.reports",
                                                description="Render the teaching notebooks headless."))
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(reports_main())
