#!/usr/bin/env bash
# Set up .venv and run the demo on embedded data (prints results, writes outputs/demo.png).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
.venv/bin/pyro-ebm demo "$@"
