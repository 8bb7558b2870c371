"""The plugin changes nothing in a run that does not ask for the CPU, and activates in one that does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from effopd_verl.cpu.verl_guard import require_verl

PROBE = r"""
import json, verl
from verl.plugin.platform import PlatformRegistry, platform_manager
from verl.workers.rollout import base
from verl.workers.rollout.replica import RolloutReplicaRegistry
import verl.utils.distributed as d
from verl.workers.config.distillation import DistillationTeacherModelConfig as T
print(json.dumps({
    "platforms": sorted(PlatformRegistry.registered_names()),
    "current": type(platform_manager._current_platform).__name__,
    "replicas": sorted(RolloutReplicaRegistry._registry),
    "adapters": sorted(map(list, base._ROLLOUT_REGISTRY)),
    "pg_init": d.initialize_global_process_group_ray.__module__,
    "topk": T._validate_topk_logprobs.__module__,
}))
"""


def _probe(**env) -> dict:
    full = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_plugin_is_inert_without_the_cpu_device():
    without_plugins = _probe(VERL_USE_EXTERNAL_PLUGINS="none")
    with_plugin = _probe(VERL_USE_EXTERNAL_PLUGINS="auto", VERL_PLATFORM="nvidia")
    assert with_plugin == without_plugins
    assert "hf" not in with_plugin["replicas"] and "cpu" not in with_plugin["platforms"]


def test_plugin_activates_with_the_cpu_device():
    active = _probe(VERL_PLATFORM="cpu")
    assert active["current"] == "CPUPlatform"
    assert "hf" in active["replicas"] and ["hf", "async"] in active["adapters"]
    assert active["pg_init"] == "verl.utils.distributed" or active["pg_init"].startswith("effopd")


def test_wrappers_refuse_another_verl_version():
    with pytest.raises(RuntimeError, match="0.9.1"):
        require_verl("something private", found="0.9.2")
