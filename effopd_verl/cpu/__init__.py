"""A CPU backend for verl 0.9.1: run the real trainer (Ray, FSDP2 over gloo, agent loop) without a GPU.

Active only when a run asks for the CPU device; inert otherwise. Two signals switch it on:

* the environment variable ``VERL_PLATFORM=cpu`` (verl's own platform override), read when verl
  imports this package's plugin: how every Ray worker process of a CPU run activates it;
* ``trainer.device=cpu`` in the hydra config, read by :class:`effopd_verl.cpu.hydra_callback.CPUDeviceCallback`
  in the driver, which also sets ``VERL_PLATFORM=cpu`` so that the Ray processes it starts follow.

What activation installs (each in its own module): the CPU platform (:mod:`.platform`), the FSDP
engines registered for device ``cpu`` (:mod:`.engines`), the gloo-only process group
(:mod:`.distributed`), the teacher top-k check that knows the ``hf`` engine (:mod:`.distillation`) and
the ``hf`` rollout backend (:mod:`.hf_replica`, :mod:`.hf_adapter`, :mod:`.hf_server`).
"""

from effopd_verl.cpu.activation import ACTIVATION_ENV, ACTIVATION_VALUE, activate, cpu_requested, is_active

__all__ = ["ACTIVATION_ENV", "ACTIVATION_VALUE", "activate", "cpu_requested", "is_active"]
