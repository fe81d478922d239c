"""The store's side of updates, step by step on a real LMDB store with a hand-driven clock:
no worker runs; the test plays the workers' part with the domain operations, so that what a
lost lease, a request during a running task or a close does to updates is checked exactly."""

from __future__ import annotations

from typing import Any

import pytest

import durable
from durable import _ops, _updates
from durable._codec import Converter
from durable._backend import open_store
from tests.fault._util import store_snapshot
from tests.worker.test_store_fencing import LEASE, NS, ManualClock

PLAIN = Converter()


@durable.workflow
class Target:
    async def run(self) -> None:  # never run here: the tests write the commands themselves
        pass

    @durable.update
    def poke(self) -> None:
        pass


class Harness:
    def __init__(self, data_dir: str) -> None:
        self.clock = ManualClock()
        self.store = open_store(data_dir, clock=self.clock)
        self.client = durable.Client(data_dir)
        self.client.start(Target, id="wf")
        [wft] = self.claim("A")
        self.num = wft["num"]
        assert self.write(lambda t: _ops.complete_workflow_task(t, self.num, wft["token"], [{"k": "TaskCompleted"}])) == "ok"

    def write(self, fn: Any) -> Any:
        return self.store.write(fn)

    def claim(self, owner: str) -> list[dict[str, Any]]:
        return self.write(lambda t: _ops.claim(t, "default", owner, LEASE, 1, 0, 0))  # type: ignore[no-any-return]

    def request(self, uid: str, name: str = "poke") -> int:
        payload = PLAIN.to_payload([], "args")
        return self.write(lambda t: _updates.request(t, "wf", name, payload, uid, None, 0))  # type: ignore[no-any-return]

    def state(self, uid: str) -> str | None:
        rec = self.store.read(lambda t: _updates.outcome(t, self.num, uid))
        return None if rec is None else rec["st"]

    def wf(self) -> dict[str, Any]:
        return self.store.read(lambda t: _ops.load_wf(t, "wf"))  # type: ignore[no-any-return]

    def accepted(self, uid: str) -> list[dict[str, Any]]:
        return [{"k": "UpdateAccepted", "t": 0, "at": 0, "uid": uid, "name": "poke",
                 "in": PLAIN.to_payload([], "args")}]


@pytest.fixture
def h(data_dir: str) -> Harness:
    return Harness(data_dir)


def test_a_request_queues_a_task_once_and_is_pending(h: Harness) -> None:
    assert h.wf()["wft"] == _ops.WFT_NONE
    h.request("a")
    assert h.wf()["wft"] == _ops.WFT_QUEUED and h.wf()["upd"] == 1
    assert h.request("a") == h.num  # the same id again: nothing new
    assert h.wf()["upd"] == 1
    assert [p["uid"] for p in h.store.read(lambda t: _updates.pending(t, h.num))] == ["a"]


def test_a_request_while_a_task_runs_leaves_a_task_queued_after_it(h: Harness) -> None:
    h.request("a")
    [wft] = h.claim("A")
    h.request("b")  # the running task read only "a"
    assert h.wf()["wft"] == _ops.WFT_RUNNING
    commands = h.accepted("a") + [{"k": "UpdateCompleted", "uid": "a", "name": "poke", "out": PLAIN.to_payload(None, "out")}]
    assert h.write(lambda t: _ops.complete_workflow_task(t, h.num, wft["token"], commands)) == "ok"
    assert (h.state("a"), h.state("b")) == ("d", "p")
    assert h.wf()["wft"] == _ops.WFT_QUEUED and h.wf()["upd"] == 1  # "b" gets its task


def test_a_refusal_under_a_lost_lease_writes_nothing(h: Harness) -> None:
    h.request("a")
    [wft] = h.claim("A")
    h.clock.advance(3 * LEASE / NS)
    h.write(lambda t: _ops.fire_due(t, 1000))  # the lease expired: the task is queued again
    before = store_snapshot(h.client)
    assert h.write(lambda t: _updates.reject(t, h.num, wft["token"], [("a", "no")])) is False
    assert store_snapshot(h.client) == before
    [again] = h.claim("B")
    assert h.write(lambda t: _updates.reject(t, h.num, again["token"], [("a", "no")])) is True
    assert h.state("a") == "r" and h.wf()["upd"] == 0
    assert [e["kind"] for e in h.client.get_handle("wf").history()] == ["WorkflowStarted", "TaskCompleted"]
    h.request("a")  # refused, then asked again: pending again
    assert h.state("a") == "p"


def test_closing_fails_what_is_in_flight_and_refuses_new_requests(h: Harness) -> None:
    h.request("a")
    h.request("b")
    [wft] = h.claim("A")
    assert h.write(lambda t: _ops.complete_workflow_task(t, h.num, wft["token"], h.accepted("a"))) == "ok"
    assert (h.state("a"), h.state("b")) == ("a", "p")
    h.client.get_handle("wf").terminate("enough")
    for uid in ("a", "b"):
        rec = h.store.read(lambda t: _updates.outcome(t, h.num, uid))
        assert rec["st"] == "d" and "was terminated" in rec["closed"]
    assert h.store.read(lambda t: _updates.pending(t, h.num)) == []
    with pytest.raises(durable.WorkflowClosed, match="was terminated"):
        h.request("c")
    assert h.request("a") == h.num  # an id it had: its outcome is still there
