#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv and install pyro-ebm into it with the given extras.
# Usage: source scripts/setup.sh [extras]   e.g. `source scripts/setup.sh test,docs`
# The CPU build of PyTorch is installed first, so the library's own torch range installs nothing more.
# A second run installs nothing when pyproject.toml and the extras are unchanged (the install is editable,
# so changes to the code need no reinstall): .venv/.installed-<extras> records what was installed.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
EXTRAS="${1:-}"
if ! [[ "$EXTRAS" =~ ^[A-Za-z0-9_,-]*$ ]] || [[ "$EXTRAS" == -* ]]; then
    echo "setup.sh: the extras must be a comma-separated list of names (e.g. test,docs), got '$EXTRAS'" >&2
    return 2 2>/dev/null || exit 2
fi
setup_t0=$SECONDS
setup_pip() {  # pip install into .venv; pip's own output goes to .venv/pip.log and is shown if it fails
    if ! .venv/bin/python -m pip install --disable-pip-version-check "$@" >> .venv/pip.log 2>&1; then
        tail -n 40 .venv/pip.log >&2
        echo "setup: 'pip install $*' failed (the whole log: .venv/pip.log)" >&2
        return 1
    fi
}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
fi
# what an install records: pyproject.toml's hash and the extras
SETUP_STAMP=".venv/.installed-${EXTRAS:-base}"
SETUP_WANT="$(.venv/bin/python -c "import hashlib; print(hashlib.sha256(open('pyproject.toml', 'rb').read()).hexdigest())") extras=${EXTRAS}"
if [ -x .venv/bin/pyro-ebm ] && [ -f "$SETUP_STAMP" ] && [ "$(cat "$SETUP_STAMP")" = "$SETUP_WANT" ]; then
    echo "setup: .venv is up to date, nothing to install (pyproject.toml and the extras${EXTRAS:+ $EXTRAS} are unchanged)"
else
    rm -f "$SETUP_STAMP" .venv/pip.log
    if ! .venv/bin/python -c "import torch" 2>/dev/null; then
        echo "setup: installing torch 2.13.0 (CPU build) into .venv -- a few minutes the first time"
        setup_pip "torch==2.13.0"
    fi
    echo "setup: installing pyro-ebm (editable)${EXTRAS:+ with the extras $EXTRAS} and its dependencies into .venv"
    if [ -n "$EXTRAS" ]; then
        setup_pip -e ".[${EXTRAS}]"
    else
        setup_pip -e .
    fi
    echo "$SETUP_WANT" > "$SETUP_STAMP"
    echo "setup: done in $((SECONDS - setup_t0)) s"
fi
