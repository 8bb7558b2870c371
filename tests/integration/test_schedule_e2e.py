"""effopd.trigger_every and the back-off through ``effopd-train`` on the CPU toy (real verl trainer, Ray, FSDP2
on gloo, the ``hf`` rollout backend): the searches run where :mod:`effopd_verl.core.schedule` says, the
back-off is logged, and the checkpoint's next trigger follows it. The run is the session's
``three_ranks_schedule_run`` (conftest.py; 3 ranks, whose sharding test_three_ranks.py checks): the schedule is
the driver's, the same on any number of ranks."""

from __future__ import annotations

import pytest

from test_effopd_e2e import searches


@pytest.mark.slow
def test_every_step_then_backoff_after_three_empty_searches(three_ranks_schedule_run):
    """trigger_every=1 makes steps 1, 2, 3, 4, 5 triggers; α = 1e5 is always rejected, so after the searches of
    1, 2 and 3 accept nothing (k = 3) only every 2nd trigger runs: 5, then 7 (the checkpoint's next trigger)."""
    run = three_ranks_schedule_run
    found = searches(run)
    assert sorted(found) == [1, 2, 3, 5]
    assert all(m["effopd/accepted_alpha"] == 0 for m in found.values())
    assert {t: m["effopd/backed_off"] for t, m in found.items()} == {1: 0, 2: 0, 3: 1, 5: 0}
    assert {t: m["effopd/backoff_level"] for t, m in found.items()} == {1: 0, 2: 0, 3: 1, 5: 1}
    assert {t: m["effopd/next_window"] for t, m in found.items()} == {1: 1, 2: 1, 3: 2, 5: 2}
    assert "[effopd] step 3: back-off (effopd.backoff_after=3, effopd.backoff=double)" in run.stdout
    state = run.state(5)
    assert [s["step"] for s in state["history"]] == [1, 2, 3, 5] and state["next_trigger"] == 7
