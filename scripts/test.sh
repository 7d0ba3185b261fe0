#!/usr/bin/env bash
# The README's test command: sets up both environments, lints, runs the default test run
# (everything but `slow` and `gpu`; the end-to-end slice and the Blender tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/python -m pytest -m "not slow and not gpu" "$@"
