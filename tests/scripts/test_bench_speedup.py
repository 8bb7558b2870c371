"""scripts/bench_speedup.py: the pure parts (gain targets, first reach, ratios, aggregation, the
per-arm figures and top-level ratios, the tuned-lr pick, the table). No training."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_speedup", ROOT / "scripts" / "bench_speedup.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_speedup"] = bench
_spec.loader.exec_module(bench)


def test_gain_targets():
    assert bench.gain_targets(0.2, 0.6) == pytest.approx({0.5: 0.4, 0.9: 0.56})
    assert bench.gain_targets(0.2, 0.2) is None  # vanilla gained nothing: no target
    assert bench.gain_targets(0.3, 0.2) is None


def test_first_reach():
    steps, acc = [0, 1, 2, 3], [0.1, 0.3, 0.25, 0.5]
    assert bench.first_reach(steps, acc, 0.3) == 1  # at the target counts
    assert bench.first_reach(steps, acc, 0.4) == 3
    assert bench.first_reach(steps, acc, 0.6) is None
    assert bench.first_reach([0.0, 5.5, 9.0], [0.1, float("nan"), 0.4], 0.2) == 9.0


def test_ratio():
    assert bench.ratio(8, 4) == 2
    assert bench.ratio(None, 4) is None and bench.ratio(8, None) is None and bench.ratio(8, 0) is None


def test_aggregate():
    a = bench.aggregate([1.0, 3.0, None])
    assert a["mean"] == 2.0 and a["std"] == pytest.approx(math.sqrt(2)) and a["n"] == 2 and a["missing"] == 1
    assert a["min"] == 1.0 and a["max"] == 3.0
    assert bench.aggregate([5.0])["std"] == 0.0
    assert bench.aggregate([None])["mean"] is None


def test_cumulative_wall():
    assert bench.cumulative_wall([1.0, 2.0, 0.5]) == [1.0, 3.0, 3.5]


def curve(acc, step_seconds=1.0, searches=None):
    steps = list(range(len(acc)))
    wall = [step_seconds * s for s in steps]
    return bench.Curve(steps, wall, acc, [-1.0 + 0.1 * a for a in acc], {}, searches or {}, wall[-1])


def test_arm_figures_use_the_vanilla_gain():
    vanilla = curve([0.2, 0.3, 0.4, 0.5, 0.6, 0.6])  # gain 0.4: 50% at 0.4 (step 2), 90% at 0.56 (step 4)
    effopd = curve([0.2, 0.45, 0.58, 0.55, 0.6, 0.62], step_seconds=1.5,
                   searches={1: {"accepted_alpha": 4.0, "search_seconds": 0.75, "direction_cosine": None},
                             2: {"accepted_alpha": 0.0, "search_seconds": 0.75, "direction_cosine": 0.9}})
    v, e = bench.arm_figures(vanilla, vanilla), bench.arm_figures(effopd, vanilla)
    assert (v["steps_to_50"], v["steps_to_90"]) == (2, 4)
    assert (e["steps_to_50"], e["steps_to_90"]) == (1, 2)
    assert e["wall_to_90"] == 3.0 and e["target_acc_90"] == pytest.approx(0.56)
    assert e["best_acc"] == 0.62 and e["final_acc"] == 0.62 and e["initial_acc"] == 0.2
    assert e["search_seconds"] == 1.5 and e["search_share"] == pytest.approx(1.5 / 7.5)
    assert e["accepted_alpha"] == {"1": 4.0, "2": 0.0} and e["direction_cosine"] == {"2": 0.9}


def test_summarize_ratios_per_seed_with_the_best_effopd_arm():
    van = {0: curve([0.2, 0.3, 0.4, 0.5, 0.6]), 1: curve([0.2, 0.3, 0.4, 0.5, 0.6])}  # 90% of 0.4 gain: 0.56 at step 4
    curves = {
        "vanilla_under": van,
        "effopd_reward_under": {0: curve([0.2, 0.6, 0.6, 0.6, 0.6]), 1: curve([0.2, 0.2, 0.2, 0.2, 0.2])},
        "effopd_tlp_under": {0: curve([0.2, 0.3, 0.6, 0.6, 0.6]), 1: curve([0.2, 0.3, 0.6, 0.6, 0.6])},
        "vanilla_tuned": van,
        "effopd_tlp_tuned": {0: curve([0.2, 0.2, 0.2, 0.2, 0.2]), 1: curve([0.2, 0.3, 0.4, 0.5, 0.6])},
    }
    arms, top = bench.summarize(curves)
    # seed 0: the reward arm reaches at step 1 (4/1); seed 1: only teacher_logprob reaches, at step 2 (4/2)
    assert top["effopd_step_ratio"]["values"] == [4.0, 2.0] and top["effopd_step_ratio"]["mean"] == 3.0
    # at the tuned lr seed 0 never reaches 90%: no ratio for it
    assert top["tuned_lr_step_ratio"]["values"] == [None, 1.0]
    assert top["tuned_lr_step_ratio"]["missing"] == 1
    assert arms["effopd_reward_under"]["mean"]["steps_to_90"]["missing"] == 1
    text = bench.table(arms, top, {"tuned": 1e-3, "under": 1e-4})
    assert "effopd_step_ratio: mean 3.00" in text and "| vanilla_under | 1e-04 |" in text
    assert "never" in text


def test_table_shows_fractional_accepted_alphas():
    van = {0: curve([0.2, 0.3, 0.4, 0.6])}
    fine = {0: curve([0.2, 0.4, 0.5, 0.6], searches={1: {"accepted_alpha": 2.0}, 2: {"accepted_alpha": 0.5},
                                                      3: {"accepted_alpha": 0.0}})}
    arms, top = bench.summarize({"vanilla_under": van, "effopd_tlp_under": fine})
    assert "| 1:2,2:0.5,3:0 |" in bench.table(arms, top, {"tuned": 1e-3, "under": 1e-4})


def test_pick_tuned_lr_by_validation_accuracy_ties_to_the_smaller():
    assert bench.pick_tuned_lr({1e-4: 0.3, 3e-4: 0.5, 1e-3: 0.4}) == 3e-4
    assert bench.pick_tuned_lr({1e-4: 0.5, 3e-4: 0.5}) == 1e-4


def test_curve_json_round_trip():
    c = curve([0.1, 0.2], searches={1: {"accepted_alpha": 2.0}})
    back = bench.Curve.from_json(c.to_json())
    assert back.acc == c.acc and back.searches == {1: {"accepted_alpha": 2.0}} and back.total_wall == c.total_wall


def test_step_equivalents_normalize_wall_time_by_the_median_step():
    wall = [0.0, 2.0, 4.0, 9.0, 11.0]  # steps of 2 s; step 3 carries a 3 s search
    assert bench.median_step(wall) == 2.0
    c = curve([0.2, 0.3, 0.4, 0.5, 0.6], searches={3: {"search_seconds": 3.0}})
    c.wall = wall
    assert bench.step_equivalents(c) == [0.0, 1.0, 2.0, 4.5, 5.5]
    f = bench.arm_figures(c, c)
    assert f["stepeq_to_90"] == 5.5 and f["median_step_seconds"] == 2.0


def test_search_log_from_the_logged_metrics():
    metrics = {
        1: {"effopd/accepted_alpha": 2.0, "effopd/direction_norm": 0.06, "effopd/score_base": -1.04,
            "effopd/score_alpha_0.5": -1.02, "effopd/score_alpha_2": -1.0, "effopd/score_alpha_4": -1.06},
        2: {"actor/lr": 1e-4},
        4: {"effopd/accepted_alpha": 0.0, "effopd/direction_norm": 0.08, "effopd/score_base": -0.96,
            "effopd/score_alpha_0.5": -0.97, "effopd/geometry/direction_cosine": 0.7},
    }
    found = bench.searches_from_metrics(metrics)
    assert sorted(found) == [1, 4]
    assert list(found[1]["scores"]) == ["0.5", "2", "4"]  # in α order
    assert found[4]["direction_cosine"] == 0.7 and found[4]["direction_norm"] == 0.08
    c = curve([0.2, 0.3, 0.3, 0.4, 0.5], searches=found)
    text = bench.search_table({"effopd_tlp_under": {0: c}, "fixed2_under": {0: curve([0.2, 0.3], searches={1: {"accepted_alpha": 2.0}})}})
    rows = [r for r in text.splitlines()[2:]]
    assert rows == ["| effopd_tlp_under | 0 | 1 | 0.0600 | 0.0600 | -1.0400 | 0.5: -1.0200, 2: -1.0000, 4: -1.0600 | 2 |",
                    "| effopd_tlp_under | 0 | 4 | 0.0800 | 0.0267 | -0.9600 | 0.5: -0.9700 | 0 |"]  # window 4 - 1 = 3 steps


def test_markdown_page_holds_the_command_setup_and_tables():
    result = {"task": "reverse", "seeds": [0, 1], "steps": 32, "batch_prompts": 128,
              "assets": {"student_accuracy": 0.126, "teacher_accuracy": 1.0, "num_rows": {"test": 1024}, "quick": False, "seed": 0},
              "overrides": ["a.b=1"], "effopd_alphas": [0.5, 1.0], "effopd_val_size": 128,
              "lr": {"tuned": 1e-3, "under": 1e-4}, "under_factor": 10.0, "tuned_lr_how": "a sweep",
              "sweep_val_acc": {"0.001": 0.97}, "measure": "test split", "gain_definition": "gain",
              "table": "| arm |\n|---|", "search_table": "| arm | seed |\n|---|---|"}
    page = bench.markdown(result, "python scripts/bench_speedup.py --seeds 0 1")
    assert page.startswith("# Speedup benchmark: `reverse` toy (2 seeds, 32 steps × 128 prompts)")
    assert "python scripts/bench_speedup.py --seeds 0 1" in page and "`a.b=1`" in page and "0.001 → 0.970" in page
    assert "| arm |\n|---|" in page and "Search log" in page and "student 0.126, teacher 1.000" in page
