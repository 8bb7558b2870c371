import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from effopd_verl.core.schedule import TriggerSchedule

schedules = st.builds(TriggerSchedule, first=st.integers(1, 50), growth=st.integers(2, 5))


def test_default_triggers_are_powers_of_two():
    s = TriggerSchedule()
    assert [t for t in range(1, 130) if s.is_trigger(t)] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert s.triggers_up_to(100) == [1, 2, 4, 8, 16, 32, 64]
    assert s.next_trigger(0) == 1 and s.next_trigger(1) == 2 and s.next_trigger(63) == 64


def test_other_first_and_growth():
    s = TriggerSchedule(first=3, growth=3)
    assert s.triggers_up_to(100) == [3, 9, 27, 81]
    assert not s.is_trigger(6) and not s.is_trigger(0)


@given(schedules, st.integers(0, 10_000))
def test_next_trigger_is_the_first_trigger_after_a_resume_point(s, step):
    nxt = s.next_trigger(step)
    assert nxt > step and s.is_trigger(nxt)
    assert not any(s.is_trigger(t) for t in range(step + 1, nxt))


@given(schedules, st.integers(1, 5_000))
def test_is_trigger_agrees_with_the_enumeration(s, last):
    assert [t for t in range(1, last + 1) if s.is_trigger(t)] == s.triggers_up_to(last)


@pytest.mark.parametrize("kwargs", [{"first": 0}, {"growth": 1}, {"first": 1.5}, {"growth": True}])
def test_invalid_schedule(kwargs):
    with pytest.raises(ValueError, match="effopd"):
        TriggerSchedule(**kwargs)


# ---------------------------------------------------------------- trigger_every and back-off
def replay(schedule, last, accepts=lambda t: False):
    """The searches a run of ``last`` steps makes, each accepting α = 2 where ``accepts(t)``, else nothing."""
    searches = []
    for t in range(1, last + 1):
        if schedule.is_trigger(t, searches):
            searches.append((t, 2.0 if accepts(t) else 0.0))
    return searches


def steps(searches):
    return [t for t, _ in searches]


every_schedules = st.builds(
    TriggerSchedule, first=st.integers(1, 20), growth=st.integers(2, 4), every=st.one_of(st.none(), st.integers(1, 20))
)
accepted_sets = st.frozensets(st.integers(1, 400), max_size=40)


def test_every_shortens_the_windows_after_the_first_triggers():
    assert TriggerSchedule(every=4).triggers_up_to(30) == [1, 2, 4, 8, 12, 16, 20, 24, 28]
    assert TriggerSchedule(every=1).triggers_up_to(6) == [1, 2, 3, 4, 5, 6]
    assert TriggerSchedule(first=8, every=2).triggers_up_to(14) == [8, 10, 12, 14]  # 8 → 16 exceeds 2 at once
    assert TriggerSchedule(first=3, growth=3, every=10).triggers_up_to(40) == [3, 9, 19, 29, 39]


@given(every_schedules, st.integers(1, 600))
def test_every_keeps_the_geometric_triggers_whose_windows_fit_then_steps_by_every(s, last):
    triggers = s.triggers_up_to(last)
    assert [t for t in range(1, last + 1) if s.is_trigger(t)] == triggers
    geometric = TriggerSchedule(s.first, s.growth).triggers_up_to(last)
    if s.every is None:
        assert triggers == geometric
    else:
        prefix = [s.first]  # the geometric triggers while every window fits in `every`
        while prefix[-1] * s.growth - prefix[-1] <= s.every:
            prefix.append(prefix[-1] * s.growth)
        switch = prefix[-1]
        assert triggers == [t for t in prefix if t <= last] + list(range(switch + s.every, last + 1, s.every))
        assert all(b - a <= s.every for a, b in zip(triggers, triggers[1:]))


@given(every_schedules, st.integers(0, 600))
def test_next_trigger_with_every_is_the_first_trigger_after_a_resume_point(s, step):
    nxt = s.next_trigger(step)
    assert nxt > step and s.is_trigger(nxt)
    assert not any(s.is_trigger(t) for t in range(step + 1, nxt))


@given(every_schedules, accepted_sets, st.integers(1, 400))
def test_without_backoff_the_history_changes_nothing(s, accepted, last):
    assert steps(replay(s, last, accepted.__contains__)) == s.triggers_up_to(last)


@given(every_schedules, st.integers(1, 4), st.sampled_from(["double", "stop"]), accepted_sets, st.integers(1, 400))
def test_backoff_only_removes_searches_and_never_one_before_k_empty_ones(base, k, mode, accepted, last):
    s = TriggerSchedule(base.first, base.growth, base.every, backoff_after=k, backoff=mode)
    searches = replay(s, last, accepted.__contains__)
    base_steps = base.triggers_up_to(last)
    assert set(steps(searches)) <= set(base_steps)
    # a base trigger is skipped only right after k (or more) searches in a row that accepted nothing
    for t in base_steps:
        before = [x for x in searches if x[0] < t]
        if t not in steps(searches):
            assert len(before) >= k and all(alpha == 0 for _, alpha in before[-k:])
    # the answers depend on the history alone: a resume at any step continues the same way
    for t, _ in searches:
        done = [x for x in searches if x[0] <= t]
        assert s.next_trigger(t, done) == next((u for u, _ in searches if u > t), s.next_trigger(t, done))


@given(every_schedules, st.integers(1, 4), accepted_sets, st.integers(1, 400))
def test_stop_makes_no_more_searches_than_double(base, k, accepted, last):
    double = replay(TriggerSchedule(base.first, base.growth, base.every, k, "double"), last, accepted.__contains__)
    stop = replay(TriggerSchedule(base.first, base.growth, base.every, k, "stop"), last, accepted.__contains__)
    assert len(stop) <= len(double)
    assert stop == double[: len(stop)]  # the same run until the first back-off


def test_double_doubles_the_window_at_every_k_further_empty_searches():
    s = TriggerSchedule(every=4, backoff_after=2, backoff="double")
    assert steps(replay(s, 200)) == [1, 2, 8, 16, 32, 48, 80, 112, 176]
    assert [s.backoff_level([(t, 0.0)] * r) for r, t in enumerate([0, 1, 2, 8, 16, 32])] == [0, 0, 1, 1, 2, 2]
    searches = replay(s, 16)
    assert s.next_trigger(16, searches) == 32 and s.next_trigger(17, searches) == 32
    assert not s.is_trigger(20, searches) and s.is_trigger(32, searches)


def test_an_accepted_jump_returns_to_the_schedule():
    s = TriggerSchedule(every=4, backoff_after=2, backoff="double")
    assert steps(replay(s, 40, accepts=lambda t: t == 16)) == [1, 2, 8, 16, 20, 24, 32, 40]
    assert steps(replay(s, 40, accepts=lambda t: True)) == s.triggers_up_to(40)


def test_stop_ends_the_searches_and_next_trigger_says_so():
    s = TriggerSchedule(backoff_after=3, backoff="stop")
    searches = replay(s, 100)
    assert steps(searches) == [1, 2, 4]
    assert s.next_trigger(4, searches) is None and s.next_trigger(50, searches) is None
    assert s.next_trigger(2, searches[:2]) == 4
    assert steps(replay(s, 100, accepts=lambda t: t == 4)) == [1, 2, 4, 8, 16, 32]


def test_geometric_double_skips_base_triggers():
    s = TriggerSchedule(backoff_after=2, backoff="double")
    assert steps(replay(s, 511)) == [1, 2, 8, 32]  # base 1, 2, 4, …; after 8: every 2nd (32), then every 4th (512)
    assert steps(replay(s, 512)) == [1, 2, 8, 32, 512]


def test_backoff_reads_only_the_searches_before_the_step():
    s = TriggerSchedule(backoff_after=1, backoff="stop")
    history = [(1, 0.0), (2, 0.0)]
    assert s.is_trigger(1, history) and not s.is_trigger(2, history) and not s.is_trigger(4, history)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"every": 0}, "effopd.trigger_every=0 is invalid: an integer >= 1 or null"),
        ({"every": 2.0}, "effopd.trigger_every=2.0"),
        ({"backoff_after": 0}, "effopd.backoff_after=0 is invalid: an integer >= 1 or null"),
        ({"backoff_after": True}, "effopd.backoff_after=True"),
        ({"backoff": "halve"}, "effopd.backoff='halve' is invalid: choose one of ['double', 'stop']"),
    ],
)
def test_invalid_backoff_or_every(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TriggerSchedule(**kwargs)
