"""Reset with real worker processes: a workflow parked by a deploy that breaks replay, and one that
a bad deploy made fail, go on with the code deployed now from a reset (the old run kept)."""

from __future__ import annotations

import subprocess
import sys

import durable
from tests.conftest import ROOT, start_worker_process, stop_worker_process, worker_process
from tests.fault._util import wait_until

TIMEOUT = 30


def test_a_workflow_parked_by_an_incompatible_deploy_goes_on_after_a_reset(data_dir: str) -> None:
    client = durable.Client(data_dir)
    old = start_worker_process(data_dir, "tests.wfs.version_a")
    try:
        handle = client.start("versioned", id="v-1")
        wait_until(lambda: handle.describe().history_length >= 4, timeout=TIMEOUT)
    finally:
        assert stop_worker_process(old) == 0

    new = start_worker_process(data_dir, "tests.wfs.version_b")
    try:
        handle.signal("proceed")
        wait_until(lambda: handle.describe().task_error is not None, timeout=TIMEOUT)
        parked = handle.describe()
        assert parked.task_error.startswith("NondeterminismError: ") and "event 1" in parked.task_error
        # event 0 is the last point before the change: the new code runs from there, the signal reapplied
        reset = handle.reset(0, reason="version b changed the first step")
        assert reset.result(timeout=TIMEOUT) == ["did a", "did b"]
    finally:
        assert stop_worker_process(new) == 0
    kept = client.get_handle("v-1", run_id=parked.run_id)
    assert kept.describe().status == "terminated" and kept.describe().reset_run_id == reset.run_id
    kinds = [e["kind"] for e in reset.history()]
    assert kinds[:3] == ["WorkflowStarted", "SignalReceived", "TimerStarted"] and kinds.count("SignalReceived") == 1


def test_reset_from_the_command_line_after_a_bad_step_runs_no_prefix_activity_again(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_process(data_dir, "tests.wfs.reset_v1"):
        handle = client.start("order", 5, id="o-1")
        wait_until(lambda: handle.describe().history_length >= 4, timeout=TIMEOUT)
        handle.signal("note", "fragile")
        try:
            handle.result(timeout=TIMEOUT)
        except durable.WorkflowFailed as exc:
            assert "the carrier is unknown" in str(exc.__cause__)
        else:
            raise AssertionError("the bad step did not fail the workflow")
    old_run = handle.describe().run_id

    proc = subprocess.run([sys.executable, "-m", "durable", "--data", data_dir, "reset", "o-1", "--to", "2",
                           "--reason", "carrier fixed"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    new_run = proc.stdout.strip()
    with worker_process(data_dir, "tests.wfs.reset_v2"):
        assert client.get_handle("o-1").result(timeout=TIMEOUT) == ["shipped 50", ["fragile"]]
    history = client.get_handle("o-1", run_id=new_run).history()
    scheduled = [e["name"] for e in history if e["kind"] == "ActivityScheduled"]
    assert scheduled == ["charge", "ship"]  # charge only in the prefix: its result was kept
    assert [e["index"] for e in history if e["kind"] == "ActivityScheduled" and e["name"] == "charge"] == [1]
    assert client.get_handle("o-1", run_id=old_run).describe().status == "failed"
