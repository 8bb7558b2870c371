import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from effopd_verl.core.search import (
    IMPROVED,
    NAN_BASE_SCORE,
    NAN_SCORE,
    NONFINITE_PARAMS,
    NOT_BETTER,
    NOT_SIGNIFICANT,
    greedy_search,
    paired_improvement,
)

ALPHAS = [2.0, 4.0, 6.0, 8.0, 10.0]
N_PROMPTS = 5
per_prompt = st.lists(st.floats(0, 1, allow_nan=False), min_size=N_PROMPTS, max_size=N_PROMPTS)
curves = st.lists(per_prompt, min_size=len(ALPHAS) + 1, max_size=len(ALPHAS) + 1)


class Model:
    """Records what the search sets; the score of α is a fixed per-prompt curve."""

    def __init__(self, curve, nonfinite=()):
        self.curve, self.nonfinite, self.set_calls, self.score_calls = curve, set(nonfinite), [], []

    def set_candidate(self, alpha):
        self.set_calls.append(alpha)
        return alpha not in self.nonfinite

    def score(self, alpha):
        self.score_calls.append(alpha)
        return self.curve[([0.0] + ALPHAS).index(alpha)]


def mean(xs):
    return sum(xs) / len(xs)


@given(curves, st.sampled_from([0.0, 0.01, 0.1]))
def test_accepts_exactly_the_improving_prefix(curve, min_improvement):
    model = Model(curve)
    result = greedy_search(ALPHAS, model.set_candidate, model.score, min_improvement=min_improvement)
    best, expected = mean(curve[0]), 0.0
    for alpha, scores in zip(ALPHAS, curve[1:]):
        gain, _ = paired_improvement(scores, curve[([0.0] + ALPHAS).index(expected)])
        if not gain > min_improvement:
            break
        best, expected = mean(scores), alpha
    assert result.accepted_alpha == expected
    # never accepts a non-improving candidate
    accepted = [c for c in result.history if c.accepted]
    for before, after in zip(accepted, accepted[1:]):
        assert after.score - before.score > min_improvement - 1e-12
    # stops at the first failure: every point but the last one tried was accepted
    assert all(c.accepted for c in result.history[:-1])
    assert model.score_calls == [c.alpha for c in result.history]
    assert result.undecided is None  # every candidate tried was compared with θ_t or its successors


@given(st.lists(per_prompt, min_size=1, max_size=1))
def test_is_a_no_op_when_nothing_improves(base):
    flat = base * (len(ALPHAS) + 1)  # every candidate scores exactly like θ_t
    model = Model(flat)
    result = greedy_search(ALPHAS, model.set_candidate, model.score)
    assert result.accepted_alpha == 0.0
    assert [c.alpha for c in result.history] == [0.0, 2.0]
    assert result.history[1].outcome == NOT_BETTER
    assert result.candidates_scored == 1


def test_nonfinite_candidate_is_rejected_unscored_and_stops_the_search():
    curve = [[0.1] * 3, [0.5] * 3, [0.9] * 3, [1.0] * 3, [1.0] * 3, [1.0] * 3]
    model = Model(curve, nonfinite={4.0})
    result = greedy_search(ALPHAS, model.set_candidate, model.score)
    assert result.accepted_alpha == 2.0
    assert model.score_calls == [0.0, 2.0]
    assert result.history[-1].outcome == NONFINITE_PARAMS and math.isnan(result.history[-1].score)
    assert result.undecided is None  # α = 2 was compared and accepted before


def test_nan_score_is_rejected():
    curve = [[0.1, 0.1], [0.2, 0.2], [math.nan, 0.9]] + [[1.0, 1.0]] * 3
    result = greedy_search(ALPHAS, lambda a: True, Model(curve).score)
    assert result.accepted_alpha == 2.0 and result.history[-1].outcome == NAN_SCORE
    assert result.undecided is None


def test_a_nan_score_of_theta_t_leaves_the_search_undecided_without_trying_candidates():
    curve = [[0.1, math.nan]] + [[1.0, 1.0]] * 5
    model = Model(curve)
    result = greedy_search(ALPHAS, model.set_candidate, model.score)
    assert result.undecided == NAN_BASE_SCORE and result.accepted_alpha == 0.0
    assert model.set_calls == [0.0] and model.score_calls == [0.0]
    assert [c.outcome for c in result.history] == ["base"] and result.candidates_scored == 0


@pytest.mark.parametrize("nonfinite,first_score,cause", [({2.0}, 0.9, NONFINITE_PARAMS), ((), math.nan, NAN_SCORE)])
def test_a_first_candidate_rejected_uncompared_leaves_the_search_undecided(nonfinite, first_score, cause):
    curve = [[0.1, 0.1], [first_score, 0.9]] + [[1.0, 1.0]] * 4
    model = Model(curve, nonfinite=nonfinite)
    result = greedy_search(ALPHAS, model.set_candidate, model.score)
    assert result.undecided == cause and result.accepted_alpha == 0.0
    assert [c.alpha for c in result.history] == [0.0, 2.0] and result.history[-1].outcome == cause


def test_a_first_candidate_that_is_not_better_is_a_decision():
    result = greedy_search(ALPHAS, lambda a: True, Model([[0.5, 0.5], [0.1, 0.1]] + [[1.0, 1.0]] * 4).score)
    assert result.accepted_alpha == 0.0 and result.undecided is None


def test_nonfinite_theta_t_is_an_error():
    with pytest.raises(RuntimeError, match="diverged"):
        greedy_search(ALPHAS, lambda a: False, lambda a: [0.0])


def test_unpaired_scores_are_an_error():
    curve = [[0.1, 0.2], [0.3]] + [[0.0]] * 4
    with pytest.raises(ValueError, match="paired per prompt"):
        greedy_search(ALPHAS, lambda a: True, Model(curve).score)


@given(per_prompt, per_prompt, st.floats(0.5, 4))
def test_standard_error_rule(base, candidate, k):
    curve = [base, candidate] + [[2.0] * N_PROMPTS] * 4
    result = greedy_search(ALPHAS, lambda a: True, Model(curve).score, min_improvement_se=k)
    gain, se = paired_improvement(candidate, base)
    first = result.history[1]
    assert math.isclose(first.improvement, gain) and math.isclose(first.improvement_se, se)
    assert first.accepted == (gain > 0 and gain > k * se)
    if gain > 0 and not gain > k * se:
        assert first.outcome == NOT_SIGNIFICANT and result.accepted_alpha == 0.0


def test_standard_error_rule_on_a_known_case():
    base = [0.0, 0.0, 0.0, 0.0]
    noisy = [1.0, -1.0, 1.0, 0.2]  # mean 0.05, SE ~0.48: better on average, not significantly
    steady = [0.1, 0.1, 0.1, 0.1]  # mean 0.1, SE 0
    assert greedy_search([2.0], lambda a: True, {0.0: base, 2.0: noisy}.get, min_improvement_se=1).accepted_alpha == 0
    assert greedy_search([2.0], lambda a: True, {0.0: base, 2.0: noisy}.get).accepted_alpha == 2
    assert greedy_search([2.0], lambda a: True, {0.0: base, 2.0: steady}.get, min_improvement_se=3).accepted_alpha == 2


def test_history_records_seconds_outcomes_and_callbacks():
    seen = []
    curve = [[0.1], [0.2], [0.1]] + [[0.0]] * 3
    result = greedy_search(ALPHAS, lambda a: True, Model(curve).score, on_candidate=seen.append)
    assert [c.outcome for c in result.history] == ["base", IMPROVED, NOT_BETTER]
    assert seen == result.history
    assert all(c.seconds >= 0 for c in result.history)
    assert result.base_score == 0.1 and result.best_score == 0.2
