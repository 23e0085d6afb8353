#!/usr/bin/env bash
# Set up .venv with the test and docs extras, run the test suite (with doctests), build the docs with
# warnings as errors, and check the ArviZ 1.x code path on Python 3.12 when that interpreter is available.
# Extra arguments go to pytest (e.g. `-m slow` runs only the long statistical tests, `-k cli` only the tests
# whose names match "cli").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh test,docs
export MPLBACKEND=Agg
if [ $# -eq 0 ]; then
    echo "running the tests: pytest -n 2 -q (about 6 minutes on 2 cores)"
else
    echo "running the tests: pytest -n 2 -q $*"
fi
.venv/bin/python -m pytest -n 2 -q "$@"
echo "building the docs (warnings are errors)"
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
    ARVIZ1_PACKAGES=("arviz>=1" numpy pytest matplotlib)
    if [ ! -x .venv-arviz1/bin/python ]; then
        echo "creating .venv-arviz1 with $("$PY312" --version 2>&1) for the ArviZ 1.x check"
        "$PY312" -m venv .venv-arviz1
    fi
    if [ "$(cat .venv-arviz1/.installed 2>/dev/null)" != "${ARVIZ1_PACKAGES[*]}" ]; then
        echo "installing ${ARVIZ1_PACKAGES[*]} into .venv-arviz1"
        if ! .venv-arviz1/bin/python -m pip install --disable-pip-version-check "${ARVIZ1_PACKAGES[@]}" \
                > .venv-arviz1/pip.log 2>&1; then
            tail -n 40 .venv-arviz1/pip.log >&2
            echo "'pip install ${ARVIZ1_PACKAGES[*]}' failed (the whole log: .venv-arviz1/pip.log)" >&2
            exit 1
        fi
        echo "${ARVIZ1_PACKAGES[*]}" > .venv-arviz1/.installed
    fi
    echo "the ArviZ 1.x check: tests/test_arviz_compat.py on $("$PY312" --version 2>&1)"
    .venv-arviz1/bin/python -m pytest tests/test_arviz_compat.py --noconftest -p no:cacheprovider -q -o addopts=""
else
    echo "python3.12 not found: skipped the ArviZ 1.x check"
fi
