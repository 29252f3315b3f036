"""Once per server process: import the library, then exempt everything alive from garbage collection.

Streamlit runs a full garbage collection after every script run (``runner.postScriptGC``), and with
torch, numpy and plotly loaded that walks about 290,000 objects: 100–500 ms of CPU per slider move,
several times the run itself, during which the server holds the GIL and cannot send the figures.
The modules, functions and classes imported here live as long as the process, so they are moved to
the permanent generation (``gc.freeze``); the collection after each run then only walks what the
sessions created since. This module is imported by the router, so it runs once per process.
"""

import gc

import adaface_lab.gst  # noqa: F401  (numpy, torch, the margins)
import adaface_lab.plots  # noqa: F401  (plotly)

gc.freeze()
