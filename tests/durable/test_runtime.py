"""The workflow runtime's contract with workflow code: values from history, isolation between
instances (F04), clear errors for what is not durable, eviction, signals and queries."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio

import durable
from durable import _context
from durable import _events as ev
from durable._runtime import Runtime

from .sim import NS, OPEN, T0, Driver, kinds, replay, strip


@durable.activity
def work(tag: Any) -> Any:
    return tag


def tags_scheduled(driver: Driver, commands: list[dict[str, Any]] | None = None) -> list[Any]:
    events = driver.history if commands is None else commands
    return [driver.conv.from_payload(e["in"])[0] for e in events if e["k"] == ev.ACTIVITY_SCHEDULED]


# --- values taken from history: now(), random(), uuid4(), info() -----------------------------


@durable.workflow
async def clocky() -> Any:
    first = [durable.now().isoformat(), durable.random().random(), str(durable.uuid4()), durable.random().randint(0, 10**9)]
    await durable.sleep(10)
    second = [durable.now().isoformat(), durable.random().random(), str(durable.uuid4())]
    info = durable.info()
    return [first, second, [info.workflow_id, info.workflow_type, info.run_id, info.queue, info.started_at.isoformat()]]


def run_clocky(seed: int = 42) -> Driver:
    d = Driver(clocky, workflow_id="clock-1", run_id="r-9", queue="payments", seed=seed)
    d.start()
    d.fire(1)
    return d


def test_now_random_and_uuid4_come_from_history() -> None:
    d = run_clocky()
    first, second, info = d.result
    start = dt.datetime.fromtimestamp(T0 / NS, tz=dt.timezone.utc)
    assert first[0] == start.isoformat()  # the time of the events, never the clock
    assert second[0] == (start + dt.timedelta(seconds=10)).isoformat()
    assert uuid.UUID(first[2]).version == 4 and first[2] != second[2]
    assert info == ["clock-1", "clocky", "r-9", "payments", start.isoformat()]
    # the generator is seeded from history: another seed, other numbers
    assert run_clocky(seed=43).result[0][1:] != first[1:]


def test_now_random_and_uuid4_are_identical_on_replay() -> None:
    d = run_clocky()
    # replaying everything but the closing command makes the workflow compute its result again
    rt, commands = replay(clocky, d.history[:-1], workflow_id="clock-1", run_id="r-9")
    assert strip(commands) == strip(d.history[-1:])
    # and the global random module has nothing to do with it
    import random

    random.seed(0)
    rt2, commands2 = replay(clocky, d.history[:-1], workflow_id="clock-1", run_id="r-9")
    assert strip(commands2) == strip(commands)


# --- awaiting what is not durable -----------------------------------------------------------


class Foreign:
    def __await__(self) -> Iterator[str]:
        yield "hello"


FOREIGN: dict[str, Callable[[], Any]] = {
    "trio.sleep(1)": lambda: trio.sleep(1),
    "trio.sleep(0)": lambda: trio.sleep(0),
    "trio.Event().wait()": lambda: trio.Event().wait(),
    "asyncio.sleep(1)": lambda: asyncio.sleep(1),
    "asyncio.sleep(0)": lambda: asyncio.sleep(0),
    "a foreign awaitable": Foreign,
}


@pytest.mark.parametrize("what", sorted(FOREIGN))
@pytest.mark.parametrize("in_child", [False, True], ids=["main", "child"])
def test_awaiting_something_not_durable_fails_the_workflow_task_clearly(what: str, in_child: bool) -> None:
    @durable.workflow(name="foreign")
    async def foreign() -> str:
        async def child() -> None:
            await FOREIGN[what]()

        if in_child:
            async with durable.open_nursery() as nursery:
                nursery.start_soon(child)
        else:
            await FOREIGN[what]()
        return "finished"

    d = Driver(foreign)
    # at once: no hang; a bug in the code fails the activation, and nothing of it is recorded
    with pytest.raises(durable.DurableError, match="not a durable operation"):
        d.start()
    assert kinds(d.history) == [ev.WORKFLOW_STARTED]


# --- isolation between instances (F04) ------------------------------------------------------


@durable.workflow
async def whoami(rounds: int) -> list[str]:
    seen = []
    for _ in range(rounds):
        seen.append(durable.info().workflow_id)
        await work(durable.info().workflow_id)
        seen.append(durable.info().workflow_id)
    return seen


def test_f04_interleaved_runtimes_never_see_each_others_info() -> None:
    import random

    rng = random.Random(4)
    drivers = [Driver(whoami, workflow_id=f"wf-{i}", run_id=f"run-{i}") for i in range(6)]
    for d in drivers:
        d.start(5)
    while any(d.closed is None for d in drivers):
        d = rng.choice([d for d in drivers if d.closed is None])
        (seq,) = d.activities
        d.complete(seq, None)
        assert _context.current_or_none() is None  # nothing left bound between activations
    for d in drivers:
        assert set(tags_scheduled(d)) == {d.workflow_id}
        assert d.result == [d.workflow_id] * 10


NESTED: list[Driver] = []


@durable.workflow
async def nests() -> list[str]:
    before = durable.info().workflow_id
    inner = NESTED[0]
    inner.complete(next(iter(inner.activities)))  # another instance's activation, inside ours
    after = durable.info().workflow_id
    await work(after)
    return [before, after, inner.workflow_id]


def test_f04_an_activation_inside_another_restores_the_outer_instance() -> None:
    inner = Driver(whoami, workflow_id="inner")
    inner.start(2)
    NESTED[:] = [inner]
    outer = Driver(nests, workflow_id="outer")
    assert tags_scheduled(outer, outer.start()) == ["outer"]
    outer.complete(1)
    assert outer.result == ["outer", "outer", "inner"]
    assert tags_scheduled(inner) == ["inner", "inner"]


async def test_durable_calls_outside_a_workflow_are_clear_errors() -> None:
    # this test runs on trio: workflow operations must refuse, not touch trio's scheduler
    with pytest.raises(durable.DurableError, match="durable.sleep can only be used inside workflow code"):
        await durable.sleep(1)
    # one readable sentence: where it may be called, then what to do instead
    with pytest.raises(durable.DurableError) as caught:
        await work("x")
    assert str(caught.value) == (
        "activity 'work' can only be used inside workflow code; "
        "outside a workflow, call its function directly: work.fn(...)"
    )
    with pytest.raises(durable.DurableError, match="inside workflow code"):
        await durable.wait_condition(lambda: True)
    with pytest.raises(durable.DurableError, match="inside workflow code"):
        async with durable.open_nursery():
            pass  # pragma: no cover
    with pytest.raises(durable.DurableError, match="inside workflow code"):
        with durable.move_on_after(1):
            pass  # pragma: no cover
    for fn in (durable.now, durable.random, durable.uuid4, durable.info):
        with pytest.raises(durable.DurableError, match="inside workflow code"):
            fn()
    with pytest.raises(durable.DurableError, match="inside workflow code"):
        durable.Event().set()
    assert work.fn("x") == "x"  # the plain function stays callable


def test_the_current_instance_is_unbound_even_when_replay_fails() -> None:
    @durable.workflow(name="v1")
    async def v1() -> None:
        await work("a")

    @durable.workflow(name="v1")
    async def v2() -> None:
        await durable.sleep(1)

    d = Driver(v1)
    d.start()
    with pytest.raises(durable.NondeterminismError):
        replay(v2, d.history)
    assert _context.current_or_none() is None


# --- eviction (DESIGN trap: finalizers running in someone else's activation) ---------------


@durable.workflow
async def stubborn() -> None:
    try:
        await durable.sleep(100)
    finally:
        await work("from finally")  # would schedule an activity while being torn down


HOOKS: list[Callable[[], None]] = []


@durable.workflow
async def bystander() -> str:
    while HOOKS:
        HOOKS.pop(0)()
    await work("mine")
    return "ok"


def test_closing_an_instance_inside_another_activation_emits_nothing_anywhere() -> None:
    victim = Driver(stubborn, workflow_id="victim")
    victim.start()
    before = list(victim.history)
    other = Driver(bystander, workflow_id="other")
    HOOKS[:] = [victim.rt.close]
    commands = other.start()
    assert tags_scheduled(other, commands) == ["mine"]
    assert strip(commands)[0]["seq"] == 1
    assert victim.history == before
    assert victim.rt._commands == []


def test_closing_an_instance_outside_any_activation_emits_nothing() -> None:
    victim = Driver(stubborn)
    victim.start()
    victim.rt.close()
    assert victim.rt._commands == [] and _context.current_or_none() is None


def test_an_instance_dropped_without_close_does_not_write_into_another() -> None:
    """If the garbage collector finalizes an instance's coroutine during another instance's
    activation, the finalized code must not reach the running instance."""
    unraisable: list[BaseException | None] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda info: unraisable.append(info.exc_value)
    gc.disable()
    try:
        victim = Driver(stubborn, workflow_id="victim")
        victim.start()
        OPEN.remove(victim.rt)  # this one is dropped, not evicted
        del victim  # its coroutine is now garbage in a reference cycle, not yet finalized
        HOOKS[:] = [gc.collect]
        other = Driver(bystander, workflow_id="other")
        commands = other.start()
    finally:
        gc.enable()
        sys.unraisablehook = old_hook
    assert tags_scheduled(other, commands) == ["mine"]
    assert strip(commands)[0]["seq"] == 1
    # the finalized code met a clear error instead of another workflow
    assert any(isinstance(e, durable.DurableError) for e in unraisable), unraisable


# --- signals ------------------------------------------------------------------------------


@durable.workflow
class Log:
    def __init__(self) -> None:
        self.notes: list[Any] = []
        self.scope: durable.CancelScope | None = None
        self.flag = durable.Event()

    @durable.signal
    def note(self, item: Any) -> None:
        self.notes.append(item)

    @durable.signal(name="note-later")
    async def note_later(self, item: Any) -> None:
        await durable.sleep(0)
        self.notes.append(["later", item])

    @durable.signal
    def explode(self) -> None:
        raise KeyError("bad signal")

    @durable.signal
    def refuse(self) -> None:
        raise durable.ApplicationError("no thanks", type="Refused")

    @durable.query
    def notes_so_far(self) -> list[Any]:
        return list(self.notes)

    @durable.query
    def first(self, default: Any) -> Any:
        return self.notes[0] if self.notes else default

    @durable.query
    def broken(self) -> None:
        raise ZeroDivisionError("no")

    @durable.query
    def cancel_the_scope(self) -> None:
        assert self.scope is not None
        self.scope.cancel()

    @durable.query
    def set_the_flag(self) -> None:
        self.flag.set()

    @durable.query
    def draw(self) -> list[Any]:
        return [durable.random().random(), str(durable.uuid4())]

    async def run(self, want: int) -> Any:
        seen_at_start = list(self.notes)
        async with durable.open_nursery() as nursery:
            nursery.start_soon(self.flag.wait)
            with durable.move_on_after(1000) as self.scope:
                await durable.wait_condition(lambda: len(self.notes) >= want)
            self.flag.set()
        return [seen_at_start, self.notes, durable.random().random(), str(durable.uuid4())]


def test_f13_signals_are_applied_in_history_order_once_each() -> None:
    d = Driver(Log)
    d.start(8)
    d.deliver(*(d.signal_event("note", i) for i in range(3)), d.signal_event("note-later", 3), d.signal_event("note", 4))
    d.signal("note", 5)
    d.deliver(d.signal_event("note", 6), d.signal_event("unknown-to-this-code", 0))
    commands = d.signal("note", 7)
    assert kinds(commands) == [ev.TIMER_CANCELLED, ev.WORKFLOW_COMPLETED]
    seen_at_start, notes, *_ = d.result
    assert seen_at_start == []
    # the async handler's note lands after the sync ones of its activation: it awaited first
    assert notes == [0, 1, 2, 4, ["later", 3], 5, 6, 7]
    # replay applies each signal once, in the same order
    i = last_commands(d.history)
    rt, live = replay(Log, d.history[:i])
    assert strip(live) == strip(d.history[i:])
    assert rt.query("notes_so_far", []) == notes


def test_a_signal_that_came_with_the_start_is_seen_before_the_first_await() -> None:
    d = Driver(Log)
    start = {"k": ev.WORKFLOW_STARTED, "type": "Log", "in": d.conv.to_payload([1], "in"), "seed": 1, "id": "wf-1", "queue": "q"}
    d.deliver(start, d.signal_event("note", "early"))
    assert d.result[:2] == [["early"], ["early"]]


def test_a_signal_handler_with_a_bug_fails_the_workflow_task_not_the_workflow() -> None:
    """A handler that raises a plain exception (a bug) fails the activation: nothing of it is
    recorded, the workflow stays open, and fixed code replays the same history and goes on."""
    d = Driver(Log)
    d.start(1)
    before = list(d.history)
    with pytest.raises(KeyError, match="bad signal"):
        d.signal("explode")
    assert d.history == before + [d.history[-1]] and d.history[-1]["k"] == ev.SIGNAL_RECEIVED
    assert d.closed is None


def test_a_signal_handler_raising_an_application_error_fails_the_workflow() -> None:
    d = Driver(Log)
    d.start(1)
    assert kinds(d.signal("refuse")) == [ev.TIMER_CANCELLED, ev.WORKFLOW_FAILED]
    assert (d.error["type"], d.error["msg"]) == ("Refused", "no thanks")


def test_a_signal_whose_arguments_do_not_fit_its_handler_is_dropped() -> None:
    """A caller's typo recorded by name (before any worker published the handler's signature)
    never fails the workflow: the signal is dropped, the same way on every replay."""
    d = Driver(Log)
    d.start(3)
    assert kinds(d.signal("note", "a", "too many")) == [ev.TASK_COMPLETED]
    assert kinds(d.signal("note")) == [ev.TASK_COMPLETED]
    d.signal("note", "a")
    d.signal("note", "b")
    d.signal("note", "c")
    assert d.closed == ev.WORKFLOW_COMPLETED and d.result[1] == ["a", "b", "c"]
    rt, commands = replay(Log, d.history[: last_commands(d.history)])
    assert strip(commands) == strip(d.history[last_commands(d.history):])


@durable.workflow(failure_exceptions=(KeyError,))
class Strict(Log):
    """The same handlers; a KeyError is declared to fail the workflow."""


def test_declared_failure_exceptions_fail_the_workflow() -> None:
    d = Driver(Strict)
    d.start(1)
    assert kinds(d.signal("explode")) == [ev.TIMER_CANCELLED, ev.WORKFLOW_FAILED]
    assert d.error["type"] == "KeyError"


# --- queries ------------------------------------------------------------------------------


def started_log() -> Driver:
    d = Driver(Log)
    d.start(3)
    d.signal("note", "a")
    return d


def finish(d: Driver) -> None:
    d.signal("note", "b")
    d.signal("note", "c")
    assert d.closed == ev.WORKFLOW_COMPLETED


def last_commands(history: list[dict[str, Any]]) -> int:
    """Where the commands of the last activation begin."""
    i = len(history)
    while history[i - 1]["k"] in ev.COMMAND_KINDS:
        i -= 1
    return i


def assert_same_as_replay(d: Driver) -> None:
    """The instance that answered queries made exactly the commands a fresh replay makes."""
    i = last_commands(d.history)
    rt, live = replay(Log, d.history[:i])
    assert strip(live) == strip(d.history[i:])


def test_a_query_sees_the_current_state_and_changes_no_history() -> None:
    d = started_log()
    history, processed = list(d.history), d.rt.processed
    assert d.rt.query("notes_so_far", []) == ["a"]
    assert d.rt.query("first", [None]) == "a"
    assert d.history == history and d.rt.processed == processed
    finish(d)
    assert_same_as_replay(d)


def test_query_errors_are_clear() -> None:
    d = started_log()
    with pytest.raises(durable.QueryFailed, match=r"has no query 'nope' \(queries: broken, cancel_the_scope"):
        d.rt.query("nope", [])
    with pytest.raises(durable.QueryFailed, match="query 'broken' raised ZeroDivisionError: no"):
        d.rt.query("broken", [])
    fresh = Runtime(durable._defs.workflow_def(Log), "wf-2", "r", d.conv)
    with pytest.raises(durable.QueryFailed, match="has not started"):
        fresh.query("notes_so_far", [])


def test_a_query_cannot_emit_commands() -> None:
    d = started_log()
    # cancelling the scope would cancel its timer: a TimerCancelled command
    with pytest.raises(durable.DurableError, match="query handler must not change the workflow"):
        d.rt.query("cancel_the_scope", [])
    assert d.rt._commands == []
    finish(d)  # the scope was not cancelled: the workflow goes on as its history says
    assert d.result[1] == ["a", "b", "c"]
    assert_same_as_replay(d)


def test_a_query_cannot_wake_workflow_tasks() -> None:
    d = started_log()
    with pytest.raises(durable.DurableError, match="query handler must not change the workflow"):
        d.rt.query("set_the_flag", [])
    finish(d)
    assert_same_as_replay(d)


def test_a_query_does_not_consume_the_workflows_random_numbers() -> None:
    d = started_log()
    first = d.rt.query("draw", [])
    assert d.rt.query("draw", []) == first  # a query sees the generator as it is, changes nothing
    finish(d)
    assert_same_as_replay(d)
