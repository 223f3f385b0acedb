#!/usr/bin/env bash
# Set up .venv and run the test suite: bash scripts/test.sh [pytest args]
set -euo pipefail
EG3D_EXTRA_PACKAGES="pytest>=7" source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
set +e
"$PY" -m pytest -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "no tests were collected" >&2
    exit 1
fi
exit "$status"
