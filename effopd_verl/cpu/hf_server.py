"""The ``hf`` rollout server: a Ray actor answering verl's token-in-token-out server calls on the CPU.

It implements the calls verl 0.9.1 makes on a rollout server actor (the vLLM server's contract:
``generate`` returning a ``TokenOutput``, plus the sleep / wake / cache / abort / profile controls,
which have nothing to do on a CPU) and two calls of its own for weight pushes from
:class:`effopd_verl.cpu.hf_adapter.HFServerAdapter`. Concurrent ``generate`` calls are served in
batches (:class:`effopd_verl.cpu.batching.MicroBatcher`); what a sampled request gets does not depend
on its batch (see :mod:`effopd_verl.cpu.hf_engine`): it is seeded from ``rollout.seed``, the
``global_steps`` of the last weight push, the request and :func:`seed_tag`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import torch
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout.replica import TokenOutput

from effopd_verl.cpu.batching import MicroBatcher
from effopd_verl.cpu.hf_engine import HFEngine, Request, Result

__all__ = ["HFRolloutServer", "resolve_request", "seed_tag"]

logger = logging.getLogger(__name__)

# Sampling parameters verl sends that have no effect here (no text is produced; no penalties).
_IGNORED_PARAMS = {"detokenize", "repetition_penalty", "seed", "skip_special_tokens", "min_tokens", "n"}


def resolve_request(prompt_ids: list[int], sampling_params: dict[str, Any], config: RolloutConfig) -> Request:
    """Turn one ``generate`` call into a :class:`Request`, resolving ``max_tokens`` as verl's vLLM server does.

    An explicit ``max_tokens`` (or ``max_new_tokens``) wins; otherwise ``response_length``, capped by
    the prompt budget ``prompt_length + response_length - len(prompt)``; the result is clamped to
    ``[1, max_model_len - len(prompt)]`` when ``max_model_len`` is set.
    """
    params = dict(sampling_params)
    if "max_tokens" in params:
        max_tokens = int(params.pop("max_tokens"))
    elif "max_new_tokens" in params:
        max_tokens = int(params.pop("max_new_tokens"))
    else:
        max_tokens = min(config.response_length, config.prompt_length + config.response_length - len(prompt_ids))
    if config.max_model_len is not None:
        room = int(config.max_model_len) - len(prompt_ids)
        if room < 1:
            raise ValueError(f"prompt of {len(prompt_ids)} tokens leaves no room within max_model_len {config.max_model_len}")
        max_tokens = min(max_tokens, room)
    max_tokens = max(1, max_tokens)
    prompt_logprobs = params.pop("prompt_logprobs", None)
    params.pop("logprobs", None)  # log-probs of the response are always returned
    request = Request(
        prompt_ids=[int(t) for t in prompt_ids],
        max_tokens=max_tokens,
        temperature=float(params.pop("temperature", 1.0)),
        top_p=float(params.pop("top_p", 1.0)),
        top_k=int(params.pop("top_k", -1)),
        ignore_eos=bool(params.pop("ignore_eos", config.get("ignore_eos", False))),
        prompt_logprobs=None if prompt_logprobs is None else int(prompt_logprobs),
    )
    unknown = set(params) - _IGNORED_PARAMS
    if unknown:
        logger.warning("hf rollout server ignores sampling params %s", sorted(unknown))
    return request


def seed_tag(replica_rank: int, request_id: str) -> str:
    """The :attr:`Request.seed_tag` of a call. verl's deterministic ids (``det-<sample index>``, unique in the
    batch, sent under ``rollout.full_determinism``) are the whole tag: each sample keeps its stream whatever
    replica serves it and in whatever order, so a run on several replicas repeats itself (and a resumed run
    repeats the uninterrupted one) although verl's load balancer routes requests by load. Other ids (random
    uuids) are left out and the replica rank is the tag, so replicas serving copies of one prompt draw different
    samples."""
    return request_id if request_id.startswith("det-") else f"{replica_rank}/"


def _load_engine(model_config: HFModelConfig, dtype: torch.dtype, seed: int) -> HFEngine:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        model_config.local_path, dtype=dtype, attn_implementation="sdpa", trust_remote_code=model_config.trust_remote_code
    )
    tokenizer = model_config.tokenizer
    eos: set[int] = set()
    for source in (model_config.generation_config, model.generation_config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        eos.update([value] if isinstance(value, int) else (value or []))
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        eos.add(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer is not None and tokenizer.pad_token_id is not None else min(eos, default=0)
    return HFEngine(model, eos_token_ids=eos, pad_token_id=pad, seed=seed)


class HFRolloutServer:
    """One CPU inference server of a rollout replica (wrapped with ``ray.remote`` by the replica).

    Args:
        config: the rollout (or teacher inference) config.
        model_config: the model config (dataclass or DictConfig of ``HFModelConfig``).
        replica_rank: rank of the replica this server belongs to.
        num_threads: torch intra-op threads for this process (0: torch's default).
    """

    def __init__(self, config: Any, model_config: Any, replica_rank: int, num_threads: int = 0):
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        self.config: RolloutConfig = omega_conf_to_dataclass(config)
        self.model_config: HFModelConfig = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.replica_rank = replica_rank
        self.global_steps: Optional[int] = None
        self.engine = _load_engine(self.model_config, torch.float32, seed=self.config.seed)
        hf_kwargs = dict(self.config.engine_kwargs.get("hf", {}) or {})
        self.batcher: MicroBatcher[Request, Result] = MicroBatcher(
            self.engine.run,
            max_batch=int(hf_kwargs.get("max_batch", self.config.max_num_seqs)),
            window_s=float(hf_kwargs.get("batch_window_s", 0.02)),
        )
        self._staged: list[tuple[str, torch.Tensor]] = []

    def ready(self) -> bool:
        """Returns once the model is loaded (the replica waits on it)."""
        return True

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Optional[list[Any]] = None,
        video_data: Optional[list[Any]] = None,
        **kwargs: Any,
    ) -> TokenOutput:
        """Generate (and, with ``prompt_logprobs`` in ``sampling_params``, score the prompt) for one request."""
        if image_data is not None or video_data is not None:
            raise NotImplementedError("the hf rollout server serves text-only models")
        request = resolve_request(prompt_ids, sampling_params, self.config)
        request.seed_tag = seed_tag(self.replica_rank, request_id)
        result = await self.batcher.submit(request)
        extra: dict[str, Any] = {"global_steps": self.global_steps}
        if result.prompt_table is not None:
            extra["prompt_ids"], extra["prompt_logprobs"] = result.prompt_table
        return TokenOutput(
            token_ids=result.token_ids,
            log_probs=result.log_probs,
            stop_reason="completed",
            extra_fields=extra,
        )

    # ---------------------------------------------------------------- weights (from HFServerAdapter)
    async def stage_weights(self, named_tensors: list[tuple[str, torch.Tensor]]) -> int:
        """Receive one bucket of a weight push; applied together by :meth:`commit_weights`."""
        self._staged.extend(named_tensors)
        return len(self._staged)

    async def commit_weights(self, global_steps: Optional[int] = None) -> dict[str, int]:
        """Load every staged tensor into the model (``global_steps`` keys the random streams from now on,
        :meth:`HFEngine.load_weights`); returns counts for the caller's checks."""
        staged, self._staged = self._staged, []
        loaded = self.engine.load_weights(staged, step=global_steps)
        self.engine.weight_version += 1
        self.global_steps = global_steps
        return {"loaded": loaded, "weight_version": self.engine.weight_version}

    async def weight_version(self) -> int:
        return self.engine.weight_version

    async def batch_sizes(self) -> list[int]:
        """Sizes of the batches served so far."""
        return list(self.batcher.stats.sizes)

    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps

    # ---------------------------------------------------------------- controls with nothing to do on a CPU
    async def wake_up(self, tags: Optional[list[str]] = None) -> None:
        """Weights and cache stay in host memory: nothing to restore."""

    async def sleep(self) -> None:
        """Host memory is not handed back between steps."""

    async def clear_kv_cache(self) -> None:
        """No cache is kept between requests."""

    async def release_kv_cache(self) -> None:
        """No cache is kept between requests."""

    async def resume_kv_cache(self) -> None:
        """No cache is kept between requests."""

    async def abort_all_requests(self, reject_request: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Requests run to completion (no partial rollout on the CPU backend)."""
        return {"aborted_count": 0, "request_ids": []}

    async def resume_generation(self) -> None:
        """Nothing was paused."""

    async def wait_for_requests_to_drain(self) -> None:
        """Requests run to completion."""

    async def start_profile(self, **kwargs: Any) -> None:
        """No engine profiler."""

    async def stop_profile(self) -> None:
        """No engine profiler."""

    def pid(self) -> int:
        return os.getpid()
