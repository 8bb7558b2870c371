import json
import os

import pytest

from effopd_verl.integration.state import STATE_FILE, PluginState, effopd_folder


def test_round_trip(tmp_path):
    folder = effopd_folder(str(tmp_path / "global_step_4"))
    state = PluginState(world_size=2, next_trigger=8, history=[{"step": 4, "accepted_alpha": 2.0}],
                        teacher_responses=[[1, 2, 3], [4]])
    state.write(folder)
    assert PluginState.read(folder) == state
    assert sorted(os.listdir(folder)) == [STATE_FILE]  # no temporary left behind


def test_a_folder_without_a_complete_state_does_not_load(tmp_path):
    folder = tmp_path / "effopd"
    folder.mkdir()
    (folder / (STATE_FILE + ".tmp")).write_text("{")  # a crash mid-write
    assert PluginState.read(str(folder)) is None


def test_another_state_version_is_refused(tmp_path):
    (tmp_path / STATE_FILE).write_text(json.dumps({"version": 99, "world_size": 1, "next_trigger": 1}))
    with pytest.raises(ValueError, match="version 99"):
        PluginState.read(str(tmp_path))
