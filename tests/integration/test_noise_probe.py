"""``effopd.noise_probe_repeats`` through ``effopd-train`` on the CPU toy (the real trainer, Ray, the ``hf``
rollout): θ_t is scored 1 + N times through verl's agent loop at each search and ``effopd/noise/*`` is logged.

On this backend greedy decoding of a fixed θ on fixed prompts gave the same answers call after call
(``docs/results/acceptance_noise.md``); the test holds the backend to that, so a change that makes the
reward score noisy on CPU (or a probe that scores something other than θ_t) fails here.
"""

from __future__ import annotations

import pytest
from test_effopd_e2e import UNDER_STEPPED, effopd_train, searches


@pytest.mark.slow
def test_noise_probe_scores_theta_t_repeatedly_through_the_real_rollout(toy_assets, tmp_path):
    run = effopd_train(toy_assets, tmp_path / "probe", *UNDER_STEPPED, "effopd.enable=true", "effopd.score=reward",
                       "effopd.val_size=16", "effopd.alphas=[2]", "effopd.noise_probe_repeats=2", steps=1)
    (m,) = searches(run).values()
    assert m["effopd/noise/calls"] == 3
    assert m["effopd/noise/score_sd"] == 0 and m["effopd/noise/prompts_changed"] == 0, m
    assert m["effopd/noise/max_prompt_diff"] == 0 and m["effopd/noise/score_range"] == 0
    assert "[effopd] step 1: θ_t scored 3× (effopd.noise_probe_repeats)" in run.stdout
    assert m["effopd/candidates_scored"] == 1  # the probe adds no candidate
