"""Reset and child workflows: a child the prefix started and that still runs is taken over by the
new run (not terminated); one that closed after the reset point gives its recorded outcome to the
new run (not started again); a reset child stays its parent's child.

Real stores in temporary directories, real workers in threads.
"""

from __future__ import annotations

import durable
from durable import _ops
from durable._defs import workflow_def
from durable._inspect import inspect_history
from tests.conftest import worker_thread
from tests.fault._util import wait_until
from tests.wfs import children as c

TIMEOUT = 20


def serve(data_dir: str):  # type: ignore[no-untyped-def]
    return worker_thread(data_dir, c.WORKFLOWS, c.ACTIVITIES)


def kinds(handle: durable.WorkflowHandle) -> list[str]:
    return [e["kind"] for e in handle.history()]


def test_a_running_child_of_the_prefix_is_taken_over_by_the_new_run(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serve(data_dir):
        parent = client.start(c.parent_of_blocked, id="p")
        wait_until(lambda: "TaskCompleted" in kinds(parent), timeout=TIMEOUT)
        assert kinds(parent) == ["WorkflowStarted", "ChildWorkflowInitiated", "ChildWorkflowStarted", "TaskCompleted"]
        child = client.get_handle("p/blocked")
        child_run = child.describe().run_id
        old_run = parent.describe().run_id
        new = parent.reset(2)
        assert client.get_handle("p", run_id=old_run).describe().status == "terminated"
        # the child runs on, now the new run's
        desc = child.describe()
        assert desc.status == "running" and desc.run_id == child_run and desc.parent_run_id == new.run_id
        assert new.describe().pending_children == ("p/blocked",)
        child.signal("stop")
        assert new.result(timeout=TIMEOUT) == "no error"
    assert kinds(new).count("ChildWorkflowInitiated") == 1  # only the prefix's
    # what `durable replay --inspect` shows of the old run at the point: it waits for the child
    events = client._store.read(lambda t: _ops.read_history(t, int(old_run, 16)))
    found = inspect_history(workflow_def(c.parent_of_blocked), events, 3)
    assert found.waiting == ["child workflow 'p/blocked' (seq 1)"]


def test_a_child_that_closed_after_the_point_gives_its_recorded_outcome(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serve(data_dir):
        parent = client.start(c.parent_of_blocked, id="s")
        child = client.get_handle("s/blocked")
        wait_until(lambda: "TaskCompleted" in kinds(parent), timeout=TIMEOUT)
        child.signal("put", 7)
        child.signal("stop")
        assert parent.result(timeout=TIMEOUT) == "no error"
        assert kinds(parent)[4] == "ChildWorkflowCompleted"
        child_run = child.describe().run_id
        new = parent.reset(2)  # the child had started; its result came after
        assert new.result(timeout=TIMEOUT) == "no error"
    assert kinds(new) == ["WorkflowStarted", "ChildWorkflowInitiated", "ChildWorkflowStarted",
                          "ChildWorkflowCompleted", "WorkflowCompleted"]
    assert new.history()[3]["result"] == [7]
    # the child ran once: its only run is the one the old parent run started
    assert [d.run_id for d in client.list(all_runs=True) if d.workflow_id == "s/blocked"] == [child_run]


def test_a_child_closed_by_the_parent_close_policy_tells_the_new_run(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serve(data_dir):
        parent = client.start(c.parent_of_blocked, id="r")
        wait_until(lambda: "TaskCompleted" in kinds(parent), timeout=TIMEOUT)
        parent.terminate("by hand")  # its child is terminated with it, and the run is not told
        child = client.get_handle("r/blocked")
        assert child.describe().status == "terminated"
        new = parent.reset(2)
        assert new.result(timeout=TIMEOUT).startswith("terminated: ")
    assert kinds(new)[3] == "ChildWorkflowFailed"


def test_a_reset_child_stays_its_parents_child(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serve(data_dir):
        parent = client.start(c.parent_of_blocked, id="q")
        child = client.get_handle("q/blocked")
        wait_until(lambda: "TaskCompleted" in kinds(parent), timeout=TIMEOUT)
        wait_until(lambda: "TaskCompleted" in kinds(child), timeout=TIMEOUT)
        child.signal("put", "lost with the old run")
        new_child = child.reset(0, reapply_signals=False)
        # the parent was not told of the old child run's end: it waits for the new one
        assert kinds(parent) == ["WorkflowStarted", "ChildWorkflowInitiated", "ChildWorkflowStarted", "TaskCompleted"]
        assert new_child.describe().parent_id == "q"
        new_child.signal("stop")
        assert parent.result(timeout=TIMEOUT) == "no error"
    assert kinds(parent)[-2] == "ChildWorkflowCompleted"
