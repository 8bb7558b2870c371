"""A damaged EffOPD checkpoint written by a real run stops the resume with the file and the fix.

The real path: ``effopd-train`` on the CPU toy (verl's trainer, Ray, FSDP2 over gloo) saves a checkpoint
every step; its anchor shard is then truncated as a crash of the storage would leave it, and a resume
must stop in the worker's load, the message crossing Ray to the driver's console. The other faults
(corrupted ``state.json``, a missing ``effopd/``, disk full, ...) are checked on the same functions by
the fast tests in ``test_state.py``.
"""

from __future__ import annotations

import os

import pytest
from test_effopd_e2e import UNDER_STEPPED, effopd_train, searches

from effopd_verl.integration.state import anchor_file, effopd_folder

SETTINGS = [*UNDER_STEPPED, "effopd.enable=true", "effopd.score=teacher_logprob", "effopd.val_size=8",
            "effopd.alphas=[2]", "trainer.save_freq=1"]


@pytest.mark.slow
def test_a_truncated_anchor_shard_stops_the_resume_naming_the_file(toy_assets, tmp_path):
    first = effopd_train(toy_assets, tmp_path / "run", *SETTINGS, steps=2)
    assert sorted(searches(first)) == [1, 2]
    shard = anchor_file(effopd_folder(str(first.checkpoints / "global_step_2")), rank=0, world_size=1)
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)

    resumed = effopd_train(toy_assets, tmp_path / "run", *SETTINGS, steps=3, check=False)  # resume_mode=auto
    assert f"{shard} is truncated or corrupted" in resumed.stdout, resumed.stdout[-4000:]
    assert "effopd.resume_without_state=true" in resumed.stdout
    assert not (first.checkpoints / "global_step_3").exists()  # stopped before any training step
