#!/usr/bin/env bash
# Set up .venv and run the test suite: bash scripts/test.sh [pytest args]
# One pytest-xdist worker per core, one torch thread per worker (override with EG3D_TEST_WORKERS / OMP_NUM_THREADS).
set -euo pipefail
EG3D_EXTRA_PACKAGES="pytest>=7 pytest-xdist>=3.2" source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
set +e
"$PY" -m pytest -q -n "${EG3D_TEST_WORKERS:-auto}" --dist=worksteal "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "no tests were collected" >&2
    exit 1
fi
exit "$status"
