"""verl 0.9.1's real OPD trainer on the CPU, end to end, on the toy task: 1 and 2 FSDP2 ranks.

After every weight push verl compares the hf rollout's log-probs of the sampled tokens with the
actor's on the same tokens (``training/rollout_probs_diff_max``, ``rollout.calculate_log_probs=true``);
both run in fp32, so a push that loaded anything but the actor's weights shows as a large diff.
The 1-rank run is the session's shared ``plain_opd_one_rank`` (tests/conftest.py).
"""

from __future__ import annotations

import pytest

STEPS = 4


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 2])
def test_opd_runs_and_rollout_matches_actor_after_every_push(request, run_verl_opd, tmp_path, ranks):
    run = request.getfixturevalue("plain_opd_one_rank") if ranks == 1 else run_verl_opd(tmp_path, ranks, STEPS)
    assert len(run.steps) == STEPS
    for m in run.steps:
        assert m["training/rollout_probs_diff_valid"] == 1.0
        assert m["training/rollout_probs_diff_max"] < 1e-4, m["training/rollout_probs_diff_max"]
    grad_norms = [m["actor/grad_norm"] for m in run.steps]
    assert all(0.0 < g < float("inf") for g in grad_norms), grad_norms  # every push carried a real update
    losses = [m["actor/distillation/loss"] for m in run.steps]
    if ranks == 1:
        # One rollout replica: the run repeats itself (the enable=false test gets the same losses) and falls 4.05 →
        # 3.52. With 2 ranks the rollouts are spread over 2 replicas, each seeding a prompt by how often it has seen
        # it, and the run does not repeat itself: the loss of a 16-prompt batch over 4 steps is noise there (it passed
        # in earlier CI runs; one gave 3.56, 3.31, 3.79, 3.64).
        assert losses[-1] < losses[0], losses
