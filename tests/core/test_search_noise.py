"""The acceptance rule under measured noise: the default rule rarely jumps when no candidate is better,
the paper's rule often does; and θ_t's call-to-call noise (``repeat_noise``).

The noise model is the one measured on the toy (``docs/results/acceptance_noise.json``, written by
``scripts/bench_acceptance_noise.py``): per-prompt score differences between θ_t and its own search
candidates, resampled with random signs (:class:`effopd_verl.bench.noise.NullNoise`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from effopd_verl.bench.noise import PAPER_RULE, NullNoise, simulate_searches
from effopd_verl.core.config import SCORES, EffOPDConfig
from effopd_verl.core.search import repeat_noise

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "acceptance_noise.json"
TARGET = 0.05


def measured_noise(score: str) -> NullNoise:
    return NullNoise(tuple(json.loads(RESULTS.read_text())["scores"][score]["null_differences"]))


@pytest.mark.parametrize("score", SCORES)
def test_the_default_rule_rarely_jumps_on_noise_and_the_papers_rule_often_does(score):
    noise = measured_noise(score)
    cfg = EffOPDConfig(score=score)
    default = simulate_searches(noise, cfg.val_size, cfg.min_improvement, cfg.min_improvement_se, searches=1000, seed=1)
    paper = simulate_searches(noise, cfg.val_size, *PAPER_RULE, searches=1000, seed=1)
    assert default["false_accept_rate"] <= TARGET, default
    assert paper["false_accept_rate"] > TARGET, paper


def test_a_truly_better_candidate_is_still_accepted_by_the_default_rule():
    """A candidate better on every prompt by a steady margin passes the default rule (it is not just 'never jump')."""
    from effopd_verl.core.search import greedy_search

    cfg = EffOPDConfig()
    base = [0.0, 1.0] * 25
    better = [s + 0.2 + 0.01 * (i % 3) for i, s in enumerate(base)]
    result = greedy_search([2.0], lambda a: True, {0.0: base, 2.0: better}.get, cfg.min_improvement, cfg.min_improvement_se)
    assert result.accepted_alpha == 2.0


def test_null_noise_is_symmetric_and_keeps_the_lattice():
    import random

    draws = NullNoise((1.0, 0.0, 0.0, 0.0)).draw(random.Random(0), 20000)
    assert set(draws) == {-1.0, 0.0, 1.0}
    assert abs(sum(draws) / len(draws)) < 0.02
    assert abs(sum(1 for d in draws if d) / len(draws) - 0.25) < 0.02
    with pytest.raises(ValueError, match="non-empty pool of finite"):
        NullNoise((math.nan,))


def test_repeat_noise_of_a_deterministic_and_of_a_noisy_score():
    same = repeat_noise([[0.5, 1.0, 0.0]] * 3)
    assert same == {"calls": 3.0, "score_sd": 0.0, "score_range": 0.0, "prompts_changed": 0.0, "max_prompt_diff": 0.0}
    noisy = repeat_noise([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    assert noisy["prompts_changed"] == 0.25 and noisy["max_prompt_diff"] == 1.0 and noisy["score_range"] == 0.25
    assert noisy["score_sd"] == pytest.approx(math.sqrt(((0.25 - 1 / 3) ** 2 * 2 + (0.5 - 1 / 3) ** 2) / 2))
    with pytest.raises(ValueError, match="need >= 2 calls"):
        repeat_noise([[1.0, 0.0], [1.0]])
