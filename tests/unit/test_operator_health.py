"""/healthz's verdict (runtime.health.problems): the operator is alive while its watches
deliver events or its resync runs, and its work queue drains; a standby is alive."""

from __future__ import annotations

from botenv.runtime.health import Activity, problems

STALL = 180.0


def activity(**changes: object) -> Activity:
    base = {"started": True, "last_event": 1000.0, "last_resync": 1000.0}
    base |= {"busy": False, "last_done": 1000.0}
    return Activity(**{**base, **changes})  # type: ignore[arg-type]


def test_a_quiet_operator_whose_resync_runs_is_healthy():
    assert problems(activity(last_event=0.0, last_resync=1100.0), 1200.0, STALL) == []


def test_no_event_and_no_resync_for_the_stall_period_fails():
    found = problems(activity(last_event=900.0, last_resync=950.0), 1200.0, STALL)
    assert found == ["no watch event and no resync for 250s"]


def test_a_queue_with_work_that_finishes_nothing_fails():
    stuck = activity(last_event=1190.0, busy=True, last_done=1000.0)
    assert problems(stuck, 1200.0, 100.0) == [
        "the work queue has work but finished nothing for 200s"
    ]
    # An idle queue is not stuck, however long ago its last reconcile was.
    assert problems(activity(last_event=1190.0, last_done=0.0), 1200.0, 100.0) == []


def test_a_standby_or_starting_operator_is_healthy():
    assert problems(activity(started=False, last_event=0.0, last_resync=0.0), 1e9, STALL) == []
