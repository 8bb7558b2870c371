"""Acceptance under noise: how often EffOPD's greedy rule accepts a candidate that is not better.

A search accepts a jump iff its first candidate θ_t + α_1·d passes the rule against θ_t
(:mod:`effopd_verl.core.search`), so its false-accept rate is that of one paired comparison of n
per-prompt scores. The noise of that comparison is measured, not assumed:

- *call noise*: θ_t scored repeatedly on the same prompts (``effopd.noise_probe_repeats`` in a real run,
  :func:`effopd_verl.core.search.repeat_noise`);
- *paired per-prompt noise*: the per-prompt differences δ_i = s_i(θ') − s_i(θ) between θ_t and a nearby
  model θ' (a search's own candidates, rebuilt from a run's checkpoints, scored on a held-out split).
  Even when θ' is no better on the population, it answers other prompts right and wrong, so its mean on
  a fixed sample of n prompts differs from θ_t's.

The null model (:class:`NullNoise`) keeps the measured shape and removes any true gain: each simulated
per-prompt difference is a measured δ drawn with replacement, times a random sign (a symmetric
distribution: E[δ] = 0 exactly, ties and the 0/±1 lattice of a 0/1 reward kept). A simulated search
(:func:`simulate_searches`) gives candidate k the per-prompt scores s^(k) = s^(k−1) + δ^(k), fresh
δ^(k) for each; the rule only ever compares a candidate with the one before it (the best so far, or the
search has stopped), so each comparison sees exactly one null draw. Under the paper's rule (accept iff
mean δ > 0) a search then jumps with probability (1 − P(tie))/2; a rule that also asks
mean δ > k·SE(δ) jumps with probability about P(Z > k) whatever the noise's scale.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from effopd_verl.core.search import IMPROVED, greedy_search, judge

#: The paper's rule: any strict improvement of the mean score.
PAPER_RULE = (0.0, 0.0)


@dataclass(frozen=True)
class NullNoise:
    """Paired per-prompt score differences between models of equal quality, resampled with random signs."""

    differences: tuple[float, ...]
    """Measured per-prompt differences δ_i (candidate − θ_t), pooled over model pairs."""

    def __post_init__(self) -> None:
        if not self.differences or not all(math.isfinite(d) for d in self.differences):
            raise ValueError("NullNoise needs a non-empty pool of finite per-prompt differences")

    def draw(self, rng: random.Random, n: int) -> list[float]:
        """n differences: ±δ with δ drawn uniformly (with replacement) from the pool, the sign a fair coin."""
        pool = self.differences
        return [pool[rng.randrange(len(pool))] * (1.0 if rng.random() < 0.5 else -1.0) for _ in range(n)]

    def summary(self) -> dict[str, float]:
        """The pool's size, the share of non-zero differences (prompts that changed) and their rms."""
        pool = self.differences
        return {
            "pooled_prompts": len(pool),
            "share_changed": sum(1 for d in pool if d != 0) / len(pool),
            "rms": math.sqrt(sum(d * d for d in pool) / len(pool)),
        }


def simulate_searches(
    noise: NullNoise,
    n: int,
    min_improvement: float,
    min_improvement_se: float,
    searches: int = 1000,
    alphas: Sequence[float] = (2.0, 4.0, 6.0, 8.0, 10.0),
    seed: int = 0,
) -> dict[str, float]:
    """``searches`` searches through :func:`greedy_search` on n prompts where no candidate is truly better.

    Returns ``false_accept_rate`` (share of searches that accepted some α > 0), its binomial standard
    error ``false_accept_se`` and ``mean_accepted_alpha``.
    """
    rng = random.Random(seed)
    accepted = []
    for _ in range(searches):
        curve = {0.0: [0.0] * n}
        for prev, alpha in zip((0.0, *alphas), alphas):
            curve[float(alpha)] = [s + d for s, d in zip(curve[float(prev)], noise.draw(rng, n))]
        result = greedy_search(alphas, lambda a: True, curve.__getitem__, min_improvement, min_improvement_se)
        accepted.append(result.accepted_alpha)
    rate = sum(1 for a in accepted if a > 0) / searches
    return {"false_accept_rate": rate, "false_accept_se": math.sqrt(rate * (1 - rate) / searches),
            "mean_accepted_alpha": sum(accepted) / searches}


def smallest_passing_se(
    noise: NullNoise, n: int, target: float, grid: Iterable[float], searches: int = 1000, seed: int = 0
) -> float | None:
    """The smallest k of ``grid`` (ascending) whose rule (0, k) false-accepts at most ``target``; None if none does."""
    for k in grid:
        if simulate_searches(noise, n, 0.0, k, searches, seed=seed)["false_accept_rate"] <= target:
            return float(k)
    return None


def paired_differences(candidate: Sequence[float], base: Sequence[float]) -> list[float]:
    """δ_i = candidate_i − base_i over the same prompts."""
    if len(candidate) != len(base):
        raise ValueError(f"per-prompt scores must be paired: {len(candidate)} vs {len(base)}")
    return [c - b for c, b in zip(candidate, base)]


# --------------------------------------------------------------------------- a run's search log
_CANDIDATE = re.compile(
    r"\[effopd\] step (\d+) α=(\S+)\s+score=(\S+) Δ=([+-]\S+)±(\S+) (\w+) \("
)


@dataclass(frozen=True)
class LoggedCandidate:
    step: int
    alpha: float
    gain: float
    """Mean paired improvement over the best point before it (the previous accepted candidate or θ_t)."""
    se: float
    outcome: str


def parse_search_log(lines: Iterable[str]) -> dict[int, list[LoggedCandidate]]:
    """The candidates of each search from a run's printed candidate lines (``[effopd] step S α=A score=… Δ=G±SE outcome``)."""
    out: dict[int, list[LoggedCandidate]] = {}
    for line in lines:
        m = _CANDIDATE.search(line)
        if m:
            step = int(m.group(1))
            out.setdefault(step, []).append(
                LoggedCandidate(step, float(m.group(2)), float(m.group(4)), float(m.group(5)), m.group(6)))
    return out


def replay(candidates: Sequence[LoggedCandidate], min_improvement: float, min_improvement_se: float) -> float:
    """The α another rule would have accepted in a logged search: the longest prefix of the logged
    candidates whose (gain, se) pass it. Exact when the stricter rule is replayed on a looser rule's log:
    each logged comparison is against the previous candidate, and the stricter rule stops no later."""
    accepted = 0.0
    for c in candidates:
        if judge(c.gain, c.se, min_improvement, min_improvement_se) != IMPROVED:
            break
        accepted = c.alpha
    return accepted


# --------------------------------------------------------------------------- weights of a search's candidates
def theta_before_jump(committed: Mapping, anchor: Mapping, alpha: float, selects) -> dict:
    """θ_t from the committed point P = θ_t + α·(θ_t − A) of a trigger: θ_t = (P + α·A)/(1 + α) on the
    extrapolated parameters (``selects(name)``), P itself elsewhere."""
    return {k: ((v + alpha * anchor[k]) / (1 + alpha) if selects(k) and k in anchor else v) for k, v in committed.items()}


def extrapolated(theta: Mapping, anchor: Mapping, alpha: float, selects) -> dict:
    """θ_t + α·(θ_t − A) on the extrapolated parameters, θ_t elsewhere."""
    return {k: (v + alpha * (v - anchor[k]) if selects(k) and k in anchor else v) for k, v in theta.items()}


def per_prompt_scores(scorer) -> tuple[list[float], list[float]]:
    """Per prompt of a :class:`effopd_verl.bench.toy_testbed.ToyScorer`'s split, for the weights it holds:
    greedy exact match (0/1, the ``reward`` score) and the mean per-token log-prob of the teacher's greedy
    answer, EOS included (the ``teacher_logprob`` score)."""
    import torch

    from effopd_verl.toy.train import greedy_answers, make_batch

    questions = [q for q, _ in scorer.pairs]
    answers = greedy_answers(scorer.model, scorer.encoder, questions, scorer.max_new)
    exact = [float(r.strip() == a) for r, (_, a) in zip(answers, scorer.pairs)]
    logprob: list[float] = []
    with torch.no_grad():
        for i in range(0, len(questions), 128):
            ids, mask, labels = make_batch(scorer.encoder, list(zip(questions[i:i + 128], scorer.teacher_answers[i:i + 128])))
            logp = torch.log_softmax(scorer.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
            target = labels[:, 1:]
            valid = target != -100
            picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid
            logprob.extend((picked.sum(1) / valid.sum(1).clamp(min=1)).tolist())
    return exact, logprob


# --------------------------------------------------------------------------- one run, measured
def _gain(candidate: Sequence[float], base: Sequence[float]) -> dict[str, float]:
    """Mean paired gain candidate − base on the split and its standard error."""
    from effopd_verl.core.search import paired_improvement

    mean, se = paired_improvement(candidate, base)
    return {"gain": mean, "se": se}


def measure_run(run_dir, scorer, selects) -> dict:
    """One finished ``effopd-train`` run (its ``train.log``, ``metrics.jsonl`` and every step's checkpoint):

    - ``call_noise``: per trigger, the ``effopd/noise/*`` metrics (θ_t scored 1 + N times through the run's
      own scoring path; present with ``effopd.noise_probe_repeats`` = N > 0);
    - ``searches``: per trigger, the logged candidates (gain, SE, outcome on the run's validation prompts),
      and, on the scorer's split, every logged candidate's paired gain over θ_t for both scores;
    - ``differences``: per score, the per-prompt differences (first candidate − θ_t) on the split, pooled.

    θ_t is rebuilt from the committed checkpoint (:func:`theta_before_jump`), the anchor being the previous
    trigger's checkpoint (the initial student at the first trigger); candidates by :func:`extrapolated`.
    """
    from pathlib import Path

    from effopd_verl.bench.checkpoint_scores import load_checkpoint_state
    from effopd_verl.bench.runs import read_metrics

    run_dir = Path(run_dir)
    logged = parse_search_log((run_dir / "train.log").read_text(errors="replace").splitlines())
    metrics = read_metrics(run_dir / "metrics.jsonl")
    call_noise = {step: {k.removeprefix("effopd/noise/"): v for k, v in metrics[step].items() if k.startswith("effopd/noise/")}
                  for step in sorted(logged) if step in metrics}
    anchor = {k: v.clone() for k, v in scorer.initial.items()}
    searches, differences = {}, {"reward": [], "teacher_logprob": []}
    for step in sorted(logged):
        candidates = logged[step]
        committed = load_checkpoint_state(run_dir / "checkpoints" / f"global_step_{step}")
        accepted = replay(candidates, 0.0, 0.0)
        if accepted != metrics.get(step, {}).get("effopd/accepted_alpha", accepted):
            raise RuntimeError(f"{run_dir} step {step}: the log's candidates do not give the α the run committed")
        theta = theta_before_jump(committed, anchor, accepted, selects)
        scorer.load(theta)
        base = dict(zip(("reward", "teacher_logprob"), per_prompt_scores(scorer)))
        on_split = []
        for i, c in enumerate(candidates):
            scorer.load(extrapolated(theta, anchor, c.alpha, selects))
            scores = dict(zip(("reward", "teacher_logprob"), per_prompt_scores(scorer)))
            on_split.append({"alpha": c.alpha, **{name: _gain(scores[name], base[name]) for name in scores}})
            if i == 0:
                for name in scores:
                    differences[name].extend(paired_differences(scores[name], base[name]))
        searches[step] = {"accepted_alpha": accepted, "logged": [c.__dict__ for c in candidates],
                          "on_split": on_split, "base_on_split": {k: sum(v) / len(v) for k, v in base.items()}}
        anchor = committed
    return {"run": str(run_dir), "call_noise": call_noise, "searches": searches, "differences": differences}


# --------------------------------------------------------------------------- from measurements to rates
def summarize(runs: Mapping[str, Sequence[dict]], sizes: Sequence[int], searches: int, target: float,
              se_grid: Sequence[float], rules: Mapping[str, tuple[float, float]], seed: int = 0) -> dict:
    """Per score: the measured noise and the false-accept rates.

    ``runs``: score → the :func:`measure_run` results of runs that searched with that score (each run
    measures both scores' paired noise on its split; its call noise is that of its own score: a score
    without a run has no call noise measured). ``rules``:
    score → the rule to report besides the paper's (the default). Rates at every n of ``sizes``, and the
    smallest k of ``se_grid`` with false-accept rate ≤ ``target`` (min_improvement 0).
    """
    measured = [m for ms in runs.values() for m in ms]
    out = {}
    for score in measured[0]["differences"]:  # every run measures both scores' paired noise
        noise = NullNoise(tuple(d for m in measured for d in m["differences"][score]))
        calls = [c for m in runs.get(score, ()) for c in m["call_noise"].values() if c]
        rule = rules[score]
        rates = {}
        for n in sizes:
            rates[str(n)] = {
                "paper": simulate_searches(noise, n, *PAPER_RULE, searches, seed=seed),
                "default": simulate_searches(noise, n, *rule, searches, seed=seed),
                "se_grid": {f"{k:g}": simulate_searches(noise, n, 0.0, k, searches, seed=seed)["false_accept_rate"]
                            for k in se_grid},
                "smallest_passing_se": smallest_passing_se(noise, n, target, se_grid, searches, seed=seed),
            }
        out[score] = {
            "call_noise": {
                "searches_probed": len(calls),
                "calls_per_search": max((c["calls"] for c in calls), default=0),
                "max_score_sd": max((c["score_sd"] for c in calls), default=None),
                "max_prompts_changed": max((c["prompts_changed"] for c in calls), default=None),
            },
            "paired_noise": {"model_pairs": sum(len(m["searches"]) for m in measured), **noise.summary()},
            "default_rule": {"min_improvement": rule[0], "min_improvement_se": rule[1]},
            "false_accept": rates,
            "null_differences": [round(d, 6) for d in noise.differences],
        }
    return out


def replay_searches(runs: Mapping[str, Sequence[dict]], rules: Mapping[str, tuple[float, float]]) -> list[dict]:
    """Every logged search of every run: the α the paper's rule took, the α the default rule takes (replayed
    on the log), and each one's paired gain over θ_t on the held-out split (both scores)."""
    rows = []
    for score, ms in runs.items():
        for m in ms:
            for step, search in m["searches"].items():
                logged = [LoggedCandidate(**c) for c in search["logged"]]
                paper, default = replay(logged, *PAPER_RULE), replay(logged, *rules[score])
                on_split = {c["alpha"]: c for c in search["on_split"]}
                rows.append({
                    "score": score, "run": m["run"], "step": int(step), "paper_alpha": paper, "default_alpha": default,
                    "logged": [(c.alpha, c.gain, c.se, c.outcome) for c in logged],
                    "paper_gain_on_split": on_split.get(paper), "default_gain_on_split": on_split.get(default),
                })
    return rows


__all__ = [
    "PAPER_RULE", "NullNoise", "simulate_searches", "smallest_passing_se", "paired_differences", "LoggedCandidate",
    "parse_search_log", "replay", "theta_before_jump", "extrapolated", "per_prompt_scores", "measure_run",
    "summarize", "replay_searches",
]
