"""verl platform for plain CPUs: device ``cpu``, collectives over gloo, Ray's ``GPU`` resource as a slot.

verl asks its platform for a ``torch.cuda``-like device module; :class:`CPUDeviceModule` answers the
calls verl 0.9.1 makes on it with what they mean on a CPU (no caches to empty, no streams to wait
for, host memory for device memory). verl's placement groups ask for ``GPU`` bundles, so a CPU run
starts Ray with logical GPUs (``ray_kwargs.ray_init.num_gpus``) and this platform names ``GPU`` as its
Ray resource: each "GPU" is then one worker slot on the CPU.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Iterator, Optional

import torch
from verl.plugin.platform import PlatformBase

__all__ = ["CPUDeviceModule", "CPUPlatform", "PLATFORM_NAME"]

PLATFORM_NAME = "cpu"


def _host_memory() -> tuple[int, int]:
    """(available, total) host memory in bytes, from /proc/meminfo, else from sysconf."""
    try:
        info = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, value = line.split(":", 1)
                info[key] = int(value.split()[0]) * 1024
        return info["MemAvailable"], info["MemTotal"]
    except (OSError, KeyError, ValueError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return total, total


class CPUDeviceModule(ModuleType):
    """What verl calls on ``get_torch_device()``, answered for the CPU.

    Streams, events and ``synchronize`` come from ``torch.cpu``; memory queries report host memory
    (``mem_get_info``) or zero (allocator statistics, which the CPU allocator does not keep).
    """

    Stream = torch.cpu.Stream
    Event = torch.cpu.Event
    stream = staticmethod(torch.cpu.stream)
    current_stream = staticmethod(torch.cpu.current_stream)
    synchronize = staticmethod(torch.cpu.synchronize)

    def __init__(self) -> None:
        super().__init__("effopd_verl.cpu.device")

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def device_count() -> int:
        return 1

    @staticmethod
    def current_device() -> str:
        return "cpu"

    @staticmethod
    def set_device(device: Any) -> None:
        """Every rank uses the one CPU device."""

    @staticmethod
    def get_device_name(device: Any = None) -> str:
        return "cpu"

    @staticmethod
    def empty_cache() -> None:
        """The CPU allocator keeps no cache to release."""

    @staticmethod
    def ipc_collect() -> None:
        """No IPC memory handles on the CPU."""

    @staticmethod
    def set_per_process_memory_fraction(fraction: float, device: Any = None) -> None:
        """No per-process memory cap on the CPU."""

    @staticmethod
    def mem_get_info(device: Any = None) -> tuple[int, int]:
        return _host_memory()

    @staticmethod
    def memory_allocated(device: Any = None) -> int:
        return 0

    @staticmethod
    def memory_reserved(device: Any = None) -> int:
        return 0

    @staticmethod
    def max_memory_allocated(device: Any = None) -> int:
        return 0

    @staticmethod
    def max_memory_reserved(device: Any = None) -> int:
        return 0

    @staticmethod
    def reset_peak_memory_stats(device: Any = None) -> None:
        """No allocator statistics to reset."""

    @staticmethod
    def manual_seed(seed: int) -> None:
        torch.manual_seed(seed)

    @staticmethod
    def manual_seed_all(seed: int) -> None:
        torch.manual_seed(seed)

    @staticmethod
    def get_rng_state(device: Any = None) -> torch.Tensor:
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state: torch.Tensor, device: Any = None) -> None:
        torch.set_rng_state(state)


class CPUPlatform(PlatformBase):
    """verl's platform interface on a CPU-only host (never auto-detected: selected explicitly)."""

    def __init__(self) -> None:
        self._device_module = CPUDeviceModule()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return self._device_module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never chosen by verl's auto-detection: a CPU run selects this platform on purpose.
        return False

    def current_device(self) -> str:  # type: ignore[override]
        # verl moves tensors with ``.to(get_device_id())``: on a CPU that target must read "cpu",
        # an index would name an accelerator (torch: "Cannot access accelerator device").
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        """Every rank uses the one CPU device."""

    def synchronize(self, device_index: Optional[int] = None) -> None:
        torch.cpu.synchronize()

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        """The CPU allocator takes no settings."""

    def empty_cache(self) -> None:
        """The CPU allocator keeps no cache to release."""

    def get_device_capability(self, device_index: int = 0) -> tuple[Optional[int], Optional[int]]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets it for actors holding (logical) GPUs; on a CPU it selects nothing.
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str) -> Iterator[None]:
        yield

    def profiler_start(self) -> None:
        """No device profiler on the CPU."""

    def profiler_stop(self) -> None:
        """No device profiler on the CPU."""

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
