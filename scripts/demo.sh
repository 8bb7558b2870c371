#!/usr/bin/env bash
# The main job on a CPU machine: bash scripts/demo.sh
# Does EffOPD get there sooner? Builds the toy task (quick size), then runs verl's real OPD trainer
# (effopd-train) once per arm of scripts/bench_speedup.py at demo size (one seed, 12 steps of 64
# prompts): vanilla OPD at the tuned lr and at a 10x lower lr, EffOPD (reward and teacher log-prob
# scores) at the lower lr, a fixed alpha=2 jump at the lower lr, EffOPD (teacher log-prob) at the
# tuned lr. Prints the table and names the JSON and the PNG. Measured: 16 min 41 s on 2 idle cores
# from a fresh clone, the install into a new .venv and the quick build (42 s) included.
#
# The tuned lr is the one the full-size benchmark's sweep found on the validation split (3e-4,
# docs/results/speedup_add.json); EFFOPD_DEMO_TUNED_LR=sweep re-runs the sweep (3 more runs).
# Extra arguments go to bench_speedup.py (e.g. --seeds 0 1 2). The full-size measurement and what
# it shows are in README.md ("Does EffOPD help? (measured)").
set -euo pipefail
source "$(dirname "$0")/_venv.sh" test
export PYTHONUNBUFFERED=1
mkdir -p runs
python scripts/build_toy_assets.py runs/toy_add_quick --task add --quick
lr="${EFFOPD_DEMO_TUNED_LR:-3e-4}"
tuned=()
[ "$lr" = sweep ] || tuned=(--tuned-lr "$lr")
python scripts/bench_speedup.py --assets runs/toy_add_quick --task add --quick --seeds 0 "${tuned[@]}" \
    --work runs/bench_speedup --json runs/bench_speedup_demo.json --png runs/bench_speedup_demo.png "$@"
echo "[demo] the table is above; JSON: runs/bench_speedup_demo.json; plot: $(pwd)/runs/bench_speedup_demo.png"
