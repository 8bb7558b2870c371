"""effopd_verl.bench.tables: the printed table, the headline and sweep tables, the search log and the
Markdown page (strings from synthetic figures; the plot is drawn in tests/scripts/test_bench_speedup.py)."""

from __future__ import annotations

from effopd_verl.bench import measures, tables
from effopd_verl.bench.measures import Curve


def curve(acc, searches=None):
    steps = list(range(len(acc)))
    return Curve(steps, [float(s) for s in steps], acc, [-1.0 + 0.1 * a for a in acc], {}, searches or {}, float(steps[-1]))


def test_table_rows_ratios_and_spread():
    van = {0: curve([0.2, 0.3, 0.4, 0.5, 0.6]), 1: curve([0.2, 0.3, 0.4, 0.5, 0.6])}
    curves = {"vanilla_under": van,
              "effopd_reward_under": {0: curve([0.2, 0.6, 0.6, 0.6, 0.6]), 1: curve([0.2, 0.2, 0.2, 0.2, 0.2])},
              "effopd_tlp_under": {0: curve([0.2, 0.3, 0.6, 0.6, 0.6]), 1: curve([0.2, 0.3, 0.6, 0.6, 0.6])}}
    arms, top = measures.summarize(curves)
    text = tables.table(arms, top, {"tuned": 1e-3, "under": 1e-4})
    assert "effopd_step_ratio: mean 3.00 ± 1.41 (per seed: 4.00, 2.00)" in text and "| vanilla_under | 1e-04 |" in text
    assert "never" in text
    rows = [r.split(" | ")[0] for r in text.splitlines()[2:5]]
    assert rows == ["| vanilla_under", "| effopd_reward_under", "| effopd_tlp_under"]


def test_table_shows_fractional_accepted_alphas_and_generated_arms():
    van = {0: curve([0.2, 0.3, 0.4, 0.6])}
    fine = {0: curve([0.2, 0.4, 0.5, 0.6], searches={1: {"accepted_alpha": 2.0}, 2: {"accepted_alpha": 0.5},
                                                      3: {"accepted_alpha": 0.0}})}
    arms, top = measures.summarize({"vanilla_x3": van, "effopd_tlp_x3": fine})
    text = tables.table(arms, top, {"tuned": 1e-4, "under": 1e-5, "x3": 3e-4})
    assert "| 1:2,2:0.5,3:0 |" in text and "| effopd_tlp_x3 | 3e-04 |" in text


def test_headline_and_sweep_tables():
    _, _, details = measures.best_vanilla_headline({"vanilla_tuned": {0: curve([0.2, 0.4, 0.6])},
                                                    "effopd_tlp_tuned": {0: curve([0.2, 0.6, 0.6])}})
    text = tables.headline_table(details)
    assert text.splitlines()[2] == ("| 0 | 0.560 (vanilla_tuned) | 2.0 (vanilla_tuned) | 1.0 (effopd_tlp_tuned) | "
                                    "0.600 / 0.600 | 2.0 (vanilla_tuned) | 1.0 (effopd_tlp_tuned) |")
    _, _, details = measures.best_vanilla_headline({"vanilla_tuned": {0: curve([0.2, 0.4, 0.6])},
                                                    "effopd_tlp_tuned": {0: curve([0.2, 0.3, 0.3])}})
    assert "| never |" in tables.headline_table(details)
    assert tables.headline_table([]) == "" and tables.sweep_table({}) == ""
    verdict = measures.sweep_verdict(curve([0.2, 0.6, 0.3]), {1: 1.0}, 0.05)
    assert tables.sweep_table({"0.001": verdict}).splitlines()[2] == "| 0.001 | 0.300 | 0.600 (3) | yes | no |"


def test_search_log_table():
    found = measures.searches_from_metrics({
        1: {"effopd/accepted_alpha": 2.0, "effopd/direction_norm": 0.06, "effopd/score_base": -1.04,
            "effopd/score_alpha_0.5": -1.02, "effopd/score_alpha_2": -1.0, "effopd/score_alpha_4": -1.06},
        4: {"effopd/accepted_alpha": 0.0, "effopd/direction_norm": 0.08, "effopd/score_base": -0.96,
            "effopd/score_alpha_0.5": -0.97, "effopd/geometry/direction_cosine": 0.7}})
    c = curve([0.2, 0.3, 0.3, 0.4, 0.5], searches=found)
    text = tables.search_table({"effopd_tlp_under": {0: c}, "fixed2_under": {0: curve([0.2, 0.3], searches={1: {"accepted_alpha": 2.0}})}})
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
    page = tables.markdown(result, "python scripts/bench_speedup.py --seeds 0 1")
    assert page.startswith("# Speedup benchmark: `reverse` toy (2 seeds, 32 steps × 128 prompts)")
    assert "python scripts/bench_speedup.py --seeds 0 1" in page and "`a.b=1`" in page and "0.001 → 0.970" in page
    assert "| arm |\n|---|" in page and "Search log" in page and "student 0.126, teacher 1.000" in page
    assert "other rates" not in page and "best vanilla" not in page
    result.update(testbed="smollm2", lr={"tuned": 1e-3, "under": 1e-4, "x3": 3e-3}, arm_overrides=["effopd_tlp_tuned-e4=effopd.trigger_every=4"],
                  headline_table="| seed |", sweep_table="| lr |")
    page = tables.markdown(result, "cmd")
    assert page.startswith("# Speedup benchmark: `reverse` smollm2") and "- Smollm2: student" in page
    assert "other rates: x3 = 0.003" in page and "`effopd_tlp_tuned-e4=effopd.trigger_every=4`" in page
    assert "best vanilla arm" in page and "The lr sweep" in page
