"""F01: every derived view of the store (the status index behind `list`, `describe`) agrees with
a fold over the histories, after every step of random interleavings of many workflows' commands.

A hypothesis state machine starts workflows of several kinds, signals, cancels and terminates
them (also when that must fail), and runs a real worker for a random while. After each step, with
no worker running, `client.list(status=...)` must equal the statuses folded from the histories
(the last event decides). While a worker runs, the same is checked inside single read
transactions of the store, since the index and the history are written in one transaction.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import durable
from durable import _ops
from tests.conftest import worker_thread
from tests.fault._util import STATUS_OF_LAST_EVENT, store_snapshot, status_from_history
from tests.wfs import faults

STATUSES = ("running", "completed", "failed", "cancelled", "terminated")
_BASE = tempfile.mkdtemp(prefix="durable-f01-")
atexit.register(shutil.rmtree, _BASE, True)


@durable.workflow
async def boom() -> None:
    raise durable.ApplicationError("boom", non_retryable=True)


@durable.workflow
async def nap(x: int) -> int:
    await durable.sleep(0.05)
    return x


WORKFLOWS = [faults.Gate, faults.inc_chain, boom, nap]
ACTIVITIES = [faults.slow_inc]
KINDS = {
    "gate": (faults.Gate, ()),
    "chain": (faults.inc_chain, (1, 2, 0.0)),
    "boom": (boom, ()),
    "nap": (nap, (7,)),
}


def fold_raw(events: list[dict[str, Any]]) -> str:
    if events and events[-1]["k"] in STATUS_OF_LAST_EVENT:
        return STATUS_OF_LAST_EVENT[events[-1]["k"]]
    return "running"


def check_in_one_transaction(store: Any) -> None:
    """The index agrees with the histories inside one read transaction (even mid-flight)."""

    def check(t: Any) -> None:
        recs = {rec["id"]: rec for rec in _ops.list_workflows(t, None, None, 10**9)}
        folded = {wid: fold_raw(_ops.read_history(t, rec["num"])) for wid, rec in recs.items()}
        for status in STATUSES:
            indexed = {rec["id"] for rec in _ops.list_workflows(t, status, None, 10**9)}
            assert indexed == {wid for wid, s in folded.items() if s == status}, status
        for wid, rec in recs.items():
            assert rec["status"] == folded[wid], wid
            assert len(_ops.read_history(t, rec["num"])) == rec["hlen"], wid

    store.read(check)


def quiescent(store: Any) -> bool:
    """No task, activity, inbox or timer due soon: nothing will change until the next command."""

    def check(t: Any) -> bool:
        if t.count("act") or t.count("inbox"):
            return False
        due = _ops.next_due(t)
        if due is not None and due < t.now + 2_000_000_000:
            return False
        return all(rec["wft"] == _ops.WFT_NONE for rec in _ops.list_workflows(t, "running", None, 10**9))

    return bool(store.read(check))


class StoreViews(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.data = tempfile.mkdtemp(dir=_BASE)
        self.client = durable.Client(self.data)
        self.ids: dict[str, str] = {}  # id -> kind
        self.opened: set[str] = set()

    # --- commands ---------------------------------------------------------------------------

    @rule(kind=st.sampled_from(sorted(KINDS)))
    def start(self, kind: str) -> None:
        wid = f"w{len(self.ids)}"
        workflow, args = KINDS[kind]
        self.client.start(workflow, *args, id=wid)
        self.ids[wid] = kind

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def start_duplicate(self, data: st.DataObject) -> None:
        wid = data.draw(st.sampled_from(sorted(self.ids)))
        before = store_snapshot(self.client)
        try:
            self.client.start(faults.Gate, id=wid)
        except durable.WorkflowAlreadyExists:
            pass
        else:
            raise AssertionError("a duplicate id was accepted")
        assert self.client.start(nap, 1, id=wid, reuse_existing=True).id == wid
        assert store_snapshot(self.client) == before

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), verb=st.sampled_from(["signal", "cancel", "terminate"]))
    def command(self, data: st.DataObject, verb: str) -> None:
        wid = data.draw(st.sampled_from(sorted(self.ids)))
        handle = self.client.get_handle(wid)
        before = store_snapshot(self.client)
        status = handle.describe().status
        try:
            if verb == "signal":
                handle.signal("open", wid)
            elif verb == "cancel":
                handle.cancel("test")
            else:
                handle.terminate("test")
        except (durable.WorkflowClosed, durable.NotRegistered):
            assert store_snapshot(self.client) == before  # a refused command writes nothing
            return
        assert status == "running", f"{verb} of a {status} workflow was accepted"
        if verb == "signal":
            self.opened.add(wid)

    @rule(seconds=st.sampled_from([0.0, 0.02, 0.1]))
    def run_worker(self, seconds: float) -> None:
        with worker_thread(self.data, WORKFLOWS, ACTIVITIES, lease=1.0, graceful_timeout=0.2) as worker:
            deadline = time.monotonic() + seconds
            while True:
                check_in_one_transaction(worker.store)
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)

    @rule()
    def settle(self) -> None:
        """Run a worker until nothing more can happen: everything that can end has ended."""
        with worker_thread(self.data, WORKFLOWS, ACTIVITIES, lease=1.0, graceful_timeout=0.2) as worker:
            deadline = time.monotonic() + 20
            while not quiescent(worker.store):
                assert time.monotonic() < deadline, "the store never became quiescent"
                check_in_one_transaction(worker.store)
                time.sleep(0.01)
        for wid, kind in self.ids.items():
            status = self.client.get_handle(wid).describe().status
            if status == "running":  # only a gate that was never opened may still wait
                assert kind == "gate" and wid not in self.opened, (wid, kind)

    # --- the invariant ----------------------------------------------------------------------

    @invariant()
    def views_equal_the_fold_over_histories(self) -> None:
        histories = {wid: self.client.get_handle(wid).history() for wid in self.ids}
        folded = {wid: status_from_history(events) for wid, events in histories.items()}
        everything = {d.workflow_id: d for d in self.client.list(limit=10**6)}
        assert set(everything) == set(self.ids)
        for status in STATUSES:
            listed = {d.workflow_id for d in self.client.list(status=status, limit=10**6)}
            assert listed == {wid for wid, s in folded.items() if s == status}, status
        for kind, (workflow, _) in KINDS.items():
            name = durable._defs.workflow_def(workflow).name
            listed = {d.workflow_id for d in self.client.list(workflow=name, limit=10**6)}
            assert listed == {wid for wid, k in self.ids.items() if k == kind}, kind
        for wid, events in histories.items():
            desc = self.client.get_handle(wid).describe()
            assert desc.status == folded[wid] == everything[wid].status, wid
            assert desc.history_length == len(events), wid
            assert [e["index"] for e in events] == list(range(len(events))), wid  # no gaps


_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]

TestF01StoreViews = StoreViews.TestCase
TestF01StoreViews.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                      suppress_health_check=_HEALTH)


class StoreViewsLong(StoreViews):
    """The same machine, many more and longer runs (--slow)."""


TestF01StoreViewsLong = pytest.mark.slow(StoreViewsLong.TestCase)
TestF01StoreViewsLong.settings = settings(max_examples=300, stateful_step_count=40, deadline=None,
                                          suppress_health_check=_HEALTH)
