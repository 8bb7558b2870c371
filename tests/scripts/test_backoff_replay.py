"""scripts/backoff_replay.py on a recorded benchmark: the searches the back-off keeps, the seconds it saves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_module import load_script

from effopd_verl.bench.measures import Curve
from effopd_verl.core.schedule import TriggerSchedule

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "docs" / "results" / "speedup_reverse_topk.json"
replay_script = load_script("backoff_replay")


def curve(accepted: dict[int, float], seconds: float = 1.0) -> Curve:
    searches = {t: {"accepted_alpha": a, "search_seconds": seconds, "candidates_scored": 1} for t, a in accepted.items()}
    return Curve(steps=[0, 1, 2, 3], wall=[0.0, 10.0, 20.0, 30.0], acc=[0.0] * 4, searches=searches, total_wall=40.0)


def test_replay_skips_after_k_empty_searches_and_counts_the_cost():
    run = curve({1: 0.0, 2: 0.0, 4: 2.0, 8: 0.0, 16: 0.0})
    stop = replay_script.replay(TriggerSchedule(backoff_after=2, backoff="stop"), run)
    assert stop["kept"] == [1, 2] and stop["first_skip"] == 4
    assert stop["saved_seconds"] == 3.0 and stop["saved_share"] == 3.0 / 40 and stop["saved_steps"] == 0.3
    assert stop["accepted_skipped"] == {4: 2.0} and stop["accepted_kept"] == {}
    double = replay_script.replay(TriggerSchedule(backoff_after=2, backoff="double"), run)
    assert double["kept"] == [1, 2, 8] and double["accepted_skipped"] == {4: 2.0}


def test_replay_refuses_a_run_recorded_on_another_schedule():
    with pytest.raises(ValueError, match="--first and --growth"):
        replay_script.replay(TriggerSchedule(growth=3, backoff_after=2), curve({1: 0.0, 2: 0.0}))


def test_recorded_tuned_runs_save_searches_and_the_under_stepped_keep_their_jumps(tmp_path):
    out, md = tmp_path / "replay.json", tmp_path / "replay.md"
    replay_script.main(["--json", str(RECORDED), "--k", "2", "--out", str(out), "--md", str(md)])
    rows = {(r["arm"], r["backoff"]): r for r in json.loads(out.read_text())["rows"]}
    recorded = json.loads(RECORDED.read_text())["curves"]
    tuned = rows["effopd_tlp_tuned", "stop"]
    for seed, r in tuned["per_seed"].items():  # every search rejected at the tuned lr: only t = 1, 2 run
        assert r["kept"] == [1, 2]
        skipped = sum(s["search_seconds"] for t, s in recorded["effopd_tlp_tuned"][seed]["searches"].items() if int(t) > 2)
        assert r["saved_seconds"] == pytest.approx(skipped) and r["saved_seconds"] > 0
    for mode in ("stop", "double"):  # the jumps accepted at t = 1 are kept
        assert all(not r["accepted_skipped"] for r in rows["effopd_tlp_under", mode]["per_seed"].values())
    assert "fixed2_under" not in {arm for arm, _ in rows}  # nothing scored: not a search
    assert "| speedup_reverse_topk | effopd_tlp_tuned | 3 | 2 | stop | 2/6 / 2/6 / 2/6 |" in md.read_text()
