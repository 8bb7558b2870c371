"""EffOPD's greedy acceptance rule over candidates θ_t + α·d, given per-prompt scores.

α = 0 is θ_t itself and is scored first; it sets the best score s*. Then for α in order:
set the parameters to θ_t + α·d; if any of them is NaN/Inf the candidate is rejected unscored;
otherwise score it on the validation prompts (per-prompt scores s_i, paired across candidates)
and accept it when

    mean(s − s*) > min_improvement                                   (strict), and,
    if min_improvement_se > 0,   mean(s − s*) > min_improvement_se · SE(s − s*),
                                 SE = std(s − s*, ddof=1) / √n  (the paired standard error).

A NaN mean score is rejected. The search stops at the first rejection; the last accepted α
(0 if none: plain OPD) is the result.

A search that compared no candidate with θ_t is *undecided* (``SearchResult.undecided`` names the
cause; α = 0 is kept): θ_t's own score is NaN (``nan_base_score``; no candidate is tried, since none
could be compared with it), or the first candidate is rejected before any comparison
(``nonfinite_params``, ``nan_score``).

Example (scores that rise up to α = 4, then fall)::

    >>> curve = {0: [0.1, 0.2], 2: [0.3, 0.4], 4: [0.5, 0.5], 6: [0.2, 0.2], 8: [0.9, 0.9]}
    >>> result = greedy_search([2, 4, 6, 8], set_candidate=lambda a: True, score=lambda a: curve[a])
    >>> result.accepted_alpha, [h.alpha for h in result.history]
    (4.0, [0.0, 2.0, 4.0, 6.0])
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

#: Why a candidate ended as it did.
BASE, IMPROVED, NOT_BETTER, NOT_SIGNIFICANT, NONFINITE_PARAMS, NAN_SCORE = (
    "base", "improved", "not_better", "not_significant", "nonfinite_params", "nan_score"
)
#: Why a search is undecided besides a first candidate's NONFINITE_PARAMS / NAN_SCORE.
NAN_BASE_SCORE = "nan_base_score"
#: Each cause of an undecided search in words.
UNDECIDED_CAUSES = {
    NAN_BASE_SCORE: "the score of θ_t is NaN (a NaN score on some validation prompt), so no candidate can be compared",
    NONFINITE_PARAMS: "the first candidate θ_t + α·d holds NaN/Inf parameters",
    NAN_SCORE: "the first candidate's score is NaN",
}


@dataclass
class Candidate:
    """One scored (or rejected) point of a search."""

    alpha: float
    """Extrapolation factor (0: θ_t itself)."""
    score: float
    """Mean per-prompt score (NaN if not scored)."""
    accepted: bool
    """Whether it became the best point (α = 0 always is)."""
    seconds: float
    """Wall time to set the parameters and score them."""
    outcome: str
    """One of base, improved, not_better, not_significant, nonfinite_params, nan_score (and fixed: taken
    unscored by the fixed-α baseline of the trainer)."""
    improvement: float = math.nan
    """Mean paired improvement over the best point before it."""
    improvement_se: float = math.nan
    """Paired standard error of that improvement."""
    per_prompt: list[float] = field(default_factory=list, repr=False)
    """The per-prompt scores (empty if not scored)."""


@dataclass
class SearchResult:
    """The accepted α and what was tried."""

    accepted_alpha: float
    """The α to commit (0: θ_t, plain OPD)."""
    history: list[Candidate]
    """Every point tried, θ_t first."""
    undecided: str | None = None
    """None when some candidate was compared with θ_t; else why none was: nan_base_score (θ_t's score is
    NaN), nonfinite_params or nan_score (the first candidate's rejection)."""

    @property
    def base_score(self) -> float:
        return self.history[0].score

    @property
    def best_score(self) -> float:
        return max((c.score for c in self.history if c.accepted), default=math.nan)

    @property
    def candidates_scored(self) -> int:
        """Candidates scored besides θ_t."""
        return sum(1 for c in self.history[1:] if c.per_prompt)


def paired_improvement(candidate: Sequence[float], best: Sequence[float]) -> tuple[float, float]:
    """Mean of the per-prompt differences candidate − best and its standard error (inf if n < 2)."""
    if len(candidate) != len(best) or not candidate:
        raise ValueError(
            f"scores must be paired per prompt: got {len(candidate)} and {len(best)} values "
            "(every candidate of a search must be scored on the same, non-empty prompt set)"
        )
    diffs = [c - b for c, b in zip(candidate, best)]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, math.inf
    var = sum((x - mean) ** 2 for x in diffs) / (n - 1)
    return mean, math.sqrt(var / n)


def greedy_search(
    alphas: Sequence[float],
    set_candidate: Callable[[float], bool],
    score: Callable[[float], Sequence[float]],
    min_improvement: float = 0.0,
    min_improvement_se: float = 0.0,
    on_candidate: Callable[[Candidate], None] | None = None,
) -> SearchResult:
    """Run the rule in the module docstring.

    ``set_candidate(α)`` puts θ_t + α·d into the model (α = 0: θ_t) and returns False if any
    parameter is NaN/Inf; ``score(α)`` returns the per-prompt scores of the model as it stands.
    ``on_candidate`` is called after each point (for progress lines). The model is left at the
    last point tried: the caller commits ``accepted_alpha``.
    """
    history: list[Candidate] = []

    def record(candidate: Candidate) -> Candidate:
        history.append(candidate)
        if on_candidate is not None:
            on_candidate(candidate)
        return candidate

    start = time.perf_counter()
    if not set_candidate(0.0):
        raise RuntimeError("θ_t itself holds NaN/Inf: training diverged before the EffOPD search")
    best_scores = [float(s) for s in score(0.0)]
    best = record(Candidate(0.0, _mean(best_scores), True, time.perf_counter() - start, BASE, per_prompt=best_scores))
    if math.isnan(best.score):
        return SearchResult(accepted_alpha=0.0, history=history, undecided=NAN_BASE_SCORE)

    for alpha in map(float, alphas):
        start = time.perf_counter()
        if not set_candidate(alpha):
            record(Candidate(alpha, math.nan, False, time.perf_counter() - start, NONFINITE_PARAMS))
            return _stopped(best, history, NONFINITE_PARAMS)
        scores = [float(s) for s in score(alpha)]
        elapsed = time.perf_counter() - start
        mean = _mean(scores)
        if math.isnan(mean):
            record(Candidate(alpha, mean, False, elapsed, NAN_SCORE, per_prompt=scores))
            return _stopped(best, history, NAN_SCORE)
        gain, se = paired_improvement(scores, best.per_prompt)
        outcome = judge(gain, se, min_improvement, min_improvement_se)
        candidate = record(Candidate(alpha, mean, outcome == IMPROVED, elapsed, outcome, gain, se, scores))
        if not candidate.accepted:
            break
        best = candidate
    return SearchResult(accepted_alpha=best.alpha, history=history)


def judge(gain: float, se: float, min_improvement: float, min_improvement_se: float) -> str:
    """The acceptance rule on one paired comparison: IMPROVED, NOT_BETTER or NOT_SIGNIFICANT.

        >>> judge(0.02, 0.015, 0.0, 0.0), judge(0.02, 0.015, 0.0, 2.0), judge(0.0, 0.0, 0.0, 0.0)
        ('improved', 'not_significant', 'not_better')
    """
    if not gain > min_improvement:
        return NOT_BETTER
    if min_improvement_se > 0 and not gain > min_improvement_se * se:
        return NOT_SIGNIFICANT
    return IMPROVED


def repeat_noise(calls: Sequence[Sequence[float]]) -> dict[str, float]:
    """The call-to-call noise of one model's per-prompt scores, scored ``len(calls)`` times on the same prompts.

    With m_j the mean score of call j and s_ij the score of prompt i in call j:
    ``score_sd`` = std_j(m_j) (ddof=1), ``score_range`` = max_j m_j − min_j m_j, ``prompts_changed`` = the
    share of prompts i whose s_ij is not the same in every call, ``max_prompt_diff`` = max_i (max_j s_ij −
    min_j s_ij). All 0 for a deterministic score.

        >>> repeat_noise([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])["prompts_changed"]
        0.25
    """
    if len(calls) < 2 or len({len(c) for c in calls}) != 1 or not calls[0]:
        raise ValueError(f"need >= 2 calls of the same, non-empty prompts; got sizes {[len(c) for c in calls]}")
    means = [_mean(c) for c in calls]
    spreads = [max(column) - min(column) for column in zip(*calls)]
    centre = _mean(means)
    return {
        "calls": float(len(calls)),
        "score_sd": math.sqrt(sum((m - centre) ** 2 for m in means) / (len(means) - 1)),
        "score_range": max(means) - min(means),
        "prompts_changed": sum(1 for d in spreads if d != 0) / len(spreads),
        "max_prompt_diff": max(spreads),
    }


def _stopped(best: Candidate, history: list[Candidate], outcome: str) -> SearchResult:
    """The result of a search ended by a candidate rejected uncompared: undecided if it was the first."""
    return SearchResult(accepted_alpha=best.alpha, history=history, undecided=outcome if len(history) == 2 else None)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
