#!/usr/bin/env bash
# CI: compile both CUDA plugins without a GPU for the architectures users train on, fail on any compiler error or
# warning, then load the built modules and check their argument validation (tests/test_cuda_plugins.py).
# The toolchain is installed once into a cache outside the checkout (scripts/cuda_toolchain.sh); the plugins are
# compiled from scratch on every run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/cuda_toolchain.sh"
cd "$ROOT"
BUILD_ROOT="$(mktemp -d)"
trap 'rm -rf "$BUILD_ROOT"' EXIT
export TORCH_EXTENSIONS_DIR="$BUILD_ROOT" TORCH_CUDA_ARCH_LIST="${EG3D_CI_CUDA_ARCHS:-7.5;8.0;8.6;8.9;9.0}"
# nvcc compiles the architectures in parallel; the flag does not change the code it emits.
export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-} --threads=0"
log="$BUILD_ROOT/build.log"
start=$SECONDS
"$CUDA_PY" -m torch_utils.ops.prebuild --build --verbose > "$log" 2>&1 || { cat "$log"; echo "ci: building the CUDA plugins failed" >&2; exit 1; }
echo "ci: CUDA plugins built for $TORCH_CUDA_ARCH_LIST in $((SECONDS - start)) s:"
grep -E '^eg3d_\w+_plugin: ' "$log"
if grep -i -n 'warning' "$log"; then
    echo "ci: the CUDA plugin build printed warnings (above); full log:" >&2
    cat "$log" >&2
    exit 1
fi
EG3D_REQUIRE_CUDA_PLUGINS=1 "$CUDA_PY" -m pytest -q -p no:cacheprovider tests/test_cuda_plugins.py
