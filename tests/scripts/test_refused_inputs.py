"""docs/refused_inputs.md: every row's example, run for real, is refused with exactly the row's message.

The page is parsed, so the page and the code cannot drift apart: a changed message fails here, and a
new ``die`` in scripts/launch_ray_cluster.sh or a new field of EffOPDConfig needs its row.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import save_file
from test_launch_ray_cluster import sandbox  # noqa: F401 - the fixture: a stand-in ray and hostname

from effopd_verl.core.config import EffOPDConfig
from effopd_verl.integration import verl_version
from effopd_verl.integration.checks import check_run_config
from effopd_verl.integration.state import PluginState
from effopd_verl.plugin import refuse_effopd_enabled

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "refused_inputs.md"
SCRIPT = ROOT / "scripts" / "launch_ray_cluster.sh"
CELL = re.compile(r"^`(.*)`$")


@dataclass(frozen=True)
class Row:
    input: str
    example: str
    given: str
    message: str

    def matches(self, message: str) -> bool:
        """Equal, with "…" in the page standing for any text."""
        return re.fullmatch(".*".join(map(re.escape, self.message.split("…"))), message, re.S) is not None


def rows(text: str) -> list[Row]:
    """The rows of every table whose header is | input | example | given | message |."""
    found, in_table = [], False
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]] if line.startswith("|") else None
        if cells == ["input", "example", "given", "message"]:
            in_table = True
        elif cells is None:
            in_table = False
        elif in_table and not set(cells[0]) <= {"-", ":"}:
            example, message = (CELL.match(cells[i]).group(1).replace("\\|", "|") for i in (1, 3))
            found.append(Row(cells[0], example, cells[2], message))
    return found


ROWS = rows(DOC.read_text())


def test_the_page_lists_at_least_every_kind_of_refusal():
    assert len(ROWS) >= 12
    kinds = {row.example.split()[0] + (" " + row.example.split()[1] if row.example.startswith("bash") else "") for row in ROWS}
    assert kinds == {"effopd-train", "python", "bash scripts/launch_ray_cluster.sh"}
    assert len({row.example + row.given for row in ROWS}) == len(ROWS)


def test_every_effopd_setting_has_a_row():
    shown = " ".join(row.example for row in ROWS)
    assert [f.name for f in fields(EffOPDConfig) if f"effopd.{f.name}=" not in shown] == []


def test_every_refusal_of_the_launch_script_has_a_row():
    """Each ``die "..."`` of the script, its variables as wildcards, matches the message of some row."""
    script_rows = [row.message for row in ROWS if row.example.startswith("bash")]
    templates = re.findall(r'\bdie "((?:[^"\\]|\\.)*)"', SCRIPT.read_text())
    assert len(templates) > 20
    missing = []
    for template in templates:
        parts = re.split(r"\$\{[^}]*\}|\$[A-Za-z_0-9]+", template.replace('\\"', '"').replace("\\$", "\x00"))
        pattern = "launch_ray_cluster.sh: error: " + ".*".join(re.escape(p).replace("\x00", r"\$") for p in parts)
        if not any(re.fullmatch(pattern, message, re.S) for message in script_rows):
            missing.append(template)
    assert missing == []


def _given_files(given: str, folder: Path) -> None:
    for name, columns in re.findall(r"(\S+) is a parquet file with columns ([\w, ]+)", given):
        pd.DataFrame({c.strip(): ["x"] for c in columns.split(",")}).to_parquet(folder / name)
    for name in re.findall(r"(\S+) is a text file", given):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("not parquet\n")
    for name in re.findall(r"(\S+) is a checkpoint folder without effopd/", given):
        (folder / name / "actor").mkdir(parents=True)
    for name, ranks in re.findall(r"(\S+_world_size_(\d+)_rank_0\.safetensors) is a shard cut short", given):
        shard = folder / name  # with the state.json of those ranks
        PluginState(world_size=int(ranks), next_trigger=4).write(str(shard.parent))
        save_file({"w": torch.zeros(64)}, str(shard))
        with open(shard, "r+b") as f:
            f.truncate(shard.stat().st_size - 7)


def _effopd_train(row: Row, tmp_path: Path, monkeypatch) -> str:
    args = shlex.split(row.example)[1:]
    _given_files(row.given, tmp_path)
    version = re.fullmatch(r"verl (\S+) installed", row.given)
    if version:
        monkeypatch.setattr(verl_version, "installed_verl", lambda: version.group(1))
    monkeypatch.chdir(tmp_path)  # relative paths of the example are read from here
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        cfg = compose(config_name="effopd_trainer", overrides=args)
    with pytest.raises((ValueError, RuntimeError)) as err:
        check_run_config(cfg)
    return str(err.value)


def _verl_launcher(row: Row) -> str:
    args = shlex.split(row.example)
    assert args[:3] == ["python", "-m", "verl.trainer.main_ppo"] and args[3] == "--config-path" and args[5] == "--config-name"
    with initialize_config_dir(config_dir=str(ROOT / args[4]), version_base=None):
        cfg = compose(config_name=args[6], overrides=args[7:])
    with pytest.raises(ValueError) as err:
        refuse_effopd_enabled(cfg)
    return str(err.value)


def _launch_script(row: Row, box) -> str:
    env = {"RAY": "ray"}  # the stand-in ray on PATH, named as a user's PATH names it
    version = re.fullmatch(r"Ray (\S+) installed", row.given)
    if version:
        env["FAKE_RAY_VERSION"] = version.group(1)
    for key, value in re.findall(r"(\w+)=(\S*) in the environment", row.given):
        env[key] = value.strip("'")
    if row.given == "this machine has no private IPv4 address":
        env["FAKE_HOSTNAME_I"] = "203.0.113.7"
    out = box.run(*shlex.split(row.example)[2:], **env)
    assert out.returncode == 2, out
    assert box.ray_argv() is None  # nothing was started
    return out.stderr.strip().splitlines()[-1]


KNOWN_GIVEN = re.compile(
    r"|verl \S+ installed|Ray \S+ installed|this machine has no private IPv4 address|no Ray token on this node"
    r"|(\w+=\S* in the environment)(, \w+=\S* in the environment)*"
    r"|(\S+ is a (parquet file with columns [\w, ]+|text file|checkpoint folder without effopd/|shard cut short))"
)


@pytest.mark.parametrize("row", ROWS, ids=[f"{i}-{row.input}" for i, row in enumerate(ROWS)])
def test_the_example_is_refused_with_the_message_of_its_row(row, sandbox, tmp_path, monkeypatch):  # noqa: F811
    assert KNOWN_GIVEN.fullmatch(row.given), f"unknown circumstance {row.given!r}: teach this test to set it up"
    if row.example.startswith("effopd-train"):
        message = _effopd_train(row, tmp_path, monkeypatch)
    elif row.example.startswith("python"):
        message = _verl_launcher(row)
    else:
        message = _launch_script(row, sandbox)
    assert row.matches(message), f"\npage: {row.message}\ncode: {message}"
