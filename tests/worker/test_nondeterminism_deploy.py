"""A deploy that breaks replay: the workflow waits, history untouched, until fixed code returns."""

from __future__ import annotations

import time

import durable
from tests.conftest import start_worker_process, stop_worker_process


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_incompatible_deploy_waits_with_a_clear_error_and_resumes_when_fixed(data_dir: str) -> None:
    client = durable.Client(data_dir)
    old = start_worker_process(data_dir, "tests.wfs.version_a")
    try:
        handle = client.start("versioned", id="v-1")
        # the first step ran and the workflow waits for the signal
        wait_for(lambda: handle.describe().history_length >= 4)
    finally:
        assert stop_worker_process(old) == 0
    before = handle.history()

    new = start_worker_process(data_dir, "tests.wfs.version_b")
    try:
        handle.signal("proceed")  # makes a workflow task that the new code must replay
        wait_for(lambda: handle.describe().task_error is not None)
        desc = handle.describe()
        assert desc.status == "running"
        assert desc.task_error.startswith("NondeterminismError: ")
        assert "'v-1'" in desc.task_error and "event 1" in desc.task_error
        assert "ActivityScheduled('step'" in desc.task_error and "TimerStarted" in desc.task_error
        # history untouched apart from the signal itself
        after = handle.history()
        assert after[: len(before)] == before
        assert [e["kind"] for e in after[len(before):]] == ["SignalReceived"]
        listed = {d.workflow_id: d for d in client.list(status="running")}
        assert listed["v-1"].task_error == desc.task_error
    finally:
        assert stop_worker_process(new) == 0

    fixed = start_worker_process(data_dir, "tests.wfs.version_a")
    try:
        assert handle.result(timeout=30) == ["did a", "did b"]
        assert handle.describe().task_error is None
    finally:
        assert stop_worker_process(fixed) == 0
