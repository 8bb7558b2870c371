"""The trainer-side end of the ``hf`` rollout: verl's ``BaseRollout`` for the ``hf`` server.

verl builds one adapter per trainer rank (inside ``ActorRolloutRefWorker``) and one per teacher
worker (inside ``CheckpointEngineWorker``, with ``device_mesh=None``). Its only real job is the weight
push of the naive checkpoint engine: verl's ``update_weights`` hands it the actor's full tensors as
``(name, tensor)`` pairs, which it sends to its replica's server in buckets, then commits.
"""

from __future__ import annotations

import os
from typing import Any, AsyncIterator, Iterable, Optional

import ray
import torch
from torch.distributed.device_mesh import DeviceMesh
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout.base import BaseRollout

__all__ = ["HFServerAdapter", "server_actor_name"]


def server_actor_name(replica_rank: int, is_teacher: bool = False, name_suffix: str = "") -> str:
    """Ray actor name of the ``hf`` server of a replica (one server per replica)."""
    role = "teacher_" if is_teacher else ""
    return f"hf_server_{role}{replica_rank}{name_suffix}"


async def _iterate(weights: Iterable | AsyncIterator) -> AsyncIterator:
    if hasattr(weights, "__aiter__"):
        async for item in weights:
            yield item
    else:
        for item in weights:
            yield item


def _host_copy(tensor: torch.Tensor) -> torch.Tensor:
    if hasattr(tensor, "full_tensor"):  # a DTensor shard: the server needs the whole tensor
        tensor = tensor.full_tensor()
    return tensor.detach().to("cpu", copy=True).contiguous()


class HFServerAdapter(BaseRollout):
    """Sends the trainer's weights to the ``hf`` server of this rank's replica."""

    def __init__(
        self,
        config: RolloutConfig,
        model_config: HFModelConfig,
        device_mesh: Optional[DeviceMesh],
        replica_rank: int = -1,
    ):
        super().__init__(config, model_config, device_mesh)
        world = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        if world != 1:
            raise ValueError(f"the hf rollout runs one process per replica; got tensor/data/pipeline parallel size {world}")
        rank = int(os.environ.get("RANK", 0))
        self.replica_rank = rank if replica_rank == -1 else replica_rank
        self.is_leader_rank = True
        self.bucket_bytes = max(1, int(self.config.checkpoint_engine.update_weights_bucket_megabytes)) << 20
        self._server: Optional[ray.actor.ActorHandle] = None

    def _server_handle(self) -> ray.actor.ActorHandle:
        if self._server is None:  # servers start after the trainer's workers: look up lazily
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        """Weights and cache stay in host memory: nothing to resume."""

    async def release(self) -> None:
        """Host memory is not handed back between steps."""

    async def update_weights(
        self,
        weights: Any,
        wire_format: str = "named_tensors",
        global_steps: Optional[int] = None,
        **kwargs: Any,
    ) -> dict[str, int]:
        """Send every ``(name, tensor)`` of ``weights`` to the server in buckets, then commit them.

        The whole iterator is consumed on every rank: the FSDP engine gathers full tensors with
        collectives, so all ranks must take part even though each sends to its own server.
        """
        if wire_format != "named_tensors":
            raise NotImplementedError(f"the hf rollout takes full named tensors, not {wire_format!r}")
        if kwargs.get("peft_config") is not None:
            raise NotImplementedError("the hf rollout does not load LoRA adapters; merge them (model.lora.merge=true)")
        server = self._server_handle()
        bucket: list[tuple[str, torch.Tensor]] = []
        size = 0
        async for name, tensor in _iterate(weights):
            host = _host_copy(tensor)
            bucket.append((name, host))
            size += host.nbytes
            if size >= self.bucket_bytes:
                await server.stage_weights.remote(bucket)
                bucket, size = [], 0
        if bucket:
            await server.stage_weights.remote(bucket)
        return await server.commit_weights.remote(global_steps)
