"""effopd_verl.bench.runs: the effopd-train command line (its hash names cached runs, so it is pinned here),
the work folder, the run cache and the shared settings. The sweep runs through the command line in
tests/scripts/test_bench_speedup.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from effopd_verl.bench.runs import RunSettings, read_metrics, run_key, run_training, train_command, work_folder
from effopd_verl.bench.toy_testbed import TOY
from effopd_verl.toy.build import ToyAssets


def assets(tmp_path) -> ToyAssets:
    f = lambda name: str(tmp_path / name)  # noqa: E731
    return ToyAssets(str(tmp_path), "add", 0, True, f("tok"), f("teacher"), f("student"), f("train.parquet"),
                     f("val.parquet"), f("test.parquet"), f("reward.py"), "compute_score", 1.0, 0.1)


def test_the_command_line_of_a_toy_run_is_unchanged(tmp_path):
    a = assets(tmp_path)
    cmd = train_command(TOY, a, RunSettings(64, 256, 128, 64, ("x.y=1",)), 3e-4, 2, ["effopd.enable=true"])
    assert cmd == [sys.executable, "-m", "effopd_verl.main", "--config-name", "toy_cpu", *a.run_overrides(val_file=a.test_file),
                   "trainer.total_training_steps=64", "trainer.n_gpus_per_node=1", "data.train_batch_size=256",
                   "actor_rollout_ref.actor.ppo_mini_batch_size=256", "actor_rollout_ref.actor.optim.lr=0.0003",
                   "data.seed=2", "actor_rollout_ref.rollout.seed=2", "effopd.seed=2", "effopd.val_size=128",
                   "trainer.save_freq=1", "trainer.val_before_train=false", "trainer.test_freq=64",
                   "trainer.logger=[console,file]", "trainer.resume_mode=disable", "x.y=1", "effopd.enable=true"]
    assert "trainer.test_freq=-1" in train_command(TOY, a, RunSettings(4, 8, 8, 0), 1e-4, 0, [])


def test_work_folder_names(tmp_path):
    assert work_folder(tmp_path, TOY, "add", RunSettings(64, 256, 128, 64)) == tmp_path / "add_s64_b256"
    # --override for every run: a hash of them (the name the historical runs were cached under)
    assert work_folder(tmp_path, TOY, "add", RunSettings(12, 64, 128, 12, ("a=1",))).name == "add_s12_b64_b9a996b9"

    class Other:
        name, config_name = "smollm2", "smollm2_cpu"
    assert work_folder(tmp_path, Other, "add", RunSettings(8, 32, 16, 8)).name == "smollm2_add_s8_b32"


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "--steps must be ≥ 1"), (dict(batch=0), "--batch must be ≥ 1"),
    (dict(val_size=0), "--val-size must be ≥ 1"), (dict(verl_val_freq=-1), "--verl-val-freq must be ≥ 0"),
    (dict(overrides=("novalue",)), "--override must be KEY=VALUE"),
])
def test_settings_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RunSettings(**{**dict(steps=4, batch=8, val_size=8, verl_val_freq=4), **kwargs})


def test_a_finished_run_of_the_same_command_is_reused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [{"step": 1, "data": {"a": 1.0}}, {"step": 1, "data": {"b": 2.0}}, {"step": 2, "data": {"a": 3.0}}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    assert read_metrics(run / "metrics.jsonl") == {1: {"a": 1.0, "b": 2.0}, 2: {"a": 3.0}}
    cmd = [sys.executable, "-c", "raise SystemExit(3)"]
    (run / "DONE").write_text(run_key(cmd))
    assert run_training("t", run, cmd, 2) == {1: {"a": 1.0, "b": 2.0}, 2: {"a": 3.0}}  # cached: nothing ran
    assert run_key(["/other/python", *cmd[1:]]) == run_key(cmd)  # the interpreter's path is not part of the key
    with pytest.raises(SystemExit, match="effopd-train failed \\(exit 3\\)"):  # another command: the folder is redone
        run_training("t", run, [sys.executable, "-c", "raise SystemExit(3)", "x"], 2)
    assert not (run / "DONE").exists() and not (run / "metrics.jsonl").exists()
    assert json.loads((run / "command.json").read_text())[-1] == f"hydra.run.dir={Path(run) / 'hydra'}"
