#!/usr/bin/env bash
# Installs what the browser tests need: Debian's chromium and Playwright for Python (driver only).
# Idempotent. Playwright's own browser download is never used: the tests launch /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_PY="${VENV_PY:-.venv/bin/python}"

if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if ! "$VENV_PY" -c "import playwright" >/dev/null 2>&1; then
    "$VENV_PY" -m pip install -q "playwright>=1.45"
fi

chromium --version 2>/dev/null  # Debian's wrapper script prints a harmless shell warning on stderr
"$VENV_PY" -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
