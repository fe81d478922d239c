"""Retries, timeouts, heartbeats and unencodable results, with exact attempt counts.

A real worker (in a thread) and a real store in a temporary directory. Activities record every
attempt they start in `CALLS`, so each test can count attempts from the activity's side as well as
from the store's (`describe()` and the history).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

import pytest
import trio

import durable
from tests.conftest import worker_thread
from tests.fault._util import assert_each_step_recorded_once, final_events_by_seq, history, store_snapshot, wait_until

CALLS: dict[str, list[durable.ActivityInfo]] = defaultdict(list)
RETURNED: dict[str, list[int]] = defaultdict(list)
_lock = threading.Lock()


def _record() -> durable.ActivityInfo:
    info = durable.activity_info()
    with _lock:
        CALLS[info.workflow_id].append(info)
    return info


class Fatal(Exception):
    """An error type a retry policy names as non-retryable."""


POLICY = durable.RetryPolicy(max_attempts=5, initial_interval=0.05, backoff=2.0, max_interval=0.2)


@durable.activity(retry=POLICY)
def always_fails() -> None:
    info = _record()
    raise RuntimeError(f"attempt {info.attempt} failed")


@durable.activity(retry=POLICY)
def fails_non_retryable() -> None:
    _record()
    raise durable.ApplicationError("the card was declined", type="CardDeclined", non_retryable=True)


@durable.activity(retry=durable.RetryPolicy(max_attempts=5, initial_interval=0.01, non_retryable=(Fatal, "KeyError")))
def fails_fatal(which: str) -> None:
    _record()
    if which == "type":
        raise Fatal("no point retrying")
    raise KeyError("missing")


@durable.activity(start_to_close=0.5, retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.05))
def late_then_quick() -> str:
    info = _record()
    if info.attempt == 1:
        time.sleep(1.5)  # a plain thread: the worker cannot interrupt it, so it tries to complete late
        with _lock:
            RETURNED[info.workflow_id].append(info.attempt)
        return "late"
    return f"attempt-{info.attempt}"


@durable.activity(start_to_close=2.0, retry=durable.RetryPolicy(max_attempts=5, initial_interval=0.05))
def late_overlaps_retry() -> str:
    info = _record()
    if info.attempt == 1:
        time.sleep(2.4)  # outlives its start_to_close and ends while attempt 2 still runs
        return "late"
    time.sleep(1.6)  # runs on well past the worker's lease (0.6 s) after attempt 1 ended
    return f"attempt-{info.attempt}"


@durable.activity(heartbeat=0.6, retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.05))
async def beats_then_hangs() -> dict[str, Any]:
    info = _record()
    durable.heartbeat({"reached": info.attempt})
    if info.attempt < 3:
        await trio.sleep(30)  # stops heartbeating: the store times the attempt out
    return {"previous": info.heartbeat_details, "attempt": info.attempt}


@durable.activity(heartbeat=0.5, retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.05))
def beats_without_details() -> int:
    info = _record()
    for _ in range(30):  # 1.5 s in all, three times the heartbeat timeout
        durable.heartbeat()
        time.sleep(0.05)
    return info.attempt


@durable.activity(schedule_to_close=0.5, retry=durable.RetryPolicy(max_attempts=5, initial_interval=0.05))
async def hangs() -> None:
    _record()
    await trio.sleep(30)


@durable.activity(
    schedule_to_close=2.0, retry=durable.RetryPolicy(max_attempts=10, initial_interval=1.2, backoff=1.0)
)
def fails_until_deadline() -> None:
    info = _record()
    raise RuntimeError(f"attempt {info.attempt} failed")


@durable.activity(retry=durable.RetryPolicy(max_attempts=5, initial_interval=0.01))
def unencodable() -> object:
    _record()
    return object()


ACTIVITIES = {
    a.name: a
    for a in (
        always_fails, fails_non_retryable, fails_fatal, late_then_quick, late_overlaps_retry,
        beats_then_hangs, beats_without_details, hangs, fails_until_deadline, unencodable,
    )
}


@durable.workflow
async def call(name: str, *args: Any) -> dict[str, Any]:
    """Call activity `name`; return its result or a description of its `ActivityError`."""
    try:
        return {"ok": await ACTIVITIES[name](*args)}
    except durable.ActivityError as exc:
        cause = exc.__cause__
        return {
            "kind": exc.kind, "attempts": exc.attempts, "type": getattr(cause, "type", None),
            "message": str(exc), "non_retryable": getattr(cause, "non_retryable", None),
        }


def run(data_dir: str, wid: str, name: str, *args: Any, timeout: float = 20.0, **worker: Any) -> tuple[dict[str, Any], Any]:
    """Run `call(name, *args)` to its end on a worker thread; return (result, description)."""
    worker.setdefault("lease", 1.0)
    worker.setdefault("graceful_timeout", 0.5)
    with worker_thread(data_dir, [call], list(ACTIVITIES.values()), **worker):
        client = durable.Client(data_dir)
        result = client.start(call, name, *args, id=wid).result(timeout=timeout)
        return result, client.get_handle(wid).describe()


def attempts(wid: str) -> list[int]:
    with _lock:
        return [info.attempt for info in CALLS[wid]]


# --- F10: bounded retries, capped backoff, non-retryable errors ----------------------------------


def test_f10_always_failing_step_runs_exactly_max_attempts(data_dir: str) -> None:
    result, desc = run(data_dir, "f10", "always_fails")
    assert result["kind"] == "failed" and result["attempts"] == 5
    assert result["type"] == "RuntimeError" and "attempt 5 failed" in result["message"]
    assert attempts("f10") == [1, 2, 3, 4, 5]
    assert (desc.activities_scheduled, desc.activity_attempts, desc.activity_retries) == (1, 5, 4)
    events = history(durable.Client(data_dir), "f10")
    [failed] = final_events_by_seq(events)[1]
    assert failed["kind"] == "ActivityFailed" and failed["attempt"] == 5 and failed["why"] == "failed"
    # F03: the idempotency key is the same on every attempt
    keys = {info.idempotency_key for info in CALLS["f10"]}
    assert len(keys) == 1 and "f10" in keys.pop()
    # each retry waited at least the policy's delay after the previous attempt started
    starts = [info.started_at for info in CALLS["f10"]]
    for n in range(1, 5):
        gap = (starts[n] - starts[n - 1]).total_seconds()
        assert gap >= POLICY.delay(n) - 0.001, (n, gap)


def test_f10_backoff_grows_then_caps_and_never_overflows() -> None:
    policy = durable.RetryPolicy(max_attempts=100, initial_interval=0.05, backoff=2.0, max_interval=0.2)
    assert [policy.delay(n) for n in range(1, 7)] == pytest.approx([0.05, 0.1, 0.2, 0.2, 0.2, 0.2])
    delays = [policy.delay(n) for n in range(1, 2000)]
    assert all(a <= b for a, b in zip(delays, delays[1:]))
    for huge in (1_000, 1_000_000, 2**63, 10**30, 2**1000):
        assert policy.delay(huge) == 0.2
    steep = durable.RetryPolicy(initial_interval=1.0, backoff=100.0, max_interval=86_400.0)
    assert steep.delay(1) == 1.0 and steep.delay(2) == 100.0 and steep.delay(10**9) == 86_400.0
    assert durable.RetryPolicy(initial_interval=0.0).delay(10**9) == 0.0
    assert durable.RetryPolicy(initial_interval=5.0, max_interval=1.0).delay(1) == 1.0
    assert durable.RetryPolicy(initial_interval=0.3, backoff=1.0).delay(10**12) == pytest.approx(0.3)
    # every policy is bounded: no "retry forever", no nonsense intervals
    for bad in (dict(max_attempts=0), dict(max_attempts=10**7), dict(max_attempts=1.5),
                dict(backoff=0.5), dict(backoff=float("inf")), dict(initial_interval=-1.0),
                dict(max_interval=float("nan"))):
        with pytest.raises(durable.InvalidArgument):
            durable.RetryPolicy(**bad)  # type: ignore[arg-type]


def test_f10_non_retryable_application_error_stops_at_once(data_dir: str) -> None:
    result, desc = run(data_dir, "f10-nr", "fails_non_retryable")
    assert result["kind"] == "failed" and result["attempts"] == 1
    assert result["type"] == "CardDeclined" and result["non_retryable"] is True
    assert attempts("f10-nr") == [1]
    assert (desc.activity_attempts, desc.activity_retries) == (1, 0)


@pytest.mark.parametrize("which, expected_type", [
    ("type", f"{__name__}.Fatal"),
    ("name", "KeyError"),
])
def test_f10_policy_non_retryable_types_stop_at_once(data_dir: str, which: str, expected_type: str) -> None:
    wid = f"f10-policy-{which}"
    result, desc = run(data_dir, wid, "fails_fatal", which)
    assert result["kind"] == "failed" and result["attempts"] == 1 and result["type"] == expected_type
    assert attempts(wid) == [1]
    assert (desc.activity_attempts, desc.activity_retries) == (1, 0)


# --- F06: a timed-out attempt is fenced ---------------------------------------------------------


def test_f06_late_result_of_timed_out_attempt_is_refused(data_dir: str) -> None:
    wid = "f06"
    with worker_thread(data_dir, [call], list(ACTIVITIES.values()), lease=1.0, graceful_timeout=3.0) as worker:
        client = durable.Client(data_dir)
        assert client.start(call, "late_then_quick", id=wid).result(timeout=20) == {"ok": "attempt-2"}
        before = history(client, wid)
        # attempt 1 wakes up later and tries to complete: the store refuses it
        wait_until(lambda: RETURNED[wid] == [1] and worker.stats["refused"] == 1, timeout=10,
                   what="the late attempt's result to be refused")
        assert history(client, wid) == before
    assert attempts(wid) == [1, 2]
    [done] = final_events_by_seq(before)[1]
    assert done["kind"] == "ActivityCompleted" and done["attempt"] == 2 and done["result"] == "attempt-2"
    assert "late" not in [e.get("result") for e in before]
    desc = client.get_handle(wid).describe()
    assert (desc.activity_attempts, desc.activity_retries) == (2, 1)


def test_f06_late_attempt_ending_does_not_cost_its_retry_the_lease(data_dir: str) -> None:
    """Attempt 1 ends (refused) while attempt 2 runs on the same worker: attempt 2 keeps its
    lease by heartbeat and is the one recorded; nothing else runs."""
    wid = "f06-overlap"
    result, desc = run(data_dir, wid, "late_overlaps_retry", lease=0.6, graceful_timeout=3.0)
    assert result == {"ok": "attempt-2"}
    assert attempts(wid) == [1, 2]
    assert (desc.activity_attempts, desc.activity_retries) == (2, 1)


# --- heartbeats and the timeouts --------------------------------------------------------------


@pytest.mark.parametrize("lease", [1.0, 10.0])
def test_heartbeat_timeout_retries_and_next_attempt_reads_details(data_dir: str, lease: float) -> None:
    """The worker sends an attempt's heartbeat details in time even when its lease is much longer
    than the activity's heartbeat timeout (it must not sleep a third of the lease first)."""
    wid = f"hb-{lease:g}"
    result, desc = run(data_dir, wid, "beats_then_hangs", lease=lease)
    assert result == {"ok": {"previous": {"reached": 2}, "attempt": 3}}
    assert attempts(wid) == [1, 2, 3]
    infos = CALLS[wid]
    assert [i.heartbeat_details for i in infos] == [None, {"reached": 1}, {"reached": 2}]
    assert len({i.idempotency_key for i in infos}) == 1  # F03
    assert (desc.activity_attempts, desc.activity_retries) == (3, 2)


def test_heartbeat_without_details_keeps_the_attempt_alive(data_dir: str) -> None:
    wid = "hb-plain"
    result, desc = run(data_dir, wid, "beats_without_details")
    assert result == {"ok": 1}
    assert attempts(wid) == [1]
    assert (desc.activity_attempts, desc.activity_retries) == (1, 0)


def test_schedule_to_close_ends_a_hanging_attempt(data_dir: str) -> None:
    wid = "s2close-hang"
    result, desc = run(data_dir, wid, "hangs")
    assert result["kind"] == "timed_out" and result["attempts"] == 1
    assert result["type"] == "ScheduleToCloseTimeout"
    assert attempts(wid) == [1]
    assert (desc.activity_attempts, desc.activity_retries) == (1, 0)
    [failed] = final_events_by_seq(history(durable.Client(data_dir), wid))[1]
    assert failed["kind"] == "ActivityFailed" and failed["why"] == "timed_out" and failed["attempt"] == 1


def test_schedule_to_close_stops_retries_that_would_pass_it(data_dir: str) -> None:
    """Attempt 2 starts 1.2 s after attempt 1; a third would start after the 2 s deadline: the
    step ends as timed out (Temporal's schedule-to-close timeout), the last error its cause."""
    wid = "s2close-retry"
    result, desc = run(data_dir, wid, "fails_until_deadline")
    assert result["kind"] == "timed_out" and result["attempts"] == 2 and result["type"] == "ScheduleToCloseTimeout"
    [failed] = final_events_by_seq(history(durable.Client(data_dir), wid))[1]
    assert failed["why"] == "timed_out" and failed["error"]["cause"]["type"] == "RuntimeError"
    assert failed["error"]["cause"]["msg"] == "attempt 2 failed"
    assert attempts(wid) == [1, 2]
    assert (desc.activity_attempts, desc.activity_retries) == (2, 1)


# --- F08: a result that cannot be stored ----------------------------------------------------------


def test_f08_unencodable_result_fails_once_with_a_clear_error(data_dir: str) -> None:
    wid = "f08"
    result, desc = run(data_dir, wid, "unencodable")
    assert result["kind"] == "failed" and result["attempts"] == 1
    assert result["type"] == "PayloadError" and result["non_retryable"] is True
    assert "result of activity 'unencodable' cannot be stored: object: not plain data (pass None" in result["message"]
    assert attempts(wid) == [1]
    assert (desc.activity_attempts, desc.activity_retries) == (1, 0)
    assert_each_step_recorded_once(history(durable.Client(data_dir), wid), wid)


def test_f08_unencodable_arguments_raise_and_write_nothing(data_dir: str) -> None:
    client = durable.Client(data_dir)
    before = store_snapshot(client)
    with pytest.raises(durable.PayloadError, match=r"input of workflow 'call' cannot be stored: \[1\]: object: not plain data"):
        client.start(call, "always_fails", object(), id="f08-start")
    with pytest.raises(durable.PayloadError, match=r"cannot be stored: \[1\]\[\"k\"\]: function: not plain data"):
        client.start(call, "always_fails", {"k": lambda: None}, id="f08-start")
    assert store_snapshot(client) == before
    assert client.list() == []
    with pytest.raises(durable.WorkflowNotFound):
        client.get_handle("f08-start").describe()
