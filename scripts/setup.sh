#!/usr/bin/env bash
# Set up adaface_lab in a virtual environment (.venv by default); safe to run again.
#
#   TORCH_SPEC   what pip installs for torch when the environment has none
#                (default: "torch", the normal build for this machine; e.g. TORCH_SPEC=torch==2.13.0).
#                An environment that already imports torch keeps it.
#   VENV         where the environment lives (default: .venv); VENV=system uses the current Python.
#   PYTHON       the interpreter that creates the environment (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch}

if [ "$VENV" = system ]; then
  py=$PYTHON
else
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
  fi
  py=$VENV/bin/python
fi

if "$py" -c "import torch" 2>/dev/null; then
  echo "[setup] torch $("$py" -c 'import torch; print(torch.__version__)') already installed"
else
  echo "[setup] installing $TORCH_SPEC"
  # shellcheck disable=SC2086  # TORCH_SPEC may carry pip options
  "$py" -m pip install -q $TORCH_SPEC
fi

# Reinstall the project only when its dependency list changed since the last setup.
stamp=$("$py" -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest()[:16])')
marker=${VENV%/}/.adaface_lab_installed
[ "$VENV" = system ] && marker=.adaface_lab_installed
if [ "$(cat "$marker" 2>/dev/null)" != "$stamp" ]; then
  echo "[setup] installing adaface_lab and its dependencies"
  "$py" -m pip install -q -e ".[dev]"
  echo "$stamp" > "$marker"
else
  echo "[setup] adaface_lab already installed (pyproject.toml unchanged)"
fi
