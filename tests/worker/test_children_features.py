"""Conformance-style tests mirroring Temporal's features repository, child_workflow/ (execute,
result, signal, throws_on_execute, throws_on_start, throws_on_termination, cancel_wait_completed),
adapted to durable's API. Not mirrored: cancellation types other than waiting for the child's
final event (durable's promise: no scope exits while a child of it runs), and child retry
policies and timeouts.
"""

from __future__ import annotations

from pathlib import Path

import durable
from tests.conftest import worker_thread
from tests.fault._util import wait_until
from tests.wfs import children as c


def test_execute_and_result(data_dir: str) -> None:
    """child_workflow/execute, child_workflow/result: the child's result is the parent's."""
    with worker_thread(data_dir, c.WORKFLOWS, c.ACTIVITIES):
        client = durable.Client(data_dir)
        assert client.start(c.parent_sum, 2, id="r").result(timeout=20) == 2


def test_signal(data_dir: str) -> None:
    """child_workflow/signal: the parent signals its child through the handle."""
    with worker_thread(data_dir, c.WORKFLOWS, c.ACTIVITIES):
        client = durable.Client(data_dir)
        assert client.start(c.parent_signals_child, id="s").result(timeout=20) == ["a", "b"]


def test_throws_on_execute(data_dir: str) -> None:
    """child_workflow/throws_on_execute: the child's failure reaches the parent with its cause."""
    with worker_thread(data_dir, c.WORKFLOWS, c.ACTIVITIES):
        client = durable.Client(data_dir)
        assert client.start(c.parent_of_failure, "bad", id="e").result(timeout=20) == "failed: ChildBroke: bad"


def test_throws_on_start(data_dir: str) -> None:
    """child_workflow/throws_on_start: a second child with the id, refused by the id reuse policy."""
    with worker_thread(data_dir, c.WORKFLOWS, c.ACTIVITIES):
        client = durable.Client(data_dir)
        out = client.start(c.parent_reject_duplicate, id="d").result(timeout=20)
        assert out == ("2 then start_failed: durable.WorkflowAlreadyExists: a workflow with id 'd/once' "
                       "already ran (completed, type 'double') and the id reuse policy is 'reject_duplicate'")


def test_throws_on_termination(data_dir: str) -> None:
    """child_workflow/throws_on_termination: terminating the child fails the parent's await."""
    with worker_thread(data_dir, c.WORKFLOWS, c.ACTIVITIES):
        client = durable.Client(data_dir)
        parent = client.start(c.parent_of_blocked, id="t")
        child = client.get_handle("t/blocked")
        wait_until(lambda: _running(child), what="the child to start")
        child.terminate("operator says stop")
        assert parent.result(timeout=20) == (
            "terminated: durable.WorkflowTerminated: the child was terminated: operator says stop")


def test_cancel_wait_completed(data_dir: str, tmp_path: Path) -> None:
    """child_workflow/cancel_wait_completed: a child that ignores its cancellation completes, and
    the parent's scope waited for it."""
    log = tmp_path / "log"
    with worker_thread(data_dir, c.WORKFLOWS, c.ACTIVITIES):
        client = durable.Client(data_dir)
        out = client.start(c.parent_cancel_wait_completed, str(log), id="w").result(timeout=20)
        assert out == "finished anyway, scope cancelled: True"
        assert log.read_text() == "ignored the cancel\n"
        assert client.get_handle("w/stubborn").describe().status == "completed"


def _running(handle: durable.WorkflowHandle[object]) -> bool:
    try:
        return handle.describe().status == "running"
    except durable.WorkflowNotFound:
        return False
