"""An odd data-parallel size: EffOPD through ``effopd-train`` on 3 FSDP2 ranks of the CPU toy.

The GPU examples run 6 and 12 student ranks; every other test runs 1 or 2. With 3 ranks FSDP2 splits
each matrix's rows 3 ways (unevenly when the row count is not a multiple of 3), verl splits each
mini-batch into thirds, and the search extrapolates, scores and restores the three shards. The run is the
session's ``three_ranks_schedule_run`` (conftest.py: 24 prompts, 8 per rank; a teacher_logprob search at every
step, its α = 1e5 rejected), whose schedule test_schedule_e2e.py checks.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_effopd_e2e import model_shard, searches


@pytest.mark.slow
def test_effopd_on_three_ranks(three_ranks_schedule_run):
    run = three_ranks_schedule_run
    assert [int(m["training/global_step"]) for m in run.steps] == [1, 2, 3, 4, 5]
    found = searches(run)
    assert {1, 2} <= set(found)  # triggers t = 1, 2 (and the schedule's later ones)
    for step, m in found.items():
        assert math.isfinite(m["effopd/score_base"]) and m["effopd/direction_norm"] > 0, (step, m)
    for m in run.steps:
        assert math.isfinite(m["actor/distillation/loss"]), m
        assert 0.0 < m["actor/grad_norm"] < math.inf, m
    # the rows of each matrix are split 3 ways, unevenly where the rows do not divide by 3 (q_proj's 128,
    # k_proj's 64, the embedding's 52 of the toy)
    shards = [model_shard(run.checkpoints, 5, rank, 3) for rank in range(3)]
    for name, tensor in shards[0].items():
        if tensor.dim() == 2:
            rows = [s[name].shape[0] for s in shards]
            assert sum(rows) > max(rows) > 0, (name, rows)
    assert any(len({s[name].shape[0] for s in shards}) > 1 for name, t in shards[0].items() if t.dim() == 2)
    assert all(torch.isfinite(t).all() for s in shards for t in s.values())
