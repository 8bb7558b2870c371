"""An odd data-parallel size: EffOPD through ``effopd-train`` on 3 FSDP2 ranks of the CPU toy.

The GPU examples run 6 and 12 student ranks; every other test runs 1 or 2. With 3 ranks FSDP2 splits
each matrix's rows 3 ways (unevenly when the row count is not a multiple of 3), verl splits each
mini-batch into thirds, and the search extrapolates and scores the three shards. The batch (24 prompts,
8 per rank, one micro-batch of 8) is one that divides by 3, as ``check_run_config`` demands.
"""

from __future__ import annotations

import math

import pytest
from test_effopd_e2e import effopd_train, searches

THREE_RANKS = [
    "data.train_batch_size=24",
    "actor_rollout_ref.actor.ppo_mini_batch_size=24",
    "effopd.enable=true",
    "effopd.score=teacher_logprob",
    "effopd.val_size=24",
    "effopd.alphas=[2,4]",
]


@pytest.mark.slow
def test_effopd_on_three_ranks(toy_assets, tmp_path):
    run = effopd_train(toy_assets, tmp_path / "three", *THREE_RANKS, steps=2, ranks=3)
    assert [int(m["training/global_step"]) for m in run.steps] == [1, 2]
    found = searches(run)
    assert sorted(found) == [1, 2]  # triggers t = 1, 2
    for step, m in found.items():
        assert math.isfinite(m["effopd/score_base"]) and m["effopd/direction_norm"] > 0, (step, m)
    for m in run.steps:
        assert math.isfinite(m["actor/distillation/loss"]), m
        assert 0.0 < m["actor/grad_norm"] < math.inf, m
