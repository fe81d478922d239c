"""Workflow id reuse (Temporal's default): a closed workflow's id may start a new run, as the id
reuse policy allows; a running one's id is refused or handed back, as the id conflict policy says.
Earlier runs stay readable by run id; signals, cancel and terminate reach the current run only,
and nothing an earlier run left behind (its number in a task, a timer, a lease) touches the new one.

Real stores in temporary directories, real workers in threads.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest

import durable
from durable._codec import Converter
from durable import _codec, _ops
from durable._store import Store, u64
from tests.conftest import worker_thread
from tests.fault._util import store_snapshot, wait_until
from tests.wfs import basic

TIMEOUT = 20


@durable.workflow
async def boom() -> None:
    raise durable.ApplicationError("boom", non_retryable=True)


WORKFLOWS = [basic.three_steps, basic.Collector, basic.sleeper, boom]
ACTIVITIES = [basic.add_one, basic.double]


def serving(data: str) -> Any:
    return worker_thread(data, WORKFLOWS, ACTIVITIES)


def close_as(client: durable.Client, wid: str, status: str) -> durable.WorkflowHandle:
    """Start a run of `wid` and end it with `status` (a worker must be serving)."""
    if status == "completed":
        h = client.start(basic.three_steps, 1, id=wid)
    elif status == "failed":
        h = client.start(boom, id=wid)
    else:
        h = client.start(basic.Collector, id=wid)
        if status == "cancelled":
            h.cancel("test")
        else:
            h.terminate("test")
    with pytest.raises(durable.WorkflowFailed) if status != "completed" else contextlib.nullcontext():
        h.result(timeout=TIMEOUT)
    assert h.describe().status == status
    return h


def test_a_closed_id_starts_a_new_run_and_the_old_run_stays_readable(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        h1 = client.start(basic.three_steps, 1, id="w")
        assert h1.result(timeout=TIMEOUT) == 5
        h2 = client.start(basic.three_steps, 10, id="w")  # allow_duplicate: the default
        assert h2.result(timeout=TIMEOUT) == 23
    assert h1.run_id and h2.run_id and h1.run_id != h2.run_id
    assert h1.id == h2.id == "w"

    # the id names the latest run; each run id names its own
    latest = client.get_handle("w")
    assert latest.run_id is None
    assert latest.describe().run_id == h2.run_id
    assert h1.describe().run_id == h1.run_id and h1.describe().status == "completed"
    old = client.get_handle("w", run_id=h1.run_id)
    assert durable.WorkflowHandle(client, "w", run_id=h1.run_id).describe() == old.describe() == h1.describe()
    assert old.history()[0]["input"] == [1] and old.history()[-1]["result"] == 5
    assert latest.history()[0]["input"] == [10] and latest.history()[-1]["result"] == 23
    exported = _codec.decode(old.export_history())
    assert len(exported) == old.describe().history_length and exported[-1]["k"] == "WorkflowCompleted"
    assert client._converter.from_payload(exported[0]["in"]) == [1]
    assert old.result(timeout=1) == 5 and latest.result(timeout=1) == 23

    # list: the current run of each id; with all_runs, every run, newest first
    assert [(d.workflow_id, d.run_id) for d in client.list()] == [("w", h2.run_id)]
    assert [(d.workflow_id, d.run_id) for d in client.list(all_runs=True)] == [("w", h2.run_id), ("w", h1.run_id)]
    assert [d.run_id for d in client.list(all_runs=True, status="completed")] == [h2.run_id, h1.run_id]
    assert client.count() == 1 and client.count(all_runs=True) == 2


@pytest.mark.parametrize(("policy", "allowed"), [
    ("allow_duplicate", {"completed", "failed", "cancelled", "terminated"}),
    ("allow_duplicate_failed_only", {"failed", "cancelled", "terminated"}),
    ("reject_duplicate", set()),
])
def test_id_reuse_policies(data_dir: str, policy: str, allowed: set[str]) -> None:
    client = durable.Client(data_dir)
    statuses = ("completed", "failed", "cancelled", "terminated")
    with serving(data_dir):
        firsts = {status: close_as(client, f"w-{status}", status) for status in statuses}
    for status, first in firsts.items():
        wid = f"w-{status}"
        if status in allowed:
            h = client.start(basic.Collector, id=wid, id_reuse_policy=policy)
            assert h.run_id != first.run_id
            assert client.get_handle(wid).describe().status == "running"
            assert first.describe().status == status  # the earlier run as it ended
        else:
            before = store_snapshot(client)
            with pytest.raises(durable.WorkflowAlreadyExists, match=(
                f"a workflow with id '{wid}' already ran \\({status}, type '.*'\\) and the id reuse "
                f"policy is '{policy}'"
            )):
                client.start(basic.Collector, id=wid, id_reuse_policy=policy)
            assert store_snapshot(client) == before  # a refused start writes nothing


def test_id_conflict_policy_for_a_running_workflow(data_dir: str) -> None:
    client = durable.Client(data_dir)
    h = client.start(basic.Collector, id="r")
    before = store_snapshot(client)
    for reuse in ("allow_duplicate", "allow_duplicate_failed_only", "reject_duplicate"):
        with pytest.raises(durable.WorkflowAlreadyExists, match="a workflow with id 'r' is already running"):
            client.start(basic.Collector, id="r", id_reuse_policy=reuse)
        again = client.start(basic.three_steps, 1, id="r", id_reuse_policy=reuse, id_conflict_policy="use_existing")
        assert (again.id, again.run_id) == ("r", h.run_id)
    assert store_snapshot(client) == before
    # use_existing does not stop a closed id from starting a new run (its reuse policy decides)
    h.terminate("test")
    new = client.start(basic.Collector, id="r", id_conflict_policy="use_existing")
    assert new.run_id != h.run_id and new.describe().status == "running"
    with pytest.raises(durable.WorkflowAlreadyExists, match="is already running"):
        client.start(basic.Collector, id="r")


@pytest.mark.parametrize(("option", "value", "allowed"), [
    ("id_reuse_policy", "allow", "'allow_duplicate', 'allow_duplicate_failed_only', 'reject_duplicate'"),
    ("id_reuse_policy", None, "'allow_duplicate', 'allow_duplicate_failed_only', 'reject_duplicate'"),
    ("id_conflict_policy", "terminate_existing", "'fail', 'use_existing'"),
    ("id_conflict_policy", True, "'fail', 'use_existing'"),
])
def test_policies_are_checked(data_dir: str, option: str, value: Any, allowed: str) -> None:
    client = durable.Client(data_dir)
    before = store_snapshot(client)
    with pytest.raises(durable.InvalidArgument, match=f"{option} must be one of {allowed}, not {value!r}"):
        client.start(basic.Collector, id="x", **{option: value})
    assert store_snapshot(client) == before


def test_signal_cancel_terminate_reach_the_current_run_only(data_dir: str) -> None:
    client = durable.Client(data_dir)
    h1 = client.start(basic.Collector, id="c")
    h1.terminate("first run")
    h2 = client.start(basic.Collector, id="c")
    before = store_snapshot(client)
    for action in (lambda: h1.signal("add", 1), lambda: h1.cancel("x"), lambda: h1.terminate("x")):
        with pytest.raises(durable.WorkflowClosed, match=(
                f"^cannot .* run {h1.run_id} of workflow 'c': it was terminated \\(the current run is {h2.run_id}\\)$")):
            action()
    with pytest.raises(durable.WorkflowClosed):
        client.get_handle("c", run_id=h1.run_id).signal("add", 1)
    assert store_snapshot(client) == before
    client.get_handle("c").signal("add", 2)  # the id: the current run
    h2.signal("add", 3)  # the current run, by its run id
    signals = [e["input"] for e in h2.history() if e["kind"] == "SignalReceived"]
    assert signals == [[2], [3]]
    assert [e["kind"] for e in h1.history()][-1] == "WorkflowTerminated"
    assert not any(e["kind"] == "SignalReceived" for e in h1.history())
    h2.cancel("now")
    assert client.get_handle("c").describe().cancel_requested and not h1.describe().cancel_requested


def test_queries_run_on_the_handles_run(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        h1 = client.start(basic.Collector, id="q")
        h1.signal("add", 1)
        h1.signal("add", 2)
        h1.signal("finish")
        assert h1.result(timeout=TIMEOUT) == [1, 2]
        h2 = client.start(basic.Collector, id="q")
        h2.signal("add", 3)
        assert h1.query("count", timeout=TIMEOUT) == 2  # the earlier run, from its history
        assert h2.query("count", timeout=TIMEOUT) == 1
        assert client.get_handle("q").query("count", timeout=TIMEOUT) == 1


def test_run_ids_are_checked(data_dir: str) -> None:
    client = durable.Client(data_dir)
    h = client.start(basic.Collector, id="c")
    for bad in ("", "xyz", "-1", "1" * 17, 5, "A1 "):
        with pytest.raises(durable.InvalidArgument, match="a run id must be"):
            client.get_handle("c", run_id=bad)  # type: ignore[arg-type]
    missing = "ff" if h.run_id != "ff" else "fe"
    with pytest.raises(durable.WorkflowNotFound, match=f"workflow 'c' has no run {missing!r}"):
        client.get_handle("c", run_id=missing).describe()
    with pytest.raises(durable.WorkflowNotFound, match="workflow 'c' has no run"):
        client.get_handle("c", run_id=missing).history()
    with pytest.raises(durable.WorkflowNotFound, match="no workflow with id 'nope'"):
        client.get_handle("nope", run_id=h.run_id).describe()
    # the run of another id is not this id's run
    other = client.start(basic.Collector, id="d")
    with pytest.raises(durable.WorkflowNotFound, match=f"workflow 'c' has no run {other.run_id!r}"):
        client.get_handle("c", run_id=other.run_id).describe()


def test_a_waiting_result_without_run_id_follows_the_latest_run(data_dir: str) -> None:
    client = durable.Client(data_dir)
    store = client._store
    h1 = client.start(basic.Collector, id="f")
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(_outcome(client.get_handle("f"))))
    waiter.start()
    payload = Converter().to_payload([], "input")
    # the first run ends and the next starts in one transaction: the waiter never sees the first
    # run as the latest closed one, and goes on waiting, for the new run
    results = store.write_batch([
        lambda t: _ops.terminate(t, "f", "replaced"),
        lambda t: _ops.start_workflow(t, "f", "Collector", "default", payload, False, False),
    ])
    assert not any(isinstance(r, Exception) for r in results), results
    with pytest.raises(durable.WorkflowFailed, match="terminated: replaced"):
        h1.result(timeout=1)  # bound to its run
    assert waiter.is_alive() and got == []
    with serving(data_dir):
        client.get_handle("f").signal("add", 7)
        client.get_handle("f").signal("finish")
        waiter.join(TIMEOUT)
    assert got == [[7]]


def _outcome(handle: durable.WorkflowHandle) -> Any:
    try:
        return handle.result(timeout=TIMEOUT)
    except durable.WorkflowFailed as exc:
        return exc


def test_an_earlier_runs_number_never_reaches_the_new_run(data_dir: str) -> None:
    """Every op that goes from a run number to the workflow record finds nothing for an earlier
    run of the id: a stale task, timer, lease or attempt of it leaves the new run untouched."""
    client = durable.Client(data_dir)
    store: Store = client._store
    h1 = client.start(basic.sleeper, 30.0, id="s")
    with serving(data_dir):
        wait_until(lambda: any(e["kind"] == "TimerStarted" for e in h1.history()), what="the timer")
    h1.terminate("replaced")
    h2 = client.start(basic.sleeper, 30.0, id="s")
    old, new = int(h1.run_id, 16), int(h2.run_id, 16)
    assert store.read(lambda t: _ops._wf_by_num(t, old)) is None
    assert store.read(lambda t: _ops._wf_by_num(t, new))["num"] == new
    before = store_snapshot(client)
    stale = [
        lambda t: _ops.claim_workflow_task(t, old, "default", "me", 10**9),
        lambda t: _ops._claim_wft(t, old, "me", 10**9),
        lambda t: _ops._fire_timer(t, old, 1, u64(0) + b"T" + u64(old) + u64(1)),
        lambda t: _ops._expire_wft(t, old, u64(0) + b"W" + u64(old)),
        lambda t: _ops.complete_workflow_task(t, old, 1, []),
        lambda t: _ops.fail_workflow_task(t, old, 1, "stale"),
        lambda t: _ops.complete_activity(t, old, 1, 1, b""),
        lambda t: _ops.heartbeat(t, "me", 10**9, [("wft", old, 1), ("act", old, 1, 1, None)]),
        lambda t: _ops.release_activity(t, old, 1, 1),
        lambda t: _ops.claim_peeked_wft(t, {"num": old, "tkey": b"x", "hlen": 1}, "me", 10**9),
    ]
    results = store.write_batch(stale)
    assert results == [None, None, None, None, "lost", False, False, ["lost", "lost"], False, None], results
    assert store_snapshot(client) == before
    # and with a worker: the new run sleeps on its own timer alone
    with serving(data_dir):
        wait_until(lambda: any(e["kind"] == "TimerStarted" for e in h2.history()), what="the new timer")
    assert [e["kind"] for e in h2.history()].count("TimerStarted") == 1
    assert h2.describe().status == "running" and h1.describe().status == "terminated"


def test_start_hands_back_the_run_it_started(data_dir: str) -> None:
    client = durable.Client(data_dir)
    h = client.start(basic.Collector, id="x")
    assert h.run_id == h.describe().run_id == client.get_handle("x").describe().run_id
    assert repr(h) == f"<WorkflowHandle 'x' run {h.run_id}>"
    assert repr(client.get_handle("x")) == "<WorkflowHandle 'x'>"
    raw = store_snapshot(client)["runs"]
    assert raw == []  # no earlier run yet
    h.terminate()
    h2 = client.start(basic.Collector, id="x")
    [(key, value)] = store_snapshot(client)["runs"]
    assert key == b"x\x00" + u64(int(h.run_id, 16))
    assert _codec.decode(value)["status"] == "terminated"
    assert h2.describe().status == "running"
