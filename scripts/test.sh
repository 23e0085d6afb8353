#!/usr/bin/env bash
# Set up .venv with the test and docs extras, run the test suite (with doctests), build the docs with
# warnings as errors, and check the ArviZ 1.x code path on Python 3.12 when that interpreter is available.
# Extra arguments go to pytest (e.g. `-m slow` for the long statistical tests).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh test,docs
export MPLBACKEND=Agg
.venv/bin/python -m pytest -n 2 -q "$@"
.venv/bin/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
echo "docs built in docs/_build/html"

# ArviZ 1.x needs Python >= 3.12. Its conversion layer (pyro_ebm/_arviz.py) imports only numpy and arviz,
# so it is tested in a small torch-free environment of its own.
PY312=""
for candidate in "$HOME"/.pyenv/versions/3.12*/bin/python python3.12; do
    if "$candidate" -c "import sys; assert sys.version_info[:2] == (3, 12)" 2>/dev/null; then
        PY312="$candidate"
        break
    fi
done
if [ -n "$PY312" ]; then
    if [ ! -x .venv-arviz1/bin/python ]; then
        "$PY312" -m venv .venv-arviz1
    fi
    .venv-arviz1/bin/python -m pip install --quiet --disable-pip-version-check "arviz>=1" numpy pytest matplotlib
    .venv-arviz1/bin/python -m pytest tests/test_arviz_compat.py --noconftest -p no:cacheprovider -q -o addopts=""
else
    echo "python3.12 not found: skipped the ArviZ 1.x check"
fi
