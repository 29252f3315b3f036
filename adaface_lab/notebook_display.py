"""Showing figures in the teaching notebooks: interactive Plotly, and a static PNG where asked.

In a notebook (two lines, after the ``parameters`` cell)::

    from adaface_lab.notebook_display import notebook_setup, show
    notebook_setup(MODE, STATIC_IMAGES)     # interactive Plotly; a static PNG beside each figure in full mode
    show(fig)

``show`` displays the figure interactively (the Plotly mimetype JupyterLab renders, plus HTML with
plotly.js embedded once per notebook, which works offline and in exported HTML) and, when static
images are on, a PNG of it (:func:`adaface_lab.plots.static_image`, ~2 s each through headless
Chromium), so that the notebook stays readable where JavaScript does not run (GitHub). The PNG's
output carries the metadata key :data:`STATIC_MARK`, by which :mod:`adaface_lab.reports` finds it.
"""

from __future__ import annotations

import warnings
from typing import Any

import plotly.graph_objects as go

__all__ = ["STATIC_MARK", "notebook_setup", "show", "static_images_enabled"]

#: Output metadata key of the PNG that :func:`show` adds right after a figure.
STATIC_MARK = "adaface_lab_static"

_STATE: dict[str, Any] = {"static": False}


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

        display(Image(data=static_image(fig)), metadata={STATIC_MARK: True})
