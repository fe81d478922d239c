"""`durable.check_histories`: which recorded histories would a code change break?

A workflow of up to four steps is written in versions that each change one step
(tests/wfs/flow_versions.py): renamed (another activity), delayed (a timer first: the seqs
shift), called with other arguments (compatible: arguments are not compared), or behind
``durable.patched`` (compatible by design). Hypothesis records histories with random outcomes,
by the base version or by a patched one, cut where a store may hold them (an open workflow),
and checks them against a random version: exactly the histories a simple model says would
break are reported, each with the event.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import durable
from durable import _events as ev
from durable._codec import encode
from tests.wfs.flow_versions import STEPS, VERSIONS, Version, step

from .sim import Outcome, Sim, scripted


def would_break(recorded: Version, checked: Version, history: list[dict[str, Any]]) -> bool:
    """The model: replaying breaks at the first recorded command the checked code makes
    differently. A step's command is ActivityScheduled(seq=step + 1), in base and patched
    histories alike (markers take no seq)."""
    def reached(i: int) -> bool:
        return any(e["k"] == ev.ACTIVITY_SCHEDULED and e["seq"] == i + 1 for e in history)

    kind, at = checked
    changed_step_recorded = kind in ("rename", "timer") and reached(at)
    if recorded[0] == "patched":
        if checked == recorded:
            return False
        # the marker is in the history where the code no longer makes it
        marker = any(e["k"] == ev.MARKER_RECORDED for e in history)
        return marker or changed_step_recorded
    return changed_step_recorded  # "patched": no marker at the step, so the old path: matches


def cuts(history: list[dict[str, Any]]) -> list[int]:
    """Where a store may hold a history: never inside an activation's run of commands."""
    commands = ev.COMMAND_KINDS
    return [c for c in range(1, len(history) + 1)
            if c == len(history) or not (history[c - 1]["k"] in commands and history[c]["k"] in commands)]


outcomes = st.lists(st.sampled_from(["ok", "ok", "ok", "fail", Outcome(value=7, takes=2.0)]), max_size=STEPS)
recorded_versions = st.sampled_from([("base", -1)] * STEPS + [("patched", at) for at in range(STEPS)])


@st.composite
def recorded_histories(draw: Any, wid: str) -> tuple[Version, list[dict[str, Any]]]:
    version = draw(recorded_versions)
    n = draw(st.sampled_from([0, 1, 2, 3, STEPS, STEPS, STEPS]))  # most reach every step
    sim = Sim(VERSIONS[version], n, policy=scripted(draw(outcomes)), workflow_id=wid).run()
    history = sim.history
    whole = len(history)  # a closed workflow, as often as an open one
    return version, history[: draw(st.sampled_from(cuts(history) + [whole] * len(cuts(history))))]


@st.composite
def cases(draw: Any) -> tuple[Version, list[tuple[Version, list[dict[str, Any]]]]]:
    checked = draw(st.sampled_from(sorted(VERSIONS)))
    n = draw(st.integers(1, 6))
    return checked, [draw(recorded_histories(f"wf-{i}")) for i in range(n)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_check_finds_exactly_the_histories_that_break(case: Any) -> None:
    checked, recorded = case
    as_bytes = [encode(history) for _, history in recorded]
    results = durable.check_histories(workflows=[VERSIONS[checked]], histories=as_bytes)
    assert [r.workflow_id for r in results] == [f"wf-{i}" for i in range(len(recorded))]
    for r, (version, history) in zip(results, recorded):
        expected = would_break(version, checked, history)
        event(f"{'breaks' if expected else 'matches'}: recorded by {version[0]}, checked with {checked[0]}")
        assert r.ok is not expected, (version, checked, r.error, [e["k"] for e in history])
        assert r.workflow_type == "flow" and r.run_id is None
        if expected:
            assert r.error is not None and r.error.startswith(
                f"NondeterminismError: workflow {r.workflow_id!r} (flow), event "), r.error
            assert r.events == 0
        else:
            # replayed up to the last recorded command: input events after it are for live code
            last = max((i + 1 for i, e in enumerate(history) if e["k"] in ev.COMMAND_KINDS), default=0)
            assert r.error is None and r.events == last


def test_decoded_histories_and_their_bytes_give_the_same_results() -> None:
    history = Sim(VERSIONS["base", -1], 3, workflow_id="w").run().history
    for checked in (("base", -1), ("rename", 1)):
        by_bytes = durable.check_histories(workflows=[VERSIONS[checked]], histories=[encode(history)])
        by_events = durable.check_histories(workflows=[VERSIONS[checked]], histories=[history])
        assert by_bytes == by_events
    assert not by_bytes[0].ok and "ActivityScheduled('step', seq=2) but the code now does " \
        "ActivityScheduled('other', seq=2)" in (by_bytes[0].error or "")


def test_a_type_not_given_and_a_malformed_history_are_reported_not_raised() -> None:
    history = Sim(VERSIONS["base", -1], 1, workflow_id="w").run().history

    @durable.workflow(name="unrelated")
    async def unrelated() -> None:
        return None

    [missing, garbage, headless] = durable.check_histories(
        workflows=[unrelated], histories=[encode(history), b"\x01not a history", encode(history[1:])])
    assert (missing.workflow_id, missing.workflow_type, missing.ok) == ("w", "flow", False)
    assert missing.error == ("NotRegistered: workflow type 'flow' is not registered in the workflows given; "
                             "registered: unrelated")
    assert (garbage.ok, garbage.workflow_id) == (False, "?")
    assert garbage.error is not None and garbage.error.startswith("DecodeError: ")
    assert headless.error == "DecodeError: a history must begin with WorkflowStarted"


def test_a_bug_the_new_code_hits_in_replay_would_break_the_workflow() -> None:
    history = Sim(VERSIONS["base", -1], 2, workflow_id="w").run().history

    @durable.workflow(name="flow")
    async def buggy(n: int) -> list[int]:
        await step(0)
        raise KeyError("oops")

    [result] = durable.check_histories(workflows=[buggy], histories=[history])
    assert not result.ok and result.error is not None
    assert result.error.startswith("KeyError: 'oops' (") and "test_check.py" in result.error


def test_check_result_to_json() -> None:
    r = durable.CheckResult("w", "1f", "flow", False, "NondeterminismError: ...")
    assert r.to_json() == {"id": "w", "run_id": "1f", "type": "flow", "ok": False, "error": "NondeterminismError: ..."}


@pytest.mark.parametrize("changed", [("rename", 0), ("timer", 2)])
def test_a_patched_version_keeps_every_base_history_and_the_change_does_not(changed: Version) -> None:
    """The point of patching, checked the way a user would before a deploy."""
    histories = [encode(Sim(VERSIONS["base", -1], n, workflow_id=f"w{n}").run().history) for n in range(STEPS + 1)]
    patched = durable.check_histories(workflows=[VERSIONS["patched", changed[1]]], histories=histories)
    assert all(r.ok for r in patched)
    unpatched = durable.check_histories(workflows=[VERSIONS[changed]], histories=histories)
    assert [r.ok for r in unpatched] == [n <= changed[1] for n in range(STEPS + 1)]
