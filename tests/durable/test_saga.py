"""`durable.saga()`: compensations run newest first, shielded, after every step of the block ended.

The tests drive the runtime one event at a time (`sim.Driver`) and check the commands of each
activation, so *when* a compensation is scheduled is visible exactly: never while a step of its
block still runs (F05), one at a time, in reverse order of registration.
"""

from __future__ import annotations

from typing import Any

import pytest

import durable
from durable import _events as ev

from .sim import NS, Driver, kinds, replay, strip


@durable.activity
def step(tag: str) -> str:
    return tag


@durable.activity
def undo(tag: str) -> None:
    return None


def scheduled(d: Driver, commands: list[dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    """(activity name, first argument) of the ActivityScheduled events in `commands` (or history)."""
    events = d.history if commands is None else commands
    return [(e["name"], d.conv.from_payload(e["in"])[0]) for e in events if e["k"] == ev.ACTIVITY_SCHEDULED]


def final_index(d: Driver, seq: int) -> int:
    return next(i for i, e in enumerate(d.history) if e.get("seq") == seq and e["k"] in (
        ev.ACTIVITY_COMPLETED, ev.ACTIVITY_FAILED, ev.ACTIVITY_CANCELLED))


def scheduled_index(d: Driver, name: str, tag: str) -> int:
    return next(i for i, e in enumerate(d.history) if e["k"] == ev.ACTIVITY_SCHEDULED
                and e["name"] == name and d.conv.from_payload(e["in"])[0] == tag)


@durable.workflow
async def steps_in_order(tags: list[str], timeout: float | None = None) -> Any:
    async with durable.saga(compensation_timeout=timeout) as saga:
        for tag in tags:
            await step(tag)
            saga.add_compensation(undo, tag)
    return ["done", saga.compensated]


def run_until_d_fails(d: Driver, *args: Any) -> list[dict[str, Any]]:
    """Steps a, b, c complete; step d fails. Returns the commands of d's failure."""
    d.start(["a", "b", "c", "d"], *args)
    for seq in (1, 2, 3):
        d.complete(seq, "ok")
    return d.fail(4, "card declined")


# --- order, success, errors ------------------------------------------------------------------


def test_compensations_run_newest_first_one_at_a_time_then_the_error_goes_on() -> None:
    d = Driver(steps_in_order)
    assert scheduled(d, run_until_d_fails(d)) == [("undo", "c")]
    # each compensation is awaited to its end before the next one starts
    assert scheduled(d, d.complete(5)) == [("undo", "b")]
    assert scheduled(d, d.complete(6)) == [("undo", "a")]
    assert kinds(d.complete(7)) == [ev.WORKFLOW_FAILED]
    # the original error, as it was: not wrapped, since every compensation completed
    assert d.error["type"] == "durable.ActivityError"
    assert d.error["cause"]["msg"] == "card declined"
    assert scheduled(d) == [("step", t) for t in "abcd"] + [("undo", t) for t in "cba"]


def test_a_saga_that_succeeds_drops_its_compensations() -> None:
    d = Driver(steps_in_order)
    d.start(["a", "b"])
    d.complete(1)
    assert kinds(d.complete(2)) == [ev.WORKFLOW_COMPLETED]
    assert d.result == ["done", False]


@durable.workflow
async def sorts_errors(tags: list[str], failing_undo: list[str]) -> Any:
    originals: list[str] = []
    failures: list[list[str]] = []
    try:
        async with durable.saga() as saga:
            for tag in tags:
                await step(tag)
                saga.add_compensation(undo.with_options(retry=durable.RetryPolicy(max_attempts=2)), tag)
    except* durable.CompensationFailed as group:
        failures = [[e.compensation, type(e.__cause__).__name__] for e in group.exceptions]
    except* durable.ActivityError as group:
        originals = [e.activity for e in group.exceptions]
    return [originals, failures]


def test_failed_compensations_are_raised_with_the_original_error_in_an_exception_group() -> None:
    d = Driver(sorts_errors)
    d.start(["a", "b", "c", "d"], ["b"])
    for seq in (1, 2, 3):
        d.complete(seq)
    d.fail(4)
    d.complete(5)  # undo c
    # undo b fails (after its retries): the others still run
    assert scheduled(d, d.fail(6, "refund service down")) == [("undo", "a")]
    d.complete(7)
    # `except*` separates the step's failure from the compensation that needs a human
    assert d.result == [["step"], [["undo", "ActivityError"]]]


def test_an_uncaught_compensation_failure_fails_the_workflow_with_the_whole_tree() -> None:
    d = Driver(steps_in_order)
    run_until_d_fails(d)
    d.fail(5, "undo c broke")
    d.complete(6)
    d.fail(7, "undo a broke")
    err = d.error
    assert err["type"] == "ExceptionGroup"
    assert err["msg"].startswith("saga failed (ActivityError: activity 'step' (seq 4) failed")
    assert err["msg"].endswith("; 2 of 3 compensation(s) did not complete: undo, undo")
    original, *failed = err["children"]
    assert original["type"] == "durable.ActivityError" and original["cause"]["msg"] == "card declined"
    assert [f["type"] for f in failed] == ["durable.CompensationFailed"] * 2
    assert [f["cause"]["cause"]["msg"] for f in failed] == ["undo c broke", "undo a broke"]


# --- cancellation: the workflow is cancelled while a step runs ------------------------------


def test_a_cancelled_workflow_compensates_only_after_the_running_step_confirms() -> None:
    d = Driver(steps_in_order)
    d.start(["a", "b", "c"])
    d.complete(1)
    assert strip(d.cancel()) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 2}]
    # step b has not confirmed: nothing is compensated yet, whatever else arrives
    assert kinds(d.signal("unrelated")) == [ev.TASK_COMPLETED]
    assert scheduled(d, d.cancelled(2)) == [("undo", "a")]
    assert kinds(d.complete(3)) == [ev.WORKFLOW_CANCELLED]
    assert scheduled_index(d, "undo", "a") > final_index(d, 2)


def test_a_step_that_completes_despite_the_cancel_request_is_compensated_too() -> None:
    d = Driver(steps_in_order)
    d.start(["a", "b", "c"])
    d.complete(1)
    d.cancel()
    # b ignored the request and finished: its result counts, so its compensation is registered,
    # and the cancellation stops the saga at its next await (step c is never scheduled)
    assert scheduled(d, d.complete(2, "b done")) == [("undo", "b")]
    assert scheduled(d, d.complete(3)) == [("undo", "a")]
    assert kinds(d.complete(4)) == [ev.WORKFLOW_CANCELLED]
    assert ("step", "c") not in scheduled(d)


def test_compensations_are_shielded_from_a_cancellation_that_arrives_while_they_run() -> None:
    d = Driver(steps_in_order)
    run_until_d_fails(d)
    assert kinds(d.cancel()) == [ev.TASK_COMPLETED]  # no cancel request for the compensation
    assert scheduled(d, d.complete(5)) == [("undo", "b")]
    d.complete(6)
    d.complete(7)
    assert scheduled(d)[-3:] == [("undo", t) for t in "cba"]
    assert d.error["type"] == "durable.ActivityError"  # the step's failure, not the cancel


def test_a_cancelled_saga_whose_compensation_fails_ends_failed_with_the_failure() -> None:
    d = Driver(steps_in_order)
    d.start(["a", "b", "c"])
    d.complete(1)
    d.complete(2)
    d.cancel()
    d.cancelled(3)
    d.fail(4, "undo b broke")
    assert kinds(d.complete(5)) == [ev.WORKFLOW_FAILED]
    err = d.error
    # like a nursery: a real error wins over the cancellation, which is named in the message
    assert err["msg"] == "saga cancelled; 1 of 2 compensation(s) did not complete: undo"
    assert [c["type"] for c in err["children"]] == ["durable.CompensationFailed"]


# --- the compensation deadline --------------------------------------------------------------


def test_compensation_timeout_is_a_durable_deadline_cancelled_when_they_finish_in_time() -> None:
    d = Driver(steps_in_order)
    commands = run_until_d_fails(d, 30)
    assert strip(commands)[0] == {"k": ev.TIMER_STARTED, "seq": 5, "dur": 30 * NS}
    assert scheduled(d, commands) == [("undo", "c")]
    d.complete(6)
    d.complete(7)
    assert kinds(d.complete(8)) == [ev.TIMER_CANCELLED, ev.WORKFLOW_FAILED]
    assert d.error["type"] == "durable.ActivityError"


def test_compensations_cut_short_by_their_deadline_are_each_reported() -> None:
    d = Driver(steps_in_order)
    run_until_d_fails(d, 30)
    d.complete(6)  # undo c
    # undo b is slow: the deadline cancels it (and waits for its confirmation); undo a never runs
    assert strip(d.fire(5)) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 7}]
    assert kinds(d.cancelled(7)) == [ev.WORKFLOW_FAILED]
    assert scheduled(d)[-2:] == [("undo", "c"), ("undo", "b")]
    err = d.error
    assert err["msg"].endswith("2 of 3 compensation(s) did not complete: undo, undo")
    original, *failed = err["children"]
    assert original["type"] == "durable.ActivityError"
    assert [f["cause"]["type"] for f in failed] == ["durable.TooSlowError"] * 2
    assert all("compensation_timeout of 30 s" in f["msg"] for f in failed)


def test_a_saga_with_nothing_to_compensate_starts_no_deadline() -> None:
    d = Driver(steps_in_order)
    d.start(["a", "b"], 30)
    assert kinds(d.fail(1)) == [ev.WORKFLOW_FAILED]
    assert d.error["type"] == "durable.ActivityError"


def test_compensation_timeout_is_checked() -> None:
    with pytest.raises(durable.InvalidArgument, match=r"saga\(compensation_timeout\)"):
        durable.saga(compensation_timeout=-1)


# --- steps in a nursery inside the saga -----------------------------------------------------


@durable.workflow
async def parallel(tags: list[str]) -> None:
    async def reserve(saga: durable.Saga, tag: str) -> None:
        await step(tag)
        saga.add_compensation(undo, tag)

    async with durable.saga() as saga:
        async with durable.open_nursery() as nursery:
            for tag in tags:
                nursery.start_soon(reserve, saga, tag)


def test_a_failed_parallel_step_compensates_only_after_every_sibling_ended() -> None:
    d = Driver(parallel)
    assert scheduled(d, d.start(["hotel", "flight", "car"])) == [("step", t) for t in ("hotel", "flight", "car")]
    d.complete(1)
    assert strip(d.fail(2, "no seats")) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 3}]
    # the car rental ignores the request and completes: it is compensated first (newest)
    assert scheduled(d, d.complete(3)) == [("undo", "car")]
    assert scheduled(d, d.complete(4)) == [("undo", "hotel")]
    assert kinds(d.complete(5)) == [ev.WORKFLOW_FAILED]
    assert scheduled_index(d, "undo", "car") > max(final_index(d, s) for s in (1, 2, 3))
    assert d.error["type"] == "ExceptionGroup"  # the nursery's group, as it was
    assert d.error["children"][0]["cause"]["msg"] == "no seats"


# --- async functions as compensations, nesting, deadlines around a saga ----------------------


async def undo_later(tag: str) -> None:
    await durable.sleep(2)
    await undo(tag)


@durable.workflow
async def nested(inner_fails: bool) -> Any:
    async with durable.saga() as outer:
        await step("outer")
        outer.add_compensation(undo_later, "outer")
        try:
            async with durable.saga() as inner:
                await step("inner")
                inner.add_compensation(undo, "inner")
                if inner_fails:
                    raise KeyError("inner")
        except KeyError:
            pass
        await step("fail")
    return "unreachable"


def test_nested_sagas_compensate_their_own_steps_and_async_functions_may_compensate() -> None:
    d = Driver(nested)
    d.start(True)
    d.complete(1)
    assert scheduled(d, d.complete(2)) == [("undo", "inner")]  # the inner saga's own failure
    assert scheduled(d, d.complete(3)) == [("step", "fail")]  # caught: the outer block goes on
    assert kinds(d.fail(4)) == [ev.TIMER_STARTED]  # undo_later sleeps first, on a durable timer
    assert scheduled(d, d.fire(5)) == [("undo", "outer")]
    d.complete(6)
    assert scheduled(d) == [("step", "outer"), ("step", "inner"), ("undo", "inner"),
                            ("step", "fail"), ("undo", "outer")]


@durable.workflow
async def too_slow() -> str:
    try:
        with durable.fail_after(10):
            async with durable.saga() as saga:
                await step("a")
                saga.add_compensation(undo, "a")
                await step("slow")
    except durable.TooSlowError:
        return "compensated, then too slow"
    return "in time"


def test_a_deadline_around_a_saga_cancels_the_step_then_compensations_run() -> None:
    d = Driver(too_slow)
    d.start()
    d.complete(2)
    assert strip(d.fire(1)) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 3}]
    assert scheduled(d, d.cancelled(3)) == [("undo", "a")]
    d.complete(4)
    assert d.result == "compensated, then too slow"


# --- replay and eviction ---------------------------------------------------------------------


def test_an_instance_evicted_while_compensating_resumes_from_history() -> None:
    d = Driver(steps_in_order)
    run_until_d_fails(d)
    d.complete(5)
    d.rt.close()  # evicted while undo b runs: nothing is emitted, no error
    rt, commands = replay(steps_in_order, d.history)
    assert commands == [] and rt.processed == len(d.history)
    d.rt = rt
    assert scheduled(d, d.complete(6)) == [("undo", "a")]
    d.complete(7)
    assert d.error["type"] == "durable.ActivityError"
    rt2, commands = replay(steps_in_order, d.history)
    assert commands == [] and rt2.done


# --- misuse is a clear error ----------------------------------------------------------------


@durable.workflow
async def misuse(case: str) -> str:
    try:
        if case == "outside":
            saga = durable.saga()
            saga.add_compensation(undo, "x")
        elif case == "after":
            async with durable.saga() as saga:
                pass
            saga.add_compensation(undo, "x")
        elif case == "twice":
            saga = durable.saga()
            async with saga:
                pass
            async with saga:
                pass
        elif case == "sync function":
            async with durable.saga() as saga:
                saga.add_compensation(print, "x")
        elif case == "bad argument":
            async with durable.saga() as saga:
                saga.add_compensation(undo, object())
        elif case == "from a compensation":
            async def sneaky() -> None:
                saga.add_compensation(undo, "x")

            async with durable.saga() as saga:
                saga.add_compensation(sneaky)
                raise KeyError("go")
    except durable.DurableError as exc:
        return f"{type(exc).__name__}: {exc}"
    except BaseExceptionGroup as group:
        return f"group: {group.exceptions[-1]}"
    return "no error"


@pytest.mark.parametrize(("case", "message"), [
    ("outside", "DurableError: add compensations inside 'async with durable.saga() as saga:'"),
    ("after", "DurableError: this saga has ended: add compensations inside its 'async with' block"),
    ("twice", "DurableError: a saga can be entered only once"),
    ("sync function", "InvalidArgument: add_compensation needs an activity or an async function"),
    ("bad argument", "PayloadError: arguments of compensation 'undo' cannot be stored: [0]: object: not plain data"),
    ("from a compensation", "group: compensation misuse.<locals>.sneaky failed: DurableError: "
                            "a compensation cannot add compensations"),
])
def test_misuse_is_a_clear_error(case: str, message: str) -> None:
    d = Driver(misuse)
    d.start(case)
    assert d.result.startswith(message)


def test_a_saga_outside_workflow_code_is_a_clear_error() -> None:
    coro = durable.saga().__aenter__()
    with pytest.raises(durable.DurableError, match=r"durable\.saga can only be used inside workflow code"):
        coro.send(None)
