"""Reset (`WorkflowHandle.reset`, ``durable reset``): a new run of the id from a prefix of a run's
history, from which the code now deployed goes on; the old run stays readable and names the new.

Real stores in temporary directories, real workers in threads. "Fixing the code" is a second
definition registered under the same workflow name, served by a new worker.
"""

from __future__ import annotations

import pytest
import trio

import durable
from durable import _ops
from durable._store import u64
from tests.conftest import worker_thread
from tests.fault._util import store_snapshot, wait_until
from tests.wfs import basic
from tests.wfs.reset_steps import RAN, charge, ship, ship_bad
from tests.wfs.reset_v1 import OrderV1, Parked
from tests.wfs.reset_v2 import OrderV2

TIMEOUT = 20

ACTIVITIES = [charge, ship_bad, ship]


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    RAN.clear()


def kinds(handle: durable.WorkflowHandle) -> list[str]:
    return [e["kind"] for e in handle.history()]


def failed_order(client: durable.Client, data_dir: str) -> durable.WorkflowHandle:
    """An order run by the bad code, failed at the broken step."""
    RAN.clear()
    with worker_thread(data_dir, [OrderV1], ACTIVITIES):
        h = client.start("order", 3, id="o-1")
        wait_until(lambda: "TaskCompleted" in kinds(h), timeout=TIMEOUT)
        h.signal("note", "leave at the door")
        with pytest.raises(durable.WorkflowFailed):
            h.result(timeout=TIMEOUT)
    assert kinds(h) == ["WorkflowStarted", "ActivityScheduled", "ActivityCompleted", "TaskCompleted",
                        "SignalReceived", "ActivityScheduled", "ActivityFailed", "WorkflowFailed"]
    assert RAN == {"charge": 1, "ship_bad": 1}
    return h


def test_reset_of_a_failed_workflow_goes_on_with_the_fixed_code_and_keeps_the_old_run(data_dir: str) -> None:
    client = durable.Client(data_dir)
    old = failed_order(client, data_dir)
    old_run = old.describe().run_id
    old_history = client.get_handle("o-1", run_id=old_run).history()

    new = client.get_handle("o-1").reset(2, reason="ship_bad fixed")
    assert new.run_id != old_run
    # the prefix (started, charge scheduled and completed), then the note received after the point
    assert kinds(new) == ["WorkflowStarted", "ActivityScheduled", "ActivityCompleted", "SignalReceived"]
    assert new.history()[:3] == [dict(e) for e in old_history[:3]]
    assert new.history()[3]["input"] == ["leave at the door"]
    assert new.describe().status == "running"
    assert new.describe().reset_from_run_id == old_run and new.describe().reset_from_event == 2

    with worker_thread(data_dir, [OrderV2], ACTIVITIES):
        assert new.result(timeout=TIMEOUT) == ["shipped 30", ["leave at the door"]]
    # the charge in the prefix is not run again; the note is delivered once
    assert RAN == {"charge": 1, "ship_bad": 1, "ship": 1}

    # the old run is unchanged and readable, and names the new one
    kept = client.get_handle("o-1", run_id=old_run)
    assert kept.history() == old_history
    desc = kept.describe()
    assert desc.status == "failed" and desc.reset_run_id == new.run_id
    assert client.get_handle("o-1").describe().run_id == new.run_id
    runs = {d.run_id: d.status for d in client.list(all_runs=True)}
    assert runs == {old_run: "failed", new.run_id: "completed"}


def test_reset_of_a_running_workflow_terminates_it_and_reapplies_signals_after_the_point(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [OrderV1], ACTIVITIES):
        h = client.start("order", 1, id="o-2")
        wait_until(lambda: "TaskCompleted" in kinds(h), timeout=TIMEOUT)
    # no worker: the notes wait in the history, the workflow task queued
    h.signal("note", "one")
    h.signal("note", "two")
    old_run = h.describe().run_id
    assert h.describe().status == "running"

    new = h.reset(2)
    old = client.get_handle("o-2", run_id=old_run)
    assert old.describe().status == "terminated"
    last = old.history()[-1]
    assert last["kind"] == "WorkflowTerminated" and last["reason"] == f"reset to event 2 as run {new.run_id}"
    assert [e.get("input") for e in new.history()[3:]] == [["one"], ["two"]]
    with worker_thread(data_dir, [OrderV2], ACTIVITIES):
        assert new.result(timeout=TIMEOUT) == ["shipped 10", ["one", "two"]]
    assert RAN == {"charge": 1, "ship": 1}


def test_reset_without_reapplying_signals(data_dir: str) -> None:
    client = durable.Client(data_dir)
    h = failed_order(client, data_dir)
    new = h.reset(2, reapply_signals=False)
    assert kinds(new) == ["WorkflowStarted", "ActivityScheduled", "ActivityCompleted"]
    with worker_thread(data_dir, [OrderV2], ACTIVITIES):
        wait_until(lambda: kinds(new)[-1] == "TaskCompleted", timeout=TIMEOUT)
        new.signal("note", "later")
        assert new.result(timeout=TIMEOUT) == ["shipped 30", ["later"]]


def test_open_activities_and_timers_of_the_prefix_are_live_in_the_new_run(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [Parked], ACTIVITIES):
        h = client.start(Parked, id="p-1")
        wait_until(lambda: len(kinds(h)) >= 3, timeout=TIMEOUT)
        assert kinds(h) == ["WorkflowStarted", "TimerStarted", "ActivityScheduled"]
    # no worker: the signal's task is left to the new run
    h.signal("proceed")
    new = h.reset(3)
    rec, acts, due = client._store.read(lambda t: (
        _ops.load_wf(t, "p-1"),
        [k for k, _ in t.scan("act", u64(int(new.run_id, 16)))],
        [k for k, _ in t.scan("due", b"") if k[8:9] == b"T"],
    ))
    assert rec["num"] == int(new.run_id, 16) and list(rec["timers"]) == [1]
    assert len(acts) == 1 and len(due) == 1 and due[0][9:17] == u64(rec["num"])
    assert [p.name for p in new.describe().pending_activities] == ["ship"]
    with worker_thread(data_dir, [Parked], ACTIVITIES):
        assert new.result(timeout=TIMEOUT) == "went"


def test_bad_reset_points_are_refused_with_the_allowed_events_and_nothing_written(data_dir: str) -> None:
    client = durable.Client(data_dir)
    h = failed_order(client, data_dir)
    before = store_snapshot(client)
    for bad in (1, 3, 5, 7, 8, 99):
        with pytest.raises(durable.InvalidArgument, match=r"here: 0, 2, 4, 6$"):
            h.reset(bad)
    for bad in (-1, "2", True):
        with pytest.raises(durable.InvalidArgument, match="to_event must be a non-negative event index"):
            h.reset(bad)  # type: ignore[arg-type]
    with pytest.raises(durable.WorkflowNotFound):
        client.get_handle("nope").reset(0)
    with pytest.raises(durable.WorkflowNotFound):
        client.get_handle("o-1", run_id="ff").reset(0)
    assert store_snapshot(client) == before


def test_reset_of_an_earlier_run_terminates_the_current_one(data_dir: str) -> None:
    client = durable.Client(data_dir)
    first = failed_order(client, data_dir)
    first_run = first.describe().run_id
    second = first.reset(2, reapply_signals=False)  # running, waiting for a note
    third = client.get_handle("o-1", run_id=first_run).reset(4)
    assert client.get_handle("o-1", run_id=second.run_id).describe().status == "terminated"
    assert client.get_handle("o-1", run_id=first_run).describe().reset_run_id == third.run_id
    with worker_thread(data_dir, [OrderV2], ACTIVITIES):
        assert third.result(timeout=TIMEOUT) == ["shipped 30", ["leave at the door"]]


def test_async_client_resets_too(data_dir: str) -> None:
    client = durable.Client(data_dir)
    failed_order(client, data_dir)

    async def main() -> None:
        handle = durable.AsyncClient(data_dir).get_handle("o-1")
        new = await handle.reset(2, reason="fixed")
        assert isinstance(new, durable.AsyncWorkflowHandle)
        assert (await new.describe()).reset_from_event == 2
        with pytest.raises(durable.InvalidArgument, match="here: 0, 3$"):  # the new run's points
            await handle.reset(1)

    trio.run(main)


def test_reset_while_a_worker_runs_the_old_run(data_dir: str) -> None:
    """The old run's workflow task and activity attempt in flight lose their leases: their
    results are refused, and the new run schedules its activities itself."""
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [basic.slow_chain], [basic.slow_step]):
        h = client.start(basic.slow_chain, 0, 3, 0.3, id="s-1")
        wait_until(lambda: any(p.state == "running" for p in h.describe().pending_activities), timeout=TIMEOUT)
        old_run = h.describe().run_id
        new = h.reset(0, reason="again")
        assert new.result(timeout=TIMEOUT) == 3
    old = client.get_handle("s-1", run_id=old_run)
    assert old.describe().status == "terminated" and old.describe().pending_activities == ()
    assert old.history()[-1]["reason"] == f"reset to event 0 as run {new.run_id}: again"
    assert [e["kind"] for e in new.history()].count("ActivityCompleted") == 3


def test_every_reset_point_of_a_finished_run_replays_and_finishes_the_same_way(data_dir: str) -> None:
    """With the same code, a reset to any allowed event makes the same result; the activities
    whose results are in the prefix do not run again (each new run schedules only the rest)."""
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [basic.three_steps, basic.Collector], [basic.add_one, basic.double]):
        steps = client.start(basic.three_steps, 4, id="t-1")
        assert steps.result(timeout=TIMEOUT) == 11
        coll = client.start(basic.Collector, id="c-1")
        for item in (1, 2, 3):
            coll.signal("add", item)
        coll.signal("finish")
        assert coll.result(timeout=TIMEOUT) == [1, 2, 3]
        for handle, expected in ((steps, 11), (coll, [1, 2, 3])):
            original = handle.describe().run_id
            events = client.get_handle(handle.id, run_id=original).history()
            points = [i for i, e in enumerate(events) if e["kind"] in (
                "WorkflowStarted", "ActivityCompleted", "SignalReceived")
                and (i + 1 == len(events) or events[i + 1]["kind"] not in (
                    "WorkflowStarted", "ActivityCompleted", "SignalReceived"))]
            for point in points:
                new = client.get_handle(handle.id, run_id=original).reset(point)
                assert new.result(timeout=TIMEOUT) == expected, (handle.id, point)
                history = new.history()
                assert history[: point + 1] == events[: point + 1]
                done_before = sum(e["kind"] == "ActivityCompleted" for e in events[: point + 1])
                scheduled_after = sum(e["kind"] == "ActivityScheduled" for e in history[point + 1:])
                assert done_before + scheduled_after == sum(e["kind"] == "ActivityScheduled" for e in events)
