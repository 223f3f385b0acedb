#!/usr/bin/env bash
# Install (once) a CUDA build of PyTorch plus the pip CUDA toolchain into a venv cached outside the checkout,
# and lay out a CUDA_HOME folder for it. Sourced by .ci/run; exports CUDA_PY and CUDA_HOME.
# The wheels put nvcc, the headers and libcudart under site-packages/nvidia/cu13; torch's extension builder
# wants <CUDA_HOME>/bin/nvcc, include/ and lib64/libcudart.so, so CUDA_HOME is a folder of links into that tree.
set -euo pipefail
EG3D_CI_CACHE="${EG3D_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eg3d-ci}"
CUDA_SPEC=(torch==2.14.1 "cuda-toolkit[nvcc,cccl]==13.0.3" ninja numpy pytest)
CUDA_VENV="$EG3D_CI_CACHE/cuda-venv"
STAMP="$CUDA_VENV/.eg3d-installed"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "${CUDA_SPEC[*]}" ]; then
    echo "ci: installing ${CUDA_SPEC[*]} into $CUDA_VENV"
    start=$SECONDS
    rm -rf "$CUDA_VENV"
    "${PYTHON:-python3}" -m venv "$CUDA_VENV"
    "$CUDA_VENV/bin/python" -m pip install -q "${CUDA_SPEC[@]}"
    echo "${CUDA_SPEC[*]}" > "$STAMP"
    echo "ci: CUDA toolchain installed in $((SECONDS - start)) s"
fi
CUDA_PY="$CUDA_VENV/bin/python"
TOOLKIT="$("$CUDA_PY" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')"
CUDA_HOME="$EG3D_CI_CACHE/cuda-home"
mkdir -p "$CUDA_HOME/lib64"
for name in bin include nvvm; do
    ln -sfn "$TOOLKIT/$name" "$CUDA_HOME/$name"
done
ln -sfn "$TOOLKIT/lib/libcudart.so.13" "$CUDA_HOME/lib64/libcudart.so"
export CUDA_PY CUDA_HOME EG3D_CI_CACHE
