"""adaface_lab's Streamlit app — the router.

    streamlit run app/streamlit_app.py

Pages live in app/views/ and are thin: widgets, and calls into ``adaface_lab``.

Why not app/pages/: with a folder named ``pages`` beside the entrypoint, Streamlit (1.67) starts
each new server in its old multipage mode and, when the first request is a page's address (a
shared link such as /gallery?s=32), runs that page's script directly, skipping this router (wrong
sidebar, no wide layout) until some session has run the router once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the pages import the helpers next to this file (_state, _margin_controls)
    sys.path.insert(0, str(HERE))

import _gc  # noqa: E402,F401  (once per process: the library imported, then frozen out of the GC)

st.set_page_config(page_title="adaface_lab", layout="wide")

PAGES = [
    ("views/margin_explorer.py", "Margin explorer", "margins"),
    ("views/gallery.py", "Method gallery", "gallery"),
    ("views/training_runs.py", "Training runs", "training"),
    ("views/quality_inspector.py", "Image quality inspector", "quality"),
    ("views/quality_score.py", "Quality as a score", "qscore"),
    ("views/toy_training.py", "Toy training", "toy"),
]

pages = [st.Page(path, title=title, url_path=url, default=i == 0) for i, (path, title, url) in enumerate(PAGES)]
st.navigation(pages).run()
