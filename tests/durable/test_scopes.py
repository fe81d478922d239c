"""Structured concurrency in workflow code: nurseries, cancel scopes, deadlines, cancellation.

Most tests drive the runtime one event at a time (`sim.Driver`) and check the exact commands of
every activation: a scope's promise is visible in history as *when* its commands appear. The
last one runs random nested programs and checks that no step outlives its scope (F05).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import durable
from durable import _events as ev
from durable._codec import Converter

from .sim import NS, Driver, Outcome, Sim, kinds, replay, scripted, strip


@durable.activity
def work(tag: str) -> str:
    return tag


def scheduled(commands: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(seq, tag) of the ActivityScheduled commands in `commands`."""
    conv = Converter()
    return [(c["seq"], conv.from_payload(c["in"])[0]) for c in commands if c["k"] == ev.ACTIVITY_SCHEDULED]


# --- nurseries ------------------------------------------------------------------------------


@durable.workflow
async def three_children() -> Any:
    result: dict[str, Any] = {}

    async def child(tag: str) -> None:
        result[tag] = await work(tag)

    try:
        async with durable.open_nursery() as nursery:
            for tag in ("a", "b", "c"):
                nursery.start_soon(child, tag)
    except* durable.ActivityError as group:
        result["group"] = [type(group).__name__, [[e.activity, e.kind] for e in group.exceptions]]
    return result


def test_first_error_in_a_nursery_cancels_siblings_and_raises_an_exception_group() -> None:
    d = Driver(three_children)
    assert scheduled(d.start()) == [(1, "a"), (2, "b"), (3, "c")]
    # b fails: its siblings get cancel requests, in the order they started waiting
    assert strip(d.fail(2)) == [
        {"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 1},
        {"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 3},
    ]
    # the nursery waits for every child's final event before it lets the error out
    assert kinds(d.cancelled(1)) == [ev.TASK_COMPLETED]
    assert kinds(d.complete(3, "c done")) == [ev.WORKFLOW_COMPLETED]
    # c's result arrived after the request: it counts. The group holds only the real error.
    assert d.result == {"c": "c done", "group": ["ExceptionGroup", [["work", "failed"]]]}


def test_two_failures_in_one_activation_are_both_in_the_group() -> None:
    d = Driver(three_children)
    d.start()
    commands = d.deliver(d.failed_event(1, "x"), d.failed_event(3, "y"))
    assert strip(commands) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 2}]
    d.cancelled(2)
    assert d.result == {"group": ["ExceptionGroup", [["work", "failed"], ["work", "failed"]]]}


@durable.workflow
async def body_and_child() -> list[str]:
    order: list[str] = []

    async def child() -> None:
        order.append(await work("child"))

    async with durable.open_nursery() as nursery:
        nursery.start_soon(child)
        order.append("body ends")
    order.append(await work("after"))
    return order


def test_a_nursery_does_not_exit_before_its_children_end() -> None:
    d = Driver(body_and_child)
    assert scheduled(d.start()) == [(1, "child")]
    assert kinds(d.deliver(d.signal_event("nobody-listens"))) == [ev.TASK_COMPLETED]
    assert scheduled(d.complete(1, "child")) == [(2, "after")]
    d.complete(2, "after")
    assert d.result == ["body ends", "child", "after"]


@durable.workflow
async def body_raises() -> Any:
    try:
        async with durable.open_nursery() as nursery:
            nursery.start_soon(work, "child")
            await durable.sleep(1)
            raise KeyError("body")
    except* KeyError as group:
        return_value = [repr(e) for e in group.exceptions]
    return return_value


def test_an_error_in_the_nursery_body_cancels_the_children_and_waits_for_them() -> None:
    d = Driver(body_raises)
    assert kinds(d.start()) == [ev.TIMER_STARTED, ev.ACTIVITY_SCHEDULED]
    assert strip(d.fire(1)) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 2}]
    assert kinds(d.cancelled(2)) == [ev.WORKFLOW_COMPLETED]
    assert d.result == ["KeyError('body')"]


@durable.workflow
async def uncaught_group() -> None:
    async with durable.open_nursery() as nursery:
        nursery.start_soon(work, "a")
        nursery.start_soon(work, "b")


def test_an_uncaught_nursery_error_fails_the_workflow_with_the_group() -> None:
    d = Driver(uncaught_group)
    d.start()
    d.fail(1, "first")
    d.fail(2, "second")  # it failed after its cancel request: still a failure, still reported
    err = d.error
    assert err["type"] == "ExceptionGroup"
    assert [c["type"] for c in err["children"]] == ["durable.ActivityError", "durable.ActivityError"]


# --- cancelling an activity: wait, try, abandon --------------------------------------------


@durable.workflow
async def scoped(mode: str) -> Any:
    act = work.with_options(cancellation=mode)
    got = None
    with durable.move_on_after(5) as scope:
        got = await act("inner")
    after = await work("after")
    return [got, scope.cancelled_caught, after]


def test_wait_mode_keeps_the_scope_open_until_the_activity_is_cancelled() -> None:
    d = Driver(scoped)
    start = d.start("wait")
    assert strip(start)[0] == {"k": ev.TIMER_STARTED, "seq": 1, "dur": 5 * NS}
    assert scheduled(start) == [(2, "inner")]
    assert strip(d.fire(1)) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 2}]
    # nothing after the scope runs while the activity has not reached a final event
    assert kinds(d.signal("unrelated")) == [ev.TASK_COMPLETED]
    assert scheduled(d.cancelled(2)) == [(3, "after")]
    d.complete(3, "A")
    assert d.result == [None, True, "A"]


def test_wait_mode_an_activity_that_completes_after_the_request_gives_its_result() -> None:
    d = Driver(scoped)
    d.start("wait")
    d.fire(1)
    assert scheduled(d.complete(2, "finished anyway")) == [(3, "after")]
    d.complete(3, "A")
    # like trio: an operation that completed was not cancelled; the scope caught nothing
    assert d.result == ["finished anyway", False, "A"]


def test_wait_mode_an_activity_no_worker_started_is_cancelled_by_the_store_at_once() -> None:
    d = Driver(scoped, autostart=False)
    d.start("wait")
    assert strip(d.fire(1)) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 2}]
    # the store answered in the same transaction; the next activation sees it
    assert strip(d.pending_inputs()) == [{"k": ev.ACTIVITY_CANCELLED, "seq": 2}]
    assert scheduled(d.activate()) == [(3, "after")]


def test_try_mode_requests_cancellation_and_moves_on_at_once() -> None:
    d = Driver(scoped)
    d.start("try")
    commands = d.fire(1)
    assert kinds(commands) == [ev.ACTIVITY_CANCEL_REQUESTED, ev.ACTIVITY_SCHEDULED]
    assert scheduled(commands) == [(3, "after")]
    # the late final event of the abandoned wait changes nothing
    assert kinds(d.cancelled(2)) == [ev.TASK_COMPLETED]
    d.complete(3, "A")
    assert d.result == [None, True, "A"]


def test_abandon_mode_sends_no_request_and_moves_on() -> None:
    d = Driver(scoped)
    d.start("abandon")
    assert scheduled(d.fire(1)) == [(3, "after")]
    assert kinds(d.complete(2, "ignored")) == [ev.TASK_COMPLETED]
    d.complete(3, "A")
    assert d.result == [None, True, "A"]


def test_a_cancelled_activity_outside_any_cancelled_scope_is_an_activity_error() -> None:
    # cancelled by someone else (an operator), not by the workflow: an ordinary error to catch
    @durable.workflow(name="victim")
    async def victim() -> Any:
        try:
            await work("x")
        except durable.ActivityError as exc:
            return [exc.kind, exc.activity, exc.seq]

    d = Driver(victim)
    d.start()
    d.cancelled(1)
    assert d.result == ["cancelled", "work", 1]


# --- shields, deadlines --------------------------------------------------------------------


@durable.workflow
async def shielded() -> Any:
    got = "not set"
    with durable.move_on_after(5) as outer:
        with durable.CancelScope(shield=True):
            got = await work("shielded")
        await work("never scheduled")
    return [got, outer.cancelled_caught]


def test_a_shield_keeps_outer_cancellation_out() -> None:
    d = Driver(shielded)
    assert kinds(d.start()) == [ev.TIMER_STARTED, ev.ACTIVITY_SCHEDULED]
    assert kinds(d.fire(1)) == [ev.TASK_COMPLETED]  # no cancel request for the shielded activity
    # after the shield, the next await meets the outer cancellation
    assert kinds(d.complete(2, "kept")) == [ev.WORKFLOW_COMPLETED]
    assert d.result == ["kept", True]


@durable.workflow
async def deadlines() -> Any:
    with durable.move_on_after(30):
        fast = await work("fast")
    try:
        with durable.fail_after(10):
            await work("slow")
    except durable.TooSlowError as exc:
        return [fast, str(exc)]
    return [fast, "no timeout"]


def test_move_on_after_and_fail_after_use_durable_timers() -> None:
    d = Driver(deadlines)
    assert strip(d.start())[0] == {"k": ev.TIMER_STARTED, "seq": 1, "dur": 30 * NS}
    # the block ended first: its timer is cancelled, then the next deadline starts
    commands = d.complete(2, "F")
    assert strip(commands)[:2] == [
        {"k": ev.TIMER_CANCELLED, "seq": 1},
        {"k": ev.TIMER_STARTED, "seq": 3, "dur": 10 * NS},
    ]
    assert scheduled(commands) == [(4, "slow")]
    assert 1 not in d.timers  # the store removed the cancelled timer
    assert strip(d.fire(3)) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 4}]
    d.cancelled(4)
    assert d.result == ["F", "fail_after(10): the durable deadline passed"]


def test_fail_after_that_does_not_expire_raises_nothing() -> None:
    d = Driver(deadlines)
    d.start()
    d.complete(2, "F")
    assert kinds(d.complete(4, "S")) == [ev.TIMER_CANCELLED, ev.WORKFLOW_COMPLETED]
    assert d.result == ["F", "no timeout"]


@durable.workflow
async def deadline_around_nursery(use_fail_after: bool) -> Any:
    if use_fail_after:
        try:
            with durable.fail_after(3):
                async with durable.open_nursery() as nursery:
                    nursery.start_soon(work, "a")
                    nursery.start_soon(work, "b")
        except durable.TooSlowError:
            return "too slow"
        return "in time"
    with durable.move_on_after(3) as scope:
        async with durable.open_nursery() as nursery:
            nursery.start_soon(work, "a")
            nursery.start_soon(work, "b")
    return ["moved on", scope.cancelled_caught]


@pytest.mark.parametrize("use_fail_after", [True, False])
def test_a_deadline_around_a_nursery_is_caught_by_the_deadline_scope(use_fail_after: bool) -> None:
    # Regression: the nursery used to cancel its own scope when the outer deadline reached its
    # waiting parent, so the nursery caught the Cancelled: fail_after never raised TooSlowError.
    d = Driver(deadline_around_nursery)
    d.start(use_fail_after)
    assert strip(d.fire(1)) == [
        {"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 2},
        {"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 3},
    ]
    d.cancelled(2)
    d.cancelled(3)
    assert d.result == ("too slow" if use_fail_after else ["moved on", True])


@durable.workflow
async def explicit_cancel() -> Any:
    async with durable.open_nursery() as nursery:
        nursery.start_soon(work, "a")
        await durable.sleep(1)
        nursery.cancel_scope.cancel()
    return nursery.cancel_scope.cancelled_caught


def test_cancelling_a_nursery_scope_is_caught_by_the_nursery() -> None:
    d = Driver(explicit_cancel)
    d.start()
    assert strip(d.fire(1)) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 2}]
    d.cancelled(2)
    assert d.result is True


@durable.workflow
class Waiter:
    def __init__(self) -> None:
        self.items: list[Any] = []

    @durable.signal
    def add(self, item: Any) -> None:
        self.items.append(item)

    async def run(self) -> Any:
        try:
            await durable.wait_condition(lambda: len(self.items) > 0, timeout=5)
        except durable.TooSlowError as exc:
            return ["too slow", str(exc)]
        return self.items


def test_wait_condition_with_a_timeout_raises_too_slow_error() -> None:
    d = Driver(Waiter)
    assert strip(d.start()) == [{"k": ev.TIMER_STARTED, "seq": 1, "dur": 5 * NS}]
    assert kinds(d.fire(1)) == [ev.WORKFLOW_COMPLETED]
    assert d.result == ["too slow", "wait_condition: the condition did not hold within 5 s"]


def test_wait_condition_that_holds_in_time_cancels_its_timer() -> None:
    d = Driver(Waiter)
    d.start()
    commands = d.signal("add", "x")
    assert kinds(commands) == [ev.TIMER_CANCELLED, ev.WORKFLOW_COMPLETED]
    assert strip(commands)[0] == {"k": ev.TIMER_CANCELLED, "seq": 1}
    assert d.result == ["x"]


def test_wait_condition_rejects_a_bad_timeout() -> None:
    @durable.workflow(name="bad_timeout")
    async def bad() -> None:
        await durable.wait_condition(lambda: False, timeout=-1)

    d = Driver(bad)
    with pytest.raises(durable.InvalidArgument, match=r"wait_condition\(timeout\)"):
        d.start()  # a bug in the code: the workflow task fails, nothing is recorded
    assert kinds(d.history) == [ev.WORKFLOW_STARTED]


# --- cancelling the workflow ---------------------------------------------------------------


@durable.workflow
async def plain() -> str:
    await work("x")
    return "done"


def test_a_cancel_request_ends_the_workflow_as_cancelled() -> None:
    d = Driver(plain)
    d.start()
    assert strip(d.cancel()) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 1}]
    assert kinds(d.cancelled(1)) == [ev.WORKFLOW_CANCELLED]


@durable.workflow
async def sleeper() -> str:
    await durable.sleep(60)
    return "done"


def test_a_cancel_request_while_sleeping_cancels_the_timer_and_the_workflow() -> None:
    d = Driver(sleeper)
    d.start()
    assert strip(d.cancel()) == [{"k": ev.TIMER_CANCELLED, "seq": 1}, {"k": ev.WORKFLOW_CANCELLED}]
    assert d.timers == {}


@durable.workflow
async def compensating() -> str:
    try:
        await work("book")
    except durable.Cancelled:
        with durable.CancelScope(shield=True):
            await work("undo")
        raise
    return "booked"


def test_a_cancelled_workflow_runs_shielded_compensation_first() -> None:
    d = Driver(compensating)
    d.start()
    assert strip(d.cancel()) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 1}]
    # the compensation starts only once the step it compensates has ended
    assert scheduled(d.cancelled(1)) == [(2, "undo")]
    assert kinds(d.complete(2)) == [ev.WORKFLOW_CANCELLED]


@durable.workflow
async def catches_everything() -> str:
    try:
        await work("x")
    except Exception:  # noqa: BLE001 - the point: Cancelled is not an Exception
        return "swallowed"
    return "done"


def test_cancelled_is_not_caught_by_except_exception() -> None:
    d = Driver(catches_everything)
    d.start()
    d.cancel()
    assert kinds(d.cancelled(1)) == [ev.WORKFLOW_CANCELLED]


@durable.workflow
async def nursery_then_return() -> str:
    async with durable.open_nursery() as nursery:
        nursery.start_soon(work, "a")
    return "finished normally"


def test_a_cancel_request_while_waiting_in_a_nursery_cancels_the_workflow() -> None:
    # Regression: the nursery caught the workflow's cancellation, so the workflow completed.
    d = Driver(nursery_then_return)
    d.start()
    assert strip(d.cancel()) == [{"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": 1}]
    assert kinds(d.cancelled(1)) == [ev.WORKFLOW_CANCELLED]


# --- events --------------------------------------------------------------------------------


@durable.workflow
async def ping_pong() -> list[str]:
    ready = durable.Event()
    order: list[str] = []

    async def waiter() -> None:
        await ready.wait()
        order.append("woken")

    async with durable.open_nursery() as nursery:
        nursery.start_soon(waiter)
        order.append(await work("x"))
        ready.set()
        ready.set()  # idempotent
    await ready.wait()  # already set: returns at once
    return order


def test_an_event_wakes_its_waiters() -> None:
    d = Driver(ping_pong)
    d.start()
    d.complete(1, "x")
    assert d.result == ["x", "woken"]


def test_scope_misuse_is_a_clear_error() -> None:
    @durable.workflow(name="twice")
    async def twice() -> None:
        scope = durable.CancelScope()
        with scope:
            pass
        with scope:
            pass

    d = Driver(twice)
    with pytest.raises(durable.DurableError, match="^a CancelScope can be entered only once$"):
        d.start()

    @durable.workflow(name="late_start")
    async def late_start() -> None:
        async with durable.open_nursery() as nursery:
            pass
        nursery.start_soon(work, "x")

    d = Driver(late_start)
    with pytest.raises(durable.DurableError, match="nursery is closed"):
        d.start()


# --- no step outlives its scope: random nested programs (F05) ------------------------------

@durable.activity
def act(path: str) -> str:
    return path


@durable.activity
def mark(path: str) -> str:
    return path


async def interpret(node: Any, path: str) -> None:
    """Run a program tree; after each scope that ends normally, schedule ``mark(path)``: its
    position in history is where that scope exited."""
    kind = node[0]
    if kind == "act":
        await act(path)
    elif kind == "sleep":
        await durable.sleep(node[1])
    elif kind == "raise":
        raise durable.ApplicationError(path, type="ValueError")
    elif kind == "seq":
        for i, child in enumerate(node[1]):
            await interpret(child, f"{path}.{i}")
    elif kind == "par":
        async with durable.open_nursery() as nursery:
            for i, child in enumerate(node[1]):
                nursery.start_soon(interpret, child, f"{path}.{i}")
        await mark(path)
    elif kind == "deadline":
        with durable.move_on_after(node[1]):
            await interpret(node[2], f"{path}.0")
        await mark(path)
    elif kind == "fail_after":
        try:
            with durable.fail_after(node[1]):
                await interpret(node[2], f"{path}.0")
        except durable.TooSlowError:
            pass
        await mark(path)
    elif kind == "shield":
        with durable.CancelScope(shield=True):
            await interpret(node[1], f"{path}.0")
        await mark(path)
    elif kind == "try":
        try:
            await interpret(node[1], f"{path}.0")
        except Exception:  # noqa: BLE001 - activity errors, error groups, ValueError
            pass
        await mark(path)
    else:  # pragma: no cover
        raise AssertionError(kind)


@durable.workflow
async def program(tree: Any) -> str:
    await interpret(tree, "r")
    return "done"


durations = st.sampled_from([0.5, 1.0, 2.0, 5.0])
trees = st.recursive(
    st.one_of(
        st.just(["act"]),
        st.just(["act"]),
        st.just(["act"]),
        st.tuples(st.just("sleep"), durations).map(list),
        st.just(["raise"]),
    ),
    lambda inner: st.one_of(
        st.tuples(st.just("seq"), st.lists(inner, min_size=1, max_size=3)).map(list),
        st.tuples(st.just("par"), st.lists(inner, min_size=1, max_size=3)).map(list),
        st.tuples(st.just("deadline"), durations, inner).map(list),
        st.tuples(st.just("fail_after"), durations, inner).map(list),
        st.tuples(st.just("shield"), inner).map(list),
        st.tuples(st.just("try"), inner).map(list),
    ),
    max_leaves=10,
)
programs = st.tuples(st.sampled_from(["seq", "par"]), st.lists(trees, min_size=2, max_size=4)).map(list)
act_outcomes = st.lists(
    st.builds(
        Outcome,
        error=st.none() | st.just("broken"),
        takes=st.sampled_from([0.0, 0.5, 1.5, 4.0]),
        starts_after=st.sampled_from([0.0, 0.5]),
        on_cancel=st.sampled_from(["cancel", "ignore"]),
    ),
    max_size=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=programs, choices=act_outcomes, cancel_at=st.none() | st.sampled_from([0.0, 0.5, 1.0, 3.0]))
def test_f05_no_step_outlives_its_scope(tree: Any, choices: list[Outcome], cancel_at: float | None) -> None:
    acts = scripted(choices)

    def policy(name: str, args: list[Any], seq: int) -> Outcome:
        return Outcome(value=args[0]) if name == "mark" else acts(name, args, seq)

    sim = Sim(program, tree, policy=policy, cancel_at=cancel_at).run()
    assert sim.closed is not None
    history, conv = sim.history, sim.driver.conv
    final = {e["seq"]: i for i, e in enumerate(history)
             if e["k"] in (ev.ACTIVITY_COMPLETED, ev.ACTIVITY_FAILED, ev.ACTIVITY_CANCELLED)}
    steps = [(conv.from_payload(e["in"])[0], e["seq"]) for e in history
             if e["k"] == ev.ACTIVITY_SCHEDULED and e["name"] == "act"]
    for i, e in enumerate(history):
        if e["k"] == ev.ACTIVITY_SCHEDULED and e["name"] == "mark":
            scope = conv.from_payload(e["in"])[0]
            for path, seq in steps:
                if path.startswith(scope + "."):
                    assert final.get(seq, len(history)) < i, f"step {path} outlived scope {scope}"
    # nothing outlives the workflow either
    for _, seq in steps:
        assert final.get(seq, len(history)) < len(history) - 1
    event(f"{sim.closed}, {len(steps)} steps")
    rt, commands = replay(program, history)
    assert commands == [] and rt.done
