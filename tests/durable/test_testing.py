"""`durable.testing`: a real worker in process on a temporary store, with a clock that skips.

Each behaviour is tested with both forms: `Environment` (``async with``, trio tests) and
`SyncEnvironment` (``with``, plain functions). What shows that time skipped is the workflow's
own clock (`durable.now()`, history times) and the environment's (`env.now()`): a day passes
there while the test waits with a real timeout of a minute.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

import durable
import durable.testing
from durable.testing import Environment, SyncEnvironment
from examples.hello import Approval, add_one, double, three_steps
from tests.fault._util import wait_until

DAY = 86_400
WAIT = 60  # a real timeout: these workflows wait a day or an hour of the environment's time


@durable.workflow
async def sleeps_a_day() -> float:
    start = durable.now()
    await durable.sleep(DAY)
    return (durable.now() - start).total_seconds()


_failures: dict[str, int] = {}


@durable.activity(retry=durable.RetryPolicy(initial_interval=3600, max_interval=3600, max_attempts=3))
def flaky(key: str) -> str:
    """Fails its first attempt for each key; the retry waits an hour."""
    _failures[key] = _failures.get(key, 0) + 1
    if _failures[key] == 1:
        raise RuntimeError("first attempt fails")
    return f"ok after {_failures[key]}"


@durable.workflow
async def retries_after_an_hour(key: str) -> str:
    return await flaky(key)


@durable.workflow
class Ticker:
    """Records the workflow's time after each of three 10 s timers."""

    def __init__(self) -> None:
        self.ticks: list[str] = []

    async def run(self) -> list[str]:
        for _ in range(3):
            await durable.sleep(10)
            self.ticks.append(durable.now().isoformat())
        return self.ticks

    @durable.query
    def count(self) -> int:
        return len(self.ticks)


@durable.activity(start_to_close=5, retry=durable.RetryPolicy(max_attempts=1))
async def takes_a_while() -> str:
    await trio.sleep(0.3)  # real time: had the clock jumped past its 5 s deadline meanwhile, it would time out
    return "done"


@durable.workflow
async def activity_beside_a_timer() -> str:
    async with durable.open_nursery() as nursery:
        nursery.start_soon(durable.sleep, 3600)
        result = await takes_a_while()
    return result


@durable.activity
def charge(amount: int) -> str:
    raise AssertionError("the real charge must not run in these tests")


@durable.workflow
async def order(amount: int) -> str:
    return await charge(amount)


def _history_kinds(handle: durable.WorkflowHandle[Any]) -> list[str]:
    return [e["kind"] for e in handle.history()]


# --- a day-long sleep completes at once -------------------------------------------------------


def _check_slept_a_day(env: Environment | SyncEnvironment, handle: durable.WorkflowHandle[Any], slept: float,
                       before: dt.datetime) -> None:
    assert slept >= DAY
    assert env.now() - before >= dt.timedelta(seconds=DAY)
    events = handle.history()
    [fired] = [e for e in events if e["kind"] == "TimerFired"]
    assert fired["time"] - events[0]["time"] >= dt.timedelta(seconds=DAY)


def test_a_day_long_sleep_completes_at_once_sync() -> None:
    with SyncEnvironment(workflows=[sleeps_a_day]) as env:
        before = env.now()
        handle = env.start(sleeps_a_day, id="sleeper")
        slept = handle.result(timeout=WAIT)  # a handle of env.client lets time skip too
        _check_slept_a_day(env, handle, slept, before)


async def test_a_day_long_sleep_completes_at_once_trio() -> None:
    async with Environment(workflows=[sleeps_a_day]) as env:
        before = env.now()
        handle = env.start(sleeps_a_day, id="sleeper")
        slept = await env.result(handle, timeout=WAIT)
        _check_slept_a_day(env, handle, slept, before)


def test_time_does_not_skip_while_nobody_waits_for_a_result() -> None:
    with SyncEnvironment(workflows=[Ticker]) as env:
        before = env.now()
        handle = env.start(Ticker, id="ticker")
        assert handle.query("count") == 0  # the worker ran its first task: it waits on its timer
        assert handle.describe().status == "running"
        assert env.now() - before < dt.timedelta(seconds=10)


# --- an hour-long retry backoff completes at once ----------------------------------------------


def _check_retried_after_an_hour(handle: durable.WorkflowHandle[Any]) -> None:
    events = handle.history()
    scheduled = next(e for e in events if e["kind"] == "ActivityScheduled")
    done = next(e for e in events if e["kind"] == "ActivityCompleted")
    assert done["attempt"] == 2
    assert done["time"] - scheduled["time"] >= dt.timedelta(seconds=3600)


def test_an_hour_long_retry_backoff_completes_at_once_sync() -> None:
    with SyncEnvironment(workflows=[retries_after_an_hour], activities=[flaky]) as env:
        handle = env.start(retries_after_an_hour, "sync", id="retry")
        assert env.result(handle, timeout=WAIT) == "ok after 2"
        _check_retried_after_an_hour(handle)


async def test_an_hour_long_retry_backoff_completes_at_once_trio() -> None:
    async with Environment(workflows=[retries_after_an_hour], activities=[flaky]) as env:
        handle = env.start(retries_after_an_hour, "trio", id="retry")
        assert await env.result(handle, timeout=WAIT) == "ok after 2"
        _check_retried_after_an_hour(handle)


# --- a timer racing a signal behaves as in real time ----------------------------------------


def test_a_signal_sent_before_waiting_wins_over_the_timer_sync() -> None:
    with SyncEnvironment(workflows=[Approval]) as env:
        handle = env.start(Approval, {"amount": 10}, id="ap")
        handle.signal("decide", "approved")
        assert env.result(handle, timeout=WAIT) == "approved"
        assert "TimerFired" not in _history_kinds(handle)


async def test_a_signal_sent_before_waiting_wins_over_the_timer_trio() -> None:
    async with Environment(workflows=[Approval]) as env:
        handle = env.start(Approval, {"amount": 10}, id="ap")
        handle.signal("decide", "approved")
        assert await env.result(handle, timeout=WAIT) == "approved"
        assert "TimerFired" not in _history_kinds(handle)


def test_a_signal_within_the_timeout_after_sleeping_by_hand_sync() -> None:
    with SyncEnvironment(workflows=[Approval]) as env:
        before = env.now()
        handle = env.start(Approval, {"amount": 10}, id="ap")
        env.sleep(3599)
        assert env.now() - before >= dt.timedelta(seconds=3599)
        assert handle.query("status") == "pending"
        handle.signal("decide", "late but in time")
        assert env.result(handle, timeout=WAIT) == "late but in time"
        assert "TimerFired" not in _history_kinds(handle)


async def test_a_signal_within_the_timeout_after_sleeping_by_hand_trio() -> None:
    async with Environment(workflows=[Approval]) as env:
        before = env.now()
        handle = env.start(Approval, {"amount": 10}, id="ap")
        await env.sleep(3599)
        assert env.now() - before >= dt.timedelta(seconds=3599)
        assert handle.query("status") == "pending"
        handle.signal("decide", "late but in time")
        assert await env.result(handle, timeout=WAIT) == "late but in time"
        assert "TimerFired" not in _history_kinds(handle)


def _check_timed_out(handle: durable.WorkflowHandle[Any], err: durable.WorkflowFailed) -> None:
    assert "TooSlowError: wait_condition: the condition did not hold within 3600 s" in str(err)
    kinds = _history_kinds(handle)
    assert "TimerFired" in kinds and "SignalReceived" not in kinds


def test_the_timer_fires_first_when_the_signal_comes_too_late_sync() -> None:
    with SyncEnvironment(workflows=[Approval]) as env:
        handle = env.start(Approval, {"amount": 10}, id="ap")
        with pytest.raises(durable.WorkflowFailed) as caught:
            env.result(handle, timeout=WAIT)  # nothing else can happen: the hour passes at once
        _check_timed_out(handle, caught.value)
        with pytest.raises(durable.WorkflowClosed):
            handle.signal("decide", "too late")


async def test_the_timer_fires_first_when_the_signal_comes_too_late_trio() -> None:
    async with Environment(workflows=[Approval]) as env:
        handle = env.start(Approval, {"amount": 10}, id="ap")
        env.start(Approval, {"amount": 20}, id="other")  # another workflow's timer skips along
        await env.sleep(3601)
        with pytest.raises(durable.WorkflowFailed) as caught:
            await env.result(handle, timeout=WAIT)
        _check_timed_out(handle, caught.value)
        assert env.client.get_handle("other").describe().status == "failed"


# --- moving time by hand --------------------------------------------------------------------


def test_sleeping_by_hand_fires_each_timer_in_order_sync() -> None:
    with SyncEnvironment(workflows=[Ticker]) as env:
        handle = env.start(Ticker, id="ticker")
        env.sleep(25)
        assert handle.query("count") == 2
        env.sleep(10)  # the timers start a little after the time they follow (the task runs in real time)
        assert handle.query("count") == 3
        ticks = [dt.datetime.fromisoformat(t) for t in env.result(handle, timeout=WAIT)]
        assert [b - a >= dt.timedelta(seconds=10) for a, b in zip(ticks, ticks[1:])] == [True, True]


async def test_sleeping_by_hand_fires_each_timer_in_order_trio() -> None:
    async with Environment(workflows=[Ticker]) as env:
        handle = env.start(Ticker, id="ticker")
        await env.sleep(25)
        assert handle.query("count") == 2
        await env.sleep(10)
        assert handle.query("count") == 3
        assert len(await env.result(handle, timeout=WAIT)) == 3


def test_time_skipping_off_lets_time_pass_only_by_hand() -> None:
    with SyncEnvironment(workflows=[sleeps_a_day], time_skipping=False) as env:
        handle = env.start(sleeps_a_day, id="sleeper")
        with pytest.raises(durable.WaitTimeout):
            env.result(handle, timeout=0.2)
        assert handle.describe().status == "running"
        env.sleep(DAY)
        assert handle.result(timeout=WAIT) >= DAY


def test_start_time_sets_the_clock() -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    with SyncEnvironment(workflows=[sleeps_a_day], start_time=start) as env:
        assert start <= env.now() < start + dt.timedelta(minutes=1)
        handle = env.start(sleeps_a_day, id="sleeper")
        env.result(handle, timeout=WAIT)
        [started] = [e for e in handle.history() if e["kind"] == "WorkflowStarted"]
        assert start <= started["time"] < start + dt.timedelta(minutes=1)


# --- a running activity is not timed out by a jump --------------------------------------------


def test_a_running_activity_is_not_timed_out_by_a_jump_sync() -> None:
    with SyncEnvironment(workflows=[activity_beside_a_timer], activities=[takes_a_while]) as env:
        handle = env.start(activity_beside_a_timer, id="beside")
        assert env.result(handle, timeout=WAIT) == "done"
        kinds = _history_kinds(handle)
        assert "ActivityCompleted" in kinds and "ActivityFailed" not in kinds and "TimerFired" in kinds


async def test_a_running_activity_is_not_timed_out_by_a_jump_trio() -> None:
    async with Environment(workflows=[activity_beside_a_timer], activities=[takes_a_while]) as env:
        assert await env.execute(activity_beside_a_timer, id="beside", timeout=WAIT) == "done"


# --- the hello example, execute, start ------------------------------------------------------


def test_the_hello_example_sync() -> None:
    with SyncEnvironment(workflows=[three_steps], activities=[add_one, double]) as env:
        assert env.execute(three_steps, 1) == 5
        assert env.worker.stats["wft"] >= 1


async def test_the_hello_example_trio() -> None:
    async with Environment(workflows=[three_steps], activities=[add_one, double]) as env:
        assert await env.execute(three_steps, 1) == 5


def test_the_store_is_temporary_and_removed() -> None:
    with SyncEnvironment(workflows=[three_steps], activities=[add_one, double]) as env:
        data = Path(env.data_dir)
        assert (data / "data.mdb").exists()
        env.execute(three_steps, 1, id="wf")
    assert not data.exists()


# --- activity mocks -------------------------------------------------------------------------


def test_mock_activities_by_name_sync() -> None:
    with SyncEnvironment(workflows=[order], activities=[charge], mock_activities={"charge": lambda amount: f"charged {amount}"}) as env:
        assert env.execute(order, 12) == "charged 12"


async def test_mock_activities_by_activity_trio() -> None:
    async def fake_charge(amount: int) -> str:
        await trio.sleep(0)
        return f"faked {amount}"

    async with Environment(workflows=[order], activities=[charge], mock_activities={charge: fake_charge}) as env:
        assert await env.execute(order, 3) == "faked 3"


def test_mock_activity_decorator_keeps_the_name_and_options() -> None:
    calls: list[int] = []

    @durable.testing.mock_activity(charge)
    def fake_charge(amount: int) -> str:
        calls.append(amount)
        return "ok"

    assert fake_charge.name == "charge" and fake_charge.options == charge.options
    with SyncEnvironment(workflows=[order], activities=[fake_charge]) as env:
        assert env.execute(order, 5) == "ok"
    assert calls == [5]


def test_a_mock_must_take_the_activitys_arguments() -> None:
    with pytest.raises(durable.InvalidArgument, match=r"mock of activity 'charge' takes \(\).*takes \(amount: int\)"):
        SyncEnvironment(workflows=[order], activities=[charge], mock_activities={"charge": lambda: "ok"})
    with pytest.raises(durable.InvalidArgument, match="mock of activity 'charge' takes"):
        durable.testing.mock_activity(charge)(lambda a, b: "ok")
    SyncEnvironment(activities=[charge], mock_activities={"charge": lambda *args: "ok"})  # accepts them: fine


def test_a_mock_must_name_an_activity_given() -> None:
    with pytest.raises(durable.InvalidArgument, match=r"mock_activities names 'chrage', which is not among the activities given \(charge\)"):
        SyncEnvironment(workflows=[order], activities=[charge], mock_activities={"chrage": lambda amount: "ok"})
    with pytest.raises(durable.InvalidArgument, match="needs the activity it replaces"):
        durable.testing.mock_activity("charge")  # type: ignore[arg-type]


# --- replay ---------------------------------------------------------------------------------


@durable.workflow(name="three_steps")
async def three_steps_changed(x: int) -> int:
    x = await double(x)  # the code now doubles first: histories of three_steps break
    x = await add_one(x)
    return await add_one(x)


def test_replay_a_history_through_the_code(tmp_path: Path) -> None:
    with SyncEnvironment(workflows=[three_steps], activities=[add_one, double]) as env:
        handle = env.start(three_steps, 1, id="wf")
        assert env.result(handle, timeout=WAIT) == 5
        assert env.replay(three_steps, handle) == len(handle.history())
        exported = handle.export_history()
        assert env.replay(three_steps, exported) == len(handle.history())
        saved = tmp_path / "wf.cbor"
        saved.write_bytes(exported)
        assert env.replay(three_steps, saved) == env.replay(three_steps, str(saved))
        with pytest.raises(durable.NondeterminismError, match="event"):
            env.replay(three_steps_changed, handle)


async def test_replay_a_history_through_the_code_trio() -> None:
    async with Environment(workflows=[three_steps], activities=[add_one, double]) as env:
        handle = env.start(three_steps, 2, id="wf")
        assert await env.result(handle, timeout=WAIT) == 7
        assert env.replay(three_steps, handle.export_history()) > 0
        with pytest.raises(durable.NondeterminismError):
            env.replay(three_steps_changed, handle)


# --- misuse ---------------------------------------------------------------------------------


def test_an_environment_is_used_inside_its_block() -> None:
    env = SyncEnvironment(workflows=[three_steps], activities=[add_one, double])
    with pytest.raises(durable.DurableError, match=r"not running: use it as `with SyncEnvironment"):
        env.start(three_steps, 1)
    with pytest.raises(durable.DurableError, match="used with `async with`"):
        with Environment(workflows=[three_steps]):
            pass


def test_a_store_given_must_be_fresh(tmp_path: Path) -> None:
    data = tmp_path / "store"
    with SyncEnvironment(workflows=[three_steps], activities=[add_one, double], data=data) as env:
        env.execute(three_steps, 1, id="wf", timeout=WAIT)
    assert (data / "data.mdb").exists()  # a directory given is the caller's: kept
    with pytest.raises(durable.InvalidArgument, match="needs a fresh store"):
        with SyncEnvironment(workflows=[three_steps], data=data):
            pass


@durable.workflow
class WaitsForever:
    """Waits for a signal that never comes, with no timeout: nothing ever falls due."""

    def __init__(self) -> None:
        self.done = False

    async def run(self) -> None:
        await durable.wait_condition(lambda: self.done)

    @durable.signal
    def finish(self) -> None:
        self.done = True


async def test_waiting_is_cancellable_and_stops_the_skipping_trio() -> None:
    async with Environment(workflows=[WaitsForever, Ticker]) as env:
        handle = env.start(WaitsForever, id="forever")
        with trio.move_on_after(0.3) as scope:
            await env.result(handle)
        assert scope.cancelled_caught
        before = env.now()
        with trio.fail_after(WAIT):
            await env.sleep(10 * 365 * DAY)  # ten years pass at once: nothing falls due on the way
        assert env.now() - before >= dt.timedelta(days=10 * 365)
        # the abandoned waiter gives up within its slice: time no longer skips for it
        harness = env._open
        assert harness is not None
        await trio.to_thread.run_sync(lambda: wait_until(lambda: harness._waiting == 0, what="the waiter to give up"))
        before = env.now()
        ticker = env.start(Ticker, id="ticker")
        assert ticker.query("count") == 0  # its first task ran: it waits on its 10 s timer
        assert env.now() - before < dt.timedelta(seconds=10)
        assert ticker.describe().status == "running"


def test_several_waiters_in_threads_skip_together() -> None:
    with SyncEnvironment(workflows=[sleeps_a_day]) as env:
        handles = [env.start(sleeps_a_day, id=f"s{i}") for i in range(3)]
        results: list[float] = []

        def wait(h: durable.WorkflowHandle[float]) -> None:
            results.append(h.result(timeout=WAIT))

        threads = [threading.Thread(target=wait, args=(h,)) for h in handles]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert len(results) == 3 and min(results) >= DAY


# --- a workflow that cannot go on -------------------------------------------------------------


@durable.workflow
async def buggy() -> int:
    return {}["missing"]  # a bug: the workflow task fails


@durable.workflow
async def calls_an_activity_nobody_has() -> str:
    return await charge(1)


def test_a_failing_workflow_task_ends_the_wait_instead_of_skipping_through_its_retries_sync() -> None:
    with SyncEnvironment(workflows=[buggy]) as env:
        before = env.now()
        handle = env.start(buggy, id="buggy")
        with pytest.raises(durable.testing.WorkflowTaskFailed, match=r"workflow 'buggy' cannot go on: .*KeyError: 'missing'") as caught:
            env.result(handle, timeout=WAIT)
        assert caught.value.workflow_id == "buggy" and "KeyError" in caught.value.task_error
        assert env.now() - before < dt.timedelta(seconds=WAIT)  # no jumps through its retries
        assert handle.describe().status == "running"


async def test_an_activity_nobody_has_ends_the_wait_trio() -> None:
    async with Environment(workflows=[calls_an_activity_nobody_has]) as env:
        before = env.now()
        with pytest.raises(durable.testing.WorkflowTaskFailed, match="activity 'charge' is not registered"):
            await env.execute(calls_an_activity_nobody_has, id="nobody", timeout=WAIT)
        assert env.now() - before < dt.timedelta(seconds=WAIT)


def test_the_worker_still_serves_the_queue_after_a_day_passes() -> None:
    """Clients judge from the clock whether a worker serves a queue: a jump must not make the
    environment's own worker look gone (a start would warn that nobody serves the queue)."""
    with SyncEnvironment(workflows=[sleeps_a_day, three_steps], activities=[add_one, double]) as env:
        env.execute(sleeps_a_day, id="sleeper", timeout=WAIT)
        handle = env.start(three_steps, 1, id="after")
        assert handle.warning is None
        assert [w.alive for w in env.client.workers()] == [True]
        assert env.result(handle, timeout=WAIT) == 5


def test_what_is_not_a_workflow_or_an_activity_is_refused_at_once() -> None:
    with pytest.raises(durable.InvalidArgument, match="not an activity"):
        SyncEnvironment(activities=[len])  # type: ignore[list-item]
    with pytest.raises(durable.InvalidArgument):
        SyncEnvironment(workflows=[len])


def test_a_delayed_start_skips_to_its_start() -> None:
    with SyncEnvironment(workflows=[three_steps], activities=[add_one, double]) as env:
        before = env.now()
        handle = env.start(three_steps, 1, id="later", start_delay=3600)
        assert env.result(handle, timeout=WAIT) == 5
        assert env.now() - before >= dt.timedelta(seconds=3600)
