"""Register the ``hf`` rollout backend in verl's two rollout registries.

``RolloutReplicaRegistry`` is public; the adapter table ``verl.workers.rollout.base._ROLLOUT_REGISTRY``
is private (checked against the verl version before it is touched).
"""

from __future__ import annotations

from effopd_verl.cpu.verl_guard import require_verl

__all__ = ["ADAPTER_PATH", "BACKEND_NAME", "register_hf_rollout"]

BACKEND_NAME = "hf"
ADAPTER_PATH = "effopd_verl.cpu.hf_adapter.HFServerAdapter"


def _load_replica() -> type:
    from effopd_verl.cpu.hf_replica import HFReplica

    return HFReplica


def register_hf_rollout() -> None:
    """Make ``actor_rollout_ref.rollout.name=hf`` (and the teacher's ``inference.name=hf``) resolve here."""
    require_verl("verl.workers.rollout.base._ROLLOUT_REGISTRY")
    from verl.workers.rollout import base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    RolloutReplicaRegistry.register(BACKEND_NAME, _load_replica)
    base._ROLLOUT_REGISTRY[(BACKEND_NAME, "async")] = ADAPTER_PATH
