"""A damaged EffOPD checkpoint written by a real run stops the resume with the file and the fix.

The real path: ``effopd-train`` on the CPU toy (verl's trainer, Ray, FSDP2 over gloo) saved the checkpoints of
the session's ``teacher_logprob_run`` (conftest.py; the resume test's uninterrupted run). In a copy of its
checkpoint folder the anchor shard of the last checkpoint is truncated, as a crash of the storage would leave
it, and a resume (``resume_mode=auto``: verl picks the last checkpoint) must stop on the driver before Ray starts
(``state.check_resume``), not after the models loaded. The other faults (corrupted ``state.json``, a missing
``effopd/``, a flipped bit that only the workers' CRC-32 finds, disk full, ...) are checked on the same functions by
the fast tests in ``test_state.py`` and ``tests/scripts/test_refused_inputs.py``.
"""

from __future__ import annotations

import os
import shutil

import pytest
from test_effopd_e2e import TEACHER_LOGPROB, effopd_train

from effopd_verl.integration.state import anchor_file, effopd_folder


@pytest.mark.slow
def test_a_truncated_anchor_shard_stops_the_resume_naming_the_file(toy_assets, teacher_logprob_run, tmp_path):
    first = teacher_logprob_run
    last = int((first.checkpoints / "latest_checkpointed_iteration.txt").read_text())
    assert last == 5 and first.state(last)["history"]  # a search's anchor was saved there
    checkpoints = tmp_path / "run" / "checkpoints"
    shutil.copytree(first.checkpoints, checkpoints)
    shard = anchor_file(effopd_folder(str(checkpoints / f"global_step_{last}")), rank=0, world_size=1)
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)

    resumed = effopd_train(toy_assets, tmp_path / "run", *TEACHER_LOGPROB, steps=last + 1, check=False)  # auto
    assert f"{shard} is truncated or corrupted" in resumed.stdout, resumed.stdout[-4000:]
    assert "effopd.resume_without_state=true" in resumed.stdout
    assert "ray init" not in resumed.stdout.lower()  # the driver refused it: no cluster, no model loaded
    assert not (checkpoints / f"global_step_{last + 1}").exists() and not resumed.steps
