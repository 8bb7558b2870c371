#!/usr/bin/env bash
# The test suite: bash scripts/test.sh [pytest args], e.g. -m "not slow" to skip the end-to-end runs.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" test
export PYTHONUNBUFFERED=1
exec python -m pytest "$@"
