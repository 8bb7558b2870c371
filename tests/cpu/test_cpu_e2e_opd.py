"""verl 0.9.1's real OPD trainer on the CPU, end to end, on the toy task: 1 and 2 FSDP2 ranks.

After every weight push verl compares the hf rollout's log-probs of the sampled tokens with the
actor's on the same tokens (``training/rollout_probs_diff_max``, ``rollout.calculate_log_probs=true``);
both run in fp32, so a push that loaded anything but the actor's weights shows as a large diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = 4


def _run_opd(assets, tmp_path: Path, ranks: int) -> list[dict]:
    log = tmp_path / "metrics.jsonl"
    cmd = [
        sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(REPO / "configs"), "--config-name", "toy_cpu",
        *assets.run_overrides(),
        f"trainer.total_training_steps={STEPS}", f"trainer.n_gpus_per_node={ranks}",
        "trainer.logger=[console,file]", f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(log), "RAY_DEDUP_LOGS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=480)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r.get("data", r) for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 2])
def test_opd_runs_and_rollout_matches_actor_after_every_push(toy_assets, tmp_path, ranks):
    steps = _run_opd(toy_assets, tmp_path, ranks)
    assert len(steps) == STEPS
    for m in steps:
        assert m["training/rollout_probs_diff_valid"] == 1.0
        assert m["training/rollout_probs_diff_max"] < 1e-4, m["training/rollout_probs_diff_max"]
    losses = [m["actor/distillation/loss"] for m in steps]
    assert losses[-1] < losses[0], losses
