#!/usr/bin/env bash
# Install Debian's Chromium for the browser test (tests/test_app_browser.py) and for PNG export.
# Idempotent: does nothing when /usr/bin/chromium exists. Playwright's own browser downloads are
# not used (they cannot be fetched here); the test drives this system Chromium instead.
set -euo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
  echo "[chromium] $("$CHROMIUM" --version 2>/dev/null | head -n1) already installed"
  exit 0
fi

if [ "$(id -u)" = 0 ]; then
  echo "[chromium] installing Debian's chromium with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q chromium
  echo "[chromium] $("$CHROMIUM" --version 2>/dev/null | head -n1) installed"
else
  echo "[chromium] $CHROMIUM is missing and this is not root. Install it with:" >&2
  echo "    sudo apt-get update && sudo apt-get install -y chromium" >&2
  echo "[chromium] continuing without it: tests/test_app_browser.py will fail until it is installed" >&2
fi
