#!/usr/bin/env bash
# The main job on a CPU machine: bash scripts/demo.sh
# For now: EffOPD's sharded extrapolation against the full-gather reference on two gloo ranks
# (~100M-parameter model); the speedup demo on the toy OPD task replaces it once it lands.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" test
export PYTHONUNBUFFERED=1
mkdir -p runs
python scripts/bench_extrapolation.py --json runs/bench_extrapolation.json "$@"
