"""Showing figures in the teaching notebooks, and rendering the notebooks headless into ``reports/``.

In a notebook (two lines, after the ``parameters`` cell)::

    from adaface_lab.reports import notebook_setup, show
    notebook_setup(MODE, STATIC_IMAGES)     # interactive Plotly; a static PNG beside each figure in full mode
    show(fig)

``show`` displays the figure interactively (the Plotly mimetype JupyterLab renders, plus HTML with
plotly.js embedded once per notebook, which works offline and in exported HTML) and, when static
images are on, a PNG of it (:func:`adaface_lab.plots.static_image`, ~2 s each through headless
Chromium), so that the notebook stays readable where JavaScript does not run (GitHub).

From the shell, every notebook executed top to bottom with papermill and written out::

    adaface-lab reports                              # full mode, all notebooks, into reports/
    adaface-lab reports --mode small 01 02           # the fast CPU settings, two notebooks
    adaface-lab reports 03 --data ../shared/data/lfw_min20
    python -m adaface_lab.reports --help             # the same without the CLI

Each notebook gets ``reports/<notebook>/`` holding the executed ``<notebook>.ipynb``, its HTML
(nbconvert, plotly.js embedded once: it works offline) and ``figures/NN_<title>.html`` + ``.png`` for
every Plotly figure it showed (the HTML files share ``figures/plotly.min.js``).
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
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from ._atomic import write_text_atomic

__all__ = [
    "notebook_setup",
    "show",
    "static_images_enabled",
    "default_notebooks_dir",
    "list_notebooks",
    "NotebookReport",
    "render_notebooks",
    "extract_figures",
    "add_reports_subparser",
    "reports_main",
]

_PLOTLY_MIME = "application/vnd.plotly.v1+json"
_STATIC_MARK = "adaface_lab_static"  # output metadata key of the PNG that show() adds after a figure
_STATE: dict[str, Any] = {"static": False}


# --------------------------------------------------------------------------- inside a notebook


def notebook_setup(mode: str = "small", static_images: bool | None = None) -> bool:
    """Set the Plotly renderer for notebooks and decide whether :func:`show` adds static PNGs.

    Also silences tqdm's "IProgress not found" warning (text progress bars are used instead).

    ``static_images=None``: on in ``"full"`` mode, off in ``"small"`` (the test suite's fast mode,
    where ~2 s per PNG would add up). Returns the decision.
    """
    import plotly.io as pio

    if mode not in ("small", "full"):
        raise ValueError(f"mode must be 'small' or 'full', got {mode!r}")
    pio.renderers.default = "plotly_mimetype+notebook"
    # without ipywidgets tqdm falls back to text bars (fine); its warning about that is noise here
    warnings.filterwarnings("ignore", message="IProgress not found")
    _STATE["static"] = (mode == "full") if static_images is None else bool(static_images)
    return _STATE["static"]


def static_images_enabled() -> bool:
    """Whether :func:`show` currently adds a PNG after each figure."""
    return bool(_STATE["static"])


def show(fig: go.Figure, static: bool | None = None) -> None:
    """Display ``fig`` interactively and, if static images are on (or ``static=True``), as a PNG too."""
    if not isinstance(fig, go.Figure):
        raise TypeError(f"show expects a plotly Figure, got {type(fig).__name__}")
    from IPython.display import Image, display

    fig.show()
    if static if static is not None else _STATE["static"]:
        from .plots import static_image

        display(Image(data=static_image(fig)), metadata={_STATIC_MARK: True})


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
    :func:`show` placed right after it (``None`` when there is none)."""
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
            if nxt is not None and nxt.get("metadata", {}).get(_STATIC_MARK) and "image/png" in nxt.get("data", {}):
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


def _readable(path: Path) -> None:
    """Give a written file the usual permissions (temp files are created owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


_write_text_atomic = write_text_atomic


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
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    from .plots import save_figure

    if mode not in ("small", "full"):
        raise ValueError(f"mode must be 'small' or 'full', got {mode!r}")
    notebooks = list_notebooks(notebooks_dir, names)
    if not notebooks:
        raise FileNotFoundError(f"no notebooks to render in {notebooks_dir or default_notebooks_dir()}")
    params = {"MODE": mode, **dict(parameters or {})}
    # notebooks run with their own folder as working directory: paths given here are relative to ours
    if isinstance(params.get("DATA"), str) and params["DATA"] != "synthetic" and Path(params["DATA"]).exists():
        params["DATA"] = str(Path(params["DATA"]).resolve())
    if isinstance(params.get("OUT"), str):
        params["OUT"] = str(Path(params["OUT"]).resolve())
    out_dir = Path(out)
    reports: list[NotebookReport] = []
    for src in notebooks:
        folder = out_dir / src.stem
        report = NotebookReport(name=src.stem, folder=folder)
        folder.mkdir(parents=True, exist_ok=True)
        executed = folder / src.name
        start = time.perf_counter()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{src.stem}.", suffix=".ipynb")
        os.close(fd)
        try:
            try:
                pm.execute_notebook(str(src), tmp, parameters=params, cwd=str(src.parent), kernel_name=kernel_name,
                                    progress_bar=progress, request_save_on_cell_execute=False)
            except Exception as e:  # papermill still wrote the partly executed notebook
                text = str(e).strip()
                report.error = f"{type(e).__name__}: {text.splitlines()[-1] if text else ''}"
            report.seconds = time.perf_counter() - start
            if os.path.getsize(tmp) > 0:
                nb = nbformat.read(tmp, as_version=4)
                # progress bars arrive as thousands of small stream outputs: merge them, keep the last state
                nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
                _write_text_atomic(executed, nbformat.writes(nb))
                report.executed = executed
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if report.executed is not None:
            body, _ = HTMLExporter().from_notebook_node(nb)
            report.html = folder / f"{src.stem}.html"
            _write_text_atomic(report.html, body)
            figures_dir = folder / "figures"
            if figures_dir.exists():
                shutil.rmtree(figures_dir)
            figures = extract_figures(nb)
            if figures:  # one copy of plotly.js beside the figures, which load it by relative path
                from plotly.offline import get_plotlyjs

                _write_text_atomic(figures_dir / "plotly.min.js", get_plotlyjs())
            for k, (fig, png_bytes) in enumerate(figures, start=1):
                title = fig.layout.title.text if fig.layout.title and fig.layout.title.text else ""
                if not title and fig.layout.annotations:  # small multiples: named after their first panel
                    title = f"grid {fig.layout.annotations[0].text or ''}"
                stem = figures_dir / f"{k:02d}_{_slug(title)}"
                written = [stem.with_suffix(".html")]
                save_figure(fig, written[0], include_plotlyjs="directory")
                if png:
                    written.append(stem.with_suffix(".png"))
                    if png_bytes is None:
                        save_figure(fig, None, written[1])
                    else:
                        written[1].write_bytes(png_bytes)
                for path in written:
                    _readable(path)
                report.figures += written
        reports.append(report)
        if progress:
            state = "ok" if report.ok else f"FAILED ({report.error})"
            print(f"{src.stem}: {state} in {report.seconds:.0f} s; {len(report.figures)} figure files in {folder}",
                  file=sys.stderr, flush=True)
    return reports


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
