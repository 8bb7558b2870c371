"""Trainer runs shared by several end-to-end tests: a trainer start costs 1-2 minutes on 2 cores, so a run whose
files two tests can read is run once per session."""

from __future__ import annotations

import pytest
from test_effopd_e2e import HUGE_ALPHA, TEACHER_LOGPROB, Run, effopd_train

# 3 FSDP2 ranks (test_three_ranks.py): 24 prompts, 8 per rank, one micro-batch of 8 (a batch that divides by 3, as
# check_run_config demands); a search at every step whose only candidate, α = 1e5, is always rejected, with a
# back-off after 3 such searches (test_schedule_e2e.py)
THREE_RANKS_SCHEDULE = [
    "data.train_batch_size=24", "actor_rollout_ref.actor.ppo_mini_batch_size=24",
    "effopd.enable=true", "effopd.score=teacher_logprob", "effopd.val_size=24", f"effopd.alphas=[{HUGE_ALPHA:g}]",
    "effopd.trigger_every=1", "effopd.backoff_after=3", "effopd.backoff=double", "trainer.save_freq=5",
]


@pytest.fixture(scope="session")
def teacher_logprob_run(toy_assets, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """EffOPD through ``effopd-train`` with the teacher_logprob score, 1 rank, 5 steps, a checkpoint at steps 2, 4
    and 5: the uninterrupted run of the resume test, and the run whose last checkpoint the fault test damages
    (in a copy). Tests must not write into its folder."""
    return effopd_train(toy_assets, tmp_path_factory.mktemp("teacher_logprob") / "whole", *TEACHER_LOGPROB)


@pytest.fixture(scope="session")
def three_ranks_schedule_run(toy_assets, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """EffOPD through ``effopd-train`` on 3 FSDP2 ranks, 5 steps, :data:`THREE_RANKS_SCHEDULE`: the odd
    data-parallel size of test_three_ranks.py and the trigger_every / back-off schedule of test_schedule_e2e.py
    in one trainer start (the schedule is the driver's; the ranks are the workers')."""
    return effopd_train(toy_assets, tmp_path_factory.mktemp("three_ranks") / "run", *THREE_RANKS_SCHEDULE, ranks=3)
