#!/usr/bin/env bash
# Set up .venv and run the whole pipeline on a built-in toy dataset: bash scripts/demo.sh [--size=smoke]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
exec "$PY" scripts/demo.py "$@"
