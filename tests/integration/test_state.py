"""EffOPD's checkpoint state on disk: durable writes, and a clear error for every way it can be lost or damaged.

The anchor shards are written and read by the same functions the workers call (``state.save_anchor`` /
``state.load_anchor``), here over a small torch model's parameters instead of FSDP2 shards; the disk-full
and read-only cases write to a real tiny tmpfs (needs root to mount; skipped otherwise).
"""

import json
import os
import subprocess

import pytest
import torch

from effopd_verl.core.config import EffOPDConfig
from effopd_verl.core.extrapolation import ShardedExtrapolation
from effopd_verl.integration import state as state_module
from effopd_verl.integration.state import (
    STATE_FILE,
    CheckpointStateError,
    CheckpointWriteError,
    PluginState,
    anchor_file,
    check_resume,
    effopd_folder,
    load_anchor,
    read_anchor,
    resume_state,
    resumed_step_folder,
    save_anchor,
    write_durably,
)

FRESH = "effopd.resume_without_state=true"


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 8)).to(torch.float32)


def named(m: torch.nn.Module, prefix: str = "mlp.proj.") -> list[tuple[str, torch.Tensor]]:
    return [(prefix + n, p) for n, p in m.named_parameters()]


def saved_shard(tmp_path, world_size: int = 1, rank: int = 0) -> tuple[str, torch.nn.Module]:
    """A real anchor shard: θ_anchor set, one training-like step, a committed α = 2 (anchor ≠ initial weights)."""
    m = model()
    ex = ShardedExtrapolation(EffOPDConfig().selects)
    ex.set_anchor(named(m))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01)
    ex.snapshot(named(m))
    ex.commit(2.0, named(m))
    folder = effopd_folder(str(tmp_path / "global_step_2"))
    save_anchor(ex.state_dict(), folder, rank, world_size)
    return folder, m


def fresh_extrapolation() -> ShardedExtrapolation:
    ex = ShardedExtrapolation(EffOPDConfig().selects)
    ex.set_anchor(named(model()))
    return ex


# ---------------------------------------------------------------- state.json
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
    with pytest.raises(CheckpointStateError, match="version 99"):
        PluginState.read(str(tmp_path))


@pytest.mark.parametrize("content", [
    '{"world_size": 1, "next_trig',  # truncated
    "\x00\x00\x00\x00",  # zeroed blocks after a crash
    "[1, 2]",  # not an object
    json.dumps({"version": 1, "world_size": 1}),  # a field lost
    json.dumps({"version": 1, "world_size": 1, "next_trigger": 2, "surprise": 3}),  # a field unknown
    json.dumps({"version": 1, "world_size": "1", "next_trigger": 2}),  # a field of the wrong type
])
def test_a_corrupted_state_file_names_itself_and_the_fixes(tmp_path, content):
    (tmp_path / STATE_FILE).write_text(content)
    with pytest.raises(CheckpointStateError) as err:
        PluginState.read(str(tmp_path))
    message = str(err.value)
    assert str(tmp_path / STATE_FILE) in message and "corrupted" in message
    assert FRESH in message and "trainer.resume_from_path" in message


# ---------------------------------------------------------------- resuming a checkpoint without EffOPD state
def test_a_checkpoint_without_effopd_state_stops_the_resume_and_names_the_setting(tmp_path):
    step = tmp_path / "global_step_3"
    (step / "actor").mkdir(parents=True)  # verl's own part is there, effopd/ is not
    with pytest.raises(CheckpointStateError) as err:
        resume_state(str(step), world_size=1, without_state=False)
    message = str(err.value)
    assert f"{step / 'effopd'} does not exist" in message and FRESH in message and "storage every node mounts" in message
    assert resume_state(str(step), world_size=1, without_state=True) is None  # asked for: a fresh start


def test_an_effopd_folder_without_state_json_is_a_save_cut_short(tmp_path):
    folder, _ = saved_shard(tmp_path)  # the shard was written, state.json never was
    with pytest.raises(CheckpointStateError, match=f"holds no {STATE_FILE}") as err:
        resume_state(os.path.dirname(folder), world_size=1, without_state=False)
    assert FRESH in str(err.value)


def test_another_rank_count_is_refused_before_any_shard_is_read(tmp_path):
    folder = effopd_folder(str(tmp_path / "global_step_2"))
    PluginState(world_size=2, next_trigger=4).write(folder)
    with pytest.raises(CheckpointStateError, match="written by 2 actor ranks, this run has 4"):
        resume_state(os.path.dirname(folder), world_size=4, without_state=False)
    assert resume_state(os.path.dirname(folder), world_size=2, without_state=False).next_trigger == 4


def test_the_advertised_last_resort_for_damaged_state_works(tmp_path):
    folder = effopd_folder(str(tmp_path / "global_step_2"))
    os.makedirs(folder)
    (tmp_path / "global_step_2" / "effopd" / STATE_FILE).write_text("{")
    with pytest.raises(CheckpointStateError) as err:
        resume_state(os.path.dirname(folder), world_size=1, without_state=True)  # damage is never skipped silently
    assert f"move {folder} aside and set {FRESH}" in str(err.value)
    os.rename(folder, folder + ".damaged")
    assert resume_state(os.path.dirname(folder), world_size=1, without_state=True) is None


def test_resume_without_state_is_a_validated_setting():
    assert EffOPDConfig().resume_without_state is False
    assert EffOPDConfig.from_mapping({"resume_without_state": True}).resume_without_state is True
    with pytest.raises(ValueError, match="effopd.resume_without_state='yes' is invalid: true or false"):
        EffOPDConfig(resume_without_state="yes")


# ---------------------------------------------------------------- the driver's check before Ray starts
def test_the_resumed_folder_is_the_one_verl_picks(tmp_path, monkeypatch):
    """verl 0.9.1's _load_checkpoint: disable → none; auto → the tracker's step, none without a tracker;
    resume_path → the path, relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt" / "global_step_4").mkdir(parents=True)
    auto = {"resume_mode": "auto", "default_local_dir": "ckpt"}
    assert resumed_step_folder(auto) is None
    (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").write_text("4")
    assert resumed_step_folder(auto) == str(tmp_path / "ckpt" / "global_step_4")
    assert resumed_step_folder({**auto, "resume_mode": "disable"}) is None
    path = {"resume_mode": "resume_path", "resume_from_path": "ckpt/global_step_2", "default_local_dir": "x"}
    assert resumed_step_folder(path) == str(tmp_path / "ckpt" / "global_step_2")


def test_the_driver_refuses_a_truncated_shard_it_sees_and_leaves_unseen_ones_to_the_workers(tmp_path):
    folder, _ = saved_shard(tmp_path, world_size=2, rank=0)
    PluginState(world_size=2, next_trigger=4).write(folder)
    step = os.path.dirname(folder)
    check_resume(step, world_size=2, without_state=False)  # rank 1's shard is on another node's disk: not ours
    path = anchor_file(folder, 0, 2)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 7)
    with pytest.raises(CheckpointStateError, match="truncated or corrupted") as err:
        check_resume(step, world_size=2, without_state=False)
    assert path in str(err.value) and FRESH in str(err.value)
    with pytest.raises(CheckpointStateError, match="written by 2 actor ranks, this run has 1"):
        check_resume(step, world_size=1, without_state=False)


def test_the_driver_refuses_a_lost_state_unless_asked_to_start_afresh(tmp_path):
    step = tmp_path / "global_step_3"
    (step / "actor").mkdir(parents=True)
    with pytest.raises(CheckpointStateError, match="does not exist"):
        check_resume(str(step), world_size=1, without_state=False)
    check_resume(str(step), world_size=1, without_state=True)
    check_resume(str(tmp_path / "global_step_9"), world_size=1, without_state=False)  # not seen here: verl's to report


# ---------------------------------------------------------------- anchor shards
def test_anchor_round_trip_restores_the_committed_anchor(tmp_path):
    folder, trained = saved_shard(tmp_path, world_size=2, rank=1)
    assert sorted(os.listdir(folder)) == [os.path.basename(anchor_file(folder, 1, 2))]  # no temporary
    ex = fresh_extrapolation()
    live = named(model())  # parameters of the shape the shard was written for
    load_anchor(ex, live, folder, rank=1, world_size=2, saved_world_size=2)
    restored, weights = ex.state_dict(), dict(named(trained))
    assert sorted(restored) == sorted([*weights, *(f"direction_sample.{n}" for n in weights)])
    for name, tensor in weights.items():
        assert torch.equal(restored[name], tensor.detach()), name  # the committed point


def test_a_truncated_shard_names_the_file_and_the_fixes(tmp_path):
    folder, _ = saved_shard(tmp_path)
    path = anchor_file(folder, 0, 1)
    size = os.path.getsize(path)
    for keep in (size - 7, 100, 5, 0):  # into the data, into the header, into the header length, nothing
        with open(path, "r+b") as f:
            f.truncate(keep)
        with pytest.raises(CheckpointStateError) as err:
            read_anchor(folder, 0, 1, saved_world_size=1)
        message = str(err.value)
        assert f"{path} is truncated or corrupted" in message, keep
        assert FRESH in message and "trainer.resume_from_path" in message


def test_flipped_bits_in_the_tensor_data_fail_the_checksum(tmp_path):
    folder, _ = saved_shard(tmp_path)
    path = anchor_file(folder, 0, 1)
    with open(path, "r+b") as f:  # the last byte is tensor data: safetensors alone would load it silently
        f.seek(-1, os.SEEK_END)
        byte = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(CheckpointStateError, match="fail their CRC-32 check") as err:
        read_anchor(folder, 0, 1, saved_world_size=1)
    assert path in str(err.value) and FRESH in str(err.value)


def test_a_garbled_header_names_the_file(tmp_path):
    folder, _ = saved_shard(tmp_path)
    path = anchor_file(folder, 0, 1)
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(b"#garbage#")
    with pytest.raises(CheckpointStateError, match="truncated or corrupted") as err:
        read_anchor(folder, 0, 1, saved_world_size=1)
    assert path in str(err.value)


@pytest.mark.parametrize("live", [
    lambda: named(model(), prefix="mlp.other."),  # other parameter names (another param_include / model)
    lambda: named(torch.nn.Sequential(torch.nn.Linear(8, 4)), prefix="mlp.proj."),  # other shapes (another sharding)
])
def test_a_shard_that_does_not_fit_the_model_names_the_file(tmp_path, live):
    folder, _ = saved_shard(tmp_path)
    with pytest.raises(CheckpointStateError) as err:
        load_anchor(fresh_extrapolation(), live(), folder, rank=0, world_size=1, saved_world_size=1)
    message = str(err.value)
    assert f"{anchor_file(folder, 0, 1)} does not fit this model" in message and FRESH in message


def test_a_missing_shard_of_the_same_rank_count_blames_unshared_storage(tmp_path):
    """Two nodes with local disks: node 0's ranks wrote shards 0-1 to its disk, node 1 sees only its own."""
    folder, _ = saved_shard(tmp_path, world_size=4, rank=2)
    with pytest.raises(CheckpointStateError) as err:
        read_anchor(folder, rank=0, world_size=4, saved_world_size=4)
    message = str(err.value)
    assert f"{anchor_file(folder, 0, 4)} is missing" in message
    assert "anchor_world_size_4_rank_2.safetensors" in message  # what this node does see
    assert "not on storage shared by all nodes" in message and "trainer.default_local_dir" in message
    assert "copy every node's effopd/ shards into this one folder" in message
    with pytest.raises(CheckpointStateError, match="does not see that folder at all"):
        read_anchor(str(tmp_path / "elsewhere" / "effopd"), rank=0, world_size=4, saved_world_size=4)


def test_a_missing_shard_of_another_rank_count_blames_the_rank_count(tmp_path):
    folder, _ = saved_shard(tmp_path, world_size=2, rank=0)
    with pytest.raises(CheckpointStateError) as err:
        read_anchor(folder, rank=0, world_size=1, saved_world_size=2)
    message = str(err.value)
    assert "written by 2 actor ranks, this run has 1" in message and "trainer.n_gpus_per_node" in message
    assert "shared" not in message


# ---------------------------------------------------------------- durable writes and failing disks
def test_each_file_and_then_its_folder_are_fsynced_before_the_next_file(tmp_path, monkeypatch):
    """The order a crash-safe checkpoint needs: shard data, shard rename (folder), state data, state rename."""
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(state_module.os, "fsync", recording_fsync)
    folder, _ = saved_shard(tmp_path)
    PluginState(world_size=1, next_trigger=4).write(folder)
    shard = anchor_file(folder, 0, 1)
    assert synced == [shard + ".tmp", folder, os.path.join(folder, STATE_FILE) + ".tmp", folder]


def test_a_folder_that_cannot_be_created_names_it(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the checkpoint folder should be")
    folder = effopd_folder(str(tmp_path / "checkpoints" / "global_step_1"))
    with pytest.raises(CheckpointWriteError) as err:
        PluginState(world_size=1, next_trigger=2).write(folder)
    message = str(err.value)
    assert folder in message and "trainer.default_local_dir" in message and "previous one, which stays usable" in message


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 64 KiB tmpfs, unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {err}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_names_the_folder_and_keeps_the_previous_file(tiny_disk):
    folder = effopd_folder(str(tiny_disk / "global_step_1"))
    big = {"mlp.proj.weight": torch.ones(64 * 1024 // 4 + 1)}  # 64 KiB + 4 bytes: one block too many
    small = {"mlp.proj.weight": torch.ones(4)}
    save_anchor(small, folder, 0, 1)
    with pytest.raises(CheckpointWriteError) as err:
        save_anchor(big, folder, 0, 1)
    message = str(err.value)
    assert folder in message and "No space left on device" in message and "free space" in message
    assert sorted(os.listdir(folder)) == [os.path.basename(anchor_file(folder, 0, 1))]  # the temporary is gone
    assert torch.equal(read_anchor(folder, 0, 1, saved_world_size=1)["mlp.proj.weight"], small["mlp.proj.weight"])


def test_a_read_only_disk_names_the_folder(tiny_disk):
    folder = effopd_folder(str(tiny_disk / "global_step_1"))
    PluginState(world_size=1, next_trigger=2).write(folder)
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    with pytest.raises(CheckpointWriteError) as err:
        PluginState(world_size=1, next_trigger=4).write(folder)
    assert folder in str(err.value) and "Read-only file system" in str(err.value)
    assert PluginState.read(folder).next_trigger == 2  # the previous state is intact


def test_write_durably_replaces_atomically(tmp_path):
    path = str(tmp_path / "f.bin")
    write_durably(path, lambda temporary: open(temporary, "wb").write(b"old"))

    def failing(temporary):
        with open(temporary, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(CheckpointWriteError, match="No space left on device"):
        write_durably(path, failing)
    assert open(path, "rb").read() == b"old" and os.listdir(tmp_path) == ["f.bin"]
