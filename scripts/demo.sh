#!/usr/bin/env bash
# The README's main-job command: sets up the environments, then runs a scripted multi-turn
# session through a real sidecar on the sample scene (outputs in out/demo/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python scripts/demo.py "$@"
