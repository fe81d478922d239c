"""Claims, leases and fencing in the store itself, step by step, with a hand-driven clock.

No worker runs here: each test plays the workers' part by calling the store's domain operations
(`durable._ops`) in write transactions on a real LMDB store, and moves time by hand, so that
every expiry happens exactly when the test says. What a late, lost or duplicate result may do is
then checked exactly: nothing (F03, F06, F09, F11).
"""

from __future__ import annotations

from typing import Any

import pytest

import durable
from durable import _ops
from durable._codec import Converter
from durable._defs import ActivityOptions
from durable._backend import open_store
from durable._store import Clock
from tests.fault._util import store_snapshot

NS = 1_000_000_000
LEASE = 2 * NS

PLAIN = Converter()


class ManualClock(Clock):
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.ns = 1_800_000_000 * NS

    def now_ns(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * NS)


@durable.workflow
async def one_step() -> int:
    return 0  # never run here: the tests write the workflow's commands themselves


class Harness:
    """A store with one workflow whose first activation scheduled activity seq 1."""

    def __init__(self, data_dir: str, **options: Any) -> None:
        self.clock = ManualClock()
        self.store = open_store(data_dir, clock=self.clock)
        self.client = durable.Client(data_dir)
        assert self.client._store is self.store
        self.client.start(one_step, id="wf")
        [wft] = self.claim("A", wft=1)
        self.num = wft["num"]
        opts = ActivityOptions(**options).to_record()
        payload = PLAIN.to_payload([1], "input")
        command = {"k": "ActivityScheduled", "seq": 1, "name": "step", "in": payload, "opts": opts}
        assert self.write(lambda t: _ops.complete_workflow_task(t, self.num, wft["token"], [command])) == "ok"

    def write(self, fn: Any) -> Any:
        return self.store.write(fn)

    def claim(self, owner: str, *, wft: int = 0, act: int = 0) -> list[dict[str, Any]]:
        return self.write(lambda t: _ops.claim(t, "default", owner, LEASE, wft, act, 0))  # type: ignore[no-any-return]

    def complete(self, token: int, value: Any) -> bool:
        payload = PLAIN.to_payload(value, "result")
        return self.write(lambda t: _ops.complete_activity(t, self.num, 1, token, payload))  # type: ignore[no-any-return]

    def fail(self, token: int) -> bool:
        err = {"type": "RuntimeError", "msg": "boom"}
        return self.write(lambda t: _ops.fail_activity(t, self.num, 1, token, err, True, False))  # type: ignore[no-any-return]

    def beat(self, owner: str, token: int, details: Any = None) -> str:
        payload = None if details is None else PLAIN.to_payload(details, "details")
        [status] = self.write(lambda t: _ops.heartbeat(t, owner, LEASE, [("act", self.num, 1, token, payload)]))
        return status  # type: ignore[no-any-return]

    def fire(self) -> int:
        return self.write(lambda t: _ops.fire_due(t, 1000))  # type: ignore[no-any-return]

    def history(self) -> list[dict[str, Any]]:
        return self.client.get_handle("wf").history()

    def finals(self) -> list[dict[str, Any]]:
        return [e for e in self.history() if e["kind"] in ("ActivityCompleted", "ActivityFailed")]

    def describe(self) -> durable.WorkflowDescription:
        return self.client.get_handle("wf").describe()


def test_f11_a_task_is_claimed_by_one_worker_only(data_dir: str) -> None:
    h = Harness(data_dir)
    [item] = h.claim("A", act=10)
    assert item["attempt"] == 1
    assert h.claim("B", act=10) == []
    assert h.claim("A", act=10) == []
    assert h.complete(item["token"], "done")
    assert h.complete(item["token"], "again") is False  # a duplicate delivery changes nothing
    [done] = h.finals()
    assert done["kind"] == "ActivityCompleted" and done["result"] == "done" and done["attempt"] == 1


def test_f06_timed_out_attempt_is_fenced_and_its_retry_recorded(data_dir: str) -> None:
    h = Harness(data_dir, start_to_close=5.0, retry=durable.RetryPolicy(max_attempts=3, initial_interval=1.0))
    [first] = h.claim("A", act=1)
    for _ in range(4):  # heartbeats keep the lease, but not past start_to_close
        h.clock.advance(1.2)
        assert h.fire() == 0 and h.beat("A", first["token"]) == "ok"
    h.clock.advance(0.3)  # past start_to_close
    assert h.fire() == 1
    before = store_snapshot(h.client)
    assert h.complete(first["token"], "late") is False
    assert h.fail(first["token"]) is False
    assert h.beat("A", first["token"], {"progress": 1}) == "lost"
    assert store_snapshot(h.client) == before  # refused results and heartbeats wrote nothing
    assert h.claim("B", act=1) == []  # the retry waits for its backoff (1 s)
    h.clock.advance(1.0)
    [second] = h.claim("B", act=1)
    assert second["attempt"] == 2 and second["token"] != first["token"]
    assert h.complete(first["token"], "late") is False
    assert h.complete(second["token"], "on time")
    assert h.complete(second["token"], "twice") is False
    [done] = h.finals()
    assert done["kind"] == "ActivityCompleted" and done["result"] == "on time" and done["attempt"] == 2
    desc = h.describe()
    assert (desc.activity_attempts, desc.activity_retries) == (2, 1)


def test_f09_expired_lease_counts_the_attempt_and_fences_the_dead_worker(data_dir: str) -> None:
    h = Harness(data_dir, retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.0))
    [first] = h.claim("A", act=1)
    h.clock.advance(1.5)
    assert h.beat("A", first["token"], {"step": 7}) == "ok"  # renews the lease to now + 2 s
    h.clock.advance(1.9)
    assert h.fire() == 0  # still within the renewed lease
    h.clock.advance(0.2)
    assert h.fire() == 1  # the worker stopped renewing: the attempt is lost and counted
    assert h.beat("A", first["token"]) == "lost"
    [second] = h.claim("B", act=1)
    assert second["attempt"] == 2
    assert PLAIN.from_payload(second["hb"]) == {"step": 7}  # the last details carry over
    assert h.complete(first["token"], "from the dead") is False
    assert h.complete(second["token"], "from B")
    [done] = h.finals()
    assert done["result"] == "from B" and done["attempt"] == 2
    desc = h.describe()
    assert (desc.activity_attempts, desc.activity_retries) == (2, 1)


def test_f09_lost_attempts_exhaust_the_retry_policy(data_dir: str) -> None:
    h = Harness(data_dir, retry=durable.RetryPolicy(max_attempts=2, initial_interval=0.0))
    for attempt in (1, 2):
        [item] = h.claim(f"worker-{attempt}", act=1)
        assert item["attempt"] == attempt
        h.clock.advance(2.1)
        assert h.fire() == 1
    assert h.claim("C", act=1) == []
    [failed] = h.finals()
    assert failed["kind"] == "ActivityFailed" and failed["attempt"] == 2
    assert failed["error"]["type"] == "WorkerLost"


def test_heartbeat_timeout_is_measured_from_the_last_beat(data_dir: str) -> None:
    h = Harness(data_dir, heartbeat=1.0, retry=durable.RetryPolicy(max_attempts=2, initial_interval=0.0))
    [first] = h.claim("A", act=1)
    for _ in range(5):  # beats (with or without details) keep it alive well past 1 s
        h.clock.advance(0.8)
        assert h.fire() == 0
        assert h.beat("A", first["token"], {"n": 1}) == "ok"
    h.clock.advance(1.1)
    assert h.fire() == 1
    [second] = h.claim("B", act=1)
    assert second["attempt"] == 2
    h.clock.advance(1.1)
    assert h.fire() == 1
    [failed] = h.finals()
    assert failed["kind"] == "ActivityFailed" and failed["why"] == "timed_out"
    assert failed["error"]["type"] == "HeartbeatTimeout" and failed["attempt"] == 2


def test_schedule_to_close_covers_queue_time_and_all_attempts(data_dir: str) -> None:
    h = Harness(data_dir, schedule_to_close=3.0, retry=durable.RetryPolicy(max_attempts=10, initial_interval=0.5))
    h.clock.advance(1.0)  # waiting in the queue counts
    [first] = h.claim("A", act=1)
    assert h.fail(first["token"])
    h.clock.advance(0.5)
    [second] = h.claim("A", act=1)
    h.clock.advance(1.6)  # 3.1 s after scheduling
    assert h.fire() == 1
    assert h.complete(second["token"], "late") is False
    [failed] = h.finals()
    assert failed["why"] == "timed_out" and failed["error"]["type"] == "ScheduleToCloseTimeout"
    assert failed["attempt"] == 2


def test_handed_back_attempt_is_not_counted(data_dir: str) -> None:
    h = Harness(data_dir, retry=durable.RetryPolicy(max_attempts=1))
    [first] = h.claim("A", act=1)
    assert h.write(lambda t: _ops.release_activity(t, h.num, 1, first["token"]))
    assert h.complete(first["token"], "after hand-back") is False
    [second] = h.claim("B", act=1)
    assert second["attempt"] == 1  # max_attempts=1 and it may still run
    assert h.complete(second["token"], "from B")
    [done] = h.finals()
    assert done["attempt"] == 1 and done["result"] == "from B"
    desc = h.describe()
    assert (desc.activity_attempts, desc.activity_retries) == (1, 0)


def test_workflow_task_lease_expiry_fences_the_old_activation(data_dir: str) -> None:
    h = Harness(data_dir)
    [act] = h.claim("A", act=1)
    assert h.complete(act["token"], 5)
    [wft] = h.claim("A", wft=1)
    h.clock.advance(2.1)
    assert h.fire() == 1  # the activation's lease expired: the task is queued again
    length = h.describe().history_length
    done = {"k": "WorkflowCompleted", "out": PLAIN.to_payload(5, "out")}
    assert h.write(lambda t: _ops.complete_workflow_task(t, h.num, wft["token"], [done])) == "lost"
    assert h.describe().history_length == length and h.describe().status == "running"
    [again] = h.claim("B", wft=1)
    assert h.write(lambda t: _ops.complete_workflow_task(t, h.num, again["token"], [done])) == "ok"
    assert h.client.get_handle("wf").result(timeout=1) == 5
    assert [d.workflow_id for d in h.client.list(status="completed")] == ["wf"]
    assert h.client.list(status="running") == []


@pytest.mark.parametrize("op", ["complete", "fail", "beat"])
def test_results_for_a_terminated_workflow_are_refused(data_dir: str, op: str) -> None:
    h = Harness(data_dir)
    [act] = h.claim("A", act=1)
    h.client.get_handle("wf").terminate("operator")
    before = store_snapshot(h.client)
    if op == "complete":
        assert h.complete(act["token"], 1) is False
    elif op == "fail":
        assert h.fail(act["token"]) is False
    else:
        assert h.beat("A", act["token"]) == "lost"
    assert store_snapshot(h.client) == before


def test_handed_back_retry_is_not_counted(data_dir: str) -> None:
    h = Harness(data_dir, retry=durable.RetryPolicy(max_attempts=2, initial_interval=0.0))
    [first] = h.claim("A", act=1)
    assert h.fail(first["token"])
    [second] = h.claim("A", act=1)
    assert second["attempt"] == 2
    assert h.write(lambda t: _ops.release_activity(t, h.num, 1, second["token"]))
    [again] = h.claim("B", act=1)
    assert again["attempt"] == 2
    assert h.complete(again["token"], "ok")
    desc = h.describe()
    assert (desc.activity_attempts, desc.activity_retries) == (2, 1)


@pytest.mark.parametrize("then", ["closes", "goes on"])
def test_f13_signals_arriving_while_the_code_closes_are_delivered(data_dir: str, then: str) -> None:
    """Signals that arrive during the activation that closes the workflow are put in history and
    the task runs again (no signal lost). Until it has, new signals are refused, so that a steady
    stream of them cannot keep the workflow from ever closing."""
    h = Harness(data_dir)
    handle = h.client.get_handle("wf")
    [act] = h.claim("A", act=1)
    assert h.complete(act["token"], 1)
    [wft] = h.claim("A", wft=1)
    handle.signal("add", 1)  # arrives while the activation runs
    out = PLAIN.to_payload("done", "out")
    closing = {"k": "WorkflowCompleted", "out": out}
    assert h.write(lambda t: _ops.complete_workflow_task(t, h.num, wft["token"], [closing])) == "retry"
    assert [e["kind"] for e in h.history()][-1] == "SignalReceived"  # delivered, not dropped
    before = store_snapshot(h.client)
    with pytest.raises(durable.WorkflowClosed, match="closing"):
        handle.signal("add", 2)
    assert store_snapshot(h.client) == before
    [again] = h.claim("A", wft=1)
    if then == "closes":
        assert h.write(lambda t: _ops.complete_workflow_task(t, h.num, again["token"], [closing])) == "ok"
        assert handle.result(timeout=1) == "done"
    else:  # the code saw the signal and decided to go on: signals are welcome again
        assert h.write(lambda t: _ops.complete_workflow_task(t, h.num, again["token"], [{"k": "TaskCompleted"}])) == "ok"
        handle.signal("add", 3)
        assert [e.get("input") for e in h.history() if e["kind"] == "SignalReceived"] == [[1], [3]]


def test_f15_activity_refused_by_a_worker_without_its_code_spends_no_attempt(data_dir: str) -> None:
    h = Harness(data_dir, retry=durable.RetryPolicy(max_attempts=1))
    for refusal in range(1, 4):
        [item] = h.claim("old", act=1)
        assert item["attempt"] == 1
        assert h.write(lambda t, k=item["token"]: _ops.refuse_activity(t, h.num, 1, k, "'step' is not registered"))
        assert h.complete(item["token"], "nothing ran") is False
        desc = h.describe()
        assert (desc.activity_attempts, desc.task_failures) == (0, refusal)
        assert desc.task_error == "'step' is not registered"
        assert h.claim("old", act=1) == []  # queued again after a growing delay
        h.clock.advance(0.1 * 2 ** (refusal - 1))
    [item] = h.claim("new", act=1)
    assert item["attempt"] == 1  # max_attempts=1, and it still may run
    assert h.complete(item["token"], "ran")
    [done] = h.finals()
    assert done["attempt"] == 1 and done["result"] == "ran"
    [wft] = h.claim("new", wft=1)
    assert h.write(lambda t: _ops.complete_workflow_task(t, h.num, wft["token"], [{"k": "TaskCompleted"}])) == "ok"
    assert h.describe().task_error is None


@pytest.mark.parametrize("options, late", [({}, LEASE / NS + 0.1), ({"start_to_close": 1.0}, 1.1),
                                           ({"heartbeat": 0.5}, 0.6)])
def test_f06_a_passed_deadline_fences_before_the_clock_processes_it(data_dir: str, options: dict[str, Any], late: float) -> None:
    """An attempt whose lease or timeout has passed can record nothing, even if no clock task
    has yet turned the passed deadline into a retry (a paused worker resuming late, F06/F09)."""
    h = Harness(data_dir, **options)
    [act] = h.claim("A", act=1)
    h.clock.advance(late)  # past the deadline, but fire_due has not run
    before = store_snapshot(h.client)
    assert h.complete(act["token"], "late") is False
    assert h.fail(act["token"]) is False
    assert h.beat("A", act["token"]) == "lost"
    assert store_snapshot(h.client) == before  # refused attempts wrote nothing
    assert h.fire() >= 1  # the clock then retries it: a new attempt with a new token
    h.clock.advance(2)
    [retry] = h.claim("B", act=1)
    assert retry["attempt"] == 2 and retry["token"] != act["token"]
    assert h.complete(retry["token"], "on time") is True


def test_cancel_requested_activity_whose_worker_died_is_cancelled_not_retried(data_dir: str) -> None:
    """Issue 3: an activity whose workflow asked to cancel it, and whose worker then died, is
    resolved as cancelled when its lease expires; it is never run again."""
    h = Harness(data_dir, retry=durable.RetryPolicy(max_attempts=5, initial_interval=0.0))
    [act] = h.claim("A", act=1)
    h.client.get_handle("wf").cancel("stop")
    [wft] = h.claim("A", wft=1)  # the workflow's code answers the cancel with a cancel request
    request = {"k": "ActivityCancelRequested", "seq": 1}
    assert h.write(lambda t: _ops.complete_workflow_task(t, h.num, wft["token"], [request])) == "ok"
    assert h.beat("A", act["token"]) == "cancel"  # a live worker would be told now; this one dies
    h.clock.advance(2.1)
    assert h.fire() == 1
    assert h.claim("B", act=1) == []  # not retried
    kinds = [e["kind"] for e in h.client.get_handle("wf").history()]
    assert kinds[-1] == "ActivityCancelled" and kinds.count("ActivityCancelled") == 1
    assert h.complete(act["token"], "too late") is False
