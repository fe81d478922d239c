"""F05 on random programs: nested nurseries, sagas and timeouts with random activity outcomes.

A program is a random tree. Leaves are steps (an activity that registers a compensation with its
nearest saga, as an activity or as an async function), durable sleeps and raised errors; inner
nodes are sequences, nurseries, sagas (with or without a compensation deadline), `move_on_after`,
`fail_after`, shields and ``try``. Each activity's outcome is drawn too: success, failure, slow,
late to start, ignoring cancellation (it runs to its end after the cancel request); the
workflow itself may be cancelled from outside at a random time.

Every scope is wrapped so that, once it has exited (normally, with an error or cancelled), a
shielded ``mark(path, outcome)`` activity is scheduled: its position in history is where the
scope exited. On the recorded history the tests check:

- every compensation of a saga starts after every activity started inside the saga's block has
  its final event, compensations of inner sagas included (F05);
- no activity started inside a scope has any event after the scope exited (F05);
- a saga whose block failed ran its compensations in reverse order of registration (all of them,
  or, with a compensation deadline, the newest ones until the deadline passed);
- the same random choices record the same history, and a fresh runtime replays it to its end.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import durable
from durable import _events as ev

from .sim import Outcome, Sim, replay, scripted

FINAL = (ev.ACTIVITY_COMPLETED, ev.ACTIVITY_FAILED, ev.ACTIVITY_CANCELLED)


@durable.activity
def act(path: str) -> str:
    return path


@durable.activity
def undo(saga: str, path: str) -> None:
    return None


@durable.activity
def mark(path: str, outcome: str) -> None:
    return None


async def undo_after_a_pause(saga: str, path: str) -> None:
    """A compensation written as workflow code: a durable sleep, then the undo activity."""
    await durable.sleep(0.5)
    await undo(saga, path)


async def scoped(path: str, body: Any) -> None:
    """Run ``body()``; once it has exited, however it exited, mark the exit in history."""
    outcome = "ok"
    try:
        await body()
    except durable.Cancelled:
        outcome = "cancelled"
        raise
    except BaseException:
        outcome = "error"
        raise
    finally:
        with durable.CancelScope(shield=True):
            await mark(path, outcome)


async def interpret(node: Any, path: str, saga: tuple[str, durable.Saga] | None) -> None:
    kind = node[0]
    if kind == "act":
        await act(path)
        if saga is not None:
            compensation = undo if node[1] == "activity" else undo_after_a_pause
            saga[1].add_compensation(compensation, saga[0], path)
    elif kind == "sleep":
        await durable.sleep(node[1])
    elif kind == "raise":
        raise durable.ApplicationError(path, type="ValueError")
    elif kind == "seq":
        for i, child in enumerate(node[1]):
            await interpret(child, f"{path}.{i}", saga)
    elif kind == "par":
        async def par() -> None:
            async with durable.open_nursery() as nursery:
                for i, child in enumerate(node[1]):
                    nursery.start_soon(interpret, child, f"{path}.{i}", saga)
        await scoped(path, par)
    elif kind == "saga":
        async def block() -> None:
            async with durable.saga(compensation_timeout=node[1]) as inner:
                await interpret(node[2], f"{path}.0", (path, inner))
        await scoped(path, block)
    elif kind in ("deadline", "fail_after"):
        async def deadline() -> None:
            if kind == "deadline":
                with durable.move_on_after(node[1]):
                    await interpret(node[2], f"{path}.0", saga)
            else:
                with durable.fail_after(node[1]):
                    await interpret(node[2], f"{path}.0", saga)
        await scoped(path, deadline)
    elif kind == "shield":
        async def shield() -> None:
            with durable.CancelScope(shield=True):
                await interpret(node[1], f"{path}.0", saga)
        await scoped(path, shield)
    elif kind == "try":
        try:
            await interpret(node[1], f"{path}.0", saga)
        except Exception:  # noqa: BLE001 - activity errors, error groups, TooSlowError, ValueError
            pass
    else:  # pragma: no cover
        raise AssertionError(kind)


@durable.workflow
async def program(tree: Any) -> str:
    await interpret(tree, "r", None)
    return "done"


durations = st.sampled_from([0.5, 1.0, 2.0, 5.0])
trees = st.recursive(
    st.one_of(
        st.tuples(st.just("act"), st.sampled_from(["activity", "activity", "function"])).map(list),
        st.tuples(st.just("act"), st.just("activity")).map(list),
        st.tuples(st.just("act"), st.just("activity")).map(list),
        st.tuples(st.just("act"), st.just("function")).map(list),
        st.tuples(st.just("sleep"), durations).map(list),
        st.just(["raise"]),
    ),
    lambda inner: st.one_of(
        st.tuples(st.just("seq"), st.lists(inner, min_size=1, max_size=3)).map(list),
        st.tuples(st.just("par"), st.lists(inner, min_size=1, max_size=3)).map(list),
        st.tuples(st.just("saga"), st.none() | durations, inner).map(list),
        st.tuples(st.just("saga"), st.none(), inner).map(list),
        st.tuples(st.just("deadline"), durations, inner).map(list),
        st.tuples(st.just("fail_after"), durations, inner).map(list),
        st.tuples(st.just("shield"), inner).map(list),
        st.tuples(st.just("try"), inner).map(list),
    ),
    max_leaves=10,
)
# The root is always a saga around a few subtrees, two times in three followed by an error (after
# a second, so that steps in parallel with it have time to complete): so that there is often
# something to compensate.
LATE_ERROR = ["seq", [["sleep", 1.0], ["raise"]]]
programs = st.tuples(
    st.just("saga"), st.none() | durations,
    st.tuples(
        st.sampled_from(["seq", "par"]),
        st.tuples(st.lists(trees, min_size=2, max_size=4), st.sampled_from([[], [LATE_ERROR], [LATE_ERROR]]))
        .map(lambda parts: parts[0] + parts[1]),
    ).map(list),
).map(list)
outcomes = st.one_of(
    st.sampled_from(["ok", "ok", "ok", "fail", "slow"]),
    st.builds(
        Outcome,
        error=st.sampled_from([None, None, "broken"]),
        takes=st.sampled_from([0.0, 0.5, 1.5, 4.0]),
        starts_after=st.sampled_from([0.0, 0.5]),
        on_cancel=st.sampled_from(["cancel", "ignore"]),  # "ignore": runs to its end regardless
    ),
)
choice_lists = st.lists(outcomes, max_size=16)
cancel_times = st.none() | st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 6.0])


def record(tree: Any, choices: list[Any], cancel_at: float | None) -> Sim:
    acts = scripted(choices, slow=3.0)

    def policy(name: str, args: list[Any], seq: int) -> Outcome:
        return Outcome() if name == "mark" else acts(name, args, seq)

    sim = Sim(program, tree, policy=policy, cancel_at=cancel_at).run()
    assert sim.closed is not None, "every program ends"
    return sim


class Recorded:
    """The activities of a history, each with its location in the program tree."""

    def __init__(self, sim: Sim) -> None:
        self.history = sim.history
        conv = sim.driver.conv
        self.location: dict[int, str] = {}  # seq -> path of the scope the activity runs in
        self.name: dict[int, str] = {}
        self.args: dict[int, list[Any]] = {}
        self.scheduled_at: dict[int, int] = {}
        self.last_event: dict[int, int] = {}
        self.final: dict[int, tuple[int, str]] = {}
        for i, e in enumerate(self.history):
            seq = e.get("seq")
            if e["k"] == ev.ACTIVITY_SCHEDULED:
                args = conv.from_payload(e["in"])
                self.name[seq], self.args[seq], self.scheduled_at[seq] = e["name"], args, i
                # an undo runs inside its saga's block exit; a mark is outside its own scope
                self.location[seq] = f"{args[0]}.undo" if e["name"] == "undo" else args[0]
            if seq is not None and seq in self.name and e["k"] in (*FINAL, ev.ACTIVITY_CANCEL_REQUESTED,
                                                                 ev.ACTIVITY_SCHEDULED):
                self.last_event[seq] = i
                if e["k"] in FINAL:
                    self.final[seq] = (i, e["k"])

    def seqs(self, name: str) -> list[int]:
        return [s for s, n in self.name.items() if n == name]

    def inside(self, scope: str) -> list[int]:
        """Activities started inside `scope` (its own exit marker excluded)."""
        return [s for s, loc in self.location.items() if loc.startswith(scope + ".")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=programs, choices=choice_lists, cancel_at=cancel_times)
def test_f05_sagas_in_random_scope_trees_compensate_after_their_steps_and_nothing_outlives_its_scope(
    tree: Any, choices: list[Any], cancel_at: float | None
) -> None:
    sim = record(tree, choices, cancel_at)
    rec = Recorded(sim)
    end = len(rec.history) - 1  # the closing event

    # every activity reached a final event before the workflow closed
    for seq in rec.name:
        assert seq in rec.final and rec.final[seq][0] < end, f"activity {seq} never ended"

    # no activity of a scope has an event after the scope exited
    for m in rec.seqs("mark"):
        scope, exited = rec.args[m][0], rec.scheduled_at[m]
        for seq in rec.inside(scope):
            assert rec.last_event[seq] < exited, (
                f"{rec.name[seq]} {rec.args[seq]} has an event after scope {scope} exited"
            )

    exits = {rec.args[m][0]: rec.args[m][1] for m in rec.seqs("mark")}  # scope -> how it exited
    undos: dict[str, list[int]] = {}
    for seq in rec.seqs("undo"):
        undos.setdefault(rec.args[seq][0], []).append(seq)
    for saga, compensations in undos.items():
        # every compensation starts after every activity of the saga's block has a final event
        first = min(rec.scheduled_at[s] for s in compensations)
        for seq in rec.inside(saga + ".0"):
            assert rec.final[seq][0] < first, (
                f"compensation of saga {saga} started while {rec.name[seq]} {rec.args[seq]} ran"
            )
        assert exits[saga] != "ok", f"saga {saga} exited normally but compensated"

    for saga, outcome in exits.items():
        if _node_at(tree, saga)[0] != "saga":
            continue
        # registered: the steps whose nearest saga this is, that completed, in history order
        registered = sorted(
            (rec.final[s][0], rec.args[s][0]) for s in rec.seqs("act")
            if _nearest_saga(tree, rec.args[s][0]) == saga and rec.final[s][1] == ev.ACTIVITY_COMPLETED
        )
        expected = [path for _, path in reversed(registered)]
        ran = [rec.args[s][1] for s in sorted(undos.get(saga, []), key=rec.scheduled_at.__getitem__)]
        if outcome == "ok":
            assert ran == []
            continue
        timeout = _node_at(tree, saga)[1]
        if timeout is None:
            assert ran == expected, f"saga {saga} compensated {ran}, expected {expected}"
        else:
            assert ran == expected[: len(ran)], f"saga {saga} compensated {ran}, expected {expected}"
            # a compensation written as code sleeps first: the deadline may pass before its undo
        if ran:
            event("a saga compensated")

    event(f"workflow {sim.closed}")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=programs, choices=choice_lists, cancel_at=cancel_times)
def test_f05_same_choices_record_the_same_history_and_it_replays(
    tree: Any, choices: list[Any], cancel_at: float | None
) -> None:
    first = record(tree, choices, cancel_at)
    second = record(tree, choices, cancel_at)
    assert first.history == second.history
    rt, commands = replay(program, first.history)
    assert commands == [] and rt.done and rt.processed == len(first.history)


# --- reading the program tree --------------------------------------------------------------


def _node_at(tree: Any, path: str) -> Any:
    """The node of `tree` at `path` ("r", "r.0", "r.0.2", ...)."""
    node = tree
    for part in path.split(".")[1:]:
        node = _children(node)[int(part)]
    return node


def _children(node: Any) -> list[Any]:
    kind = node[0]
    if kind in ("seq", "par"):
        return list(node[1])
    if kind in ("saga", "deadline", "fail_after"):
        return [node[2]]
    if kind in ("shield", "try"):
        return [node[1]]
    return []


def _nearest_saga(tree: Any, path: str) -> str | None:
    """The path of the innermost saga whose block contains `path`."""
    parts = path.split(".")
    for n in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:n])
        if _node_at(tree, prefix)[0] == "saga":
            return prefix
    return None
