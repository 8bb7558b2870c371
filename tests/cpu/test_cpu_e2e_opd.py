"""verl 0.9.1's real OPD trainer on the CPU, end to end, on the toy task: verl's own ``main_ppo``, 1 FSDP2 rank.

After every weight push verl compares the hf rollout's log-probs of the sampled tokens with the
actor's on the same tokens (``training/rollout_probs_diff_max``, ``rollout.calculate_log_probs=true``);
both run in fp32, so a push that loaded anything but the actor's weights shows as a large diff.
The run is the session's shared ``plain_opd_one_rank`` (tests/conftest.py). The same checks on 2 FSDP2 ranks
(2 rollout replicas) are made on the 2-rank EffOPD run of
``tests/integration/test_effopd_e2e.py::test_reward_search_on_two_ranks`` (``assert_rollout_holds_the_actor_weights``,
every step: the diff valid and < 1e-4, a finite non-zero grad norm), one trainer start fewer than a plain 2-rank run.
"""

from __future__ import annotations

import pytest

STEPS = 4


@pytest.mark.slow
def test_opd_runs_and_rollout_matches_actor_after_every_push(plain_opd_one_rank):
    run = plain_opd_one_rank
    assert len(run.steps) == STEPS
    for m in run.steps:
        assert m["training/rollout_probs_diff_valid"] == 1.0
        assert m["training/rollout_probs_diff_max"] < 1e-4, m["training/rollout_probs_diff_max"]
    grad_norms = [m["actor/grad_norm"] for m in run.steps]
    assert all(0.0 < g < float("inf") for g in grad_norms), grad_norms  # every push carried a real update
    # One rollout replica: the run repeats itself (the enable=false test gets the same losses) and falls 4.05 → 3.52.
    losses = [m["actor/distillation/loss"] for m in run.steps]
    assert losses[-1] < losses[0], losses
