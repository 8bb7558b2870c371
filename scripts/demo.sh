#!/usr/bin/env bash
# The main job on a CPU machine: bash scripts/demo.sh
# Does EffOPD get there sooner? Builds the toy task (quick size), then runs verl's real OPD trainer
# (effopd-train) for every arm of scripts/bench_speedup.py at demo size (one seed, 12 steps of 64
# prompts, a 3-point lr sweep on the validation split): vanilla OPD at the tuned and at a 10x lower
# lr, EffOPD (reward and teacher log-prob scores) and a fixed alpha=2 jump. Prints the table and
# names the JSON and the PNG. About 15-20 minutes on 2 cores. Extra arguments go to bench_speedup.py
# (e.g. --seeds 0 1 2 --steps 24); the full-size measurement is in README.md ("Does EffOPD help?").
set -euo pipefail
source "$(dirname "$0")/_venv.sh" test
export PYTHONUNBUFFERED=1
mkdir -p runs
python scripts/build_toy_assets.py runs/toy_add_quick --task add --quick
python scripts/bench_speedup.py --assets runs/toy_add_quick --task add --quick --seeds 0 \
    --work runs/bench_speedup --json runs/bench_speedup_demo.json --png runs/bench_speedup_demo.png "$@"
echo "[demo] table above; JSON runs/bench_speedup_demo.json; plot $(pwd)/runs/bench_speedup_demo.png"
