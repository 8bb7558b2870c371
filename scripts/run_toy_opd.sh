#!/usr/bin/env bash
# Vanilla OPD (verl 0.9.1's own on-policy distillation, effopd.enable=false) on the CPU toy task,
# end to end: build the toy assets if missing, train through verl's real trainer (Ray, FSDP2 over
# gloo, the hf rollout), validate greedy exact match on the test split every TEST_FREQ steps, save
# actor checkpoints with an HF copy, plot the curves and analyze the update geometry.
#
#   bash scripts/run_toy_opd.sh                      # reverse task, seed 0, into runs/toy_opd/reverse
#   TASK=add bash scripts/run_toy_opd.sh             # the other task
#   bash scripts/run_toy_opd.sh actor_rollout_ref.actor.optim.lr=3e-4   # extra verl overrides
#
# Environment: TASK (reverse), SEED (0), OUT (runs/toy_opd/$TASK), ASSETS ($OUT/assets), STEPS (from configs/toy_cpu.yaml
# unless set), TEST_FREQ (5), SAVE_FREQ (STEPS/10, at least 1: checkpoints at 10%, 20%, …, 100%),
# ANALYZE (1: run effopd-analyze on the 10%, 50% and 100% checkpoints).
# Outputs under OUT: assets/ (toy build), metrics.jsonl (verl's file logger), ckpt/global_step_N/actor
# (FSDP shards + huggingface/), curves.png, geometry/ (effopd-analyze JSON and PNGs), train.log.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
if [ ! -x .venv/bin/effopd-train ]; then
    # shellcheck disable=SC1091
    source scripts/_venv.sh test
fi
py="$repo_root/.venv/bin/python"
export PYTHONUNBUFFERED=1 RAY_DEDUP_LOGS=1

TASK="${TASK:-reverse}"
SEED="${SEED:-0}"
OUT="$(mkdir -p "${OUT:-runs/toy_opd/$TASK}" && cd "${OUT:-runs/toy_opd/$TASK}" && pwd)"
STEPS="${STEPS:-$("$py" -c "import yaml; print(yaml.safe_load(open('configs/toy_cpu.yaml'))['trainer']['total_training_steps'])")}"
TEST_FREQ="${TEST_FREQ:-5}"
SAVE_FREQ="${SAVE_FREQ:-$(( STEPS / 10 > 0 ? STEPS / 10 : 1 ))}"
A="${ASSETS:-$OUT/assets}"

# 1. the toy assets: ASSETS (a finished build), or built into $OUT/assets (reused when complete)
if [ -z "${ASSETS:-}" ]; then
    "$py" scripts/build_toy_assets.py "$A" --task "$TASK" --seed "$SEED" | tee "$OUT/build.log"
fi
asset() { "$py" -c "import sys; from effopd_verl.toy.build import load_assets; a = load_assets(sys.argv[1]); $1" "$A"; }
mapfile -t toy_overrides < <(asset "print('\\n'.join(a.run_overrides(val_file=a.test_file)))")
teacher_accuracy="$(asset "print(a.teacher_accuracy)")"

# 2. vanilla OPD through verl's trainer; a fresh checkpoint folder (verl resumes from one otherwise)
if [ -e "$OUT/ckpt" ]; then
    echo "[run_toy_opd] $OUT/ckpt exists: remove it (or set OUT) to train again" >&2
    exit 1
fi
export VERL_FILE_LOGGER_PATH="$OUT/metrics.jsonl"
rm -f "$VERL_FILE_LOGGER_PATH"
.venv/bin/effopd-train --config-name toy_cpu "${toy_overrides[@]}" \
    trainer.total_training_steps="$STEPS" trainer.val_before_train=true trainer.test_freq="$TEST_FREQ" \
    trainer.save_freq="$SAVE_FREQ" trainer.default_local_dir="$OUT/ckpt" \
    'actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]' \
    trainer.logger='[console,file]' trainer.experiment_name="toy_opd_$TASK" \
    hydra.run.dir="$OUT/hydra" "$@" 2>&1 | tee "$OUT/train.log"

# 3. the curves: test accuracy (greedy exact match) and the distillation loss, vs step and wall time
.venv/bin/effopd-report "$OUT/metrics.jsonl" --out "$OUT/curves.png" --table "$OUT/curves.md" \
    --metric "val-core/*/mean@1" --metric actor/distillation/loss \
    --hline "teacher=$teacher_accuracy" --title "vanilla OPD on the toy task ($TASK), test split"

# 4. update geometry of the actor at ~10%, 50% and 100% of training against the student's start
if [ "${ANALYZE:-1}" = 1 ]; then
    ck() { echo "$OUT/ckpt/global_step_$1/actor/huggingface"; }
    s10=$(( (STEPS + 5) / 10 > 0 ? (STEPS + 5) / 10 : 1 )); s10=$(( (s10 + SAVE_FREQ - 1) / SAVE_FREQ * SAVE_FREQ ))
    s50=$(( (STEPS / 2 + SAVE_FREQ - 1) / SAVE_FREQ * SAVE_FREQ ))
    .venv/bin/effopd-analyze "$A/student" "$(ck "$s10")" "$(ck "$s50")" --final "$(ck "$STEPS")" \
        --out-dir "$OUT/geometry" --json "$OUT/geometry/geometry.json" \
        --paper-table "$OUT/geometry/table1.md" --rescale-out "$OUT/geometry/rescaled"
fi
echo "[run_toy_opd] done: $OUT"
