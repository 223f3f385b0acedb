#!/usr/bin/env bash
# Create .venv (if missing) and install what the project needs. Sourced by the other scripts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# Keep an existing torch (e.g. a CUDA build the user installed); otherwise take the CPU build.
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "Installing PyTorch (${EG3D_TORCH_SPEC:-torch==2.13.0})"
    "$PY" -m pip install -q "${EG3D_TORCH_SPEC:-torch==2.13.0}"
fi
"$PY" -m pip install -q -r "$ROOT/requirements.txt" ${EG3D_EXTRA_PACKAGES:-}
export PY ROOT
