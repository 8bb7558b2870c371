"""Switch the CPU backend on: one call that installs every piece, once per process.

Nothing here runs at import; :func:`activate` is called by the plugin entry point when
``VERL_PLATFORM=cpu`` is set, or by the hydra callback when the config says ``trainer.device=cpu``.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping

__all__ = ["ACTIVATION_ENV", "ACTIVATION_VALUE", "activate", "cpu_requested", "is_active"]

logger = logging.getLogger(__name__)

ACTIVATION_ENV = "VERL_PLATFORM"  # verl's own switch for the platform (verl/plugin/platform/platform_manager.py)
ACTIVATION_VALUE = "cpu"

_active = False


def cpu_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process was asked to run verl on the CPU (``VERL_PLATFORM=cpu``)."""
    environ = os.environ if environ is None else environ
    return environ.get(ACTIVATION_ENV, "").strip().lower() == ACTIVATION_VALUE


def is_active() -> bool:
    """Whether :func:`activate` has run in this process."""
    return _active


def activate() -> None:
    """Install the CPU platform, engines, gloo process group, top-k check and ``hf`` rollout (idempotent).

    Sets ``VERL_PLATFORM=cpu`` in this process's environment, so the Ray processes it starts
    activate the backend too.
    """
    global _active
    if _active:
        return
    from verl.plugin.platform import PlatformRegistry, set_platform

    from effopd_verl.cpu.distillation import install_topk_validation
    from effopd_verl.cpu.distributed import install_gloo_process_group
    from effopd_verl.cpu.engines import register_cpu_engines
    from effopd_verl.cpu.hf_registration import register_hf_rollout
    from effopd_verl.cpu.platform import PLATFORM_NAME, CPUPlatform
    from effopd_verl.cpu.verl_guard import require_verl

    require_verl("verl's platform, engine, rollout and distillation registries")
    os.environ[ACTIVATION_ENV] = ACTIVATION_VALUE
    if PlatformRegistry.get(PLATFORM_NAME) is not CPUPlatform:
        PlatformRegistry.register(platform=PLATFORM_NAME)(CPUPlatform)
    set_platform(CPUPlatform())
    install_gloo_process_group()
    install_topk_validation()
    register_cpu_engines()
    register_hf_rollout()
    _active = True
    logger.info("effopd-verl CPU backend active (platform cpu, FSDP over gloo, rollout backend 'hf')")
