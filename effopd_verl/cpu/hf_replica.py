"""verl ``RolloutReplica`` for the ``hf`` backend: one :class:`HFRolloutServer` actor per replica.

For the student (hybrid mode) the server sits on the node of the trainer rank it serves and takes
weights from that rank; for the teacher (colocated mode, on the teacher's resource pool) it loads
the model from its path once. The replica's address is only a key for verl's load balancer.
"""

from __future__ import annotations

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from verl.workers.rollout.replica import RolloutReplica

from effopd_verl.cpu.hf_adapter import server_actor_name
from effopd_verl.cpu.hf_server import HFRolloutServer

__all__ = ["HFReplica"]


class HFReplica(RolloutReplica):
    """A replica of the ``hf`` rollout backend (tensor, data and pipeline parallel size 1)."""

    async def launch_servers(self) -> None:
        if self.world_size != 1:
            raise ValueError(
                f"rollout 'hf' serves a replica from one process; set tensor/data/pipeline parallel size to 1 "
                f"(got world size {self.world_size})"
            )
        if len(self.workers) != 1:
            raise RuntimeError(f"hf replica {self.replica_rank} expected one worker, got {len(self.workers)}")
        node_id = await self.workers[0].__ray_call__.remote(lambda worker: ray.get_runtime_context().get_node_id())
        name = server_actor_name(self.replica_rank, self.is_teacher_model, self.name_suffix)
        hf_kwargs = dict(self.config.engine_kwargs.get("hf", {}) or {})
        server = (
            ray.remote(HFRolloutServer)
            .options(
                name=name,
                num_cpus=0,  # the CPUs are the trainer's too: this actor takes turns with it
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
                max_concurrency=self.max_concurrency,
            )
            .remote(
                config=self.config,
                model_config=self.model_config,
                replica_rank=self.replica_rank,
                num_threads=int(hf_kwargs.get("num_threads", 0)),
            )
        )
        await server.ready.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"hf://{name}"
