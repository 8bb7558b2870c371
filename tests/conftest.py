"""Fixtures shared across the test folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLAIN_OPD_STEPS = 4


@pytest.fixture(scope="session")
def toy_assets(tmp_path_factory: pytest.TempPathFactory):
    """The toy task, quick build (`add`, seed 0; seconds), built once per session.

    ``EFFOPD_TOY_ASSETS=/some/folder`` keeps the build there and reuses it in later sessions.
    """
    from effopd_verl.toy.build import build_assets

    out = os.environ.get("EFFOPD_TOY_ASSETS") or str(tmp_path_factory.mktemp("toy") / "add")
    return build_assets(out, task="add", seed=0, quick=True, reuse_training=True)  # shared with close_student_assets


@pytest.fixture(scope="session")
def close_student_assets(toy_assets, tmp_path_factory: pytest.TempPathFactory):
    """The same quick toy with a student halfway to the teacher (``student_target=0.5``: 0.46 test accuracy), taken
    from the snapshots of ``toy_assets``'s supervised run (``reuse_training``: no second training), for the reward
    score. Exact match on 128 validation prompts only sees a gain that flips several prompts: with the weak student
    (0.04) one step of OPD moved it by one prompt or none, so acceptance hung on float rounding. Here, at lr 1e-4 on
    2 ranks (test_reward_search_on_two_ranks), θ_1 scored 0.539, θ_1 + 2·d 0.547 and θ_1 + 8·d 0.570."""
    from effopd_verl.toy.build import build_assets

    return build_assets(str(tmp_path_factory.mktemp("toy_close") / "add"), task="add", seed=0, quick=True,
                        student_target=0.5, reuse_training=True)


@dataclass
class VerlRun:
    """A finished run of verl's own ``main_ppo``: logged metrics per step, and its checkpoint folder."""

    steps: list[dict]
    checkpoints: Path


@pytest.fixture(scope="session")
def run_verl_opd(toy_assets):
    """``run(out, ranks, steps, *overrides)``: verl 0.9.1's own ``main_ppo`` (plain OPD, no effopd-verl trainer) on
    the toy assets with ``configs/toy_cpu.yaml``; metrics through verl's file logger."""

    def run(out: Path, ranks: int, steps: int, *overrides: str) -> VerlRun:
        log = out / "metrics.jsonl"
        cmd = [
            sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(REPO / "configs"), "--config-name", "toy_cpu",
            *toy_assets.run_overrides(),
            f"trainer.total_training_steps={steps}", f"trainer.n_gpus_per_node={ranks}",
            f"trainer.default_local_dir={out / 'checkpoints'}", "trainer.logger=[console,file]",
            f"hydra.run.dir={out / 'hydra'}", *overrides,
        ]
        env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(log), "RAY_DEDUP_LOGS": "1"}
        proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=480)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        return VerlRun([r.get("data", r) for r in rows], out / "checkpoints")

    return run


@pytest.fixture(scope="session")
def plain_opd_one_rank(run_verl_opd, tmp_path_factory) -> VerlRun:
    """verl's plain OPD, 1 rank, 4 steps, checkpoint at step 4: shared by the CPU-backend test and the
    ``effopd.enable=false`` equality test (one trainer start fewer)."""
    return run_verl_opd(tmp_path_factory.mktemp("plain_opd"), 1, PLAIN_OPD_STEPS, f"trainer.save_freq={PLAIN_OPD_STEPS}")
