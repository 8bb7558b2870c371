"""scripts/fault_injection.py's pure parts: where a kill landed, the comparison with the uninterrupted run, the table.

The kills themselves are not tests (each case is three trainer starts): their outcome is docs/results/faults.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from script_module import load_script

ROOT = Path(__file__).resolve().parents[2]
faults = load_script("fault_injection")


def history(alpha: float = 2.0, score: float = -1.0, outcome: str = "improved") -> list[dict]:
    return [{"step": 1, "accepted_alpha": alpha, "direction_norm": 0.5, "candidates": [
        {"alpha": 0.0, "score": -1.5, "outcome": "base"}, {"alpha": 2.0, "score": score, "outcome": outcome}]}]


def test_the_kill_line_is_a_candidate_of_the_search_not_its_summary():
    line = "(TaskRunner pid=12) [effopd] step 2 α=3    score=-0.4123 Δ=+0.0100±0.0020 improved (4.1s)"
    assert faults.CANDIDATE.search(line).groups() == ("2", "3")
    assert faults.CANDIDATE.search("[effopd] step 2: accepted α=3 (score -0.5 → -0.4, 9.0s)") is None


def test_histories_compare_decisions_and_scores():
    assert faults.decisions(history()) == faults.decisions(history(score=-1.0 + 1e-9))
    assert faults.max_rel_diff(history(), history(score=-1.0 + 1e-9)) == pytest.approx(1e-9)
    assert faults.decisions(history()) != faults.decisions(history(alpha=0.0, outcome="worse"))
    assert faults.max_rel_diff(history(), history() + history()) == float("inf")


def test_weights_differ_by_their_largest_entry_and_not_at_all_if_they_do_not_pair():
    a = {"w": torch.zeros(3), "b": torch.ones(2, dtype=torch.bfloat16)}
    assert faults.max_abs_diff(a, {"w": torch.tensor([0.0, -3e-6, 0.0]), "b": torch.ones(2)}) == pytest.approx(3e-6)
    assert faults.max_abs_diff(a, {"w": torch.zeros(3)}) == float("inf")
    assert faults.max_abs_diff(a, {"w": torch.zeros(4), "b": torch.ones(2)}) == float("inf")


def write_step(checkpoints: Path, step: int, *files: str) -> None:
    for name in files:
        path = checkpoints / f"global_step_{step}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")


def test_the_save_watch_fires_on_state_json_while_the_tracker_names_the_step_before(tmp_path):
    watch = faults.SaveWatch(tmp_path, kill_step=2)
    write_step(tmp_path, 1, "effopd/state.json")
    assert watch.poll() is None  # step 1's state: not the step to kill
    (tmp_path / faults.TRACKER).write_text("1")
    assert watch.poll() is None
    write_step(tmp_path, 2, "effopd/anchor_world_size_1_rank_0.safetensors")
    assert watch.poll() is None  # the anchor alone: state.json comes last
    write_step(tmp_path, 2, "effopd/state.json")
    assert watch.poll() == "global_step_2/effopd/state.json written, tracker names 1"
    assert set(watch.windows()) == {1}  # step 1's window seen, step 2's cut by the kill
    assert faults.landed("save", tmp_path, 2, "")["in_window"]
    (tmp_path / faults.TRACKER).write_text("2")  # verl got to its tracker first: a miss
    assert not faults.landed("save", tmp_path, 2, "")["in_window"]


def test_a_search_kill_lands_only_before_the_step_is_decided_and_saved(tmp_path):
    (tmp_path / faults.TRACKER).write_text("1")
    assert faults.landed("search", tmp_path, 2, "[effopd] step 2 α=2 score=…")["in_window"]
    assert not faults.landed("search", tmp_path, 2, "[effopd] step 2: accepted α=2 (…)")["in_window"]
    assert not faults.landed("search", tmp_path, 2, None)["in_window"]  # the trainer's log not found: unknown
    write_step(tmp_path, 2, "effopd/state.json")
    assert not faults.landed("search", tmp_path, 2, "")["in_window"]


def test_the_trainer_log_is_read_in_whole_lines_as_it_grows(tmp_path):
    assert faults.RUNNER.search("\x1b[36m(_EffOPDTaskRunner pid=9800)\x1b[0m [effopd] step 1 α=0")[1] == "9800"
    log = faults.RunnerLog()
    log.path = tmp_path / "worker-ab-01000000-9800.out"
    log.path.write_text("[effopd] step 2 α=0 score=-0.9 base\n[effopd] step 2 α=2 sco")
    assert log.new_lines() == ["[effopd] step 2 α=0 score=-0.9 base"]
    with open(log.path, "a") as f:
        f.write("re=-0.8 improved\n")
    assert log.new_lines() == ["[effopd] step 2 α=2 score=-0.8 improved"] and log.new_lines() == []
    assert log.text.count("\n") == 2


def test_the_table_replaces_only_its_own_section():
    case = {"case": "search", "ranks": 2, "steps": 3, "kill_step": 2, "landed": "1/1", "resumed_first_step": 2,
            "decisions_equal": True, "max_rel_score_diff": 0.0, "max_abs_weight_diff": 2e-8, "same": True,
            "uninterrupted_wall_s": 300.0, "killed_wall_s": 200.0, "resumed_wall_s": 250.0, "time_lost_s": 150.0,
            "attempts": [{"killed_on": "[effopd] step 2 α=2", "tracker_after_kill": 1}]}
    table = faults.markdown({"search_r2": case})
    assert "| search (step 2 of 3) | 2 | `[effopd] step 2 α=2` | 1/1 | 1 → 2 | yes | 0.0e+00 | 2.0e-08 | 300 / 200 / 250 | 150 |" in table
    text = faults.replace_section("# Faults\n\nabove\n", table)
    again = faults.replace_section(text + "below\n", faults.markdown({"search_r2": {**case, "decisions_equal": False}}))
    assert again.startswith("# Faults\n\nabove\n") and again.endswith("below\n") and again.count(faults.BEGIN) == 1
    assert "| **no** |" in again and "| yes |" not in again
    saved = faults.markdown({"save_r1": {**case, "case": "save", "save_window_s_uninterrupted": 0.169}})
    assert "| 1/1 (window 169 ms) |" in saved


def test_a_kill_step_without_a_checkpoint_before_it_is_refused():
    with pytest.raises(SystemExit):
        faults.parse_args(["--case", "save", "--assets", "a", "--work", "w", "--kill-step", "1"])
