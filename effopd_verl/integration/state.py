"""EffOPD's plugin state in a verl checkpoint: ``global_step_N/effopd/``.

The workers write one anchor shard per rank (``anchor_world_size_W_rank_R.safetensors``); the driver
then writes ``state.json`` (schedule, search history, cached teacher answers), last. Every file is
written durably (:func:`write_durably`: temporary file, fsync, rename, fsync of the folder), all before
verl writes its tracker file, so the tracker never points at a step whose EffOPD state could be lost
in a crash or power cut. A folder without ``state.json`` is incomplete and never loads. Nothing is
unpickled on load.

Every failure to save or load names the file and the fix: a full or read-only disk while saving (the
previous checkpoint stays the one verl resumes from), a checkpoint without EffOPD state (an error unless
``effopd.resume_without_state=true``), a corrupted ``state.json``, a truncated or corrupted anchor shard
(each shard carries a CRC-32 of its tensor bytes: ~1-1.5 s per GB of anchor on a save and a load, measured
646 MiB/s on a shared core here), a shard that does not fit the model, another number
of ranks, or a shard missing because the checkpoint folder is not on storage shared by all nodes.
"""

from __future__ import annotations

import json
import os
import socket
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path

from effopd_verl.core.extrapolation import NamedTensors, ShardedExtrapolation

STATE_VERSION = 1
STATE_FILE = "state.json"
CHECKSUM_KEY = "effopd_crc32"
"""Metadata key of an anchor shard: CRC-32 of its tensors' bytes, in name order (safetensors has none)."""
FRESH_START = "effopd.resume_without_state=true"


def _start_afresh(folder: str) -> str:
    """The last-resort fix for damaged state: without ``folder`` the checkpoint holds no state (``resume_state``)."""
    return f"move {folder} aside and set {FRESH_START} to start EffOPD afresh from the loaded weights"

EARLIER_CHECKPOINT = "trainer.resume_mode=resume_path trainer.resume_from_path=<an earlier global_step_N folder>"


def effopd_folder(step_folder: str) -> str:
    return os.path.join(step_folder, "effopd")


def anchor_file(folder: str, rank: int, world_size: int) -> str:
    """Where rank ``rank`` keeps its anchor shard inside a checkpoint's ``effopd/`` folder."""
    return os.path.join(folder, f"anchor_world_size_{world_size}_rank_{rank}.safetensors")


class CheckpointWriteError(OSError):
    """EffOPD state could not be written (disk full, read-only or missing folder)."""


class CheckpointStateError(ValueError):
    """A checkpoint's EffOPD state is missing, corrupted or does not fit this run."""


def _fsync(path: str) -> None:
    """Flush ``path`` (a file, or a folder's entries: a rename is durable only once its folder is) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: str, write: Callable[[str], None]) -> None:
    """Write ``path`` atomically and durably: ``write(temporary)`` fills ``path + ".tmp"``, which is fsynced,
    renamed over ``path``, then the folder is fsynced. A crash at any moment leaves the old file or the whole
    new one on disk, never a partial one under ``path``.

    Raises :class:`CheckpointWriteError` naming the folder if anything fails (disk full, read-only, a path
    component that is a file); the temporary file is removed.
    """
    folder = os.path.dirname(os.path.abspath(path))
    temporary = path + ".tmp"
    try:
        os.makedirs(folder, exist_ok=True)
        write(temporary)
        _fsync(temporary)
        os.replace(temporary, path)
        _fsync(folder)
    except (OSError, SafetensorError) as err:
        try:
            os.remove(temporary)
        except OSError:
            pass
        raise CheckpointWriteError(
            f"EffOPD could not write {os.path.basename(path)} to {folder} on {socket.gethostname()} ({err}): free space "
            "on that filesystem or point trainer.default_local_dir at a writable one. This step's checkpoint is "
            "incomplete and verl's tracker (latest_checkpointed_iteration.txt) still names the previous one, which "
            "stays usable"
        ) from err


def _checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """CRC-32 of the tensors' raw bytes, in name order (contiguous CPU tensors)."""
    crc = 0
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.numel():
            crc = zlib.crc32(tensor.reshape(-1).view(torch.uint8).numpy(), crc)
    return f"{crc:08x}"


def save_anchor(state: Mapping[str, torch.Tensor], folder: str, rank: int, world_size: int) -> str:
    """Write one rank's ``ShardedExtrapolation.state_dict()`` durably, with its checksum; returns the path."""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    path = anchor_file(folder, rank, world_size)
    write_durably(path, lambda temporary: save_file(tensors, temporary, metadata={CHECKSUM_KEY: _checksum(tensors)}))
    return path


def _missing_shard(folder: str, path: str, world_size: int, saved_world_size: int) -> CheckpointStateError:
    if saved_world_size != world_size:
        return CheckpointStateError(
            f"{path} is missing: {folder} was written by {saved_world_size} actor ranks, this run has {world_size}. "
            f"Resume with the same trainer.n_gpus_per_node × trainer.nnodes ({saved_world_size}), or {_start_afresh(folder)}"
        )
    if os.path.isdir(folder):
        held = sorted(name for name in os.listdir(folder) if name.endswith(".safetensors"))
        seen = f"this node ({socket.gethostname()}) sees only {held or 'no anchor shards'} there"
    else:
        seen = f"this node ({socket.gethostname()}) does not see that folder at all"
    return CheckpointStateError(
        f"{path} is missing although {folder} was written by as many actor ranks ({world_size}) as this run has: "
        f"{seen}. The checkpoint folder is probably not on storage shared by all nodes (each node wrote its ranks' "
        "shards to its own disk). Put trainer.default_local_dir on a filesystem every node mounts, or copy every "
        f"node's {os.path.basename(folder)}/ shards into this one folder before resuming"
    )


def _damaged_fix(folder: str) -> str:
    return f"Restore the file from a backup, resume from another checkpoint ({EARLIER_CHECKPOINT}), or {_start_afresh(folder)}"


def _unreadable_shard(path: str, folder: str, err: Exception) -> CheckpointStateError:
    return CheckpointStateError(f"{path} is truncated or corrupted ({err}). {_damaged_fix(folder)}")


def read_anchor(folder: str, rank: int, world_size: int, saved_world_size: int) -> dict[str, torch.Tensor]:
    """Rank ``rank``'s anchor shard, checked whole (checksum); ``saved_world_size`` is what ``state.json`` records.

    Raises :class:`CheckpointStateError` naming the file and the fix if it is missing (another rank count,
    or a folder not shared by all nodes), unreadable or truncated, or fails its checksum.
    """
    path = anchor_file(folder, rank, world_size)
    if not os.path.isfile(path):
        raise _missing_shard(folder, path, world_size, saved_world_size)
    try:
        tensors = load_file(path)
        with safe_open(path, framework="pt") as f:  # the header's metadata; load_file drops it
            expected = (f.metadata() or {}).get(CHECKSUM_KEY)
    except (SafetensorError, OSError, ValueError) as err:
        raise _unreadable_shard(path, folder, err) from err
    if expected is not None and expected != _checksum(tensors):
        raise CheckpointStateError(f"{path} is corrupted: its tensors fail their CRC-32 check. {_damaged_fix(folder)}")
    return tensors


def load_anchor(
    extrapolation: ShardedExtrapolation, named: NamedTensors, folder: str, rank: int, world_size: int, saved_world_size: int
) -> None:
    """Restore ``extrapolation`` from this rank's shard (:func:`read_anchor`) over the live parameters ``named``.

    A shard whose names or shapes do not fit the model raises :class:`CheckpointStateError` naming the file.
    """
    tensors = read_anchor(folder, rank, world_size, saved_world_size)
    try:
        extrapolation.load_state_dict(tensors, named)
    except ValueError as err:
        raise CheckpointStateError(
            f"{anchor_file(folder, rank, world_size)} does not fit this model: {err}. Resume with the model, "
            f"effopd.param_include/param_exclude and ranks of the run that saved it, or {_start_afresh(folder)}"
        ) from err


@dataclass
class PluginState:
    """What the driver persists besides the anchor shards."""

    world_size: int
    """Actor ranks that wrote the anchor shards (a resume must use as many)."""
    next_trigger: int | None
    """The next global step at which a search runs; None once ``effopd.backoff=stop`` ended the searches."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One record per search: step, candidates (alpha, score, outcome, seconds), accepted alpha."""
    teacher_responses: list[list[int]] | None = None
    """The teacher's cached answers to the validation prompts (score=teacher_logprob)."""
    version: int = STATE_VERSION

    def write(self, folder: str) -> None:
        """Write ``state.json`` durably (:func:`write_durably`)."""

        def dump(temporary: str) -> None:
            with open(temporary, "w") as f:
                json.dump(asdict(self), f)

        write_durably(os.path.join(folder, STATE_FILE), dump)

    @classmethod
    def read(cls, folder: str) -> "PluginState | None":
        """The state in ``folder``, or None if the folder holds no ``state.json``.

        A ``state.json`` that does not parse, or lacks fields, raises :class:`CheckpointStateError` naming it.
        """
        path = os.path.join(folder, STATE_FILE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                raw = json.load(f)
            if not isinstance(raw, dict):
                raise ValueError(f"a JSON {type(raw).__name__}, not an object")
            if raw.get("version") != STATE_VERSION:
                raise CheckpointStateError(
                    f"{path} has EffOPD state version {raw.get('version')}, this effopd-verl reads {STATE_VERSION}"
                )
            state = cls(**raw)
            if isinstance(state.world_size, bool) or not isinstance(state.world_size, int) or state.world_size < 1:
                raise ValueError(f"world_size={state.world_size!r}")
            return state
        except CheckpointStateError:
            raise
        except (ValueError, TypeError, UnicodeDecodeError) as err:
            raise CheckpointStateError(
                f"{path} is corrupted ({err}). Restore it from a backup, resume from another checkpoint "
                f"({EARLIER_CHECKPOINT}), or {_start_afresh(folder)}"
            ) from err


def resume_state(step_folder: str, world_size: int, without_state: bool) -> PluginState | None:
    """The EffOPD state of the checkpoint ``step_folder`` a run with EffOPD on resumes from, checked.

    A checkpoint without ``effopd/state.json`` (lost, never copied, or written with EffOPD off: nothing
    tells these apart) raises :class:`CheckpointStateError` unless ``without_state`` (the setting
    ``effopd.resume_without_state``) asks for a fresh start; then None. A state written by another number
    of actor ranks than ``world_size`` raises too.
    """
    folder = effopd_folder(step_folder)
    state = PluginState.read(folder)
    if state is None:
        if without_state:
            return None
        seen = "does not exist" if not os.path.isdir(folder) else f"holds no {STATE_FILE} (a save cut short?)"
        raise CheckpointStateError(
            f"{step_folder} is resumed with effopd.enable=true, but {folder} {seen}: the EffOPD state (anchor, "
            f"search history) is lost, or the checkpoint was written with EffOPD off. Restore {folder} (on a "
            f"multi-node run it must be on storage every node mounts), resume from another checkpoint "
            f"({EARLIER_CHECKPOINT}), or set {FRESH_START} to start EffOPD afresh from the loaded weights on purpose"
        )
    if state.world_size != world_size:
        raise CheckpointStateError(
            f"{folder} was written by {state.world_size} actor ranks, this run has {world_size}: resume with the "
            f"same trainer.n_gpus_per_node × trainer.nnodes, or {_start_afresh(folder)}"
        )
    return state


def resumed_step_folder(trainer: Mapping[str, Any]) -> str | None:
    """The ``global_step_N`` folder verl 0.9.1's trainer resumes from under the ``trainer:`` settings, as its
    ``_load_checkpoint`` picks it (v1/trainer_base.py:850): none with ``resume_mode=disable`` or with ``auto`` and
    no tracker file in ``default_local_dir``; relative paths are taken from the working directory."""
    mode = trainer.get("resume_mode")
    if mode == "auto":
        folder = find_latest_ckpt_path(os.path.abspath(trainer["default_local_dir"]))
    elif mode == "resume_path":
        folder = trainer.get("resume_from_path")
    else:
        return None
    return os.path.abspath(folder) if isinstance(folder, str) else None


def check_resume(step_folder: str, world_size: int, without_state: bool) -> None:
    """The EffOPD state a run resumes from, checked on the driver before Ray starts: :func:`resume_state` (the
    ``effopd/`` folder, ``state.json``, the rank count) and every anchor shard this node sees opened whole (its
    header and length: a truncated file fails here; the CRC-32 of the tensors is checked by each worker as it
    loads its shard). Shards this node does not see are left to the workers (each node may hold its ranks' own).
    A step folder this node does not see at all is verl's to report."""
    if not os.path.isdir(step_folder):
        return
    state = resume_state(step_folder, world_size, without_state)
    if state is None:
        return
    folder = effopd_folder(step_folder)
    for rank in range(world_size):
        path = anchor_file(folder, rank, world_size)
        if not os.path.isfile(path):
            continue
        try:
            with safe_open(path, framework="pt"):
                pass
        except (SafetensorError, OSError, ValueError) as err:
            raise _unreadable_shard(path, folder, err) from err
