"""effopd_verl.bench.noise: the pure parts (the simulation, the log replay, the candidate weights)."""

from __future__ import annotations

import math

import pytest
import torch

from effopd_verl.bench.noise import (
    LoggedCandidate, NullNoise, extrapolated, paired_differences, parse_search_log, replay, simulate_searches,
    theta_before_jump,
)

LOG = """\
(TaskRunner pid=1) [effopd] step 1 α=0    score=0.1641 base (3.1s)
(TaskRunner pid=1) [effopd] step 1 α=2    score=0.1875 Δ=+0.0234±0.0134 improved (3.0s)
(TaskRunner pid=1) [effopd] step 1 α=4    score=0.2109 Δ=+0.0234±0.0099 improved (3.0s)
(TaskRunner pid=1) [effopd] step 1 α=6    score=0.2031 Δ=-0.0078±0.0078 not_better (3.0s)
(TaskRunner pid=1) [effopd] step 2 α=2    score=-0.7800 Δ=+0.0012±0.0003 improved (0.4s)
"""


def test_the_papers_rule_on_a_lattice_jumps_half_the_untied_searches():
    """Per prompt δ = ±1 with probability q/2 each: P(accept) = (1 − P(tie))/2, P(tie) = Σ_k C(n,k)·… (exact below)."""
    n, q = 20, 0.1
    tie = sum(math.comb(n, 2 * j) * math.comb(2 * j, j) * (q / 2) ** (2 * j) * (1 - q) ** (n - 2 * j) for j in range(n // 2 + 1))
    out = simulate_searches(NullNoise((1.0,) + (0.0,) * 9), n, 0.0, 0.0, searches=4000, seed=3)
    assert out["false_accept_rate"] == pytest.approx((1 - tie) / 2, abs=4 * out["false_accept_se"])
    strict = simulate_searches(NullNoise((1.0,) + (0.0,) * 9), n, 0.0, 3.0, searches=4000, seed=3)
    assert strict["false_accept_rate"] < out["false_accept_rate"] / 5


def test_the_log_is_parsed_and_a_stricter_rule_replays_as_a_prefix():
    searches = parse_search_log(LOG.splitlines())
    assert sorted(searches) == [1, 2]
    assert [(c.alpha, c.outcome) for c in searches[1]] == [(2.0, "improved"), (4.0, "improved"), (6.0, "not_better")]
    assert searches[1][1] == LoggedCandidate(1, 4.0, 0.0234, 0.0099, "improved")
    assert replay(searches[1], 0.0, 0.0) == 4.0
    assert replay(searches[1], 0.0, 2.0) == 0.0  # α = 2: 0.0234 < 2·0.0134
    assert replay(searches[1], 0.0, 1.5) == 4.0
    assert replay(searches[1], 0.03, 0.0) == 0.0
    assert replay(searches[2], 0.0, 3.0) == 2.0


def test_theta_t_is_recovered_from_the_committed_jump():
    anchor = {"mlp.w": torch.tensor([1.0, 2.0]), "norm.w": torch.tensor([5.0])}
    theta = {"mlp.w": torch.tensor([1.5, 1.0]), "norm.w": torch.tensor([7.0])}
    selects = lambda name: "mlp" in name  # noqa: E731
    committed = extrapolated(theta, anchor, 4.0, selects)
    assert torch.allclose(committed["mlp.w"], torch.tensor([3.5, -3.0])) and committed["norm.w"].item() == 7.0
    back = theta_before_jump(committed, anchor, 4.0, selects)
    assert all(torch.allclose(back[k], theta[k]) for k in theta)


def test_paired_differences_must_be_paired():
    assert paired_differences([1.0, 0.0], [0.0, 0.0]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="paired"):
        paired_differences([1.0], [1.0, 0.0])
