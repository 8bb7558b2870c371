"""verl's FSDP training engines, registered for device ``cpu`` (verl registers them for cuda and npu).

The engine classes are verl's own, unchanged: FSDP2 runs on CPU tensors over gloo. Registration
waits until verl imports its FSDP engine module (see :mod:`effopd_verl.cpu.post_import`).
"""

from __future__ import annotations

from types import ModuleType

from effopd_verl.cpu.post_import import when_imported

__all__ = ["ENGINE_MODULE", "register_cpu_engines"]

ENGINE_MODULE = "verl.workers.engine.fsdp.transformer_impl"
_BACKENDS = ["fsdp", "fsdp2"]
_MODEL_TYPES = {"language_model": "FSDPEngineWithLMHead", "value_model": "FSDPEngineWithValueHead"}


def _register(module: ModuleType) -> None:
    from verl.workers.engine.base import EngineRegistry

    for model_type, class_name in _MODEL_TYPES.items():
        engine_cls = getattr(module, class_name)
        registered = EngineRegistry._engines.get(model_type, {})
        if all(registered.get(backend, {}).get("cpu") is engine_cls for backend in _BACKENDS):
            continue  # already registered in this process
        EngineRegistry.register(model_type=model_type, backend=_BACKENDS, device="cpu")(engine_cls)


def register_cpu_engines() -> None:
    """Register verl's FSDP engines for ``cpu`` now, or when verl imports them."""
    when_imported(ENGINE_MODULE, _register)
