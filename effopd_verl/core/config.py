"""EffOPD's configuration: the ``effopd:`` section of the hydra config, as a typed dataclass.

Every field is validated in ``__post_init__``; an invalid value raises ``ValueError`` naming the
field, the value and what is allowed, before any expensive work starts.

Example::

    >>> cfg = EffOPDConfig(enable=True, alphas=[2, 4])
    >>> cfg.alphas
    (2.0, 4.0)
    >>> EffOPDConfig(alphas=[4, 2])
    Traceback (most recent call last):
    ...
    ValueError: effopd.alphas=[4, 2] is invalid: alphas must be strictly increasing, e.g. [2, 4, 6, 8, 10]
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from effopd_verl.core.schedule import BACKOFFS

SCORES = ("reward", "teacher_logprob")
ANCHOR_DEVICES = ("cpu", "same")

#: The reference implementation's keywords: attention and MLP parameters (projections and their biases).
#: Unlike the reference (whose "attn" also catches Qwen3's q_norm/k_norm), norms are excluded, as are
#: embeddings and lm_head.
DEFAULT_PARAM_INCLUDE = r"(attn|mlp|proj)"
DEFAULT_PARAM_EXCLUDE = r"(embed|lm_head|norm)"


def _invalid(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"effopd.{name}={value!r} is invalid: {allowed}")


@dataclass
class EffOPDConfig:
    """Settings of EffOPD: when to extrapolate, along what, and how candidates are judged.

    At trigger steps t = first_trigger·growth^k, with θ_t the weights after the update of step t
    and θ_anchor the initial weights (first trigger) or the point accepted at the previous trigger:
    d = θ_t − θ_anchor; candidates θ_t + α·d for α in ``alphas``; greedy acceptance by ``score``.
    """

    enable: bool = False
    """Run the EffOPD search at trigger steps; false gives verl's plain on-policy distillation."""

    alphas: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0, 10.0)
    """Extrapolation factors α of the candidates θ_t + α·d, tried in order; positive, strictly increasing."""

    val_size: int = 50
    """Number of validation prompts sampled once from the training data (ignored with ``val_files``)."""

    val_files: str | None = None
    """Parquet file(s) of validation prompts in verl's RL format; default: sample from the training data."""

    param_include: str = DEFAULT_PARAM_INCLUDE
    """Regex (re.search) on parameter names selecting what is extrapolated."""

    param_exclude: str = DEFAULT_PARAM_EXCLUDE
    """Regex (re.search) on parameter names removed from the selection; empty string excludes nothing."""

    anchor_device: str = "cpu"
    """Where the fp32 anchor and θ_t snapshot live: ``cpu`` (saves accelerator memory) or ``same`` (as the parameter)."""

    score: str = "reward"
    """``reward``: mean task reward of rollouts on the validation prompts (the paper's);
    ``teacher_logprob``: mean per-token log-probability the candidate gives the teacher's responses."""

    min_improvement: float = 0.0
    """A candidate is accepted only if its mean score exceeds the best so far by more than this (strict >)."""

    min_improvement_se: float = 2.0
    """When > 0, a candidate must also beat the best by this many standard errors of the paired
    per-prompt score differences; 0 turns the test off. The default 2 holds the false-accept rate (a jump
    where no candidate is better) to 0.1% (reward) and 2% (teacher_logprob) at 50 prompts under the noise
    measured on the toy, where the paper's rule (``min_improvement=0, min_improvement_se=0``: any strict
    gain) jumps in 26% and 53% of such searches (``docs/results/acceptance_noise.md``)."""

    fixed_alpha: float | None = None
    """A baseline, not EffOPD: when set, every trigger commits θ_t + fixed_alpha·d without scoring
    anything (the fixed-extrapolation style of AlphaOPD / ExPO); null (the default) runs the search."""

    first_trigger: int = 1
    """First global step (1-based) at which a search runs."""

    growth: int = 2
    """Ratio between consecutive trigger steps: triggers at first_trigger·growth^k."""

    trigger_every: int | None = None
    """Shorter windows after the first triggers: the geometric triggers run while their windows are
    ≤ trigger_every, then a search runs every trigger_every steps (4: steps 1, 2, 4, 8, 12, 16, …);
    null keeps the geometric schedule throughout. An integer ≥ 1 (:mod:`effopd_verl.core.schedule`)."""

    backoff_after: int | None = None
    """Back-off: after this many searches in a row that accepted nothing, search less (``backoff``);
    an accepted jump returns to the schedule. Null (the default) never backs off. An integer ≥ 1."""

    backoff: str = "double"
    """What the back-off does: ``double`` searches only at every 2^j-th trigger, j = ⌊(searches in a
    row that accepted nothing) / backoff_after⌋ (the window doubles at every backoff_after further empty
    searches); ``stop`` runs no search any more."""

    seed: int = 0
    """Seed of the validation-prompt sample and of the validation rollouts."""

    direction_cosine: bool = True
    """Log ``effopd/geometry/direction_cosine``, the cosine between consecutive directions d, from every
    61st element of d kept between triggers (1.6% of a local shard in fp32); false holds no sample."""

    replay_poll_seconds: float = 2.0
    """Seconds between polls of verl's v1 replay buffer while it waits for a batch (training rollouts
    and EffOPD's validation rollouts alike, with ``enable`` true or false); verl's default is 2.0. Small
    models finish a step far sooner: the CPU toy sets 0.05. Positive."""

    resume_without_state: bool = False
    """Resuming a checkpoint that holds no EffOPD state (``global_step_N/effopd/state.json``: lost, never
    copied, or written with EffOPD off) stops with an error naming the folder; true starts EffOPD afresh
    there instead (θ_anchor := the loaded weights, no search history) on purpose."""

    noise_probe_repeats: int = 0
    """A diagnostic: at each search, score θ_t this many extra times on the same prompts and log the
    score's own call-to-call noise (``effopd/noise/*``: the spread of θ_t's mean score over the 1 + N
    calls and the share of prompts whose score changed; :func:`effopd_verl.core.search.repeat_noise`).
    Costs N extra scorings per search; 0 (the default) turns it off. An integer >= 0."""

    def __post_init__(self) -> None:
        self.enable = self._check_bool("enable", self.enable)
        self.resume_without_state = self._check_bool("resume_without_state", self.resume_without_state)
        self.direction_cosine = self._check_bool("direction_cosine", self.direction_cosine)
        self.alphas = self._check_alphas(self.alphas)
        self.val_size = self._check_int("val_size", self.val_size, minimum=1)
        if self.val_files is not None and (not isinstance(self.val_files, str) or not self.val_files.strip()):
            raise _invalid("val_files", self.val_files, "give a path to a parquet file, or null to sample from the training data")
        for name in ("param_include", "param_exclude"):
            self._check_regex(name, getattr(self, name))
        if not self.param_include:
            raise _invalid("param_include", self.param_include, "an empty pattern would select no parameter")
        if self.anchor_device not in ANCHOR_DEVICES:
            raise _invalid("anchor_device", self.anchor_device, f"choose one of {list(ANCHOR_DEVICES)}")
        if self.score not in SCORES:
            raise _invalid("score", self.score, f"choose one of {list(SCORES)}")
        for name in ("min_improvement", "min_improvement_se"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise _invalid(name, value, "a finite number >= 0")
            setattr(self, name, float(value))
        if self.fixed_alpha is not None:
            value = self.fixed_alpha
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise _invalid("fixed_alpha", value, "null (search) or a finite number > 0, e.g. 2")
            self.fixed_alpha = float(value)
        self.first_trigger = self._check_int("first_trigger", self.first_trigger, minimum=1)
        self.growth = self._check_int("growth", self.growth, minimum=2)
        for name in ("trigger_every", "backoff_after"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise _invalid(name, value, "an integer >= 1, e.g. 4, or null (off)")
        if self.backoff not in BACKOFFS:
            raise _invalid("backoff", self.backoff, f"choose one of {list(BACKOFFS)}")
        self.seed = self._check_int("seed", self.seed, minimum=0)
        self.noise_probe_repeats = self._check_int("noise_probe_repeats", self.noise_probe_repeats, minimum=0)
        poll = self.replay_poll_seconds
        if isinstance(poll, bool) or not isinstance(poll, (int, float)) or not math.isfinite(poll) or poll <= 0:
            raise _invalid("replay_poll_seconds", poll, "a finite number of seconds > 0, e.g. 2.0 (verl's default)")
        self.replay_poll_seconds = float(poll)

    @staticmethod
    def _check_bool(name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _invalid(name, value, "true or false")
        return value

    @staticmethod
    def _check_int(name: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _invalid(name, value, f"an integer >= {minimum}")
        return value

    @staticmethod
    def _check_regex(name: str, value: Any) -> None:
        if not isinstance(value, str):
            raise _invalid(name, value, "a regular expression string")
        try:
            re.compile(value)
        except re.error as err:
            raise _invalid(name, value, f"not a valid regular expression ({err})") from None

    @staticmethod
    def _check_alphas(value: Any) -> tuple[float, ...]:
        shown = list(value) if isinstance(value, (list, tuple)) else value
        if not isinstance(value, (list, tuple)) or len(value) == 0:
            raise _invalid("alphas", shown, "a non-empty list of positive numbers, e.g. [2, 4, 6, 8, 10]")
        for a in value:
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or a <= 0:
                raise _invalid("alphas", shown, f"every alpha must be a finite number > 0 (got {a!r})")
        if any(b <= a for a, b in zip(value, value[1:])):
            raise _invalid("alphas", shown, "alphas must be strictly increasing, e.g. [2, 4, 6, 8, 10]")
        return tuple(float(a) for a in value)

    def selects(self, name: str) -> bool:
        """Whether parameter ``name`` is extrapolated (include matches and exclude does not)."""
        if re.search(self.param_include, name) is None:
            return False
        return not (self.param_exclude and re.search(self.param_exclude, name))

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> "EffOPDConfig":
        """Build from a plain mapping (e.g. ``OmegaConf.to_container(config.effopd)``); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"effopd has unknown setting(s) {unknown}: allowed are {sorted(known)}")
        values = dict(section)
        if "alphas" in values and values["alphas"] is not None and not isinstance(values["alphas"], (list, tuple)):
            values["alphas"] = list(values["alphas"])  # e.g. an omegaconf ListConfig
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (alphas as a list)."""
        out = asdict(self)
        out["alphas"] = list(self.alphas)
        return out


__all__ = ["EffOPDConfig", "SCORES", "ANCHOR_DEVICES", "DEFAULT_PARAM_INCLUDE", "DEFAULT_PARAM_EXCLUDE"]
