"""Replay: the same history always drives the same code to the same commands.

Property tests record random runs of a few workflow shapes (sequential steps, fan-out in a
nursery, durable timers and deadlines, a saga with compensation, signals with
`wait_condition`) through `sim.Sim`, then check that recording is deterministic, that a fresh
runtime replays every history to its end, and that a changed workflow is caught with a
message that says where and how it departs from its history.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import durable
from durable import _events as ev
from durable._runtime import Runtime

from .sim import Outcome, Sim, replay, scripted, strip

ROOT = Path(__file__).resolve().parents[2]


@durable.activity
def step(tag: str, x: Any) -> Any:
    return [tag, x]


@durable.activity
def undo(tag: str, x: Any) -> None:
    return None


# --- workflow shapes -----------------------------------------------------------------------


@durable.workflow
async def sequential(n: int) -> Any:
    out = []
    for i in range(n):
        try:
            out.append(await step("seq", i))
        except durable.ActivityError as exc:
            out.append(["failed", exc.seq, str(exc.__cause__)])
    return [out, durable.now().isoformat(), durable.random().random(), str(durable.uuid4())]


@durable.workflow
async def fan_out(n: int) -> Any:
    results: dict[int, Any] = {}
    failed: list[int] = []

    async def child(i: int) -> None:
        results[i] = await step("fan", i)
        await durable.sleep(i + 1)
        results[i] = [results[i], await step("fan2", i)]

    async def children() -> None:
        async with durable.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(child, i)

    if n % 2:
        await children()  # a failure fails the workflow
    else:
        try:
            await children()
        except* durable.ActivityError as group:
            failed = sorted(e.seq for e in group.exceptions)
    return [[[k, v] for k, v in sorted(results.items())], failed]


@durable.workflow
async def timers(n: int) -> Any:
    out: list[Any] = []
    await durable.sleep(2)
    with durable.move_on_after(3) as scope:
        try:
            out.append(await step("within 3 s", n))
        except durable.ActivityError:
            out.append("failed")
    out.append(scope.cancelled_caught)
    with durable.move_on_after(1):
        try:
            out.append(await step.with_options(cancellation="try")("try", n))
        except durable.ActivityError:
            out.append("failed")
    try:
        with durable.fail_after(5):
            try:
                async with durable.open_nursery() as nursery:
                    for i in range(n):
                        nursery.start_soon(step, "deadline", i)
            except* durable.ActivityError as group:
                out.append(["failed", len(group.exceptions)])
        out.append("in time")
    except durable.TooSlowError:
        out.append("too slow")
    await durable.sleep(0.5)
    return out


@durable.workflow
async def saga(n: int) -> Any:
    booked: list[int] = []

    async def book(i: int) -> None:
        await step("book", i)
        booked.append(i)

    try:
        async with durable.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(book, i)
    except BaseException as exc:  # the nursery's error group, or the workflow's Cancelled
        with durable.CancelScope(shield=True):
            for i in reversed(booked):
                try:
                    await undo("book", i)
                except durable.ActivityError:
                    pass
        if isinstance(exc, durable.Cancelled):
            raise
        return ["compensated", booked]
    return ["booked", booked]


@durable.workflow
class Mailbox:
    def __init__(self) -> None:
        self.inbox: list[Any] = []
        self.handled = 0

    @durable.signal
    def post(self, item: Any) -> None:
        self.inbox.append(item)

    @durable.signal
    async def post_slowly(self, item: Any) -> None:
        await durable.sleep(1)
        self.inbox.append(["slow", item])

    @durable.query
    def state(self) -> Any:
        return {"inbox": list(self.inbox), "handled": self.handled}

    async def run(self, rounds: int) -> Any:
        out: list[Any] = []
        for _ in range(rounds):
            try:
                await durable.wait_condition(lambda: len(self.inbox) > 0, timeout=4)
            except durable.TooSlowError:
                out.append("timeout")
                continue
            item = self.inbox.pop(0)
            try:
                out.append(await step("handle", item))
            except durable.ActivityError:
                out.append(["failed", item])
            self.handled += 1
        return out


SHAPES = {"sequential": sequential, "fan_out": fan_out, "timers": timers, "saga": saga, "mailbox": Mailbox}


@dataclass(frozen=True)
class Case:
    shape: str
    n: int
    choices: tuple[Any, ...]
    signals: tuple[tuple[float, str, tuple[Any, ...]], ...] = ()
    cancel_at: float | None = None

    @property
    def workflow(self) -> Any:
        return SHAPES[self.shape]

    def record(self) -> Sim:
        sim = Sim(
            self.workflow, self.n, policy=scripted(self.choices), signals=self.signals,
            cancel_at=self.cancel_at, workflow_id=f"{self.shape}-{self.n}",
        )
        return sim.run()


outcomes = st.one_of(
    st.sampled_from(["ok", "fail", "slow"]),
    st.builds(
        Outcome,
        value=st.integers(-5, 5),
        error=st.none() | st.just("broken"),
        takes=st.sampled_from([0.0, 0.5, 2.0, 10.0]),
        starts_after=st.sampled_from([0.0, 1.0]),
        on_cancel=st.sampled_from(["cancel", "ignore"]),
    ),
)
signal_lists = st.lists(
    st.tuples(
        st.integers(0, 40).map(lambda half_seconds: half_seconds / 2),
        st.sampled_from(["post", "post_slowly"]),
        st.tuples(st.integers(0, 9)),
    ),
    max_size=5,
).map(tuple)


@st.composite
def cases(draw: Any, shapes: tuple[str, ...] = tuple(SHAPES)) -> Case:
    shape = draw(st.sampled_from(shapes))
    return Case(
        shape=shape,
        n=draw(st.integers(0, 4)),
        choices=tuple(draw(st.lists(outcomes, max_size=12))),
        signals=draw(signal_lists) if shape == "mailbox" else (),
        cancel_at=draw(st.none() | st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 12.0])),
    )


def activation_bounds(history: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(start of inputs, start of commands) of every activation in a history."""
    bounds, i = [], 0
    while i < len(history):
        j = i
        while j < len(history) and history[j]["k"] in ev.INPUT_KINDS:
            j += 1
        k = j
        while k < len(history) and history[k]["k"] in ev.COMMAND_KINDS:
            k += 1
        bounds.append((i, j))
        i = k
    return bounds


PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- properties ----------------------------------------------------------------------------


@PROPERTY
@given(case=cases())
def test_recording_is_deterministic_and_a_fresh_runtime_replays_every_event(case: Case) -> None:
    first, second = case.record(), case.record()
    assert first.history == second.history
    assert first.closed is not None, "every shape ends"
    event(f"{case.shape} ends with {first.closed}")
    rt, commands = replay(case.workflow, first.history, workflow_id=first.driver.workflow_id)
    assert commands == []
    assert rt.processed == len(first.history)
    assert rt.done
    rt.close()


@PROPERTY
@given(case=cases())
def test_f07_step_ids_equal_across_replays(case: Case) -> None:
    """From every activation boundary, a fresh runtime (a cache miss) makes the same commands."""
    history = case.record().history
    wid = f"{case.shape}-{case.n}"
    bounds = activation_bounds(history)
    for number, (start, commands_at) in enumerate(bounds):
        end = bounds[number + 1][0] if number + 1 < len(bounds) else len(history)
        rt = Runtime(durable._defs.workflow_def(case.workflow), wid, "run-1", durable._codec.Converter())
        live = rt.advance(history[:commands_at])
        assert strip(live) == strip(history[commands_at:end]), f"activation {number} differs"
        rt.close()
    # and a runtime fed in arbitrary slices, as a cached worker instance is, agrees too
    rt = Runtime(durable._defs.workflow_def(case.workflow), wid, "run-1", durable._codec.Converter())
    for start, _ in bounds[1:] + [(len(history), len(history))]:
        assert rt.advance(history[rt.processed : start], run_live=False) == []
        assert rt.processed == start
    assert rt.done


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(shapes=("saga",)))
def test_f05_compensation_starts_only_after_every_step_of_its_scope_ended(case: Case) -> None:
    history = case.record().history
    final = {e["seq"]: i for i, e in enumerate(history)
             if e["k"] in (ev.ACTIVITY_COMPLETED, ev.ACTIVITY_FAILED, ev.ACTIVITY_CANCELLED)}
    books = [e["seq"] for e in history if e["k"] == ev.ACTIVITY_SCHEDULED and e["name"] == "step"]
    undos = [i for i, e in enumerate(history) if e["k"] == ev.ACTIVITY_SCHEDULED and e["name"] == "undo"]
    if undos:
        assert all(seq in final for seq in books), "a step never reached a final event"
        assert max(final[seq] for seq in books) < min(undos)


@durable.workflow
async def nested_saga(plan: list[list[float]]) -> Any:
    """Groups of steps, each in nested nurseries under a deadline; a group that fails or runs
    out of time is compensated (shielded) before the next group starts."""
    report = []
    for g, (deadline, n) in enumerate(plan):
        done: list[int] = []

        async def book(i: int) -> None:
            await step(f"g{g}", i)
            done.append(i)

        failed: BaseException | None = None
        try:
            with durable.move_on_after(deadline) as scope:
                async with durable.open_nursery() as outer:
                    outer.start_soon(book, 0)
                    async with durable.open_nursery() as inner:
                        for i in range(1, int(n)):
                            inner.start_soon(book, i)
        except BaseException as exc:  # an error group, or the workflow's Cancelled
            failed = exc
        if failed is not None or scope.cancelled_caught:
            with durable.CancelScope(shield=True):
                for i in reversed(done):
                    await undo(f"g{g}", i)
            if isinstance(failed, durable.Cancelled):
                raise failed
        report.append([g, sorted(done), failed is not None, scope.cancelled_caught])
    return report


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(st.tuples(st.sampled_from([0.5, 1.0, 3.0, 20.0]), st.integers(1, 4)), min_size=1, max_size=3),
    choices=st.lists(outcomes, max_size=12),
    cancel_at=st.none() | st.sampled_from([0.0, 1.0, 2.5, 6.0]),
)
def test_f05_nested_scopes_compensate_only_after_every_step_of_the_group_ended(
    plan: list[tuple[float, int]], choices: list[Any], cancel_at: float | None
) -> None:
    sim = Sim(nested_saga, [list(p) for p in plan], policy=scripted(choices), cancel_at=cancel_at).run()
    history = sim.history
    assert sim.closed is not None
    final = {e["seq"]: i for i, e in enumerate(history)
             if e["k"] in (ev.ACTIVITY_COMPLETED, ev.ACTIVITY_FAILED, ev.ACTIVITY_CANCELLED)}
    conv = sim.driver.conv
    for g in range(len(plan)):
        group = f"g{g}"
        steps = [e["seq"] for e in history if e["k"] == ev.ACTIVITY_SCHEDULED
                 and e["name"] == "step" and conv.from_payload(e["in"])[0] == group]
        undos = [i for i, e in enumerate(history) if e["k"] == ev.ACTIVITY_SCHEDULED
                 and e["name"] == "undo" and conv.from_payload(e["in"])[0] == group]
        if undos:
            event(f"group compensated ({sim.closed})")
            assert all(seq in final for seq in steps), "a compensated step never reached a final event"
            assert max(final[seq] for seq in steps) < min(undos)
    rt, commands = replay(nested_saga, history)
    assert commands == [] and rt.done


# --- across processes ----------------------------------------------------------------------


def fixed_cases() -> list[Case]:
    """A fixed spread of cases, the same in every process."""
    out = []
    menu = ["ok", "fail", "slow", Outcome(value=1, takes=2.0, starts_after=1.0), Outcome(error="x", takes=0.5)]
    for i, shape in enumerate(sorted(SHAPES)):
        for n in range(1, 4):
            choices = tuple(menu[(i + n + k) % len(menu)] for k in range(8))
            signals = ((1.0, "post", (n,)), (2.5, "post_slowly", (n + 1,))) if shape == "mailbox" else ()
            out.append(Case(shape, n, choices, signals, cancel_at=7.0 if n == 3 else None))
    return out


def dump_fixed_cases() -> None:
    """Write the histories of `fixed_cases` to stdout as CBOR (run in a subprocess)."""
    sys.stdout.buffer.write(cbor2.dumps([case.record().history for case in fixed_cases()]))


def test_f07_step_ids_equal_across_processes() -> None:
    """Another interpreter, with another hash seed, records byte-identical histories."""
    here = [case.record().history for case in fixed_cases()]
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", "from tests.durable.test_replay import dump_fixed_cases; dump_fixed_cases()"],
        cwd=ROOT, env=env, capture_output=True, check=True, timeout=60,
    )
    assert cbor2.loads(out.stdout) == here


# --- non-determinism -----------------------------------------------------------------------


@durable.activity
def charge(x: int) -> int:
    return x


@durable.activity
def ship(x: int) -> int:
    return x


@durable.activity(name="ship_v2")
def ship_renamed(x: int) -> int:
    return x


@durable.activity
def extra(x: int) -> int:
    return x


@durable.workflow(name="order")
async def order_v1(x: int) -> int:
    a = await charge(x)
    b = await ship(x)
    return a + b


@durable.workflow(name="order")
async def order_reordered(x: int) -> int:
    b = await ship(x)
    a = await charge(x)
    return a + b


@durable.workflow(name="order")
async def order_with_timer(x: int) -> int:
    a = await charge(x)
    await durable.sleep(3)
    b = await ship(x)
    return a + b


@durable.workflow(name="order")
async def order_without_ship(x: int) -> int:
    return await charge(x)


@durable.workflow(name="order")
async def order_renamed(x: int) -> int:
    a = await charge(x)
    b = await ship_renamed(x)
    return a + b


@durable.workflow(name="order")
async def order_with_extra_step(x: int) -> int:
    a = await charge(x)
    b = await ship(x)
    return a + b + await extra(x)


@durable.workflow(name="order")
async def order_other_arithmetic(x: int) -> int:
    a = await charge(x * 2)  # arguments are not compared (as in Temporal): only the steps
    b = await ship(x)
    return a * b


@durable.workflow(name="order")
async def order_ship_twice(x: int) -> int:
    a = await charge(x)
    async with durable.open_nursery() as nursery:
        nursery.start_soon(ship, x)
        nursery.start_soon(ship, x)
    return a


def record_order() -> list[dict[str, Any]]:
    sim = Sim(order_v1, 5, policy=scripted([], value=lambda name, args: args[0]), workflow_id="order-17").run()
    assert [e["k"] for e in sim.history] == [
        ev.WORKFLOW_STARTED,
        ev.ACTIVITY_SCHEDULED, ev.ACTIVITY_COMPLETED,
        ev.ACTIVITY_SCHEDULED, ev.ACTIVITY_COMPLETED,
        ev.WORKFLOW_COMPLETED,
    ]
    return sim.history


@pytest.mark.parametrize(
    ("changed", "event", "history_has", "code_does"),
    [
        (order_reordered, 1, "ActivityScheduled('charge', seq=1)", "ActivityScheduled('ship', seq=1)"),
        (order_with_timer, 3, "ActivityScheduled('ship', seq=2)", "TimerStarted(3 s, seq=2)"),
        (order_without_ship, 3, "ActivityScheduled('ship', seq=2)", "WorkflowCompleted"),
        (order_renamed, 3, "ActivityScheduled('ship', seq=2)", "ActivityScheduled('ship_v2', seq=2)"),
        (order_with_extra_step, 5, "WorkflowCompleted", "ActivityScheduled('extra', seq=3)"),
    ],
    ids=["reorder", "add-timer", "remove-step", "rename", "add-step"],
)
def test_changed_code_is_caught_with_a_message_naming_the_event(
    changed: Any, event: int, history_has: str, code_does: str
) -> None:
    history = record_order()
    with pytest.raises(durable.NondeterminismError) as info:
        replay(changed, history, workflow_id="order-17")
    message = str(info.value)
    assert f"workflow 'order-17' (order), event {event}: " in message
    assert f"the history has {history_has} but the code now does {code_does}" in message
    assert "durable history order-17" in message  # and where to look


def test_code_that_does_more_in_one_activation_is_caught() -> None:
    history = record_order()
    with pytest.raises(durable.NondeterminismError, match=(
        r"event 4: the history has no more commands here but the code now does "
        r"ActivityScheduled\('ship', seq=3\)"
    )):
        replay(order_ship_twice, history, workflow_id="order-17")


def test_code_that_does_less_in_one_activation_is_caught() -> None:
    history = Sim(order_ship_twice, 5, workflow_id="order-17").run().history
    with pytest.raises(durable.NondeterminismError, match=(
        r"event 4: the history has ActivityScheduled\('ship', seq=3\) but the code now does nothing more"
    )):
        replay(order_v1, history, workflow_id="order-17")


def test_changes_that_keep_the_same_steps_replay() -> None:
    rt, commands = replay(order_other_arithmetic, record_order(), workflow_id="order-17")
    assert commands == [] and rt.done


def test_a_change_after_the_recorded_part_runs_live() -> None:
    """Replay checks only what was recorded; the new code decides what comes next."""
    history = record_order()[:3]  # charge scheduled and completed; the next task not yet run
    rt, commands = replay(order_with_timer, history, workflow_id="order-17")
    assert strip(commands) == [{"k": ev.TIMER_STARTED, "seq": 2, "dur": 3_000_000_000}]
    rt.close()


class _CountingCodec:
    """A payload codec that changes nothing and counts the payloads it is given to encode."""

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, data: bytes) -> bytes:
        self.encoded += 1
        return data

    def decode(self, data: bytes) -> bytes:
        return data


def test_replayed_activations_make_no_payloads_and_the_live_one_does() -> None:
    """A replayed activation's commands are only compared with the history's (kind, seq and name)
    and never written, so their payloads are not made: replay does not encode arguments or
    results. The live activation's commands are written: theirs are made."""
    history = record_order()
    codec = _CountingCodec()
    rt = Runtime(durable._defs.workflow_def(order_v1), "order-17", "run-1", durable._codec.Converter(codec))
    assert rt.advance(history, run_live=False) == [] and rt.done
    assert codec.encoded == 0  # charge's and ship's arguments, the result: none made
    rt.close()
    rt = Runtime(durable._defs.workflow_def(order_v1), "order-17", "run-1", durable._codec.Converter(codec))
    [live] = rt.advance(history[:3])  # charge's activation replayed, the next one live
    assert (live["k"], live["name"], rt.converter.from_payload(live["in"])) == (ev.ACTIVITY_SCHEDULED, "ship", [5])
    assert codec.encoded == 1
    rt.close()
