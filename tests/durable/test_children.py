"""Child workflows and requests to other workflows at the runtime's level, over the real store
(`engine.Engine`): replay checks, mistakes in workflow code, and the store's records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import durable
from durable import _events as ev
from durable import _ops
from durable._defs import workflow_def
from durable._runtime import Runtime

from .engine import Engine


@durable.activity
def act(path: str, how: str) -> str:
    return path


@durable.workflow
async def kid(x: int) -> int:
    return x + 1


@durable.workflow
async def other_kid(x: int) -> int:
    return x + 2


@durable.workflow(name="parent")
async def parent(n: int) -> int:
    return await durable.execute_child(kid, n) + await durable.execute_child(kid, n, id="fixed")


@durable.workflow(name="parent")
async def parent_other_type(n: int) -> int:
    return await durable.execute_child(other_kid, n) + await durable.execute_child(kid, n, id="fixed")


@durable.workflow(name="parent")
async def parent_other_id(n: int) -> int:
    return await durable.execute_child(kid, n) + await durable.execute_child(kid, n, id="moved")


@durable.workflow
async def bad_policy() -> None:
    await durable.execute_child(kid, 1, parent_close_policy="orphan")


@durable.workflow
async def bad_args() -> None:
    await durable.execute_child(kid, 1, 2)  # type: ignore[call-arg]


@durable.workflow
async def bad_run_id() -> None:
    await durable.get_external_handle("x", run_id="zz").cancel()


def engine(tmp_path: Path, *workflows: Any) -> Engine:
    return Engine(str(tmp_path / "store"), list(workflows), [act])


def history_of(e: Engine, wid: str) -> list[dict[str, Any]]:
    [rec] = [r for r in e.runs() if r["id"] == wid]
    return e.history(rec["num"])


def test_a_recorded_parent_replays_and_a_changed_child_is_nondeterminism(tmp_path: Path) -> None:
    e = engine(tmp_path, parent, kid)
    try:
        e.start("parent", 1, id="p")
        e.run()
        history = history_of(e, "p")
        assert [x["k"] for x in history].count(ev.CHILD_COMPLETED) == 2
        assert e.conv.from_payload(history[-1]["out"]) == 4
        assert durable.replay(parent, history) == len(history)
        with pytest.raises(durable.NondeterminismError, match=(
                r"the history has ChildWorkflowInitiated\('kid', id 'p/child-1', seq=1\) "
                r"but the code now does ChildWorkflowInitiated\('other_kid', id 'p/child-1', seq=1\)")):
            durable.replay(parent_other_type, history)
        with pytest.raises(durable.NondeterminismError, match=r"id 'fixed', seq=2\) but the code now does "
                                                              r"ChildWorkflowInitiated\('kid', id 'moved'"):
            durable.replay(parent_other_id, history)
    finally:
        e.close()


def test_the_parent_and_child_records_link_each_other(tmp_path: Path) -> None:
    e = engine(tmp_path, parent, kid)
    try:
        num = e.start("parent", 1, id="p")
        # the parent's first task: the child is started in the transaction that records it
        e._round()
        rec = e.store.read(lambda t: _ops.load_wf(t, "p"))
        child = e.store.read(lambda t: _ops.load_wf(t, "p/child-1"))
        assert rec["children"] == {1: ["p/child-1", child["num"], "terminate"]}
        assert child["parent"] == {"id": "p", "num": num, "seq": 1}
        assert [x["k"] for x in e.history(num)][-2:] == [ev.CHILD_INITIATED, ev.CHILD_STARTED]
        e.run()
        rec = e.store.read(lambda t: _ops.load_wf(t, "p"))
        assert rec["status"] == "completed" and not rec.get("children")
    finally:
        e.close()


@pytest.mark.parametrize(("workflow", "message"), [
    (bad_policy, "parent_close_policy must be one of 'terminate', 'request_cancel', 'abandon', not 'orphan'"),
    (bad_args, "workflow 'kid' takes 1 argument (x: int), not 2"),
    (bad_run_id, "a run id is the hexadecimal form WorkflowDescription.run_id shows, not 'zz'"),
])
def test_a_mistake_in_the_call_is_a_clear_error_of_the_task(workflow: Any, message: str) -> None:
    """A bug in workflow code fails the workflow task (its history untouched), clearly."""
    rt = Runtime(workflow_def(workflow), "w", "1", durable._codec.Converter())
    started = {"k": ev.WORKFLOW_STARTED, "t": 1, "type": "x", "in": rt.converter.to_payload([], "in"), "seed": 1,
               "id": "w", "queue": "q"}
    try:
        with pytest.raises(durable.InvalidArgument) as info:
            rt.advance([started])
        assert message in str(info.value)
    finally:
        rt.close()


async def test_outside_workflow_code_it_is_a_clear_error() -> None:
    with pytest.raises(durable.DurableError, match="durable.execute_child can only be used inside workflow code"):
        await durable.execute_child(kid, 1)
    with pytest.raises(durable.DurableError, match="durable.get_external_handle can only be used inside workflow code"):
        durable.get_external_handle("x")


@durable.workflow
async def blocker() -> None:
    await durable.wait_condition(lambda: False)


@durable.workflow
async def starts_taken() -> str:
    try:
        await durable.start_child(kid, 1, id="taken")
    except durable.ChildWorkflowError as exc:
        return f"{exc.kind}: {exc.workflow_id}"
    return "started"


@durable.workflow
async def grandparent() -> None:
    await durable.execute_child(middle, id="g/middle")


@durable.workflow
async def middle() -> None:
    await durable.execute_child(blocker, id="g/leaf")


def test_start_child_raises_when_the_id_is_taken(tmp_path: Path) -> None:
    e = engine(tmp_path, starts_taken, blocker, kid)
    try:
        e.start("blocker", id="taken")
        num = e.start("starts_taken", id="s")
        e.run()
        history = e.history(num)
        assert e.conv.from_payload(history[-1]["out"]) == "start_failed: taken"
        failed = next(x for x in history if x["k"] == ev.CHILD_START_FAILED)
        assert failed["err"]["type"] == "durable.WorkflowAlreadyExists"
    finally:
        e.close()


def test_terminating_a_grandparent_terminates_its_descendants_in_one_transaction(tmp_path: Path) -> None:
    e = engine(tmp_path, grandparent, middle, blocker)
    try:
        e.start("grandparent", id="g")
        e.run()
        statuses = {r["id"]: r["status"] for r in e.runs()}
        assert statuses == {"g": "running", "g/middle": "running", "g/leaf": "running"}
        e.store.write(lambda t: _ops.terminate(t, "g", "operator"))
        statuses = {r["id"]: r["status"] for r in e.runs()}
        assert statuses == {"g": "terminated", "g/middle": "terminated", "g/leaf": "terminated"}
        leaf = history_of(e, "g/leaf")
        assert leaf[-1]["reason"] == "its parent 'g/middle' was terminated"
        # the closing parents were not told of the closes they caused
        assert history_of(e, "g/middle")[-1]["k"] == ev.WORKFLOW_TERMINATED
        assert history_of(e, "g")[-1]["k"] == ev.WORKFLOW_TERMINATED
    finally:
        e.close()


def test_a_history_with_a_child_event_for_another_command_is_a_clear_error(tmp_path: Path) -> None:
    e = engine(tmp_path, parent, kid)
    try:
        e.start("parent", 1, id="p")
        e.run()
        history = history_of(e, "p")
        i = next(i for i, x in enumerate(history) if x["k"] == ev.CHILD_COMPLETED)
        forged = history[:i] + [{"k": ev.EXTERNAL_DONE, "seq": history[i]["seq"], "t": history[i]["t"]}] + history[i + 1:]
        with pytest.raises(durable.DecodeError, match=r"the history has ExternalRequestCompleted for seq 1, "
                                                      r"which started a child workflow"):
            durable.replay(parent, forged)
    finally:
        e.close()


@durable.workflow
async def counting_kid(n: int) -> int:
    if n < 3:
        durable.continue_as_new(n + 1)
    return n * 10


@durable.workflow
async def parent_of_continuing() -> int:
    return await durable.execute_child(counting_kid, 0, id="ck")


@durable.workflow
async def continuing_parent(n: int) -> None:
    if n == 0:
        await durable.start_child(blocker, id="left-behind")
        durable.continue_as_new(1)
    await durable.wait_condition(lambda: False)


def test_a_child_that_continues_as_new_is_waited_for_to_its_last_run(tmp_path: Path) -> None:
    e = engine(tmp_path, parent_of_continuing, counting_kid)
    try:
        num = e.start("parent_of_continuing", id="p")
        e.run()
        history = e.history(num)
        assert e.conv.from_payload(history[-1]["out"]) == 30
        assert [x["k"] for x in history].count(ev.CHILD_COMPLETED) == 1
        runs = [r for r in e.runs() if r["id"] == "ck"]
        assert [r["status"] for r in runs] == ["continued_as_new"] * 3 + ["completed"]
        assert all(r["parent"]["id"] == "p" for r in runs)
    finally:
        e.close()


def test_a_parent_that_continues_as_new_applies_its_childrens_close_policy(tmp_path: Path) -> None:
    e = engine(tmp_path, continuing_parent, blocker)
    try:
        e.start("continuing_parent", 0, id="cp")
        e.run()
        statuses = {r["id"]: r["status"] for r in e.runs()}
        assert statuses["left-behind"] == "terminated"
        assert history_of(e, "left-behind")[-1]["reason"] == "its parent 'cp' was continued_as_new"
    finally:
        e.close()


@durable.workflow
async def parent_of_slow_child() -> str:
    try:
        await durable.execute_child(blocker, id="slow", run_timeout=5)
    except durable.ChildWorkflowError as exc:
        return f"{exc.kind}: {exc.__cause__}"
    return "no error"


def test_a_child_that_passes_its_timeout_fails_the_parents_await(tmp_path: Path) -> None:
    e = engine(tmp_path, parent_of_slow_child, blocker)
    try:
        num = e.start("parent_of_slow_child", id="p")
        e.run()
        assert e.conv.from_payload(e.history(num)[-1]["out"]) == (
            "timed_out: durable.WorkflowTimedOut: the child was timed out: its run timeout passed")
        assert {r["id"]: r["status"] for r in e.runs()}["slow"] == "timed_out"
    finally:
        e.close()
