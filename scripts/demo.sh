#!/usr/bin/env bash
# Set up .venv and run the demo on embedded data: maximum-likelihood training with HMC negatives, their
# diagnostics, log Z, held-out NLL; writes a report and figures into outputs/ (or --out DIR).
# Every argument goes to `pyro-ebm demo` (e.g. --out DIR --seed 1 --steps 3000 --quick --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_ARGS=("$@")
set --                      # setup.sh reads its extras from $1: give it none, not the demo's arguments
source scripts/setup.sh
echo "running: pyro-ebm demo ${DEMO_ARGS[*]+"${DEMO_ARGS[*]}"}"
.venv/bin/pyro-ebm demo "${DEMO_ARGS[@]+"${DEMO_ARGS[@]}"}"
