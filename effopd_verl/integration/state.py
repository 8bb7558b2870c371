"""EffOPD's plugin state in a verl checkpoint: ``global_step_N/effopd/``.

The workers write one anchor shard per rank (``anchor_world_size_W_rank_R.safetensors``); the driver
then writes ``state.json`` (schedule, search history, cached teacher answers), last and atomically.
A folder without ``state.json`` is incomplete and never loads. Nothing is unpickled on load.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

STATE_VERSION = 1
STATE_FILE = "state.json"


def effopd_folder(step_folder: str) -> str:
    return os.path.join(step_folder, "effopd")


@dataclass
class PluginState:
    """What the driver persists besides the anchor shards."""

    world_size: int
    """Actor ranks that wrote the anchor shards (a resume must use as many)."""
    next_trigger: int
    """The next global step at which a search runs."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One record per search: step, candidates (alpha, score, outcome, seconds), accepted alpha."""
    teacher_responses: list[list[int]] | None = None
    """The teacher's cached answers to the validation prompts (score=teacher_logprob)."""
    version: int = STATE_VERSION

    def write(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, STATE_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump(asdict(self), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)

    @classmethod
    def read(cls, folder: str) -> "PluginState | None":
        """The state in ``folder``, or None if the folder holds no complete EffOPD state."""
        path = os.path.join(folder, STATE_FILE)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            raw = json.load(f)
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"{path} has EffOPD state version {raw.get('version')}, this effopd-verl reads {STATE_VERSION}")
        return cls(**raw)
