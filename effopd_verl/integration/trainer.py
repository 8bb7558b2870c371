"""EffOPDTrainer: verl 0.9.1's synchronous v1 trainer with the EffOPD search at trigger steps.

At the end of ``step()`` of a trigger step t (after the optimizer update; rollout replicas asleep;
before verl's checkpoint save and its final weight push in ``on_step_end``):

    d = θ_t − θ_anchor on every rank;  s* = score(θ_t)
    for α in alphas:  θ := θ_t + α·d  → score  → accept while it strictly improves, else stop
    θ := accepted point;  θ_anchor := θ

Logged at each trigger: ``effopd/score_base``, ``score_best``, ``accepted_alpha``,
``candidates_scored``, ``search_seconds``, ``direction_norm``, ``score_alpha_<α>``, ``search_undecided``
and ``undecided_searches`` (searches that could compare no candidate with θ_t: a warning names the cause),
``prompts_left_out`` (score=teacher_logprob: prompts with an empty teacher answer) and the direction's
geometry ``effopd/geometry/*`` (cosine with the previous direction, share of ‖d‖² per module type,
‖d‖ per layer; :mod:`effopd_verl.core.live_geometry`), and the schedule's ``effopd/next_window`` and
back-off (``effopd/backoff_level``, ``effopd/backed_off``; :mod:`effopd_verl.core.schedule`).

With ``effopd.enable=false`` nothing of this runs and the trainer is verl's ``PPOTrainerSync``.
"""

from __future__ import annotations

import logging
import math
import os
import time

import ray
from verl.trainer.ppo.utils import Role, create_rl_dataset
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.debug import marked_timer

from effopd_verl.core.live_geometry import direction_geometry
from effopd_verl.core.schedule import Search, TriggerSchedule
from effopd_verl.core.search import UNDECIDED_CAUSES, Candidate, SearchResult, greedy_search, repeat_noise
from effopd_verl.integration import scoring
from effopd_verl.integration.checks import effopd_config_of
from effopd_verl.integration.state import PluginState, effopd_folder, resume_state, resumed_step_folder
from effopd_verl.integration.worker import EffOPDActorRolloutRefWorker

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

_ACTOR_ROLES = (Role.ActorRollout, Role.ActorRolloutRef, Role.Actor)


class EffOPDTrainer(PPOTrainerSync):
    """verl's ``PPOTrainerSync`` plus the EffOPD search (see module docstring)."""

    def __init__(self, config):
        self.effopd = effopd_config_of(config)
        self.effopd_schedule = TriggerSchedule(
            self.effopd.first_trigger, self.effopd.growth, self.effopd.trigger_every,
            self.effopd.backoff_after, self.effopd.backoff,
        )
        self.effopd_history: list[dict] = []
        self.effopd_teacher_answers: list[list[int]] | None = None
        super().__init__(config)

    # ------------------------------------------------------------------ set-up hooks
    def _build_replay_buffer(self):
        buffer = super()._build_replay_buffer()
        buffer.poll_interval = self.effopd.replay_poll_seconds
        return buffer

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        if self.effopd.enable:
            for role in _ACTOR_ROLES:
                if role in self.role_worker_mapping:
                    self.role_worker_mapping[role] = ray.remote(EffOPDActorRolloutRefWorker)

    def _init_dataloader(self):
        super()._init_dataloader()
        if self.effopd.enable:
            dataset = scoring.validation_prompts(
                self.effopd,
                self.train_dataset,
                lambda files: create_rl_dataset(files, self.config.data, self.tokenizer, self.processor, is_train=False),
            )
            self.effopd_prompts = scoring.as_batch(dataset)
            logger.info(f"EffOPD: {len(dataset)} validation prompts, score={self.effopd.score}")

    def _load_checkpoint(self):
        super()._load_checkpoint()  # sets global_steps and loads the actor (replicas asleep)
        if not self.effopd.enable:
            return
        info = self.actor_rollout_wg.effopd_init(self.effopd.to_dict())[0]  # θ_anchor := θ on every rank
        logger.info(f"EffOPD extrapolates {len(info['matched_names'])} parameters: {info['matched_names'][:4]} …")
        if self.global_steps > 0:
            self._effopd_resume(resumed_step_folder(self.config.trainer))  # the folder verl just loaded

    # ------------------------------------------------------------------ the search
    def step(self, metrics, timing_raw):
        batch = super().step(metrics, timing_raw)
        if self.effopd.enable and self.effopd_schedule.is_trigger(self.global_steps, _searches(self.effopd_history)):
            with marked_timer("effopd_search", timing_raw, color="purple"):
                metrics.update(self._effopd_search())
            metrics.update(_schedule_metrics(self.effopd_schedule, self.global_steps, _searches(self.effopd_history)))
        return batch

    def _effopd_search(self) -> dict[str, float]:
        wg, step = self.actor_rollout_wg, self.global_steps
        start = time.perf_counter()
        geometry = direction_geometry(wg.effopd_snapshot())
        direction_norm = geometry.pop("direction_norm")
        replicas_awake = False

        def set_candidate(alpha: float) -> bool:
            nonlocal replicas_awake
            if replicas_awake:
                self.checkpoint_manager.sleep_replicas()
                replicas_awake = False
            return all(wg.effopd_apply(alpha))

        prompts_left_out = None  # teacher_logprob: prompts whose teacher answer is empty
        probe_calls: list[list[float]] = []  # effopd.noise_probe_repeats: θ_t's scores, call after call

        def score_once(alpha: float, repeat: int) -> list[float]:
            nonlocal replicas_awake, prompts_left_out
            if self.effopd.score == "teacher_logprob":
                pairs, prompts_left_out = self._effopd_teacher_answers()
                return scoring.teacher_logprob_scores(wg, pairs)
            if not replicas_awake:
                self.checkpoint_manager.update_weights(step)
                replicas_awake = True
            tag = f"effopd{step}a{alpha:g}" + (f"r{repeat}" if repeat else "")
            return scoring.reward_scores(self, self.effopd_prompts, tag=tag.replace(".", "d"))

        def score(alpha: float) -> list[float]:
            scores = score_once(alpha, 0)
            if alpha == 0.0 and self.effopd.noise_probe_repeats:
                probe_calls.extend([scores] + [score_once(alpha, r) for r in range(1, self.effopd.noise_probe_repeats + 1)])
            return scores

        if self.effopd.fixed_alpha is not None:  # the baseline: jump without scoring
            result = _fixed_jump(self.effopd.fixed_alpha, set_candidate)
        else:
            result = greedy_search(
                self.effopd.alphas, set_candidate, score,
                min_improvement=self.effopd.min_improvement,
                min_improvement_se=self.effopd.min_improvement_se,
                on_candidate=lambda c: print(_candidate_line(step, c), flush=True),
            )
        if replicas_awake:
            self.checkpoint_manager.sleep_replicas()
        wg.effopd_commit(result.accepted_alpha)
        seconds = time.perf_counter() - start
        self.effopd_history.append(_history_record(step, result, direction_norm, geometry, seconds))
        if result.undecided:
            logger.warning(
                f"EffOPD search at step {step} is undecided ({result.undecided}): {UNDECIDED_CAUSES[result.undecided]}; "
                "θ_t is kept, a plain OPD step (effopd/search_undecided=1)"
            )
        scores = "" if math.isnan(result.base_score) else f"score {result.base_score:.4f} → {result.best_score:.4f}, "
        left_out = f"{prompts_left_out} prompts left out, " if prompts_left_out else ""
        undecided = f"undecided: {result.undecided}, " if result.undecided else ""
        print(f"[effopd] step {step}: accepted α={result.accepted_alpha:g} ({scores}{left_out}{undecided}{seconds:.1f}s)",
              flush=True)
        undecided_so_far = sum(1 for record in self.effopd_history if record.get("undecided"))
        noise = repeat_noise(probe_calls) if probe_calls else {}
        if noise:
            print(f"[effopd] step {step}: θ_t scored {noise['calls']:.0f}× (effopd.noise_probe_repeats): mean score sd "
                  f"{noise['score_sd']:.3g}, range {noise['score_range']:.3g}, {noise['prompts_changed']:.1%} of prompts changed",
                  flush=True)
        return {**_metrics(result, direction_norm, seconds, undecided_so_far, prompts_left_out),
                **{f"effopd/{k}": v for k, v in geometry.items()}, **{f"effopd/noise/{k}": v for k, v in noise.items()}}

    def _effopd_prompt_ids(self) -> list[list[int]]:
        if not hasattr(self, "_effopd_prompt_ids_cache"):
            kwargs = dict(self.config.data.get("apply_chat_template_kwargs") or {})
            self._effopd_prompt_ids_cache = scoring.prompt_token_ids(self.tokenizer, self.effopd_prompts, kwargs)
        return self._effopd_prompt_ids_cache

    def _effopd_teacher_answers(self) -> tuple[list[tuple[list[int], list[int]]], int]:
        """The (prompt, teacher answer) pairs to score and how many prompts are left out (empty answers:
        :func:`scoring.answered`). The answers are generated once (greedy) and kept in ``effopd_teacher_answers``."""
        if self.effopd_teacher_answers is None:
            clients = self.get_teacher_client()
            if not clients or len(clients) != 1:
                raise ValueError(
                    f"effopd.score=teacher_logprob needs exactly one teacher, found {len(clients or {})}: "
                    "configure one distillation teacher or use effopd.score=reward"
                )
            rollout = self.config.actor_rollout_ref.rollout
            self.effopd_teacher_answers = scoring.teacher_responses(
                next(iter(clients.values())),
                self._effopd_prompt_ids(),
                scoring.greedy_sampling_params(rollout, max_tokens=int(rollout.response_length)),
            )
            _, left_out = scoring.answered(self._effopd_prompt_ids(), self.effopd_teacher_answers)
            if left_out:
                logger.warning(
                    f"EffOPD: the teacher's greedy answer is empty for {left_out} of {len(self.effopd_teacher_answers)} "
                    "validation prompts: they are left out of every score (effopd/prompts_left_out)"
                )
        return scoring.answered(self._effopd_prompt_ids(), self.effopd_teacher_answers)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self):
        if self.effopd.enable:  # fsynced before verl writes its tracker file: it never points at a partial state
            folder = effopd_folder(os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}"))
            self.actor_rollout_wg.effopd_save(folder)
            PluginState(
                world_size=self.actor_rollout_wg.world_size,
                next_trigger=self.effopd_schedule.next_trigger(self.global_steps, _searches(self.effopd_history)),
                history=self.effopd_history,
                teacher_responses=self.effopd_teacher_answers,
            ).write(folder)
        super()._save_checkpoint()

    def _effopd_resume(self, step_folder: str) -> None:
        """Restore the anchors, history and teacher answers; a missing or damaged state stops the run
        (:func:`state.resume_state`, :func:`state.load_anchor`) unless effopd.resume_without_state is set."""
        folder = effopd_folder(step_folder)
        state = resume_state(step_folder, self.actor_rollout_wg.world_size, self.effopd.resume_without_state)
        if state is None:
            logger.warning(
                f"{step_folder} holds no EffOPD state; effopd.resume_without_state=true: the anchor starts at the "
                f"loaded weights; the next search runs at step {self.effopd_schedule.next_trigger(self.global_steps)}"
            )
            return
        self.actor_rollout_wg.effopd_load(folder, state.world_size)
        self.effopd_history = state.history
        self.effopd_teacher_answers = state.teacher_responses
        logger.info(f"EffOPD resumed from {folder}: {len(state.history)} searches, next at step {state.next_trigger}")


def _searches(history: list[dict]) -> list[Search]:
    """The (step, accepted α) of every search so far: what the schedule's back-off reads."""
    return [(record["step"], record["accepted_alpha"]) for record in history]


def _schedule_metrics(schedule: TriggerSchedule, step: int, searches: list[Search]) -> dict[str, float]:
    """After the search of ``step``: ``effopd/next_window`` (steps to the next search; absent once stopped)
    and, with ``effopd.backoff_after`` set, ``effopd/backoff_level`` (j; 0: the plain schedule) and
    ``effopd/backed_off`` (1 where this search started or deepened the back-off, which is also printed)."""
    nxt = schedule.next_trigger(step, searches)
    metrics = {} if nxt is None else {"effopd/next_window": nxt - step}
    if schedule.backoff_after is not None:
        level = schedule.backoff_level(searches)
        backed_off = level > schedule.backoff_level(searches[:-1])
        metrics.update({"effopd/backoff_level": level, "effopd/backed_off": float(backed_off)})
        if backed_off:
            then = "no more searches" if nxt is None else f"a search at 1 in {2**level} triggers, the next at step {nxt}"
            print(
                f"[effopd] step {step}: back-off (effopd.backoff_after={schedule.backoff_after}, "
                f"effopd.backoff={schedule.backoff}): the last {level * schedule.backoff_after} searches accepted "
                f"nothing; {then}",
                flush=True,
            )
    return metrics


def _fixed_jump(alpha: float, set_candidate) -> SearchResult:
    """θ_t + α·d taken unscored (rejected only if it holds a NaN/Inf): the fixed-extrapolation baseline."""
    start = time.perf_counter()
    finite = set_candidate(alpha)
    jump = Candidate(alpha, math.nan, finite, time.perf_counter() - start, "fixed" if finite else "nonfinite_params")
    return SearchResult(alpha if finite else 0.0, [Candidate(0.0, math.nan, True, 0.0, "base"), jump])


def _candidate_line(step: int, c: Candidate) -> str:
    gain = "" if math.isnan(c.improvement) else f" Δ={c.improvement:+.4f}±{c.improvement_se:.4f}"
    return f"[effopd] step {step} α={c.alpha:<4g} score={c.score:.4f}{gain} {c.outcome} ({c.seconds:.1f}s)"


def _history_record(step: int, result: SearchResult, direction_norm: float, geometry: dict, seconds: float) -> dict:
    return {
        "step": step,
        "accepted_alpha": result.accepted_alpha,
        "direction_norm": direction_norm,
        "direction_cosine": geometry.get("geometry/direction_cosine"),
        "seconds": seconds,
        "undecided": result.undecided,
        "candidates": [
            {"alpha": c.alpha, "score": c.score, "outcome": c.outcome, "seconds": c.seconds} for c in result.history
        ],
    }


def _metrics(
    result: SearchResult, direction_norm: float, seconds: float, undecided_so_far: int, prompts_left_out: int | None
) -> dict[str, float]:
    """The search's metrics; ``effopd/search_undecided`` is 1 for an undecided search (cause: warning and
    history), ``effopd/undecided_searches`` counts them over the run, ``effopd/prompts_left_out`` (score
    teacher_logprob) the validation prompts left out for an empty teacher answer."""
    metrics = {
        "effopd/accepted_alpha": result.accepted_alpha,
        "effopd/candidates_scored": result.candidates_scored,
        "effopd/search_seconds": seconds,
        "effopd/direction_norm": direction_norm,
        "effopd/search_undecided": float(result.undecided is not None),
        "effopd/undecided_searches": undecided_so_far,
    }
    if prompts_left_out is not None:
        metrics["effopd/prompts_left_out"] = prompts_left_out
    if not math.isnan(result.base_score):  # nothing is scored by the fixed-α baseline
        metrics["effopd/score_base"] = result.base_score
        metrics["effopd/score_best"] = result.best_score
        for c in result.history[1:]:
            metrics[f"effopd/score_alpha_{c.alpha:g}"] = c.score
    return metrics
