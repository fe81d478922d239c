"""Workflow updates with a real worker on a real store: validation refuses without writing
history, handler failures reach the caller, async handlers run activities, concurrent updates,
ordering with signals, exactly once per update id, and what closing does to updates in flight.

The tests under "conformance" mirror the cases of Temporal's features repository (update/...)
that apply here. Run with and without the fast paths (DURABLE_FAST_PATHS=0)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import durable
from tests.conftest import worker_thread
from tests.fault._util import wait_until
from tests.wfs import updates as u

TIMEOUT = 30


def kinds(handle: durable.WorkflowHandle[Any]) -> list[str]:
    return [e["kind"] for e in handle.history()]


@pytest.fixture
def env(data_dir: str) -> Any:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, u.ALL, u.ACTIVITIES):
        yield client


def test_update_returns_the_handlers_value_and_is_recorded(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    assert h.update("add", 3, timeout=TIMEOUT) == 3
    assert h.update("add", 4, timeout=TIMEOUT) == 7
    assert h.query("value") == 7
    hist = h.history()
    accepted = [e for e in hist if e["kind"] == "UpdateAccepted"]
    completed = [e for e in hist if e["kind"] == "UpdateCompleted"]
    assert [e["input"] for e in accepted] == [[3], [4]]
    assert [e["result"] for e in completed] == [3, 7]
    assert [e["uid"] for e in accepted] == [e["uid"] for e in completed]


def test_validator_rejection_writes_nothing_to_history(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    assert h.update("add", 1, timeout=TIMEOUT) == 1
    before = h.history()
    with pytest.raises(durable.UpdateRejected, match="only positive integers can be added, not -5"):
        h.update("add", -5, timeout=TIMEOUT)
    assert h.history() == before
    assert h.query("value") == 1


def test_wrong_argument_count_is_rejected_without_history(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    h.update("add", 1, timeout=TIMEOUT)  # the workers have published their update names by now
    before = h.history()
    with pytest.raises(durable.InvalidArgument, match="update 'add'"):
        h.update("add", 1, 2, timeout=TIMEOUT)
    assert h.history() == before


def test_unknown_update_name_is_refused_naming_the_known_ones(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    h.update("add", 1, timeout=TIMEOUT)
    with pytest.raises(durable.NotRegistered, match="has no update 'nope'.*add"):
        h.update("nope", timeout=TIMEOUT)


def test_handler_failure_reaches_the_caller_and_the_workflow_goes_on(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    with pytest.raises(durable.UpdateFailed, match="Refused: no thanks") as info:
        h.update("fail", "no thanks", timeout=TIMEOUT)
    assert isinstance(info.value.__cause__, durable.ApplicationError)
    assert h.update("add", 2, timeout=TIMEOUT) == 2
    assert h.describe().status == "running"


def test_async_handler_runs_an_activity(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    assert h.update("add_doubled", 5, timeout=TIMEOUT) == 10
    assert "ActivityScheduled" in kinds(h)
    assert h.update("finish", timeout=TIMEOUT) == 10
    assert h.result(TIMEOUT) == 10


def test_same_update_id_gets_the_same_outcome_and_runs_once(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    assert h.update("add", 5, update_id="once", timeout=TIMEOUT) == 5
    assert h.update("add", 5, update_id="once", timeout=TIMEOUT) == 5
    assert h.query("value") == 5
    assert kinds(h).count("UpdateAccepted") == 1
    with pytest.raises(durable.InvalidArgument, match="was used for update 'add'"):
        h.update("fail", "x", update_id="once", timeout=TIMEOUT)


def test_concurrent_updates_each_complete_once(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            results[i] = h.update("add_doubled", i, update_id=f"u{i}", timeout=TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(1, 9)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert h.query("value") == 2 * sum(range(1, 9))
    assert sorted(results.values())[-1] == 2 * sum(range(1, 9))
    assert kinds(h).count("UpdateCompleted") == 8


def test_a_signal_sent_before_an_update_is_seen_by_it(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    h.signal("note", "first")
    assert h.update("seen-signals", timeout=TIMEOUT) == ["first"]
    h.signal("note", "second")
    assert h.update("seen-signals", timeout=TIMEOUT) == ["first", "second"]


def test_update_to_a_closed_workflow_is_refused(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    assert h.update("finish", update_id="f", timeout=TIMEOUT) == 0
    h.result(TIMEOUT)
    with pytest.raises(durable.WorkflowClosed, match="has completed"):
        h.update("add", 1, timeout=TIMEOUT)
    # the outcome of an update it completed is still there for a retried call
    assert h.update("finish", update_id="f", timeout=TIMEOUT) == 0


def test_update_in_flight_when_the_workflow_closes_fails_clearly(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            h.update("slow_add", 1, 3600.0, update_id="slow", timeout=TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    th = threading.Thread(target=call)
    th.start()
    wait_until(lambda: "UpdateAccepted" in kinds(h), what="the update to be accepted")
    assert h.describe().pending_updates == ("slow_add (id slow, accepted)",)
    h.signal("stop")
    assert h.result(TIMEOUT) == 0
    th.join(TIMEOUT)
    assert len(outcome) == 1 and isinstance(outcome[0], durable.UpdateFailed)
    assert "has completed before the update's handler finished" in str(outcome[0])
    assert h.describe().pending_updates == ()


def test_update_in_flight_at_a_continue_as_new_fails_and_the_next_run_takes_updates(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            h.update("slow_add", 1, 3600.0, update_id="slow", timeout=TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    th = threading.Thread(target=call)
    th.start()
    wait_until(lambda: "UpdateAccepted" in kinds(h), what="the update to be accepted")
    h.signal("continue_as_new")
    th.join(TIMEOUT)
    assert len(outcome) == 1 and isinstance(outcome[0], durable.UpdateFailed)
    assert "update 'slow_add' was cancelled: its workflow continued as new" in str(outcome[0])
    assert h.update("add", 2, timeout=TIMEOUT) == 2  # the handle follows the chain: the new run
    assert h.describe().next_run_id is not None  # the first run continued as new


def test_a_bug_in_a_handler_fails_the_task_not_the_workflow(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    with pytest.raises(durable.WaitTimeout, match="waiting for a worker"):
        h.update("buggy", timeout=2)
    wait_until(lambda: h.describe().task_failures > 0, what="the task failure to show")
    assert h.describe().status == "running"
    assert "UpdateAccepted" not in kinds(h)  # the failed task recorded nothing


def test_bad_update_id_is_a_clear_error(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    with pytest.raises(durable.InvalidArgument, match="update id"):
        h.update("add", 1, update_id="", timeout=TIMEOUT)


# --- conformance: Temporal's features repo, update/... ------------------------------------


def test_conformance_basic(env: durable.Client) -> None:
    """update/basic: an update's result comes back to the caller; the workflow completes."""
    h = env.start(u.Counter, id="c")
    assert h.update("add", 1, timeout=TIMEOUT) == 1
    assert h.update("finish", timeout=TIMEOUT) == 1
    assert h.result(TIMEOUT) == 1


@pytest.fixture
def conformance(data_dir: str) -> Any:
    u.task_fails["n"] = 0
    client = durable.Client(data_dir)
    with worker_thread(data_dir, u.ALL + u.CONFORMANCE, u.ACTIVITIES + [u.self_update]):
        yield client


def test_conformance_task_failure(conformance: durable.Client) -> None:
    """update/task_failure: a bug in a handler fails the workflow task, which is retried; a
    failure it raises fails the update; a validator's error refuses it."""
    h = conformance.start(u.TaskFailure, id="tf")
    with pytest.raises(durable.UpdateFailed, match="I'll fail update"):
        h.update("do_update", timeout=TIMEOUT)
    with pytest.raises(durable.UpdateRejected, match="This will fail validation, not task"):
        h.update("throw_or_done", True, timeout=TIMEOUT)
    h.update("throw_or_done", False, timeout=TIMEOUT)
    assert h.result(TIMEOUT) == "Hello, World!"
    assert u.task_fails["n"] == 2


def test_conformance_validation_replay_from_the_features_repo(conformance: durable.Client) -> None:
    """update/validation_replay: the task fails after the update was validated; the next task
    validates it again (nothing was recorded) and accepts it; replaying the finished history
    never runs the validator (which would now refuse)."""
    h = conformance.start(u.ValidationReplay, id="vr")
    h.update("do_update", timeout=TIMEOUT)
    assert h.result(TIMEOUT) == "Hello, World!"
    assert u.task_fails["n"] == 1
    u.task_fails["n"] = 2  # the validator would refuse now
    assert durable.replay(u.ValidationReplay, h.export_history()) == len(h.history())


def test_conformance_self(conformance: durable.Client, data_dir: str) -> None:
    """update/self: an activity of the workflow sends it an update, which lets it finish."""
    h = conformance.start(u.SelfUpdate, data_dir, id="self")
    assert h.result(TIMEOUT) == "Hello, World!"


def test_conformance_validation_replay(env: durable.Client, data_dir: str) -> None:
    """update/validation_replay: a history with rejected and accepted updates replays."""
    h = env.start(u.Counter, id="c")
    with pytest.raises(durable.UpdateRejected):
        h.update("add", 0, timeout=TIMEOUT)
    assert h.update("add", 2, timeout=TIMEOUT) == 2
    assert h.update("finish", timeout=TIMEOUT) == 2
    h.result(TIMEOUT)
    assert durable.replay(u.Counter, h.export_history()) > 0


def test_conformance_activities(env: durable.Client) -> None:
    """update/activities: a handler awaits activities; its result follows theirs."""
    h = env.start(u.Counter, id="c")
    assert h.update("add_doubled", 3, timeout=TIMEOUT) == 6
    assert h.update("add_doubled", 4, timeout=TIMEOUT) == 14


def test_conformance_async_accepted_waits_on_timer(env: durable.Client) -> None:
    """update/async_accepted: a handler that waits on a durable timer; the caller waits too."""
    h = env.start(u.Counter, id="c")
    assert h.update("slow_add", 2, 0.2, timeout=TIMEOUT) == 2
    assert "TimerStarted" in kinds(h)


def test_conformance_deduplication(env: durable.Client) -> None:
    """update/deduplication: two requests with one update id run the handler once."""
    h = env.start(u.Counter, id="c")
    got = [h.update("add_doubled", 1, update_id="dup", timeout=TIMEOUT) for _ in range(3)]
    assert got == [2, 2, 2]
    assert kinds(h).count("UpdateAccepted") == 1
    assert kinds(h).count("ActivityScheduled") == 1


def test_conformance_non_durable_reject(env: durable.Client) -> None:
    """update/non_durable_reject: rejections leave no trace; later updates are accepted."""
    h = env.start(u.Counter, id="c")
    for bad in (0, -1, -2):
        with pytest.raises(durable.UpdateRejected):
            h.update("add", bad, timeout=TIMEOUT)
    assert "UpdateAccepted" not in kinds(h)
    assert h.update("add", 5, timeout=TIMEOUT) == 5


def test_conformance_self_terminating_workflow(env: durable.Client) -> None:
    """update/self: an update that makes the workflow complete gets its result."""
    h = env.start(u.Counter, id="c")
    h.update("add", 3, timeout=TIMEOUT)
    assert h.update("finish", timeout=TIMEOUT) == 3
    assert h.result(TIMEOUT) == 3
    assert kinds(h)[-2:] == ["UpdateCompleted", "WorkflowCompleted"]


def test_conformance_client_interceptor_style_async_client(env: durable.Client, data_dir: str) -> None:
    """update/client_async: the async client's update waits the same way."""
    import trio

    h = env.start(u.Counter, id="c")

    async def main() -> int:
        ah = durable.AsyncClient(data_dir).get_handle("c")
        return await ah.update("add", 9, timeout=TIMEOUT)  # type: ignore[no-any-return]

    assert trio.run(main) == 9
    assert h.query("value") == 9


def test_start_update_returns_once_accepted_and_result_waits(env: durable.Client) -> None:
    h = env.start(u.Counter, id="c")
    uh = h.start_update("slow_add", 4, 0.5, update_id="s1", timeout=TIMEOUT)
    assert (uh.id, uh.name, uh.workflow_id) == ("s1", "slow_add", "c")
    assert "UpdateAccepted" in kinds(h)
    assert uh.result(TIMEOUT) == 4
    assert h.start_update("slow_add", 4, 0.5, update_id="s1", timeout=TIMEOUT).result(TIMEOUT) == 4  # once
    assert h.query("value") == 4
    with pytest.raises(durable.UpdateRejected, match="only positive integers"):
        h.start_update("add", 0, timeout=TIMEOUT)


def test_async_start_update(env: durable.Client, data_dir: str) -> None:
    import trio

    env.start(u.Counter, id="c")

    async def main() -> Any:
        ah = durable.AsyncClient(data_dir).get_handle("c")
        uh = await ah.start_update("add_doubled", 3, timeout=TIMEOUT)
        return uh.id, await uh.result(TIMEOUT)

    uid, value = trio.run(main)
    assert value == 6 and isinstance(uid, str)


def test_a_malformed_update_record_is_refused_clearly_and_the_workflow_goes_on(env: durable.Client) -> None:
    """A request record not written by this code (hostile or corrupt bytes in the store) is
    refused by the next task, never run, and the caller gets a clear error."""
    from durable import _ops, _updates

    h = env.start(u.Counter, id="c")
    assert h.update("add", 1, timeout=TIMEOUT) == 1
    num = env._store.read(lambda t: _ops.load_wf(t, "c"))["num"]

    def plant(t: Any) -> None:  # a pending request whose record lacks its fields
        t.put_rec("query", b"u" + _ops.u64(num) + b"evil", {"st": "p", "name": 7})
        t.put("query", b"P" + _ops.u64(num) + _ops.u64(10**9), b"evil")
        rec = _ops.load_wf(t, "c")
        rec["upd"] = rec.get("upd", 0) + 1
        _ops._enqueue_wft(t, rec)
        _ops._save_wf(t, rec)

    env._store.write(plant)
    key = b"u" + _ops.u64(num) + b"evil"
    wait_until(lambda: env._store.read(lambda t: t.get_rec("query", key)).get("st") == "r",
               what="the malformed request to be refused")
    refused = env._store.read(lambda t: _updates.outcome(t, num, "evil"))
    assert "stored request of update 'evil' is malformed" in env.get_handle("c")._converter.readable_text(refused["rej"])
    assert h.update("add", 2, update_id="evil", timeout=TIMEOUT) == 3  # a refused id is free again
    assert env._store.read(lambda t: _ops.load_wf(t, "c")).get("upd") == 0
