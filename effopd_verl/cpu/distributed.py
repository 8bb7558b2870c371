"""The process group of verl's training workers on a CPU: gloo alone.

verl 0.9.1 builds the backend string ``f"cpu:gloo,{device}:{backend}"``
(``verl/utils/distributed.py:89``, called from ``verl/workers/engine_workers.py:89``); with device
``cpu`` that reads ``cpu:gloo,cpu:gloo``, which torch rejects ("Duplicate device type cpu"). The
wrapper passes ``cpu:gloo`` when the caller gave no backend; an explicit backend passes through.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Optional

from effopd_verl.cpu.verl_guard import require_verl

__all__ = ["CPU_BACKEND", "install_gloo_process_group"]

CPU_BACKEND = "cpu:gloo"
_FUNCTION = "initialize_global_process_group_ray"
# Modules of verl 0.9.1 that bind the function by name at import (checked with grep).
_IMPORTERS = ("verl.workers.engine_workers", "verl.checkpoint_engine.base")
_MARK = "__effopd_cpu_gloo__"


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second: Optional[int] = None, backend: Optional[str] = None):
        return original(timeout_second=timeout_second, backend=backend or CPU_BACKEND)

    setattr(initialize_global_process_group_ray, _MARK, True)
    return initialize_global_process_group_ray


def install_gloo_process_group() -> None:
    """Make verl's worker process-group init use ``cpu:gloo`` (idempotent)."""
    require_verl(f"verl.utils.distributed.{_FUNCTION}")
    import verl.utils.distributed as distributed

    current = getattr(distributed, _FUNCTION)
    wrapped = current if getattr(current, _MARK, False) else _wrap(current)
    setattr(distributed, _FUNCTION, wrapped)
    for name in _IMPORTERS:  # modules imported before this ran hold the original by name
        module = sys.modules.get(name)
        if module is not None and not getattr(getattr(module, _FUNCTION), _MARK, False):
            setattr(module, _FUNCTION, wrapped)
