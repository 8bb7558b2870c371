"""EffOPD through ``effopd-train --config-name smollm2_cpu`` on the real pretrained LM (SmolLM2-135M-Instruct,
quick assets): the real verl 0.9.1 trainer, Ray, FSDP2 over gloo and the ``hf`` rollout; nothing mocked.

The quick teacher has 4 supervised steps: this checks the pipeline on a real model (its size, its tokenizer
and chat template, its weight sync), not accuracy.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_effopd_e2e import effopd_train, searches  # noqa: E402  (the launcher of the toy's e2e tests)


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [2])
def test_teacher_logprob_searches_on_the_real_lm(lm_quick_assets, tmp_path, ranks):
    """On 2 FSDP2 ranks, 4 prompts each (each rank holds half of every sharded weight and extrapolates it; two
    rollout replicas take the jumped weights). One rank runs in every benchmark (docs/results/speedup_smollm2.md)."""
    run = effopd_train(lm_quick_assets, tmp_path / "run", "effopd.enable=true", "effopd.score=teacher_logprob",
                       "effopd.val_size=8", "effopd.alphas=[2,8]", f"data.train_batch_size={4 * ranks}",
                       f"actor_rollout_ref.actor.ppo_mini_batch_size={4 * ranks}",
                       "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
                       steps=2, ranks=ranks, config="smollm2_cpu", timeout=1200)
    assert [int(m["training/global_step"]) for m in run.steps] == [1, 2]
    found = searches(run)
    assert sorted(found) == [1, 2]
    for step, m in found.items():
        printed = re.findall(rf"\[effopd\] step {step} α=(?!0\s)\S+\s+score=", run.stdout)  # a line per candidate
        assert m["effopd/candidates_scored"] == len(printed) >= 1 and m["effopd/direction_norm"] > 0, (step, m)
        assert m["effopd/score_best"] >= m["effopd/score_base"]
        assert f"[effopd] step {step} α=0" in run.stdout
    for m in run.steps:  # the rollout holds the actor's weights (after a jump too): fp32 both sides
        assert m["training/rollout_probs_diff_max"] < 1e-3, m["training/rollout_probs_diff_max"]
