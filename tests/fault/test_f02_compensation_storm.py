"""F02: a compensation storm. Many sagas fail at once; one worker with a small concurrency limit.

Every saga is started before the worker, so they all run their steps and fail together, and
then all their compensations (three per saga, each a durable activity) compete for the worker's
four activity slots. Elsewhere a compensation waited on a pool whose threads all waited on a
lock held by the engine while it waited for the compensation; here nothing holds a lock across
an await or user code, and compensations are ordinary queued activities, so the storm drains.

Every saga must end, failed, with all of its compensations done in reverse order, and each
tenth saga, whose middle compensation fails, with an exception group holding the original error
and the compensation's failure. The wall time is printed (run with ``-s`` to see it); it is not
asserted, apart from a generous limit that turns a hang into a failure.
"""

from __future__ import annotations

import time

import pytest

import durable
from tests.conftest import worker_thread
from tests.fault._util import assert_each_step_recorded_once, kinds, wait_until
from tests.wfs import sagas

STEPS = 3
HANG_LIMIT = 600.0  # seconds: only a hang, never a slow run, should reach it


def run_storm(data_dir: str, n: int) -> None:
    client = durable.Client(data_dir)
    handles = [client.start(sagas.storm_saga, i, STEPS, 1 if i % 10 == 0 else -1, id=f"storm-{i}")
               for i in range(n)]
    started = time.monotonic()
    with worker_thread(data_dir, [sagas.storm_saga], [sagas.storm_step, sagas.storm_fail, sagas.storm_undo],
                       max_concurrent_activities=4):
        wait_until(lambda: not client.list(status="running", limit=1), timeout=HANG_LIMIT, interval=0.2,
                   what=f"all {n} sagas to end")
        wall = time.monotonic() - started
    activities = n * (2 * STEPS + 1)
    print(f"\nF02 storm: {n} sagas x {STEPS} compensations, 1 worker, max_concurrent_activities=4: "
          f"all ended in {wall:.1f} s ({activities} activities, {activities / wall:.0f}/s)")

    assert len(client.list(status="failed", limit=n + 1)) == n
    for i, h in enumerate(handles):
        events = h.history()
        assert_each_step_recorded_once(events, h.id)
        undos = [e for e in events if e["kind"] == "ActivityScheduled" and e["name"] == "storm_undo"]
        assert [e["input"][0] for e in undos] == list(reversed(range(STEPS))), h.id
        failed_at = next(e["index"] for e in events if e["kind"] == "ActivityFailed")
        assert failed_at < undos[0]["index"], h.id
        outcome = kinds(events).count("ActivityCompleted")
        assert outcome == STEPS + STEPS - (i % 10 == 0), h.id  # every compensation ran
        error = events[-1]["error"]
        assert events[-1]["kind"] == "WorkflowFailed", h.id
        if i % 10 == 0:
            assert error["type"] == "ExceptionGroup", h.id
            assert [c["type"] for c in error["children"]] == ["durable.ActivityError", "durable.CompensationFailed"]
        else:
            assert error["type"] == "durable.ActivityError", h.id
    assert durable.replay(sagas.storm_saga, handles[0].export_history()) == len(handles[0].history())


def test_f02_compensation_storm_of_1000_sagas(data_dir: str) -> None:
    run_storm(data_dir, 1000)


@pytest.mark.slow
def test_f02_compensation_storm_of_5000_sagas(data_dir: str) -> None:
    run_storm(data_dir, 5000)
