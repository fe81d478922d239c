"""The short cuts that make a step cost one transaction, and what they must never change.

- Writes asked for by many threads at once share commits (group commit in `Store.write`), and
  each caller still gets its own result or its own error.
- A worker holding a workflow's live instance records an activity's result together with the
  workflow task it makes (`complete_activities_and_continue`); results that come in together are
  fed to the instance together. If anything else happened to the workflow meanwhile, or the
  attempt lost its lease, the short cut writes what the usual path would have written, or nothing.
- Activities scheduled by a task are claimed in the same transaction (eager dispatch), so they
  never appear in the queue; timers that fire make a task claimed in the firing transaction.
- Clients waiting for results are woken by one watcher thread per store that reads the close log.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest
import trio

import durable
from durable import _ops
from durable._codec import Converter
from tests._pg_util import counter_value
from tests.conftest import FAST_PATHS, needs_fast_paths, worker_thread
from tests.fault._util import wait_until
from tests.wfs import basic
from tests.worker.test_store_fencing import LEASE, Harness, one_step

PLAIN = Converter()


def slow_fallback(monkeypatch: pytest.MonkeyPatch, seconds: float = 120.0) -> None:
    """Make the worker's fallback polls `seconds` apart, in every room of it that polls."""
    for name, module in list(sys.modules.items()):
        if name.startswith("durable.worker.") and hasattr(module, "POLL_FALLBACK_SECONDS"):
            monkeypatch.setattr(module, "POLL_FALLBACK_SECONDS", seconds)


@durable.activity
async def plus(x: int) -> int:
    return x + 1


@durable.workflow
async def fan(x: int) -> list[int]:
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await plus(x + i)

    async with durable.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(one, i)
    return [results[i] for i in range(10)]


@durable.workflow
async def nap_then_step(x: int) -> int:
    await durable.sleep(0.05)
    return await plus(x)


def test_threads_writing_at_once_share_commits_and_each_gets_its_own_result(data_dir: str) -> None:
    client = durable.Client(data_dir)
    client.start(basic.three_steps, 0, id="taken")
    store = client._store
    commits_before = store.commits
    errors: dict[int, list[BaseException]] = {}
    barrier = threading.Barrier(16)

    def starter(n: int) -> None:
        barrier.wait()
        mine: list[BaseException] = []
        for i in range(25):
            client.start(basic.three_steps, i, id=f"t{n}-{i}")
            if i == 10 and n % 4 == 0:
                try:
                    client.start(basic.three_steps, 0, id="taken")
                except durable.WorkflowAlreadyExists as exc:
                    mine.append(exc)
        errors[n] = mine

    threads = [threading.Thread(target=starter, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {n: len(e) for n, e in errors.items()} == {n: (1 if n % 4 == 0 else 0) for n in range(16)}
    ids = {d.workflow_id for d in client.list(limit=10_000)}
    assert ids == {"taken"} | {f"t{n}-{i}" for n in range(16) for i in range(25)}
    for n in (0, 7, 15):  # each start wrote its own input
        assert client.get_handle(f"t{n}-3").history()[0]["input"] == [3]
    writes = 16 * 25 + 4
    assert store.commits - commits_before < writes  # some writes shared a commit


def test_results_that_come_in_together_are_recorded_with_the_task_they_make(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [fan, basic.three_steps], [plus, basic.add_one, basic.double]) as worker:
        handles = [client.start(fan, 10 * i, id=f"fan-{i}") for i in range(5)]
        assert [h.result(timeout=20) for h in handles] == [[10 * i + j + 1 for j in range(10)] for i in range(5)]
        assert client.start(basic.three_steps, 1, id="steps").result(timeout=20) == 5
        assert worker.stats["continued"] >= 5 + 2 or not FAST_PATHS
    for h in handles + [client.get_handle("steps")]:
        history = h.history()
        kinds = [e["kind"] for e in history]
        assert kinds.count("ActivityCompleted") == h.describe().activities_scheduled
        # a result recorded with its task is followed by the task's commands at once
        assert "TaskCompleted" not in kinds or kinds.count("TaskCompleted") < kinds.count("ActivityCompleted")
        assert durable.replay(fan if h.id.startswith("fan") else basic.three_steps, h.export_history()) == len(history)


@needs_fast_paths
def test_eagerly_claimed_activities_never_enter_the_queue(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [fan], [plus]):
        assert client.start(fan, 0, id="fan").result(timeout=20) == list(range(1, 11))
    queued = client._store.read(lambda t: [k for k, _ in t.scan("tasks", b"a")])
    assert queued == []
    assert client.get_handle("fan").describe().activity_attempts == 10
    # every task ever queued takes a number: the ten activities took none (only workflow tasks did)
    enqueued = counter_value(client._store, b"taskseq")
    assert enqueued < 10, enqueued


@needs_fast_paths
def test_a_fired_timer_makes_a_task_the_firing_worker_runs(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [nap_then_step], [plus]) as worker:
        assert [client.start(nap_then_step, i, id=f"n-{i}").result(timeout=20) for i in range(3)] == [1, 2, 3]
        assert worker.stats["timer_claims"] == 3  # each fired timer's task claimed as it fired


def _scheduled_harness(data_dir: str) -> tuple[Harness, dict[str, Any], dict[str, Any]]:
    h = Harness(data_dir)
    [item] = h.claim("A", act=1)
    payload = PLAIN.to_payload("done", "result")
    event = {"k": "ActivityCompleted", "seq": 1, "out": payload, "attempt": 1, "t": h.clock.now_ns()}
    return h, item, event


def test_a_result_continued_on_a_stale_history_is_recorded_as_usual(data_dir: str) -> None:
    h, item, event = _scheduled_harness(data_dir)
    hlen = h.describe().history_length
    done = {"k": "WorkflowCompleted", "out": PLAIN.to_payload(0, "result")}
    # the instance saw one event fewer than the history holds: the short cut must not apply
    accepted, status = h.write(
        lambda t: _ops.complete_activities_and_continue(t, h.num, [(1, item["token"], event)], hlen - 1, [done]))
    assert (accepted, status) == ([True], "plain")
    kinds = [e["kind"] for e in h.history()]
    assert kinds[-1] == "ActivityCompleted" and "WorkflowCompleted" not in kinds
    assert h.describe().status == "running"
    [wft] = h.claim("B", wft=1)  # the usual workflow task follows
    assert wft["hlen"] == hlen + 1


def test_a_result_continued_after_its_lease_ended_writes_nothing(data_dir: str) -> None:
    h, item, event = _scheduled_harness(data_dir)
    hlen = h.describe().history_length
    h.clock.advance(LEASE / 1e9 + 1)  # the lease has passed, even before the clock task saw it
    before = h.history()
    done = {"k": "WorkflowCompleted", "out": PLAIN.to_payload(0, "result")}
    accepted, status = h.write(
        lambda t: _ops.complete_activities_and_continue(t, h.num, [(1, item["token"], event)], hlen, [done]))
    assert (accepted, status) == ([False], "refused")
    assert h.history() == before


def test_a_result_continued_on_the_current_history_closes_the_workflow_in_one_write(data_dir: str) -> None:
    h, item, event = _scheduled_harness(data_dir)
    hlen = h.describe().history_length
    done = {"k": "WorkflowCompleted", "out": PLAIN.to_payload(7, "result")}
    accepted, status = h.write(
        lambda t: _ops.complete_activities_and_continue(t, h.num, [(1, item["token"], event)], hlen, [done]))
    assert (accepted, status) == ([True], "ok")
    assert [e["kind"] for e in h.history()][-2:] == ["ActivityCompleted", "WorkflowCompleted"]
    assert h.client.get_handle("wf").result(timeout=5) == 7


def test_waiting_clients_are_woken_even_when_their_closes_left_the_close_log(
        data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from durable import _client

    monkeypatch.setattr(_ops, "CLOSE_LOG_KEEP", 4)
    monkeypatch.setattr(_client, "POLL_FALLBACK_SECONDS", 120.0)  # only the watcher can wake them in time
    client = durable.Client(data_dir)
    waited = [client.start(basic.Collector, id=f"w-{i}") for i in range(3)]
    others = [client.start(basic.Collector, id=f"o-{i}") for i in range(10)]
    got: dict[str, Any] = {}

    def wait(h: durable.WorkflowHandle) -> None:
        with pytest.raises(durable.WorkflowFailed, match="terminated") as info:
            h.result(timeout=100)
        got[h.id] = info.value.status

    threads = [threading.Thread(target=wait, args=(h,), daemon=True) for h in waited]
    for thread in threads:
        thread.start()
    while len(_client._CloseWatcher.of(client._store)._waiting) < 3:
        threading.Event().wait(0.01)
    # one commit closes the waited ones first, then enough others to push them out of the log
    client._store.write_batch([lambda t, h=h: _ops.terminate(t, h.id, "bye") for h in waited + others])
    deadline = time.monotonic() + 30  # far less than their own timeouts
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert got == {h.id: "terminated" for h in waited}
    newest, ids, gap = client._store.read(lambda t: _ops.closes_since(t, 0))
    assert newest == 13 and gap and ids == [f"o-{i}" for i in range(6, 10)]


@pytest.mark.parametrize("running", [False, True])
def test_a_close_tells_workers_to_look_at_their_attempts_only_if_one_may_run(tmp_path: Any, running: bool) -> None:
    """Every workflow that ends would otherwise make each worker look at all the activities it
    runs; a close says so (`RUNNING_ACTIVITIES`) only when it drops an attempt that may be running."""
    from durable import _wake

    h = Harness(str(tmp_path))
    if running:
        [act] = h.claim("A", act=1)
        assert act["kind"] == "act"
    listener = _wake.Listener(str(tmp_path / "wake"))
    try:
        h.client.get_handle("wf").terminate("test")
        said = listener.drain()
    finally:
        listener.close()
    assert said  # every commit that changes what workers wait for wakes them
    assert (_wake.RUNNING_ACTIVITIES in said) is running


def test_a_workflow_task_run_before_its_claim_is_recorded_only_if_it_is_still_the_same_task(data_dir: str) -> None:
    """An idle worker runs a waiting workflow task, then claims it in the transaction that
    records the outcome. If another worker claimed it meanwhile, or an event came in, the claim
    must fail (the outcome is dropped: a second worker must never record a task twice)."""
    client = durable.Client(data_dir)
    store = client._store
    handles = [client.start(basic.Collector, id=f"c-{i}") for i in range(3)]
    items, rest = store.read(lambda t: _ops.peek_workflow_tasks(t, "default", 8, 64))
    assert [i["id"] for i in items] == ["c-0", "c-1", "c-2"] and not rest
    assert all(i["token"] is None for i in items)
    first, second, third = items
    # the usual claim leaves alone the tasks this worker runs before claiming
    assert store.write(lambda t: _ops.claim(t, "default", "A", LEASE, 8, 0, 0, {first["num"], third["num"]})) \
        and store.read(lambda t: _ops.peek_workflow_tasks(t, "default", 8, 64))[0] == [first, third]
    # another worker took the second one: ours cannot be recorded
    assert store.write(lambda t: _ops.claim_peeked_wft(t, second, "B", LEASE)) is None
    # a signal came in for the third one after we read its history: ours is stale
    handles[2].signal("add", 1)
    assert store.write(lambda t: _ops.claim_peeked_wft(t, third, "B", LEASE)) is None
    # the first is still the same task: claimed, and its outcome recorded
    token = store.write(lambda t: _ops.claim_peeked_wft(t, first, "B", LEASE))
    assert isinstance(token, int)
    assert store.write(lambda t: _ops.claim_peeked_wft(t, first, "C", LEASE)) is None  # only once
    assert store.write(lambda t: _ops.complete_workflow_task(t, first["num"], token, [])) == "ok"
    # many waiting: a busy queue is claimed in batches, not run before claiming
    for i in range(8):
        client.start(basic.Collector, id=f"more-{i}")
    assert store.read(lambda t: _ops.peek_workflow_tasks(t, "default", 8, 64)) == ([], True)


_activation_started = threading.Event()
_signal_sent = threading.Event()


@durable.workflow
class SlowStart:
    """Its first activation holds the engine thread until the test has sent a signal, so that the
    signal comes in after the worker read its history and before it recorded the activation."""

    def __init__(self) -> None:
        self.items: list[int] = []

    async def run(self) -> list[int]:
        _activation_started.set()
        _signal_sent.wait(30)  # later activations find it set
        await durable.wait_condition(lambda: len(self.items) >= 1)
        return self.items

    @durable.signal
    def add(self, item: int) -> None:
        self.items.append(item)


@needs_fast_paths
def test_an_idle_worker_that_loses_a_task_it_ran_before_claiming_runs_it_again_at_once(
        data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    slow_fallback(monkeypatch)  # only a wake-up can make it look again
    with worker_thread(data_dir, workflows=[SlowStart]) as worker:
        client = durable.Client(data_dir)
        handle = client.start(SlowStart, id="slow")
        assert _activation_started.wait(30)  # its first activation runs now, unclaimed
        handle.signal("add", 5)
        _signal_sent.set()
        assert handle.result(timeout=30) == [5]
    # read once the worker stopped (its counters are kept after the commit the client saw)
    assert worker.stats["unclaimed"] >= 2 and worker.stats["unclaimed_lost"] >= 1


_holding = threading.Event()
_release = threading.Event()


@durable.workflow
class HeldThenAsked:
    """Its first activation holds the engine thread until the test lets it go, so that a query
    asked meanwhile waits for that workflow task to end."""

    def __init__(self) -> None:
        self.state = "started"

    async def run(self) -> str:
        _holding.set()
        _release.wait(30)  # later activations find it set
        self.state = "ran"
        await durable.wait_condition(lambda: self.state == "done")
        return self.state

    @durable.query
    def status(self) -> str:
        return self.state

    @durable.signal
    def finish(self) -> None:
        self.state = "done"


def test_a_worker_wakes_itself_for_a_timer_its_own_commit_set(
        data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker's own commits do not come back through its wake-up socket: its clock must be
    # told of a timer due within its fallback wait by the writer itself, or it sleeps until the
    # lease's deadline (60 s here) or the fallback (120 s here).
    slow_fallback(monkeypatch)
    with worker_thread(data_dir, workflows=[nap_then_step], activities=[plus], lease=60):
        client = durable.Client(data_dir)
        assert client.start(nap_then_step, 1, id="nap").result(timeout=20) == 2


def test_a_worker_wakes_itself_for_a_query_that_waited_for_its_own_workflow_task(
        data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A query waits while its workflow's task runs; the commit that ends the task is the
    # worker's own, so only a local wake-up makes its poller claim the query in time.
    slow_fallback(monkeypatch)
    with worker_thread(data_dir, workflows=[HeldThenAsked], lease=60):
        client = durable.Client(data_dir)
        handle = client.start(HeldThenAsked, id="held")
        assert _holding.wait(30)
        answer: list[Any] = []
        asker = threading.Thread(target=lambda: answer.append(handle.query("status", timeout=20)))
        asker.start()
        deadline = time.monotonic() + 20
        while not client._store.read(lambda t: t.first("tasks", b"q")) and time.monotonic() < deadline:
            time.sleep(0.01)  # the query is queued (and waits for the running task)
        _release.set()
        asker.join(30)
        assert answer == ["ran"]
        handle.signal("finish")
        assert handle.result(timeout=20) == "done"


# --- attempts of one eager batch run in one task (Worker._run_inline) ---------------------------


@durable.activity
async def nap_plus(x: int) -> int:
    await trio.sleep(0.01 * (x % 3))  # some wait (each then needs a task of its own), some do not
    return x + 1


@durable.activity(retry=durable.RetryPolicy(max_attempts=1))
async def boom_if_odd(x: int) -> int:
    if x % 2:
        raise ValueError(f"odd {x}")
    return x


@durable.activity(start_to_close=0.3, retry=durable.RetryPolicy(max_attempts=1))
async def sleepy(x: int) -> int:
    await trio.sleep(30 if x else 0)
    return x


@durable.activity(retry=durable.RetryPolicy(max_attempts=1))
async def forever(x: int) -> int:
    await trio.sleep_forever()
    return x


def wait_until_no_attempt_runs(worker: Any) -> None:
    """The store times a step out on its own; the worker must also stop the attempt's code (an
    attempt with no deadline on its scope would sleep on for 30 s, still counted as running)."""
    deadline = time.monotonic() + 10
    while worker._running_acts and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not worker._running_acts


@durable.workflow
async def fan_mixed(n: int) -> list[Any]:
    out: dict[int, Any] = {}

    async def one(i: int) -> None:
        try:
            out[i] = [await nap_plus(i), await boom_if_odd(i)]
        except durable.ActivityError as exc:
            out[i] = ["failed", str(exc.__cause__)]

    async with durable.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return [out[i] for i in range(n)]


@durable.workflow
async def fan_timeouts() -> list[Any]:
    out: dict[int, Any] = {}

    async def one(i: int) -> None:
        try:
            out[i] = await sleepy(i)
        except durable.ActivityError as exc:
            out[i] = exc.kind

    async with durable.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(one, i)
    return [out[i] for i in range(3)]


@durable.workflow
async def fan_cancelled() -> str:
    with durable.move_on_after(0.5):
        async with durable.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(forever, i)
    return "moved on"


def test_an_eager_batch_runs_in_one_task_and_each_attempt_still_gets_its_own_outcome(data_dir: str) -> None:
    with worker_thread(data_dir, workflows=[fan_mixed], activities=[nap_plus, boom_if_odd]) as worker:
        client = durable.Client(data_dir)
        got = client.start(fan_mixed, 6, id="mixed").result(timeout=30)
    assert got == [[1, 0], ["failed", "ValueError: odd 1"], [3, 2], ["failed", "ValueError: odd 3"], [5, 4],
                   ["failed", "ValueError: odd 5"]]
    assert worker.stats["inline"] >= 6 or not FAST_PATHS  # the first fan-out of six went through the runner at least


def test_a_waiting_attempt_of_an_eager_batch_keeps_its_start_to_close_timeout(data_dir: str) -> None:
    with worker_thread(data_dir, workflows=[fan_timeouts], activities=[sleepy]) as worker:
        client = durable.Client(data_dir)
        assert client.start(fan_timeouts, id="timeouts").result(timeout=20) == [0, "timed_out", "timed_out"]
        wait_until_no_attempt_runs(worker)
    assert worker.stats["inline"] == (3 if FAST_PATHS else 0)


def test_waiting_attempts_of_an_eager_batch_are_cancelled_with_their_scope(data_dir: str) -> None:
    with worker_thread(data_dir, workflows=[fan_cancelled], activities=[forever]) as worker:
        client = durable.Client(data_dir)
        handle = client.start(fan_cancelled, id="cancelled")
        assert handle.result(timeout=20) == "moved on"
        kinds = [e["k"] for e in client._store.read(lambda t: _ops.read_history(t, 1))]
    assert kinds.count("ActivityCancelled") == 4 and worker.stats["inline"] == (4 if FAST_PATHS else 0)


# --- attempts a run's rounds claim start in the rounds' task (Worker._step_here) -----------------


@durable.activity
async def plus_one(x: int) -> int:
    return x + 1  # never waits: it finishes in its first step


@durable.workflow
async def seq_timeout() -> list[Any]:
    out: list[Any] = [await plus_one(0)]  # its result's round claims the next step and starts it
    try:
        out.append(await sleepy(1))  # waits: the rounds' task becomes its own, with its deadline
    except durable.ActivityError as exc:
        out.append(exc.kind)
    out.append(await plus_one(2))
    return out


@durable.workflow
async def seq_cancelled() -> list[Any]:
    out: list[Any] = [await plus_one(0)]
    with durable.move_on_after(0.5):
        out.append(await forever(1))
    out.append(await plus_one(2))
    return out


def test_a_waiting_step_started_by_its_runs_rounds_keeps_its_start_to_close_timeout(data_dir: str) -> None:
    with worker_thread(data_dir, workflows=[seq_timeout], activities=[plus_one, sleepy]) as worker:
        client = durable.Client(data_dir)
        assert client.start(seq_timeout, id="seq-timeout").result(timeout=20) == [1, "timed_out", 3]
        wait_until_no_attempt_runs(worker)
    assert worker.stats["continued"] >= 1 or not FAST_PATHS  # the second step was claimed by its run's round


def test_a_waiting_step_started_by_its_runs_rounds_is_cancelled_with_its_scope(data_dir: str) -> None:
    with worker_thread(data_dir, workflows=[seq_cancelled], activities=[plus_one, forever]) as worker:
        client = durable.Client(data_dir)
        assert client.start(seq_cancelled, id="seq-cancelled").result(timeout=20) == [1, 3]
        kinds = [e["k"] for e in client._store.read(lambda t: _ops.read_history(t, 1))]
    assert kinds.count("ActivityCancelled") == 1 and (worker.stats["continued"] >= 1 or not FAST_PATHS)


@durable.activity
async def waits_then_plus(x: int) -> int:
    await trio.sleep(0.05)
    return x + 1


_failed_once: set[int] = set()


@durable.activity(retry=durable.RetryPolicy(initial_interval=0.01))
async def fails_once_then_plus(x: int) -> int:
    if x not in _failed_once:
        _failed_once.add(x)
        raise RuntimeError(f"first try of {x}")
    return x + 1


@durable.workflow
async def mixed_fan(x: int) -> list[int]:
    """Three async activities at once: one finishes at once, one waits, one fails its first try."""
    results: dict[int, int] = {}

    async def one(i: int, step: Any) -> None:
        results[i] = await step(x + i)

    async with durable.open_nursery() as nursery:
        for i, step in enumerate((plus, waits_then_plus, fails_once_then_plus)):
            nursery.start_soon(one, i, step)
    return [results[i] for i in range(3)]


def _commits(client: durable.Client) -> int:
    """Write transactions committed to the store (LMDB: by every process; PostgreSQL: by this
    one, where the tests run their worker in a thread)."""
    store: Any = client._store
    if hasattr(store, "env"):
        return int(store.env.info()["last_txnid"])
    return int(store.commits)


@needs_fast_paths
def test_a_new_task_whose_activities_finish_at_once_is_recorded_with_them_and_the_next_task_in_one_commit(
        data_dir: str) -> None:
    """Running ahead (`Worker._run_ahead`): an idle worker runs a new fan-out's ten activities before
    recording the task that scheduled them, and records that task, the ten results and the task
    they make (the workflow's end) in one transaction: two commits in all with the start, where
    recording the task first takes three. The history is the one the usual path writes."""
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [fan], [plus]) as worker:
        before = _commits(client)
        assert client.start(fan, 0, id="fan").result(timeout=20) == list(range(1, 11))
        # on PostgreSQL the count is this process's, taken by the worker's writer once its COMMIT
        # returns, which may be after the client saw the workflow end (seen once in CI)
        wait_until(lambda: _commits(client) - before >= 2, timeout=10, what="the commits to be counted")
        assert _commits(client) - before == 2
        # counted by the worker once the commit is back, which may be after the client saw it
        assert wait_until(lambda: worker.stats["ahead"] == 1, timeout=10, what="the worker to count it")
    history = client.get_handle("fan").history()
    kinds = [e["kind"] for e in history]
    assert kinds == ["WorkflowStarted"] + ["ActivityScheduled"] * 10 + ["ActivityCompleted"] * 10 + ["WorkflowCompleted"]
    assert all(e["attempt"] == 1 for e in history if e["kind"] == "ActivityCompleted")
    times = [e["time"] for e in history]
    assert times == sorted(times)  # the task's events are dated when its activities started
    description = client.get_handle("fan").describe()
    assert (description.activities_scheduled, description.activity_attempts) == (10, 10)
    assert client._store.read(lambda t: [k for k, _ in t.scan("act", b"")]) == []  # no attempt left behind
    assert durable.replay(fan, client.get_handle("fan").export_history()) == len(history)


def test_activities_run_ahead_that_wait_or_fail_go_on_under_the_claims_of_their_recorded_task(data_dir: str) -> None:
    """When an activity run ahead does not finish at once, the task is recorded the usual way with
    every activity claimed: the results so far are recorded under those claims, the one that waits
    goes on (and reports under its claim), and a failure is retried as usual."""
    client = durable.Client(data_dir)
    _failed_once.clear()
    with worker_thread(data_dir, [mixed_fan], [plus, waits_then_plus, fails_once_then_plus]) as worker:
        assert client.start(mixed_fan, 10, id="mixed").result(timeout=20) == [11, 12, 13]
        assert worker.stats["ahead"] == 0 and worker.stats["wft"] >= 1
    history = client.get_handle("mixed").history()
    completed = {e["seq"]: e["attempt"] for e in history if e["kind"] == "ActivityCompleted"}
    assert completed == {1: 1, 2: 1, 3: 2}
    assert [e["kind"] for e in history].count("ActivityScheduled") == 3
    description = client.get_handle("mixed").describe()
    assert (description.activity_attempts, description.activity_retries) == (4, 1)
    assert client._store.read(lambda t: [k for k, _ in t.scan("act", b"")]) == []


def test_a_task_run_ahead_is_recorded_only_under_its_lease_and_without_its_next_task_if_signals_came_in(
        data_dir: str) -> None:
    """`_ops.complete_task_run_ahead`: under a lost token nothing is written; with a signal in the
    inbox (it came in while the task ran), the task and the results are recorded but not the
    next task's commands, which did not see the signal ("plain"): a new task is queued instead."""
    h = Harness(data_dir)  # wf's first task is recorded; its activity seq 1 is queued
    h.client.start(one_step, id="w2")
    [wft] = h.claim("A", wft=1)
    num, now = wft["num"], h.clock.now_ns()
    payload = PLAIN.to_payload([1], "input")
    schedule = {"k": "ActivityScheduled", "seq": 1, "name": "step", "in": payload, "opts": {}}
    result = {"k": "ActivityCompleted", "seq": 1, "out": PLAIN.to_payload(2, "r"), "attempt": 1, "t": now}
    done = {"k": "WorkflowCompleted", "out": PLAIN.to_payload(2, "result")}

    def run_ahead(token: int) -> Any:
        return h.write(lambda t: _ops.complete_task_run_ahead(t, num, token, now, [schedule], [result], 2, [done]))

    before = h.client.get_handle("w2").history()
    assert run_ahead(wft["token"] + 1000) == ("lost", None)
    assert h.client.get_handle("w2").history() == before
    h.client.get_handle("w2").signal("poke", "x")  # into the inbox: the task runs
    assert run_ahead(wft["token"]) == ("ok", "plain")
    kinds = [e["kind"] for e in h.client.get_handle("w2").history()]
    assert kinds == ["WorkflowStarted", "ActivityScheduled", "SignalReceived", "ActivityCompleted"]
    d = h.client.get_handle("w2").describe()
    assert (d.status, d.activities_scheduled, d.activity_attempts) == ("running", 1, 1)
    assert h.claim("B", wft=1)[0]["num"] == num  # the next task is queued, to run on the whole history
    assert h.store.read(lambda t: t.get_rec("act", _ops.u64x2(num, 1))) is None  # no attempt record
