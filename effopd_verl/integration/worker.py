"""verl's actor worker plus the RPCs that drive EffOPD on this rank's FSDP2 parameter shards.

Every RPC is ``Dispatch.ONE_TO_ALL``: the driver sends the same call to every rank, each rank works
on its own local shards (no all-gather), and the driver combines the per-rank answers, so all ranks
take the same decision. Parameters are resolved afresh on every call (FSDP2 may re-point storage
when it offloads), the root module is resharded first (FSDP2 leaves it unsharded after a forward,
and writes to unsharded parameters would be lost), and parameters offloaded to CPU are brought to
the device for the duration of the call.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch.distributed.tensor import DTensor
from verl.single_controller.base.decorator import Dispatch, register
from verl.utils.device import get_device_name
from verl.utils.fsdp_utils import fsdp_version
from verl.workers.engine_workers import ActorRolloutRefWorker

from effopd_verl.core.config import EffOPDConfig
from effopd_verl.core.extrapolation import DirectionStats, ShardedExtrapolation
from effopd_verl.core.token_logprob import response_logprobs
from effopd_verl.integration.state import load_anchor, save_anchor

_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def clean_name(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


class EffOPDActorRolloutRefWorker(ActorRolloutRefWorker):
    """Adds ``effopd_*`` RPCs to verl's ``ActorRolloutRefWorker``; everything else is verl's."""

    _effopd: ShardedExtrapolation | None = None

    # ------------------------------------------------------------------ setup
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def effopd_init(self, settings: dict) -> dict:
        """Build the extrapolation state for ``settings`` (the effopd section) and take θ_anchor := θ."""
        config = EffOPDConfig.from_mapping(settings)
        self._effopd = ShardedExtrapolation(
            config.selects, anchor_device=config.anchor_device, direction_sample=config.direction_cosine
        )
        with self._shards() as named:
            self._effopd.set_anchor(named)
        return {"matched_names": self._effopd.matched_names, "bytes_held": self._effopd.bytes_held()}

    # ------------------------------------------------------------------ search
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def effopd_snapshot(self) -> DirectionStats:
        """θ_t := θ; returns this rank's sums over d (‖d‖² per name, products with the previous d)."""
        with self._shards() as named:
            return self._state().snapshot(named)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def effopd_apply(self, alpha: float) -> bool:
        """θ := θ_t + α·d (α = 0: θ_t bitwise); returns whether this rank's shards are all finite."""
        with self._shards() as named:
            if alpha == 0:
                self._state().restore(named)
                return True
            return self._state().apply(alpha, named)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def effopd_commit(self, alpha: float) -> int:
        """θ := θ_t + α·d and θ_anchor := θ; returns the bytes EffOPD holds on this rank afterwards."""
        with self._shards() as named:
            self._state().commit(alpha, named)
        return self._state().bytes_held()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def effopd_response_logprob(self, sequences: list[tuple[list[int], list[int]]]) -> list[float]:
        """Mean per-token log-probability the actor gives each response after its prompt (teacher forcing).

        ``sequences`` holds (prompt token ids, response token ids), both non-empty. Every rank runs the
        same forward passes (FSDP2 gathers shards layer by layer): right-padded batches of at most
        ``DEFAULT_TOKENS_PER_FORWARD`` padded tokens, the log-probs taken from the final hidden states
        and lm_head's weight in chunks of positions, so no [T, V] logits exist whole, in fp32 or bf16
        (:func:`effopd_verl.core.token_logprob.response_logprobs`).
        """
        engine = self.actor.engine
        with engine.eval_mode():
            try:
                return response_logprobs(engine.module, sequences, get_device_name())
            finally:
                engine.module.reshard()

    # ------------------------------------------------------------------ checkpoints
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def effopd_save(self, folder: str) -> None:
        """Write this rank's anchor shard to ``folder`` atomically and durably (:func:`state.save_anchor`)."""
        save_anchor(self._state().state_dict(), folder, self.rank, self.world_size)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def effopd_load(self, folder: str, saved_world_size: int) -> None:
        """Restore this rank's anchor from ``folder`` (safetensors, checked: :func:`state.load_anchor`);
        ``saved_world_size`` is the rank count ``state.json`` records."""
        with self._shards() as named:
            load_anchor(self._state(), named, folder, self.rank, self.world_size, saved_world_size)

    # ------------------------------------------------------------------ internals
    def _state(self) -> ShardedExtrapolation:
        if self._effopd is None:
            raise RuntimeError("effopd_init was not called on this worker")
        return self._effopd

    @contextmanager
    def _shards(self) -> Iterator[list[tuple[str, DTensor]]]:
        """The actor's (name, DTensor) parameters, resharded and on the device, for one call."""
        engine = self.actor.engine
        module = engine.module
        if fsdp_version(module) != 2:
            raise RuntimeError(
                "EffOPD needs FSDP2 parameter shards: set actor_rollout_ref.actor.strategy=fsdp2 "
                "(FSDP1 flattens parameters, so they cannot be selected by name)"
            )
        offloaded = engine.is_param_offload_enabled
        if offloaded:
            engine.to(get_device_name(), model=True, optimizer=False, grad=False)
        try:
            module.reshard()
            named = [(clean_name(n), p) for n, p in module.named_parameters()]
            not_sharded = [n for n, p in named if not isinstance(p, DTensor)]
            if not_sharded:
                raise RuntimeError(f"parameters are not FSDP2 DTensors after reshard: {not_sharded[:3]}")
            yield named
            if torch.cuda.is_available():
                torch.cuda.synchronize()
        finally:
            if offloaded:
                engine.to("cpu", model=True, optimizer=False, grad=False)
