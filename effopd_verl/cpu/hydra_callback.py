"""Hydra callback that switches the CPU backend on when the composed config says ``trainer.device=cpu``.

verl resolves its platform when ``verl.trainer.main_ppo`` is imported, before hydra has read the
config, and then resets ``trainer.device`` to the detected platform (``verl/utils/device.py:160``).
Hydra calls ``on_job_start`` after composing the config and before verl's ``main``: the callback
activates the backend there, so ``auto_set_device`` sees the CPU platform and keeps ``cpu``. Enable it
in a config with::

    hydra:
      callbacks:
        effopd_cpu:
          _target_: effopd_verl.cpu.hydra_callback.CPUDeviceCallback
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

__all__ = ["CPUDeviceCallback"]


class CPUDeviceCallback(Callback):
    """Activate :mod:`effopd_verl.cpu` for jobs whose config has ``trainer.device == "cpu"``."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if OmegaConf.select(config, "trainer.device") == "cpu":
            from effopd_verl.cpu.activation import activate

            activate()
