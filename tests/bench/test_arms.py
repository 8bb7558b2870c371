"""effopd_verl.bench.arms: arm names, their lrs, overrides and run folders; arms generated from lr factors;
the historical arms keep their names, overrides and folders (the cached runs stay valid)."""

from __future__ import annotations

import pytest

from effopd_verl.bench.arms import LEGACY_ARMS, arms_at_factors, build_arms, parse_arm, parse_factor, rate_label, table_order


def test_the_historical_arms_keep_their_overrides_and_run_folders():
    arms = {a.name: a for a in build_arms(list(LEGACY_ARMS), [])}
    assert list(arms) == list(LEGACY_ARMS)
    assert arms["vanilla_tuned"].hydra_overrides(None) == []
    assert arms["effopd_tlp_tuned"].hydra_overrides(None) == ["effopd.enable=true", "effopd.score=teacher_logprob"]
    assert arms["effopd_reward_under"].hydra_overrides(None) == ["effopd.enable=true", "effopd.score=reward"]
    assert arms["fixed2_under"].hydra_overrides(None) == ["effopd.enable=true", "effopd.fixed_alpha=2"]
    # vanilla runs are shared by lr; EffOPD runs named after the arm; an alpha grid names the searching arms only
    assert arms["vanilla_under"].run_tag(3e-5, 1, [0.5, 1]) == "vanilla_lr3e-05_seed1"
    assert arms["effopd_tlp_under"].run_tag(3e-5, 0, None) == "effopd_tlp_under_lr3e-05_seed0"
    assert arms["effopd_tlp_under"].run_tag(3e-5, 0, [0.25, 0.5, 1.0, 8.0]) == "effopd_tlp_under_a0.25-0.5-1-8_lr3e-05_seed0"
    assert arms["effopd_tlp_under"].hydra_overrides([0.25, 0.5, 1.0, 8.0])[-1] == "effopd.alphas=[0.25,0.5,1,8]"
    assert arms["fixed2_under"].run_tag(3e-5, 0, [0.5]) == "fixed2_under_lr3e-05_seed0"
    assert arms["fixed2_under"].hydra_overrides([0.5]) == ["effopd.enable=true", "effopd.fixed_alpha=2"]


def test_rates_and_lrs():
    assert parse_arm("vanilla_under").lr(3e-4, 10) == 3e-4 / 10  # divided, exactly as before
    assert parse_arm("vanilla_under").factor(30) == pytest.approx(1 / 30)
    assert parse_arm("effopd_tlp_x3").lr(1e-4, 10) == pytest.approx(3e-4)
    assert parse_arm("effopd_tlp_div3").lr(3e-4, 10) == 3e-4 / 3
    assert parse_arm("effopd_tlp_tuned").lr(3e-4, 10) == 3e-4
    assert parse_factor("1/3") == pytest.approx(1 / 3) and parse_factor("0.1") == 0.1 and parse_factor(" 3 ") == 3
    for bad in ("0", "-1", "abc", "1/0"):
        with pytest.raises(ValueError, match="lr factor"):
            parse_factor(bad)
    assert [rate_label(f, 10) for f in (3, 1, 1 / 3, 0.1, 0.5)] == ["x3", "tuned", "div3", "under", "div2"]
    assert rate_label(0.1, 30) == "div10" and rate_label(1 / 30, 30) == "under"


def test_arms_generated_from_lr_factors_use_the_historical_names_where_they_exist():
    names = arms_at_factors([3, 1, parse_factor("1/3"), 0.1], 10, ["vanilla", "effopd_tlp"])
    assert names == ["vanilla_x3", "effopd_tlp_x3", "vanilla_tuned", "effopd_tlp_tuned", "vanilla_div3", "effopd_tlp_div3",
                     "vanilla_under", "effopd_tlp_under"]
    arms = build_arms(names + ["vanilla_tuned"], [])  # a repeated name is one arm
    assert len(arms) == 8 and arms[4].vanilla == "vanilla_div3"
    lrs = {"tuned": 1e-4, "under": 1e-5, "x3": 3e-4, "div3": 1e-4 / 3}
    assert table_order(["effopd_tlp_under", "vanilla_div3", "fixed2_under", "effopd_reward_under", "vanilla_x3",
                        "effopd_tlp_tuned-every4", "effopd_tlp_tuned", "vanilla_under"], lrs) == [
        "vanilla_x3", "effopd_tlp_tuned", "effopd_tlp_tuned-every4", "vanilla_div3", "vanilla_under",
        "effopd_reward_under", "effopd_tlp_under", "fixed2_under"]


def test_named_variants_carry_their_own_overrides_and_folder():
    arms = build_arms(["effopd_tlp_tuned", "effopd_tlp_tuned-every4"],
                      ["effopd_tlp_tuned-every4=effopd.trigger_every=4", "effopd_tlp_tuned-every4=effopd.alphas=[0.5,1]"])
    base, variant = arms
    assert base.overrides == () and variant.method == "effopd_tlp" and variant.rate == "tuned"
    assert variant.hydra_overrides([2.0]) == ["effopd.enable=true", "effopd.score=teacher_logprob", "effopd.alphas=[2]",
                                              "effopd.trigger_every=4", "effopd.alphas=[0.5,1]"]  # the arm's own last: they win
    assert variant.run_tag(1e-4, 0, None) == "effopd_tlp_tuned-every4_lr0.0001_seed0"
    assert variant.vanilla == "vanilla_tuned"


@pytest.mark.parametrize("names, overrides, message", [
    (["effopd_tlp_fast"], [], "rate 'fast'"),
    (["adam_tuned"], [], "expected <method>_<rate>"),
    (["effopd_tlp_x0"], [], "rate 'x0'"),
    (["effopd_tlp_tuned-every4"], [], "variant without overrides.*--arm-override effopd_tlp_tuned-every4="),
    (["vanilla_tuned"], ["vanilla_tuned=effopd.enable=true"], "per-arm overrides are for EffOPD arms.*--override"),
    (["effopd_tlp_tuned"], ["effopd_tlp_under=effopd.trigger_every=4"], "not in the arm set.*--arms"),
    (["effopd_tlp_tuned"], ["effopd_tlp_tuned"], "ARM=KEY=VALUE"),
    (["effopd_tlp_tuned"], ["effopd_tlp_tuned=trigger_every"], "ARM=KEY=VALUE"),
])
def test_bad_arms_are_refused_with_the_fix(names, overrides, message):
    with pytest.raises(ValueError, match=message):
        build_arms(names, overrides)
