"""Continue-as-new (issue 16, point 2), in the manner of Temporal's features repository
(features/continue_as_new/...): the run closes as continued_as_new and the next run of the id
starts in the same transaction; no signal is lost across it (F13); handles follow the chain;
`durable.info()` tells a workflow when to continue.

Real stores in temporary directories, real workers in threads; the store-level tests drive the
ops a worker drives, on a real LMDB store, to place a signal inside the final workflow task.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import durable
from durable import _continue, _ops
from durable import _events as ev
from durable._codec import encode
from durable._backend import open_store
from examples import account
from tests.conftest import worker_thread
from tests.fault._util import wait_until

TIMEOUT = 20


@durable.workflow
class ContinueAsSame:
    """Temporal's continue_as_same: the first run continues with its input, the second returns it."""

    async def run(self, value: str) -> str:
        if durable.info().continued_from_run_id is not None:
            return value
        durable.continue_as_new(value)


@durable.workflow
async def countdown(n: int, seen: list[str]) -> list[str]:
    """Continues as new `n` times; returns the run ids it went through."""
    seen = [*seen, durable.info().run_id]
    if n == 0:
        return seen
    await durable.sleep(0.01)
    durable.continue_as_new(n - 1, seen)


@durable.workflow
async def swallower() -> str:
    """A broad ``except Exception`` must not swallow continue-as-new."""
    if durable.info().continued_from_run_id is not None:
        return "second run"
    try:
        durable.continue_as_new()
    except Exception:  # noqa: BLE001 - the point of the test
        return "swallowed"


@durable.workflow
async def second_type(x: int) -> int:
    return x * 10


@durable.workflow
async def hand_over(x: int) -> int:
    durable.continue_as_new(x + 1, workflow=second_type)


@durable.activity
async def slow_step() -> str:
    import trio

    await trio.sleep(30)
    return "done"


@durable.workflow
async def leaves_a_nursery() -> str:
    """Continue-as-new from a nursery child: the sibling's activity is cancelled and waited for."""
    if durable.info().continued_from_run_id is not None:
        return "next"

    async def child() -> None:
        await durable.sleep(0.01)
        durable.continue_as_new()

    async with durable.open_nursery() as n:
        n.start_soon(slow_step.with_options(start_to_close=60))
        n.start_soon(child)
    return "not reached"


@durable.workflow
class Restartable:
    """Waits; an async signal handler continues it as new (the main task is cancelled first)."""

    def __init__(self) -> None:
        self.restarts = 0

    async def run(self, restarts: int) -> int:
        self.restarts = restarts
        await durable.sleep(3600)
        return restarts

    @durable.signal
    async def restart(self) -> None:
        await durable.sleep(0.01)
        durable.continue_as_new(self.restarts + 1)

    @durable.query
    def count(self) -> int:
        return self.restarts


@durable.activity
def reserve(x: int) -> int:
    return x


@durable.activity
def release(x: int) -> int:
    return x


@durable.workflow
async def keeps_its_steps(n: int) -> int:
    """Continue-as-new leaving a saga block: the steps stand, nothing is compensated."""
    if n > 0:
        return n
    async with durable.saga() as saga:
        await reserve(1)
        saga.add_compensation(release, 1)
        durable.continue_as_new(n + 1)
    return -1


WORKFLOWS = [keeps_its_steps, Restartable, ContinueAsSame, countdown, swallower, second_type, hand_over, leaves_a_nursery, account.Account]


def serving(data: str, **options: Any) -> Any:
    return worker_thread(data, WORKFLOWS, [slow_step, reserve, release], **options)


def test_continue_as_same_keeps_the_id_and_the_input(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        h = client.start(ContinueAsSame, "InputData", id="TestID")
        assert h.result(timeout=TIMEOUT) == "InputData"  # the started run's handle follows the chain
    first = h.describe()  # a handle bound to a run stays on it
    assert first.status == "continued_as_new"
    assert first.next_run_id is not None
    latest = client.get_handle("TestID").describe()
    assert (latest.status, latest.run_id, latest.previous_run_id) == ("completed", first.next_run_id, h.run_id)
    last = h.history()[-1]
    assert (last["kind"], last["input"], last["type"]) == ("WorkflowContinuedAsNew", ["InputData"], "ContinueAsSame")
    started = client.get_handle("TestID").history()[0]
    assert started["kind"] == "WorkflowStarted" and started["prev"] == h.run_id
    assert [r.status for r in client.list(all_runs=True)] == ["completed", "continued_as_new"]
    for run in (h, client.get_handle("TestID")):
        assert durable.replay(ContinueAsSame, run.export_history()) == len(run.history())


def test_a_chain_of_runs_and_its_result(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        h = client.start(countdown, 5, [], id="c")
        runs = h.result(timeout=TIMEOUT)
    assert len(runs) == 6 and len(set(runs)) == 6 and runs[0] == h.run_id
    listed = client.list(all_runs=True)
    assert [r.run_id for r in reversed(listed)] == runs
    for earlier, later in zip(runs, runs[1:]):
        d = client.get_handle("c", run_id=earlier).describe()
        assert (d.status, d.next_run_id) == ("continued_as_new", later)
        assert client.get_handle("c", run_id=later).describe().previous_run_id == earlier
    assert client.count(status="continued_as_new", all_runs=True) == 5


def test_except_exception_does_not_swallow_it(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        assert client.start(swallower, id="s").result(timeout=TIMEOUT) == "second run"


def test_it_may_start_another_workflow_type(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        h = client.start(hand_over, 4, id="t")
        assert h.result(timeout=TIMEOUT) == 50
    assert client.get_handle("t").describe().workflow_type == "second_type"


def test_from_a_nursery_child_the_sibling_step_is_cancelled_first(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        h = client.start(leaves_a_nursery, id="n")
        assert h.result(timeout=TIMEOUT) == "next"
    kinds = [e["kind"] for e in h.history()]
    # no step outlives its scope: the activity's final event comes before the run's close
    assert kinds.index("ActivityCancelled") < kinds.index("WorkflowContinuedAsNew") == len(kinds) - 1


def test_signals_during_the_final_task_go_to_the_next_run(data_dir: str) -> None:
    """Temporal retries the final task when signals arrive during it (signals_block_continue_as_new);
    here they are carried over to the next run, in order, with nothing refused: a steady stream
    of signals cannot keep an entity from continuing."""
    store = open_store(data_dir)
    payload = encode([0, 3])
    num, _ = store.write(lambda t: _ops.start_workflow(t, "e", "Account", "default", payload, False, False))
    [item] = store.write(lambda t: _ops.claim(t, "default", "w1", 10**10, 1, 0, 0))
    for amount in (1, 2, 3):  # arrive while the task runs: into the inbox
        store.write(lambda t, a=amount: _ops.signal(t, "e", "deposit", encode([a])))
    store.write(lambda t: _ops.request_cancel(t, "e", "stop"))
    command = {"k": ev.WORKFLOW_CONTINUED_AS_NEW, "in": encode([0, 3]), "type": "Account", "queue": "default"}
    status = store.write(lambda t: _ops.complete_workflow_task(t, num, item["token"], [command]))
    assert status == "ok"
    old = store.read(lambda t: _ops.load_run(t, "e", num))
    new = store.read(lambda t: _ops.load_wf(t, "e"))
    assert (old["status"], old["next"], new["prev"], new["status"]) == ("continued_as_new", new["num"], num, "running")
    events = store.read(lambda t: _ops.read_history(t, new["num"]))
    assert [e["k"] for e in events] == ["WorkflowStarted"] + ["SignalReceived"] * 3 + ["CancelRequested"]
    assert [e["in"] for e in events[1:4]] == [encode([1]), encode([2]), encode([3])]
    assert new["cancel"] and new["wft"] == _ops.WFT_QUEUED
    # a signal sent now, to the old run's handle, reaches the new run: there is no window
    client = durable.Client(data_dir)
    client.get_handle("e", run_id=f"{num:x}").signal("deposit", 4)
    assert store.read(lambda t: _ops.read_history(t, new["num"]))[-1]["in"] == encode([4])


def test_an_entity_loses_no_signal_across_many_continues(data_dir: str) -> None:
    client = durable.Client(data_dir)
    senders, per_sender = 4, 60
    with serving(data_dir):
        h = client.start(account.Account, 0, 7, id="acct")
        errors: list[BaseException] = []

        def send(k: int) -> None:
            try:
                for i in range(per_sender):
                    h.signal("deposit", k * 1000 + i)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
        for thread in threads:
            thread.start()
        balance = h.query("current_balance", timeout=TIMEOUT)  # answered meanwhile, by whichever run is current
        assert isinstance(balance, int)
        for thread in threads:
            thread.join()
        assert errors == []
        expected = sum(k * 1000 + i for k in range(senders) for i in range(per_sender))
        wait_until(lambda: h.query("current_balance", timeout=TIMEOUT) == expected, what="every deposit applied")
        h.signal("close_account")
        assert h.result(timeout=TIMEOUT) == expected
    runs = client.list(all_runs=True)
    assert len(runs) > 2 and all(r.status == "continued_as_new" for r in runs[1:])
    received = [e for r in runs for e in client.get_handle("acct", run_id=r.run_id).history()
                if e["kind"] == "SignalReceived" and e["name"] == "deposit"]
    assert sorted(e["input"][0] for e in received) == sorted(k * 1000 + i for k in range(senders) for i in range(per_sender))
    for r in runs:  # each sender's deposits arrive in the order they were sent, across runs
        assert durable.replay(account.Account, client.get_handle("acct", run_id=r.run_id).export_history()) > 0
    order = [e["input"][0] for r in reversed(runs) for e in client.get_handle("acct", run_id=r.run_id).history()
             if e["kind"] == "SignalReceived" and e["name"] == "deposit"]
    for k in range(senders):
        mine = [v for v in order if v // 1000 == k]
        assert mine == sorted(mine)


@durable.workflow
class Chatty:
    """Takes signals until told to look at its history facts."""

    def __init__(self) -> None:
        self.n = 0
        self.facts: list[Any] = []

    async def run(self, goal: int) -> list[Any]:
        await durable.wait_condition(lambda: self.n >= goal)
        i = durable.info()
        return [i.history_length, i.history_size, i.continue_as_new_suggested]

    @durable.signal
    def poke(self, blob: str) -> None:
        self.n += 1


def test_info_reports_the_history_and_suggests_continuing(data_dir: str, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_continue, "SUGGEST_CONTINUE_AS_NEW_EVENTS", 20)
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [Chatty], []), caplog.at_level(logging.WARNING, "durable.workflow"):
        h = client.start(Chatty, 25, id="chatty")
        for _ in range(25):
            h.signal("poke", "x" * 100)
        length, size, suggested = h.result(timeout=TIMEOUT)
    events = h.history()
    assert length == len(events) - 1  # up to the inputs of the last activation, its command excluded
    assert size >= 25 * 100 and suggested is True
    assert any("continue_as_new" in r.getMessage() and "chatty" in r.getMessage() for r in caplog.records)
    # the same facts on replay: a history replays to the same commands
    assert durable.replay(Chatty, h.export_history()) == len(events)


def test_describe_warns_before_the_history_limit(data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_continue, "SUGGEST_CONTINUE_AS_NEW_EVENTS", 5)
    client = durable.Client(data_dir)
    h = client.start(Chatty, 100, id="w")  # no worker: the signals stay in the history
    assert h.describe().history_warning is None
    for _ in range(5):
        h.signal("poke", "x")
    warning = h.describe().history_warning
    assert warning is not None and "6 events" in warning and "continue_as_new" in warning


def test_it_is_refused_in_a_signal_handler(data_dir: str) -> None:
    @durable.workflow
    class Bad:
        async def run(self) -> None:
            await durable.wait_condition(lambda: False)

        @durable.signal
        def go(self) -> None:
            durable.continue_as_new()

    client = durable.Client(data_dir)
    with worker_thread(data_dir, [Bad], []):
        h = client.start(Bad, id="bad")
        h.signal("go")
        d = wait_until(lambda: (lambda d: d if d.task_error else None)(h.describe()), what="the task error")
    assert "signal or query handler" in (d.task_error or "") and d.status == "running"


def test_a_run_at_the_history_limit_can_still_continue(data_dir: str) -> None:
    """A history at its limit fails any other close, but continue-as-new still goes through:
    the new run starts with the signals the old one had not taken in."""
    from durable._limits import MAX_HISTORY_EVENTS

    store = open_store(data_dir)
    blob = encode([1])

    def fill(wid: str) -> int:
        num, _ = store.write(lambda t: _ops.start_workflow(t, wid, "Account", "default", encode([0, 3]), False, False))
        store.write(lambda t: [_ops.signal(t, wid, "deposit", blob) for _ in range(MAX_HISTORY_EVENTS - 1)])
        return num

    for wid, command in [("full-1", {"k": ev.WORKFLOW_COMPLETED, "out": encode(0)}),
                         ("full-2", {"k": ev.WORKFLOW_CONTINUED_AS_NEW, "in": encode([0, 3]), "type": "Account",
                                     "queue": "default"})]:
        num = fill(wid)
        assert store.read(lambda t: _ops.load_wf(t, wid))["hlen"] == MAX_HISTORY_EVENTS
        [item] = store.write(lambda t: _ops.claim(t, "default", "w1", 10**10, 1, 0, 0))
        if command["k"] == ev.WORKFLOW_CONTINUED_AS_NEW:
            store.write(lambda t: _ops.signal(t, wid, "deposit", encode([7])))  # into the inbox
        assert store.write(lambda t: _ops.complete_workflow_task(t, num, item["token"], [command])) == "ok"
        old = store.read(lambda t: _ops.load_run(t, wid, num))
        if command["k"] == ev.WORKFLOW_COMPLETED:
            assert old["status"] == "failed"  # the limit: HistoryLimitError
            last = store.read(lambda t: _ops.read_history(t, num, old["hlen"] - 1))[-1]
            assert last["k"] == ev.WORKFLOW_FAILED and "limit" in last["err"]["msg"]
        else:
            assert old["status"] == "continued_as_new"
            new = store.read(lambda t: _ops.load_wf(t, wid))
            events = store.read(lambda t: _ops.read_history(t, new["num"]))
            assert [e["k"] for e in events] == ["WorkflowStarted", "SignalReceived"] and events[1]["in"] == encode([7])


def test_from_an_async_signal_handler_and_cancel_follows_the_chain(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        h = client.start(Restartable, 0, id="r")
        for i in range(1, 3):
            h.signal("restart")  # the started run's handle: it reaches the latest run
            wait_until(lambda i=i: client.count(all_runs=True) == i + 1 and h.query("count", timeout=TIMEOUT) == i,
                       what=f"restart {i}")
        h.cancel("enough")  # reaches the latest run too
        with pytest.raises(durable.WorkflowFailed) as info:
            h.result(timeout=TIMEOUT)
    assert info.value.status == "cancelled"
    first = [e["kind"] for e in h.history()]
    assert "TimerCancelled" in first and first[-1] == "WorkflowContinuedAsNew"  # main's sleep cancelled first
    assert [r.status for r in client.list(all_runs=True)] == ["cancelled", "continued_as_new", "continued_as_new"]


def test_a_saga_it_leaves_does_not_compensate(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        h = client.start(keeps_its_steps, 0, id="k")
        assert h.result(timeout=TIMEOUT) == 1
    assert [e["name"] for e in h.history() if e["kind"] == "ActivityScheduled"] == ["reserve"]


def test_arguments_that_do_not_fit_fail_the_task_not_the_next_run(data_dir: str) -> None:
    @durable.workflow
    async def wrong_args(x: int) -> None:
        durable.continue_as_new(x, x, x)

    client = durable.Client(data_dir)
    with worker_thread(data_dir, [wrong_args], []):
        h = client.start(wrong_args, 1, id="wa")
        d = wait_until(lambda: (lambda d: d if d.task_error else None)(h.describe()), what="the task error")
    assert "wrong_args" in (d.task_error or "") and d.status == "running" and client.count(all_runs=True) == 1
