"""The runtime's side of updates, without a store: validators run before anything is recorded
(a refusal makes no command), accepted updates lead the activation as `UpdateAccepted` inputs,
handlers' commands and outcomes are replayed and checked like any workflow code."""

from __future__ import annotations

from typing import Any

import pytest

import durable
from durable import _events as ev
from durable._codec import Converter
from durable._defs import workflow_def
from durable._errors import NondeterminismError
from durable._runtime import Runtime

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
CONV = Converter()


def payload(value: Any) -> bytes:
    return CONV.to_payload(value, "test")


@durable.activity
async def lookup(n: int) -> int:
    return n


@durable.workflow
class Box:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.draws: list[float] = []

    async def run(self) -> list[str]:
        await durable.wait_condition(lambda: "end" in self.items)
        self.draws.append(durable.random().random())
        return self.items

    @durable.update
    def put(self, item: str) -> int:
        self.items.append(item)
        return len(self.items)

    @put.validator
    def _check(self, item: str) -> None:
        durable.random().random()  # a validator's draws must not shift the workflow's
        if item in self.items:
            raise ValueError(f"{item!r} is already in the box")

    @durable.update
    async def put_looked_up(self, n: int) -> int:
        value = await lookup(n)
        self.items.append(str(value))
        return value

    @durable.update
    def stamp(self) -> str:
        self.items.append(durable.now().isoformat())
        return self.items[-1]

    @durable.update
    def refuse(self) -> None:
        raise durable.ApplicationError("not today")

    @durable.signal
    def drop(self, item: str) -> None:
        self.items.append(item)


def started() -> list[dict[str, Any]]:
    return [{"k": ev.WORKFLOW_STARTED, "t": T0, "type": "Box", "in": payload([]), "seed": 7,
             "id": "box", "queue": "q"}]


def request(uid: str, name: str, *args: Any, at: int = T0) -> dict[str, Any]:
    return {"uid": uid, "name": name, "in": payload(list(args)), "t": at}


def record(history: list[dict[str, Any]], commands: list[dict[str, Any]], at: int) -> None:
    """Append what the store appends: the commands (and accepted updates) dated `at`."""
    for c in commands:
        history.append(dict(c, t=at))


def fresh() -> Runtime:
    return Runtime(workflow_def(Box), "box", "1", CONV)


def test_refused_update_makes_no_command_and_changes_nothing() -> None:
    rt, history = fresh(), started()
    record(history, rt.advance(history), T0)
    rt.mark_recorded()
    assert rt.advance([], updates=[request("a", "put", "x")]) != []
    rt.mark_recorded()
    before = list(rt.instance.items)
    commands = rt.advance([], updates=[request("b", "put", "x")])
    assert commands == []
    assert [uid for uid, _ in rt.update_rejections] == ["b"]
    assert "'x' is already in the box" in rt.update_rejections[0][1]
    assert rt.instance.items == before


def test_accepted_update_leads_the_activation_and_replays() -> None:
    rt, history = fresh(), started()
    record(history, rt.advance(history), T0)
    rt.mark_recorded()
    commands = rt.advance([], updates=[request("a", "put", "x", at=T0 + NS)])
    assert [c["k"] for c in commands] == [ev.UPDATE_ACCEPTED, ev.UPDATE_COMPLETED]
    assert commands[0]["at"] == T0 + NS and commands[0]["uid"] == "a"
    assert CONV.from_payload(commands[1]["out"]) == 1
    record(history, commands, T0 + 2 * NS)
    rt.mark_recorded()
    # the rest of the run: a signal ends it
    signal = {"k": ev.SIGNAL_RECEIVED, "t": T0 + 3 * NS, "name": "drop", "in": payload(["end"])}
    history.append(signal)
    record(history, rt.advance([signal]), T0 + 3 * NS)
    assert history[-1]["k"] == ev.WORKFLOW_COMPLETED
    assert CONV.from_payload(history[-1]["out"]) == ["x", "end"]
    # a fresh instance replays it all, with the same random numbers as the live one
    assert durable.replay(Box, history) == len(history)
    again = fresh()
    again.advance(history, run_live=False)
    assert again.instance.draws == rt.instance.draws


def test_validator_draws_do_not_shift_the_workflows_random_numbers() -> None:
    def draws(validate: bool) -> list[float]:
        rt, history = fresh(), started()
        record(history, rt.advance(history), T0)
        rt.mark_recorded()
        if validate:
            assert rt.advance([], updates=[request("r", "put", "end")])
            rt.mark_recorded()
        else:
            signal = {"k": ev.SIGNAL_RECEIVED, "t": T0, "name": "drop", "in": payload(["end"])}
            rt.advance([signal])
        return list(rt.instance.draws)

    assert draws(True) == draws(False)


def test_signal_in_the_same_activation_is_seen_by_the_validator() -> None:
    rt, history = fresh(), started()
    record(history, rt.advance(history), T0)
    rt.mark_recorded()
    signal = {"k": ev.SIGNAL_RECEIVED, "t": T0 + NS, "name": "drop", "in": payload(["x"])}
    commands = rt.advance([signal], updates=[request("a", "put", "x")])
    assert commands == [{"k": ev.TASK_COMPLETED}]  # the signal's activation; the update refused
    assert [uid for uid, _ in rt.update_rejections] == ["a"]


def test_unknown_update_and_wrong_arguments_are_refused() -> None:
    rt, history = fresh(), started()
    record(history, rt.advance(history), T0)
    rt.mark_recorded()
    assert rt.advance([], updates=[request("a", "nope"), request("b", "put", "x", "y")]) == []
    texts = dict(rt.update_rejections)
    assert "has no update 'nope' (updates: put, put_looked_up, refuse, stamp)" in texts["a"]
    assert "takes 1 arguments, it came with 2" in texts["b"]


def test_handler_failure_completes_the_update_with_its_error() -> None:
    rt, history = fresh(), started()
    record(history, rt.advance(history), T0)
    rt.mark_recorded()
    commands = rt.advance([], updates=[request("a", "refuse")])
    assert [c["k"] for c in commands] == [ev.UPDATE_ACCEPTED, ev.UPDATE_COMPLETED]
    assert "err" in commands[1] and "out" not in commands[1]
    assert not rt.done


def test_handler_commands_are_checked_on_replay() -> None:
    rt, history = fresh(), started()
    record(history, rt.advance(history), T0)
    rt.mark_recorded()
    commands = rt.advance([], updates=[request("a", "put_looked_up", 5)])
    assert [c["k"] for c in commands] == [ev.UPDATE_ACCEPTED, ev.ACTIVITY_SCHEDULED]
    record(history, commands, T0)
    # the history says the handler of "a" scheduled an activity; a handler "put" made instead
    # is a different program: the replay names the difference
    tampered = [dict(e, name="put", **{"in": payload(["z"])}) if e["k"] == ev.UPDATE_ACCEPTED else e
                for e in history]
    with pytest.raises(NondeterminismError, match="ActivityScheduled"):
        durable.replay(Box, tampered)


def test_a_handlers_now_is_the_same_on_replay() -> None:
    rt, history = fresh(), started()
    record(history, rt.advance(history), T0)
    rt.mark_recorded()
    commands = rt.advance([], updates=[request("a", "stamp", at=T0 + 5 * NS)])
    record(history, commands, T0 + 9 * NS)  # recorded later than it was asked
    again = fresh()
    again.advance(history, run_live=False)
    assert again.instance.items == rt.instance.items
    assert history[-2]["t"] == T0 + 9 * NS and history[-2]["at"] == T0 + 5 * NS


def test_an_async_validator_is_refused_when_the_class_is_declared() -> None:
    with pytest.raises(durable.InvalidArgument, match="validator of update 'put' must be a plain"):
        class Bad:
            @durable.update
            def put(self, item: str) -> None: ...

            @put.validator
            async def _check(self, item: str) -> None: ...


def test_updates_are_published_with_their_signatures() -> None:
    described = workflow_def(Box).describe()
    assert described["updates"] == ["put", "put_looked_up", "refuse", "stamp"]
    assert described["update_params"]["put"] == [1, 1]
    assert workflow_def(Box).validators == {"put": "_check"}
