"""A bug in workflow code fails the workflow task, never the workflow (Temporal's rule).

An exception raised by workflow code or a signal handler that is not a failure raised on purpose
(`ApplicationError`, an activity's error, a durable deadline, a saga's, or a type the workflow
declares) leaves the workflow running with its history as it was; `describe` and `list` show the
error with the file and line; the task is tried again with a growing delay; deploying fixed code
lets it go on, each completed step not run again. A caller's mistake (arguments that do not fit
the workflow or the signal handler) is refused by the client before anything is written.
"""

from __future__ import annotations

import pytest

import durable
from tests.conftest import start_worker_process, stop_worker_process, worker_thread
from tests.fault._util import assert_each_step_recorded_once, kinds, wait_until
from tests.wfs import raising_a


def _failing(handle: durable.WorkflowHandle, times: int = 2) -> durable.WorkflowDescription:
    return wait_until(lambda: (d := handle.describe()).task_failures >= times and d, timeout=30,  # type: ignore[no-any-return]
                      what=f"the workflow task to fail {times} times")


def test_a_raising_bug_fails_the_task_and_fixed_code_resumes_the_workflow(data_dir: str) -> None:
    client = durable.Client(data_dir)
    buggy = start_worker_process(data_dir, "tests.wfs.raising_a", lease=1.0)
    try:
        handle = client.start("lookup", 21, id="bug-raise")
        desc = _failing(handle)
        assert desc.status == "running"
        assert desc.task_error is not None and desc.task_error.startswith("KeyError: 'missing'"), desc.task_error
        assert "raising_a.py, line 19, in lookup" in desc.task_error  # where in the user's code
        [listed] = [d for d in client.list(status="running") if d.workflow_id == "bug-raise"]
        assert listed.task_error == desc.task_error
        events = handle.history()
        assert kinds(events) == ["WorkflowStarted", "ActivityScheduled", "ActivityCompleted"]
        failures = handle.describe().task_failures
        wait_until(lambda: handle.describe().task_failures > failures, timeout=30,
                   what="the task to be tried again")
    finally:
        assert stop_worker_process(buggy) == 0
    assert handle.history() == events  # the failing tries wrote nothing
    assert any("failed (the workflow goes on once its code is fixed): KeyError" in line
               for line in buggy.log_lines)  # type: ignore[attr-defined]

    fixed = start_worker_process(data_dir, "tests.wfs.raising_b", lease=1.0)
    try:
        assert handle.result(timeout=30) == 42
    finally:
        assert stop_worker_process(fixed) == 0
    desc = handle.describe()
    assert desc.status == "completed" and desc.task_error is None and desc.activity_attempts == 1
    assert_each_step_recorded_once(handle.history(), "bug-raise")


def test_a_signal_handler_bug_fails_the_task_and_fixed_code_applies_the_signal(data_dir: str) -> None:
    client = durable.Client(data_dir)
    buggy = start_worker_process(data_dir, "tests.wfs.raising_a", lease=1.0)
    try:
        handle = client.start("Counter", id="counter")
        handle.signal("add", 4)
        handle.signal("add", 0)  # the handler's bug: ZeroDivisionError
        desc = _failing(handle)
        assert desc.status == "running" and desc.task_error is not None
        assert desc.task_error.startswith("ZeroDivisionError"), desc.task_error
        handle.signal("finish")  # accepted meanwhile: the workflow is still open
    finally:
        assert stop_worker_process(buggy) == 0
    fixed = start_worker_process(data_dir, "tests.wfs.raising_b", lease=1.0)
    try:
        assert handle.result(timeout=30) == 25
    finally:
        assert stop_worker_process(fixed) == 0
    assert [e["name"] for e in handle.history() if e["kind"] == "SignalReceived"] == ["add", "add", "finish"]


def test_an_application_error_fails_the_workflow(data_dir: str) -> None:
    with worker_thread(data_dir, [raising_a.refuser], [raising_a.double]):
        client = durable.Client(data_dir)
        handle = client.start(raising_a.refuser, 5, id="refused")
        with pytest.raises(durable.WorkflowFailed, match="Refused: refused 10"):
            handle.result(timeout=30)
        assert handle.describe().status == "failed"


def test_arguments_that_do_not_fit_are_refused_before_anything_is_written(data_dir: str) -> None:
    client = durable.Client(data_dir)
    # with the function at hand, its own signature says what fits
    with pytest.raises(durable.InvalidArgument, match=r"workflow 'lookup' takes 1 argument \(x: int\), not 2"):
        client.start(raising_a.lookup, 1, 2, id="typo-1")
    with pytest.raises(durable.InvalidArgument, match="workflow 'Counter' takes 0 arguments, not 1"):
        client.start(raising_a.Counter, 1, id="typo-2")
    # by name, once the queue's workers published the signatures
    with worker_thread(data_dir, [raising_a.lookup, raising_a.Counter], [raising_a.double]):
        with pytest.raises(durable.InvalidArgument, match="workflow 'lookup' takes 1 argument, not 0"):
            client.start("lookup", id="typo-3")
        handle = client.start("Counter", id="counter")
        with pytest.raises(durable.InvalidArgument,
                           match="signal 'add' of workflow type 'Counter' takes 1 argument, not 2"):
            handle.signal("add", 1, 2)
        with pytest.raises(durable.InvalidArgument, match="takes 0 arguments, not 1"):
            handle.signal("finish", True)
        handle.signal("add", 10)
        handle.signal("finish")
        assert handle.result(timeout=30) == 10
    ids = {d.workflow_id for d in client.list()}
    assert ids == {"counter"}  # nothing of the refused starts was written
    assert [e["name"] for e in handle.history() if e["kind"] == "SignalReceived"] == ["add", "finish"]
