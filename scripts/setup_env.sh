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
# Keep an existing torch (e.g. a build the user installed). Otherwise install torch==2.13.0 from pip's configured
# index: from PyPI that is the CUDA build on Linux x86-64 and a CPU build on macOS and Windows. EG3D_TORCH_SPEC
# replaces the pip arguments, e.g. "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu".
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "Installing PyTorch (${EG3D_TORCH_SPEC:-torch==2.13.0})"
    # shellcheck disable=SC2086  # EG3D_TORCH_SPEC may hold several pip arguments.
    "$PY" -m pip install -q ${EG3D_TORCH_SPEC:-torch==2.13.0}
fi
"$PY" -m pip install -q -r "$ROOT/requirements.txt" ${EG3D_EXTRA_PACKAGES:-}
export PY ROOT
