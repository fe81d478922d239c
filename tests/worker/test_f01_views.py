"""F01: every derived view of the store (the list index behind `list` and `count`, by start
time and by status, for current and earlier runs; `describe`) agrees with a fold over the
histories, after every step of random interleavings of many workflows' commands.

A hypothesis state machine starts workflows of several kinds, starts new runs of their ids under
every id reuse and conflict policy, signals, cancels and terminates them (also when that must
fail), and runs a real worker for a random while. After each step, with no worker running,
`client.list(status=...)` must equal the statuses folded from the histories (the last event
decides), for the latest runs and for every run. While a worker runs, the same is checked inside
single read transactions of the store, with the index compared key by key with the one the
records make, since the index and the history are written in one transaction.
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
from durable._codec import decode
from durable._store import u64x2
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
    """The index agrees with the records and the histories inside one read transaction (even
    mid-flight)."""

    def check(t: Any) -> None:
        listed = _ops.list_workflows(t, None, None, 10**9)
        recs = {rec["id"]: rec for rec in listed}
        assert len(recs) == len(listed) == t.count("wf")
        earlier = [decode(raw) for _, raw in t.scan("runs", b"")]
        every = _ops.list_workflows(t, None, None, 10**9, all_runs=True)
        assert sorted(r["num"] for r in every) == sorted([r["num"] for r in listed] + [r["num"] for r in earlier])
        for runs in (listed, every):  # newest first by start time
            whens = [(r["created"], r["num"]) for r in runs]
            assert whens == sorted(whens, reverse=True)
        # the index holds exactly the entries the records make
        expected = {}
        for rec, old in [(r, False) for r in listed] + [(r, True) for r in earlier]:
            when = u64x2(rec["created"], rec["num"])
            expected[(b"C" if old else b"c") + when] = rec["id"].encode()
            expected[(b"S" if old else b"s") + rec["status"].encode() + b"\x00" + when] = rec["id"].encode()
            if old:
                assert recs[rec["id"]]["num"] > rec["num"] and rec["status"] != "running", rec
        assert dict(t.scan("idx", b"")) == expected
        # every run's status is the fold over its own history
        folded = {r["num"]: fold_raw(_ops.read_history(t, r["num"])) for r in every}
        for rec in every:
            assert rec["status"] == folded[rec["num"]], rec["id"]
            assert len(_ops.read_history(t, rec["num"])) == rec["hlen"], rec["id"]
        for status in STATUSES:
            for all_runs, runs in ((False, listed), (True, every)):
                indexed = [r["num"] for r in _ops.list_workflows(t, status, None, 10**9, all_runs=all_runs)]
                assert indexed == [r["num"] for r in runs if folded[r["num"]] == status], status
                assert _ops.count_workflows(t, status, None, all_runs=all_runs) == len(indexed)
        assert _ops.count_workflows(t, None, None) == len(listed)
        assert _ops.count_workflows(t, None, None, all_runs=True) == len(every)

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
        self.ids: dict[str, str] = {}  # id -> kind of its latest run
        self.runs: dict[tuple[str, str], str] = {}  # (id, run id) -> kind, for every run
        self.opened: set[str] = set()  # ids whose latest run was signalled

    def teardown(self) -> None:
        # each run has its own store, outside the test's tmp_path: close it here
        self.client._store.close()

    # --- commands ---------------------------------------------------------------------------

    @rule(kind=st.sampled_from(sorted(KINDS)))
    def start(self, kind: str) -> None:
        wid = f"w{len(self.ids)}"
        workflow, args = KINDS[kind]
        handle = self.client.start(workflow, *args, id=wid)
        self.ids[wid] = kind
        self.runs[(wid, handle.run_id)] = kind  # type: ignore[index]

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), kind=st.sampled_from(sorted(KINDS)), reuse=st.sampled_from(_ops.ID_REUSE_POLICIES),
          conflict=st.sampled_from(_ops.ID_CONFLICT_POLICIES))
    def start_again(self, data: st.DataObject, kind: str, reuse: str, conflict: str) -> None:
        """Start an id that exists: a new run, the running one, or refused, as the policies say."""
        wid = data.draw(st.sampled_from(sorted(self.ids)))
        current = self.client.get_handle(wid).describe()
        workflow, args = KINDS[kind]
        before = store_snapshot(self.client)
        allowed = current.status != "running" and (
            reuse == "allow_duplicate" or (reuse == "allow_duplicate_failed_only" and current.status != "completed"))
        try:
            handle = self.client.start(workflow, *args, id=wid, id_reuse_policy=reuse, id_conflict_policy=conflict)
        except durable.WorkflowAlreadyExists:
            assert not allowed and not (current.status == "running" and conflict == "use_existing")
            assert store_snapshot(self.client) == before
            return
        if current.status == "running":
            assert conflict == "use_existing" and handle.run_id == current.run_id
            assert store_snapshot(self.client) == before
            return
        assert allowed and handle.run_id != current.run_id
        self.ids[wid] = kind
        self.runs[(wid, handle.run_id)] = kind  # type: ignore[index]
        self.opened.discard(wid)

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
            assert self.client.count(status=status) == len(listed)
        for kind, (workflow, _) in KINDS.items():
            name = durable._defs.workflow_def(workflow).name
            listed = {d.workflow_id for d in self.client.list(workflow=name, limit=10**6)}
            assert listed == {wid for wid, k in self.ids.items() if k == kind}, kind
            runs = {(d.workflow_id, d.run_id) for d in self.client.list(workflow=name, limit=10**6, all_runs=True)}
            assert runs == {run for run, k in self.runs.items() if k == kind}, kind
        for wid, events in histories.items():
            desc = self.client.get_handle(wid).describe()
            assert desc.status == folded[wid] == everything[wid].status, wid
            assert desc.history_length == len(events), wid
            assert [e["index"] for e in events] == list(range(len(events))), wid  # no gaps
        # every run, the earlier ones too: listed once, with the status of its own history
        every = {(d.workflow_id, d.run_id): d for d in self.client.list(limit=10**6, all_runs=True)}
        assert set(every) == set(self.runs) and self.client.count(all_runs=True) == len(self.runs)
        for (wid, run_id), desc in every.items():
            events = self.client.get_handle(wid, run_id=run_id).history()
            assert desc.status == status_from_history(events), (wid, run_id)
            assert desc.history_length == len(events), (wid, run_id)
            assert events[0]["kind"] == "WorkflowStarted" and events[0]["id"] == wid


_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]

TestF01StoreViews = StoreViews.TestCase
TestF01StoreViews.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                      suppress_health_check=_HEALTH)


class StoreViewsLong(StoreViews):
    """The same machine, many more and longer runs (--slow)."""


TestF01StoreViewsLong = pytest.mark.slow(StoreViewsLong.TestCase)
TestF01StoreViewsLong.settings = settings(max_examples=300, stateful_step_count=40, deadline=None,
                                          suppress_health_check=_HEALTH)
