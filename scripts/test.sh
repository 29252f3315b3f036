#!/usr/bin/env bash
# Run the whole test suite in the project's environment (after scripts/setup.sh):
# the unit/property tests, the app tests (AppTest and a real headless Chromium), and the
# notebooks top to bottom under nbval in small mode. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ "$VENV" = system ]; then py=python3; else py=$VENV/bin/python; fi
bash scripts/install_chromium.sh
if [ "$#" -gt 0 ]; then
  exec "$py" -m pytest "$@"
fi
exec "$py" -m pytest tests notebooks --nbval-lax -p no:cacheprovider
