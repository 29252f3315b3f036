#!/usr/bin/env bash
# Run the whole test suite in the project's environment (after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ "$VENV" = system ]; then py=python3; else py=$VENV/bin/python; fi
exec "$py" -m pytest "$@"
