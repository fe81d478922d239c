"""Patching (Temporal's `patched` / `deprecate_patch`): one change through its four versions.

v1 refunds with `refund_old`; v2 asks ``durable.patched("fix-refund")`` and refunds with
`refund_new` on the new path; v3 calls ``durable.deprecate_patch("fix-refund")`` and has only
the new path; v4 has no call left. Histories are recorded with the `Driver` of sim.py and
replayed through each later version, cut at every activation boundary too (a workflow that a
worker of the next version picks up half way).
"""

from __future__ import annotations

from typing import Any

import pytest

import durable
from durable import _events as ev

from .sim import Driver, Sim, replay, scripted, strip

PATCH = "fix-refund"


@durable.activity
def charge(x: int) -> int:
    return x


@durable.activity
def refund_old(x: int) -> str:
    return "old"


@durable.activity
def refund_new(x: int) -> str:
    return "new"


@durable.activity
def notify(x: int) -> None:
    return None


@durable.workflow(name="refund")
async def v1(x: int) -> list[Any]:
    await charge(x)
    r = await refund_old(x)
    await notify(x)
    return [r]


@durable.workflow(name="refund")
async def v2(x: int) -> list[Any]:
    await charge(x)
    if durable.patched(PATCH):
        r = await refund_new(x)
    else:
        r = await refund_old(x)
    await notify(x)
    return [r, durable.patched(PATCH)]  # the first answer holds for the whole run


@durable.workflow(name="refund")
async def v3(x: int) -> list[Any]:
    await charge(x)
    durable.deprecate_patch(PATCH)
    r = await refund_new(x)
    await notify(x)
    return [r, True]


@durable.workflow(name="refund")
async def v4(x: int) -> list[Any]:
    await charge(x)
    r = await refund_new(x)
    await notify(x)
    return [r, True]


VERSIONS = {"v1": v1, "v2": v2, "v3": v3, "v4": v4}


def by_name(name: str, args: list[Any]) -> Any:
    return {"charge": args[0], "refund_old": "old", "refund_new": "new", "notify": None}[name]


def record(workflow: Any, x: int = 5) -> list[dict[str, Any]]:
    sim = Sim(workflow, x, policy=scripted([], value=by_name), workflow_id="wf-1").run()
    assert sim.closed == ev.WORKFLOW_COMPLETED
    return sim.history


def test_live_the_new_path_is_taken_and_one_marker_recorded_without_a_seq() -> None:
    history = record(v2)
    assert [(e["k"], e.get("seq"), e.get("name"), e.get("patch")) for e in history] == [
        (ev.WORKFLOW_STARTED, None, None, None),
        (ev.ACTIVITY_SCHEDULED, 1, "charge", None), (ev.ACTIVITY_COMPLETED, 1, None, None),
        (ev.MARKER_RECORDED, None, None, PATCH),  # no seq: the next activity is still seq 2
        (ev.ACTIVITY_SCHEDULED, 2, "refund_new", None), (ev.ACTIVITY_COMPLETED, 2, None, None),
        (ev.ACTIVITY_SCHEDULED, 3, "notify", None), (ev.ACTIVITY_COMPLETED, 3, None, None),
        (ev.WORKFLOW_COMPLETED, None, None, None),
    ]
    assert history[3]["dep"] is False
    assert Driver(v2).conv.from_payload(history[-1]["out"]) == ["new", True]


def test_seqs_are_those_of_the_same_steps_without_the_patch() -> None:
    """Markers take no seq: v2's new path and v4 (no call) schedule the same seqs."""
    def seqs(h: list[dict[str, Any]]) -> list[tuple[str, int]]:
        return [(e["name"], e["seq"]) for e in h if e["k"] == ev.ACTIVITY_SCHEDULED]

    assert seqs(record(v2)) == seqs(record(v4)) == [("charge", 1), ("refund_new", 2), ("notify", 3)]


def test_a_history_from_before_the_patch_replays_on_the_old_path() -> None:
    """v1's history has ActivityScheduled('refund_old') where v2 asks patched(): False."""
    history = record(v1)
    rt, commands = replay(v2, history)
    assert commands == [] and rt.done
    rt.close()


def test_a_workflow_picked_up_past_the_point_finishes_on_the_old_path() -> None:
    """v1 scheduled refund_old; its result comes in after v2 is deployed: v2 goes on with the
    old path (and answers False again when asked later)."""
    history = record(v1)
    cut = next(i for i, e in enumerate(history) if e["k"] == ev.ACTIVITY_COMPLETED and e["seq"] == 2) + 1
    rt, commands = replay(v2, history[:cut])
    assert strip(commands) == [{"k": ev.ACTIVITY_SCHEDULED, "seq": 3, "name": "notify", "in": commands[0]["in"],
                                "opts": commands[0]["opts"]}]
    rt.mark_recorded()
    done = rt.advance([dict(Driver(v1).completed_event(3), t=history[-1]["t"])])
    assert done[-1]["k"] == ev.WORKFLOW_COMPLETED
    assert rt.converter.from_payload(done[-1]["out"]) == ["old", False]
    rt.close()


def test_a_workflow_picked_up_before_the_point_takes_the_new_path() -> None:
    """v1 started it and scheduled charge; v2 reaches the patch live: new path, with a marker."""
    history = record(v1)[:3]  # charge scheduled and completed, the next activation not run
    rt, commands = replay(v2, history)
    assert [(c["k"], c.get("name"), c.get("patch"), c.get("seq")) for c in commands] == [
        (ev.MARKER_RECORDED, None, PATCH, None), (ev.ACTIVITY_SCHEDULED, "refund_new", None, 2),
    ]
    rt.close()


def test_a_history_with_the_marker_replays_on_the_new_path() -> None:
    rt, commands = replay(v2, record(v2))
    assert commands == [] and rt.done
    rt.close()


def test_the_old_code_cannot_replay_the_new_history_and_says_why() -> None:
    with pytest.raises(durable.NondeterminismError) as info:
        replay(v1, record(v2))
    message = str(info.value)
    assert "workflow 'wf-1' (refund), event 3: the history has MarkerRecorded(patch 'fix-refund') " in message
    assert "but the code now does ActivityScheduled('refund_old', seq=2)" in message
    assert "durable.patched('fix-refund')" in message and "durable history wf-1" in message


def test_deprecate_patch_records_a_deprecated_marker_live() -> None:
    history = record(v3)
    [marker] = [e for e in history if e["k"] == ev.MARKER_RECORDED]
    assert (marker["patch"], marker["dep"]) == (PATCH, True)


@pytest.mark.parametrize("recorded_by", ["v2", "v3"])
def test_deprecate_patch_accepts_a_history_with_the_marker(recorded_by: str) -> None:
    rt, commands = replay(v3, record(VERSIONS[recorded_by]))
    assert commands == [] and rt.done
    rt.close()


def test_deprecate_patch_accepts_a_history_without_the_marker() -> None:
    """v4 recorded it (no marker): v3 replays it, emitting no marker there."""
    rt, commands = replay(v3, record(v4))
    assert commands == [] and rt.done
    rt.close()


def test_patched_answers_true_on_a_deprecated_marker() -> None:
    """Rolling back from v3 to v2: v3's histories replay on v2's new path."""
    rt, commands = replay(v2, record(v3))
    assert commands == [] and rt.done
    rt.close()


def test_removing_the_call_is_safe_for_deprecated_markers_only() -> None:
    rt, commands = replay(v4, record(v3))  # the deprecated marker is passed over
    assert commands == [] and rt.done
    rt.close()
    with pytest.raises(durable.NondeterminismError, match=(
        r"event 3: the history has MarkerRecorded\(patch 'fix-refund'\) but the code now does "
        r"ActivityScheduled\('refund_new', seq=2\) \(the code no longer calls durable.patched\('fix-refund'\)"
    )):
        replay(v4, record(v2))


@pytest.mark.parametrize("later", ["v3", "v4"])
def test_a_history_from_before_the_patch_breaks_once_the_old_path_is_gone(later: str) -> None:
    with pytest.raises(durable.NondeterminismError, match=(
        r"event 3: the history has ActivityScheduled\('refund_old', seq=2\) "
        r"but the code now does ActivityScheduled\('refund_new', seq=2\)"
    )):
        replay(VERSIONS[later], record(v1))


#: (recorded by, replayed by) -> replays? Temporal's rules for one change, all recorded to the end.
RULES = {
    ("v1", "v2"): True, ("v1", "v3"): False, ("v1", "v4"): False,
    ("v2", "v3"): True, ("v2", "v4"): False,
    ("v3", "v4"): True,
    # and back: a rollback
    ("v2", "v1"): False, ("v3", "v2"): True, ("v4", "v3"): True, ("v4", "v2"): False,
}


@pytest.mark.parametrize(("recorded_by", "replayed_by"), sorted(RULES))
def test_every_pair_of_versions_follows_temporals_rules(recorded_by: str, replayed_by: str) -> None:
    """v4 replayed by v2: no marker where patched() is asked, so v2 takes the old path: breaks."""
    history = record(VERSIONS[recorded_by])
    if RULES[recorded_by, replayed_by]:
        rt, commands = replay(VERSIONS[replayed_by], history)
        assert commands == [] and rt.done
        rt.close()
    else:
        with pytest.raises(durable.NondeterminismError, match="event 3: "):
            replay(VERSIONS[replayed_by], history)


def test_every_version_replays_any_prefix_of_a_history_it_may_continue() -> None:
    """From every activation boundary, a later version that accepts the whole history also
    accepts its prefix, and goes on live the way the history went (or, before the patch point,
    takes the new path)."""
    for (older, newer), ok in RULES.items():
        if not ok:
            continue
        history = record(VERSIONS[older])
        for cut in range(1, len(history) + 1):
            if cut < len(history) and history[cut]["k"] in ev.COMMAND_KINDS:
                continue  # not at an activation boundary: the rest of it follows
            rt, _ = replay(VERSIONS[newer], history[:cut])
            rt.close()


# --- memoising, several patches, where patched() may be called ----------------------------


@durable.workflow(name="several")
class Several:
    def __init__(self) -> None:
        self.go = 0

    async def run(self) -> list[bool]:
        answers = [durable.patched("a"), durable.patched("b"), durable.patched("a")]
        await durable.wait_condition(lambda: self.go > 0)
        answers.append(durable.patched("b"))
        return answers

    @durable.signal
    def proceed(self) -> None:
        self.go += 1

    @durable.query
    def ask(self) -> bool:
        return durable.patched("a")


@durable.workflow(name="several")
class SeveralBefore:
    """The same workflow before the patches: nothing happens before the wait."""

    def __init__(self) -> None:
        self.go = 0

    async def run(self) -> list[bool]:
        await durable.wait_condition(lambda: self.go > 0)
        return [False, False, False, False]

    @durable.signal
    def proceed(self) -> None:
        self.go += 1


def test_each_patch_id_records_one_marker_and_keeps_its_first_answer() -> None:
    d = Driver(Several)
    first = d.start()
    assert [(c["k"], c.get("patch")) for c in first] == [(ev.MARKER_RECORDED, "a"), (ev.MARKER_RECORDED, "b")]
    d.signal("proceed")
    assert d.result == [True, True, True, True]
    rt, commands = replay(Several, d.history)
    assert commands == [] and rt.done
    rt.close()


def test_a_first_answer_of_false_in_replay_holds_when_the_run_goes_on_live() -> None:
    """Started by the code before the patches (an activation with no marker): replayed, both
    answer False, and still False in the live activation that follows."""
    d = Driver(SeveralBefore)
    assert strip(d.start()) == [{"k": ev.TASK_COMPLETED}]
    history = d.history + [dict(d.signal_event("proceed"), t=d.now)]
    rt, commands = replay(Several, history)
    assert [c["k"] for c in commands] == [ev.WORKFLOW_COMPLETED]
    assert rt.converter.from_payload(commands[0]["out"]) == [False, False, False, False]
    rt.close()


def test_a_deprecated_marker_of_a_removed_call_is_passed_over_before_another_marker() -> None:
    """History [marker a (deprecated), marker b]: code that calls only patched("b") finds b."""

    @durable.workflow(name="pair")
    async def recorded_pair() -> bool:
        durable.deprecate_patch("a")
        return durable.patched("b")

    @durable.workflow(name="pair")
    async def only_b() -> bool:
        return durable.patched("b")

    d = Driver(recorded_pair)
    d.start()
    assert [(e["k"], e.get("patch"), e.get("dep")) for e in d.history[1:]] == [
        (ev.MARKER_RECORDED, "a", True), (ev.MARKER_RECORDED, "b", False), (ev.WORKFLOW_COMPLETED, None, None),
    ]
    rt, commands = replay(only_b, d.history)
    assert commands == [] and rt.done
    rt.close()


def test_an_activation_that_recorded_only_a_deprecated_marker_replays_without_the_call() -> None:
    """v3 recorded [MarkerRecorded(deprecated)] as an activation's only command; v4's same
    activation does nothing (TaskCompleted): they match."""

    @durable.workflow(name="waits")
    class WithCall:
        def __init__(self) -> None:
            self.go = False

        async def run(self) -> str:
            durable.deprecate_patch("p")
            await durable.wait_condition(lambda: self.go)
            return "done"

        @durable.signal
        def proceed(self) -> None:
            self.go = True

    @durable.workflow(name="waits")
    class WithoutCall:
        def __init__(self) -> None:
            self.go = False

        async def run(self) -> str:
            await durable.wait_condition(lambda: self.go)
            return "done"

        @durable.signal
        def proceed(self) -> None:
            self.go = True

    d = Driver(WithCall)
    assert [c["k"] for c in d.start()] == [ev.MARKER_RECORDED]
    d.signal("proceed")
    rt, commands = replay(WithoutCall, d.history)
    assert commands == [] and rt.done
    rt.close()
    d2 = Driver(WithoutCall)  # and the other way: a history without it replays with the call
    d2.start()
    d2.signal("proceed")
    rt, commands = replay(WithCall, d2.history)
    assert commands == [] and rt.done
    rt.close()


def test_patched_is_refused_outside_workflow_code_in_queries_and_with_a_bad_id() -> None:
    with pytest.raises(durable.DurableError, match="durable.patched can only be used inside workflow code"):
        durable.patched("x")
    with pytest.raises(durable.DurableError, match="durable.deprecate_patch can only be used inside workflow code"):
        durable.deprecate_patch("x")
    d = Driver(Several)
    d.start()
    with pytest.raises(durable.DurableError, match="a query handler must not change the workflow"):
        d.rt.query("ask", [])

    @durable.workflow(name="bad")
    async def bad() -> bool:
        return durable.patched("")

    with pytest.raises(durable.InvalidArgument, match="a patch id must be a non-empty string"):
        Driver(bad).start()


def test_a_changed_patch_id_is_a_difference() -> None:
    @durable.workflow(name="renamed")
    async def one() -> bool:
        return durable.patched("one")

    @durable.workflow(name="renamed")
    async def two() -> bool:
        return durable.patched("two")

    d = Driver(one)
    d.start()
    # "two" is not in the history where it is asked: False, no marker; the history has "one"
    with pytest.raises(durable.NondeterminismError, match=(
        r"event 1: the history has MarkerRecorded\(patch 'one'\) but the code now does WorkflowCompleted"
    )):
        replay(two, d.history)
