#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv and install pyro-ebm into it with the given extras.
# Usage: source scripts/setup.sh [extras]   e.g. `source scripts/setup.sh test,docs`
# The CPU build of PyTorch is installed first, so the library's own torch range installs nothing more.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
EXTRAS="${1:-}"
if ! [[ "$EXTRAS" =~ ^[A-Za-z0-9_,-]*$ ]] || [[ "$EXTRAS" == -* ]]; then
    echo "setup.sh: the extras must be a comma-separated list of names (e.g. test,docs), got '$EXTRAS'" >&2
    return 2 2>/dev/null || exit 2
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>/dev/null || true
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
fi
if [ -n "$EXTRAS" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${EXTRAS}]"
else
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
fi
