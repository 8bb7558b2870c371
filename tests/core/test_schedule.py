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
