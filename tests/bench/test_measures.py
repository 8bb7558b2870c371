"""effopd_verl.bench.measures: gain targets, first reach, ratios, aggregation, the per-arm figures, the
top-level ratios, the best-vanilla headline, the sweep's stability verdict and the tuned-lr pick. Pure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from effopd_verl.bench import measures as m
from effopd_verl.bench.measures import Curve


def curve(acc, step_seconds=1.0, searches=None, loss=None):
    steps = list(range(len(acc)))
    wall = [step_seconds * s for s in steps]
    return Curve(steps, wall, acc, [-1.0 + 0.1 * a for a in acc], loss or {}, searches or {}, wall[-1])


def test_gain_targets():
    assert m.gain_targets(0.2, 0.6) == pytest.approx({0.5: 0.4, 0.9: 0.56})
    assert m.gain_targets(0.2, 0.2) is None  # vanilla gained nothing: no target
    assert m.gain_targets(0.3, 0.2) is None


def test_first_reach():
    steps, acc = [0, 1, 2, 3], [0.1, 0.3, 0.25, 0.5]
    assert m.first_reach(steps, acc, 0.3) == 1  # at the target counts
    assert m.first_reach(steps, acc, 0.4) == 3
    assert m.first_reach(steps, acc, 0.6) is None
    assert m.first_reach([0.0, 5.5, 9.0], [0.1, float("nan"), 0.4], 0.2) == 9.0


def test_ratio():
    assert m.ratio(8, 4) == 2
    assert m.ratio(None, 4) is None and m.ratio(8, None) is None and m.ratio(8, 0) is None


def test_aggregate():
    a = m.aggregate([1.0, 3.0, None])
    assert a["mean"] == 2.0 and a["std"] == pytest.approx(math.sqrt(2)) and a["n"] == 2 and a["missing"] == 1
    assert a["min"] == 1.0 and a["max"] == 3.0
    assert m.aggregate([5.0])["std"] == 0.0
    assert m.aggregate([None])["mean"] is None


def test_cumulative_wall():
    assert m.cumulative_wall([1.0, 2.0, 0.5]) == [1.0, 3.0, 3.5]


def test_arm_figures_use_the_vanilla_gain():
    vanilla = curve([0.2, 0.3, 0.4, 0.5, 0.6, 0.6])  # gain 0.4: 50% at 0.4 (step 2), 90% at 0.56 (step 4)
    effopd = curve([0.2, 0.45, 0.58, 0.55, 0.6, 0.62], step_seconds=1.5,
                   searches={1: {"accepted_alpha": 4.0, "search_seconds": 0.75, "direction_cosine": None},
                             2: {"accepted_alpha": 0.0, "search_seconds": 0.75, "direction_cosine": 0.9}})
    v, e = m.arm_figures(vanilla, vanilla), m.arm_figures(effopd, vanilla)
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
    arms, top = m.summarize(curves)
    # seed 0: the reward arm reaches at step 1 (4/1); seed 1: only teacher_logprob reaches, at step 2 (4/2)
    assert top["effopd_step_ratio"]["values"] == [4.0, 2.0] and top["effopd_step_ratio"]["mean"] == 3.0
    # at the tuned lr seed 0 never reaches 90%: no ratio for it
    assert top["tuned_lr_step_ratio"]["values"] == [None, 1.0]
    assert top["tuned_lr_step_ratio"]["missing"] == 1
    assert arms["effopd_reward_under"]["mean"]["steps_to_90"]["missing"] == 1


def test_summarize_measures_each_arm_against_vanilla_at_its_own_rate():
    curves = {"vanilla_x3": {0: curve([0.2, 0.4, 0.3])},  # gain 0.2: 90% at 0.38, step 1
              "effopd_tlp_x3": {0: curve([0.2, 0.3, 0.4])},
              "vanilla_div3": {0: curve([0.2, 0.25, 0.3])},  # gain 0.1: 90% at 0.29, step 2
              "effopd_tlp_div3-every4": {0: curve([0.2, 0.3, 0.3])}}
    arms, _ = m.summarize(curves)
    assert arms["effopd_tlp_x3"]["per_seed"]["0"]["steps_to_90"] == 2
    assert arms["effopd_tlp_x3"]["per_seed"]["0"]["target_acc_90"] == pytest.approx(0.38)
    assert arms["effopd_tlp_div3-every4"]["per_seed"]["0"]["steps_to_90"] == 1


def test_best_vanilla_headline_by_hand():
    # seed 0: the best vanilla gain is the tuned arm's, 0.8 - 0.2 = 0.6 -> target 0.2 + 0.54 = 0.74.
    # vanilla_x3 peaks early (0.76 at step 2) then oscillates: it is the best vanilla arm (2 steps) although its
    # own gain is smaller; vanilla_tuned gets there at step 4. EffOPD: the tuned arm at step 3, the x3 arm at
    # step 1 -> the best EffOPD arm is effopd_tlp_x3, ratio 2 / 1 = 2. The fixed-alpha baseline at step 1 does
    # not count (it is no EffOPD arm).
    s0 = {"vanilla_tuned": curve([0.2, 0.4, 0.6, 0.7, 0.8, 0.8]),
          "vanilla_x3": curve([0.2, 0.5, 0.76, 0.3, 0.5, 0.4]),
          "effopd_tlp_tuned": curve([0.2, 0.5, 0.6, 0.75, 0.8, 0.8]),
          "effopd_tlp_x3": curve([0.2, 0.75, 0.7, 0.8, 0.8, 0.8], searches={1: {"search_seconds": 2.0}}),
          "fixed2_tuned": curve([0.2, 0.9, 0.9, 0.9, 0.9, 0.9])}
    # seed 1: vanilla_tuned gains 0.4 (target 0.56, step 3); vanilla_x3 at step 3 too (ties: the first in order);
    # the only EffOPD arm that reaches is the tuned one, at step 4: ratio 3 / 4.
    s1 = {"vanilla_tuned": curve([0.2, 0.3, 0.4, 0.6, 0.6, 0.6]),
          "vanilla_x3": curve([0.2, 0.3, 0.4, 0.56, 0.3, 0.3]),
          "effopd_tlp_tuned": curve([0.2, 0.3, 0.4, 0.5, 0.6, 0.6]),
          "effopd_tlp_x3": curve([0.2, 0.3, 0.3, 0.3, 0.3, 0.3], searches={1: {"search_seconds": 2.0}}),
          "fixed2_tuned": curve([0.2, 0.9, 0.9, 0.9, 0.9, 0.9])}
    curves = {arm: {0: s0[arm], 1: s1[arm]} for arm in s0}
    steps, stepeq, details = m.best_vanilla_headline(curves)
    assert steps["values"] == [2.0, 0.75] and steps["mean"] == pytest.approx(1.375)
    assert steps["std"] == pytest.approx(math.sqrt(((2 - 1.375) ** 2 + (0.75 - 1.375) ** 2)))
    d0, d1 = details
    assert d0["best_gain_arm"] == "vanilla_tuned" and d0["target_acc"] == pytest.approx(0.74)
    assert (d0["best_vanilla_steps_arm"], d0["best_vanilla_steps"]) == ("vanilla_x3", 2)
    assert (d0["best_effopd_steps_arm"], d0["best_effopd_steps"]) == ("effopd_tlp_x3", 1)
    assert d0["best_vanilla_final_acc"] == 0.4 and d0["best_effopd_final_acc"] == 0.8
    assert (d1["best_vanilla_steps_arm"], d1["best_effopd_steps_arm"]) == ("vanilla_tuned", "effopd_tlp_tuned")
    # step-equivalents count the search: effopd_tlp_x3's 2 s search is 2 median steps of 1 s, so it reaches at
    # 1 + 2 = 3; effopd_tlp_tuned (no search logged) at 3 as well: seed 0's ratio is 2 / 3. Seed 1: 3 / 4.
    assert stepeq["values"] == [pytest.approx(2 / 3), 0.75]
    assert d0["best_effopd_stepeq"] == 3.0


def test_best_vanilla_headline_when_effopd_never_gets_there_or_vanilla_gains_nothing():
    never = {"vanilla_tuned": {0: curve([0.2, 0.4, 0.6])}, "effopd_tlp_tuned": {0: curve([0.2, 0.3, 0.4])}}
    steps, stepeq, details = m.best_vanilla_headline(never)
    assert steps["values"] == [None] and steps["missing"] == 1 and details[0]["best_effopd_steps"] is None
    flat = {"vanilla_tuned": {0: curve([0.2, 0.2, 0.1])}, "effopd_tlp_tuned": {0: curve([0.2, 0.5, 0.6])}}
    steps, _, details = m.best_vanilla_headline(flat)
    assert steps["values"] == [None] and details[0]["target_acc"] is None
    assert m.best_vanilla_headline({"vanilla_tuned": {0: curve([0.2, 0.6])}})[0]["values"] == [None]  # no EffOPD arm


def test_pick_tuned_lr_by_validation_accuracy_ties_to_the_smaller():
    assert m.pick_tuned_lr({1e-4: 0.3, 3e-4: 0.5, 1e-3: 0.4}) == 3e-4
    assert m.pick_tuned_lr({1e-4: 0.5, 3e-4: 0.5}) == 1e-4


def test_pick_tuned_lr_skips_unstable_rates():
    acc = {1e-4: 0.3, 3e-4: 0.5, 1e-3: 0.6}
    assert m.pick_tuned_lr(acc, {1e-4: True, 3e-4: True, 1e-3: False}) == 3e-4
    with pytest.raises(ValueError, match="every sweep lr was unstable.*--sweep-lrs"):
        m.pick_tuned_lr(acc, {1e-4: False, 3e-4: False, 1e-3: False})


def test_sweep_verdict():
    steady = m.sweep_verdict(curve([0.2, 0.5, 0.6, 0.58]), {1: 2.0, 2: 1.5, 3: None}, tol=0.05)
    assert steady == {"val_acc_final": 0.58, "val_acc_best": 0.6, "val_points": 4, "losses_logged": 2,
                      "loss_finite": True, "stable": True}
    assert not m.sweep_verdict(curve([0.2, 0.6, 0.4]), {1: 2.0}, tol=0.05)["stable"]  # fell 0.2 below its best
    diverged = m.sweep_verdict(curve([0.2, 0.6, 0.6]), {1: 2.0, 2: float("nan")}, tol=0.05)
    assert not diverged["loss_finite"] and not diverged["stable"]


def test_curve_json_round_trip():
    c = curve([0.1, 0.2], searches={1: {"accepted_alpha": 2.0}})
    back = Curve.from_json(c.to_json())
    assert back.acc == c.acc and back.searches == {1: {"accepted_alpha": 2.0}} and back.total_wall == c.total_wall


def test_step_equivalents_normalize_wall_time_by_the_median_step():
    wall = [0.0, 2.0, 4.0, 9.0, 11.0]  # steps of 2 s; step 3 carries a 3 s search
    assert m.median_step(wall) == 2.0
    c = curve([0.2, 0.3, 0.4, 0.5, 0.6], searches={3: {"search_seconds": 3.0}})
    c.wall = wall
    assert m.step_equivalents(c) == [0.0, 1.0, 2.0, 4.5, 5.5]
    f = m.arm_figures(c, c)
    assert f["stepeq_to_90"] == 5.5 and f["median_step_seconds"] == 2.0


def test_search_log_from_the_logged_metrics():
    metrics = {
        1: {"effopd/accepted_alpha": 2.0, "effopd/direction_norm": 0.06, "effopd/score_base": -1.04,
            "effopd/score_alpha_0.5": -1.02, "effopd/score_alpha_2": -1.0, "effopd/score_alpha_4": -1.06},
        2: {"actor/lr": 1e-4},
        4: {"effopd/accepted_alpha": 0.0, "effopd/direction_norm": 0.08, "effopd/score_base": -0.96,
            "effopd/score_alpha_0.5": -0.97, "effopd/geometry/direction_cosine": 0.7},
    }
    found = m.searches_from_metrics(metrics)
    assert sorted(found) == [1, 4]
    assert list(found[1]["scores"]) == ["0.5", "2", "4"]  # in α order
    assert found[4]["direction_cosine"] == 0.7 and found[4]["direction_norm"] == 0.08


PUBLISHED = sorted((Path(__file__).resolve().parents[2] / "docs" / "results").glob("speedup_*.json"))


@pytest.mark.parametrize("path", PUBLISHED, ids=[p.stem for p in PUBLISHED])
def test_the_published_results_are_reproduced_from_their_curves(path):
    """Every docs/results/speedup_*.json was written by the script before the move into effopd_verl.bench: its
    stored curves, summarized again, give the same per-arm figures and top-level ratios, key for key, and the
    same table rows."""
    from effopd_verl.bench import tables

    d = json.loads(path.read_text())
    curves = {a: {int(s): Curve.from_json(c) for s, c in by.items()} for a, by in d["curves"].items()}
    arms, top = m.summarize(curves)
    assert json.dumps(arms, sort_keys=True) == json.dumps(d["arms"], sort_keys=True)
    assert top and all(json.dumps(v, sort_keys=True) == json.dumps(d[k], sort_keys=True) for k, v in top.items())
    rows = lambda text: [r for r in text.splitlines() if r.startswith("|")]  # noqa: E731
    assert rows(tables.table(arms, top, d["lr"])) == rows(d["table"])


def test_published_results_exist():
    assert PUBLISHED  # the parametrized test above is not vacuous


def test_gain_noise_tells_a_demo_sized_gain_from_a_measured_one():
    """The demo's gain (0.039 → 0.062 on 512 test prompts: 12 prompts) is inside 2 standard errors; the
    published close-student run's (0.386 → 1.000 on 1024) is far outside them."""
    from effopd_verl.bench import tables

    demo = {"vanilla_tuned": {0: Curve(steps=[0, 6, 12], wall=[0, 1, 2], acc=[0.039, 0.050, 0.062])},
            "effopd_tlp_under": {0: Curve(steps=[0, 6, 12], wall=[0, 1, 2], acc=[0.039, 0.070, 0.060])}}
    (row,) = m.gain_noise(demo, n_test=512)
    assert row["arm"] == "vanilla_tuned" and round(row["gain_prompts"]) == 12
    assert row["se"] == pytest.approx(((0.039 * 0.961 + 0.062 * 0.938) / 512) ** 0.5)
    assert not row["resolved"] and "NOT resolved" in tables.noise_lines([row])
    converged = {"vanilla_under": {s: Curve(steps=[0, 64], wall=[0, 1], acc=[0.386, 1.0]) for s in (0, 1)}}
    rows = m.gain_noise(converged, n_test=1024)
    assert [r["seed"] for r in rows] == [0, 1] and all(r["resolved"] for r in rows)
