"""``python -m verl.trainer.main_ppo ... effopd.enable=true`` would run plain OPD: the plugin stops it before Ray starts.

The refusal is installed by the ``verl.plugins`` entry point, which verl imports silently (a failing plugin is logged
at debug level only), so the launcher test runs the real command in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from effopd_verl.plugin import refuse_effopd_enabled, started_as_verl_launcher

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
REFUSAL = "effopd.enable=true, but this is verl's own launcher verl.trainer.main_ppo"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["python", "-m", "verl.trainer.main_ppo", "--config-name", "x"], True),
        (["python", "-X", "dev", "-u", "-mverl.trainer.main_ppo"], True),
        (["python", "/venv/lib/python3.11/site-packages/verl/trainer/main_ppo.py", "a=1"], True),
        (["python", "-m", "effopd_verl.main", "--config-name", "toy_cpu"], False),
        (["/venv/bin/python", "/venv/bin/effopd-train", "effopd.enable=true"], False),
        (["python", "-m", "pytest", "tests"], False),
        (["python", "-c", "import verl.trainer.main_ppo"], False),
        (["python", "/venv/lib/python3.11/site-packages/ray/_private/workers/default_worker.py", "--node-ip-address=x"], False),
        (["python"], False),
    ],
)
def test_the_launcher_is_recognised_from_the_command_line(argv, expected):
    assert started_as_verl_launcher(argv) is expected


def test_only_an_enabled_effopd_section_is_refused():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = compose(config_name="toy_cpu")
    refuse_effopd_enabled(cfg)  # effopd.enable=false: verl's plain OPD, as tests/conftest.py::run_verl_opd runs it
    cfg.effopd.enable = True
    with pytest.raises(ValueError, match="run the same arguments with effopd-train"):
        refuse_effopd_enabled(cfg)
    with open_dict(cfg):
        del cfg["effopd"]
    refuse_effopd_enabled(cfg)  # a config without the section


def _python(*args: str, timeout: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VERL_USE_EXTERNAL_PLUGINS", "VERL_PLATFORM")}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd="/")


def test_verl_launcher_with_effopd_enabled_stops_before_ray_starts():
    start = time.monotonic()
    out = _python("-m", "verl.trainer.main_ppo", "--config-path", str(CONFIGS), "--config-name", "toy_cpu",
                  "effopd.enable=true", "hydra.run.dir=/tmp/effopd_refusal_hydra", timeout=240)
    seconds = time.monotonic() - start
    assert out.returncode != 0
    assert REFUSAL in out.stderr and "effopd-train" in out.stderr, out.stderr[-3000:]
    assert "ray.init" not in out.stdout + out.stderr and "Started a local Ray instance" not in out.stdout + out.stderr
    print(f"refused in {seconds:.1f} s")


def test_verl_launcher_without_effopd_passes_the_guard():
    """Plain OPD through verl's launcher (tests/conftest.py::run_verl_opd) gets through the wrapped config check: a
    ray.init argument Ray does not know stops it right after, before Ray starts."""
    out = _python("-m", "verl.trainer.main_ppo", "--config-path", str(CONFIGS), "--config-name", "toy_cpu",
                  "effopd.enable=false", "+ray_kwargs.ray_init.not_an_argument_of_ray_init=1",
                  "hydra.run.dir=/tmp/effopd_refusal_hydra", timeout=240)
    assert "[validate_config] All configuration checks passed successfully!" in out.stdout, out.stderr[-3000:]
    assert REFUSAL not in out.stderr
    assert "Unknown keyword argument(s): not_an_argument_of_ray_init" in out.stderr, out.stderr[-3000:]


def test_other_processes_keep_verl_validate_config():
    out = _python("-c", "import verl, verl.utils.config as c; print(c.validate_config.__module__)", timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["verl.utils.config"]
