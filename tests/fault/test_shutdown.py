"""Graceful shutdown: SIGINT and SIGTERM stop a worker with exit code 0; work it cannot finish in
its grace period is handed back and finished by another worker, and no step ever runs in two
places at once.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import durable
from tests.conftest import start_worker_process, stop_worker_process, worker_process, worker_thread
from tests.fault._util import assert_each_step_recorded_once, final_events_by_seq, history, kinds, wait_until
from tests.wfs import faults

MODULE = "tests.wfs.faults"
SIGNALS = pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])

# --- in one process: runs of a step, as (start, end) on the monotonic clock ----------------------

RUNS: dict[str, list[list[float]]] = {}
_lock = threading.Lock()


def _begin() -> list[float]:
    run = [time.monotonic(), float("inf")]
    with _lock:
        RUNS.setdefault(durable.activity_info().workflow_id, []).append(run)
    return run


@durable.activity(retry=faults.FAST_RETRY)
def uninterruptible(seconds: float) -> int:
    """A sync step that never calls heartbeat(): nothing can stop it before it ends."""
    run = _begin()
    first = len(RUNS[durable.activity_info().workflow_id]) == 1
    if first:
        time.sleep(seconds)
    run[1] = time.monotonic()
    return durable.activity_info().attempt


@durable.activity(retry=faults.FAST_RETRY)
def cooperative(seconds: float) -> int:
    """A sync step that heartbeats, so it learns that its worker is stopping."""
    run = _begin()
    first = len(RUNS[durable.activity_info().workflow_id]) == 1
    try:
        deadline = time.monotonic() + (seconds if first else 0)
        while time.monotonic() < deadline:
            durable.heartbeat()
            time.sleep(0.02)
        return durable.activity_info().attempt
    finally:
        run[1] = time.monotonic()


@durable.workflow
async def one(name: str, seconds: float) -> int:
    return await {"uninterruptible": uninterruptible, "cooperative": cooperative}[name](seconds)


def assert_runs_disjoint(wid: str) -> list[list[float]]:
    runs = sorted(RUNS[wid])
    for earlier, later in zip(runs, runs[1:]):
        assert later[0] >= earlier[1], f"{wid}: a step ran twice at once: {runs}"
    return runs


# --- real processes: exit codes ----------------------------------------------------------------


def logged(proc: subprocess.Popen[str], text: str) -> bool:
    """Whether a worker process started by `start_worker_process` wrote `text` to stderr."""
    return any(text in line for line in proc.log_lines)  # type: ignore[attr-defined]


def stop_hint(sig: signal.Signals) -> str:
    return "Ctrl-C again to stop now" if sig == signal.SIGINT else "Ctrl-C (SIGINT) to stop now"


@SIGNALS
def test_idle_worker_process_exits_0(data_dir: str, sig: signal.Signals) -> None:
    proc = start_worker_process(data_dir, MODULE)
    assert stop_worker_process(proc, sig) == 0
    assert logged(proc, "worker stopped")
    assert not logged(proc, "waiting for")  # nothing ran: it just stops


@SIGNALS
def test_busy_worker_process_finishes_running_steps_and_exits_0(data_dir: str, sig: signal.Signals) -> None:
    client = durable.Client(data_dir)
    proc = start_worker_process(data_dir, MODULE)
    try:
        handle = client.start(faults.inc_chain, 0, 4, 0.3, id="chain")
        wait_until(lambda: kinds(history(client, "chain")).count("ActivityCompleted") >= 1, timeout=20,
                   what="the first step to finish")
    finally:
        assert stop_worker_process(proc, sig) == 0
    assert handle.describe().status == "running"
    with worker_process(data_dir, MODULE):
        assert handle.result(timeout=20) == 4
    desc = handle.describe()
    assert (desc.activities_scheduled, desc.activity_attempts) == (4, 4)  # the step in flight finished
    assert_each_step_recorded_once(history(client, "chain"), "chain")


@SIGNALS
def test_second_ctrl_c_stops_at_once_and_another_worker_runs_the_step_again(data_dir: str, tmp_path: Path,
                                                                            sig: signal.Signals) -> None:
    """The first signal says what the worker waits for: a sync step that never heartbeats, which
    nothing can interrupt; a second Ctrl-C ends the process at once, recording nothing. The step's
    lease expires and another worker runs it again."""
    client = durable.Client(data_dir)
    proc = start_worker_process(data_dir, MODULE, lease=0.5)
    try:
        handle = client.start(faults.hold_workflow, str(tmp_path), 600.0, id="held")
        wait_until(lambda: faults.markers(str(tmp_path), "hold"), timeout=20, what="the step to start")
        proc.send_signal(sig)
        waiting = f"waiting for 1 running activity: hold_then_finish ({stop_hint(sig)})"
        wait_until(lambda: logged(proc, waiting), timeout=20, what=repr(waiting))
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        code = stop_worker_process(proc, signal.SIGKILL)
    assert code == 130
    assert logged(proc, "stopped now: 1 activity left to be retried after its lease expires")
    assert not logged(proc, "worker stopped")
    assert handle.describe().status == "running"
    assert kinds(history(client, "held")).count("ActivityCompleted") == 0
    with worker_process(data_dir, MODULE, lease=0.5) as other:
        result: dict[str, Any] = handle.result(timeout=30)
    assert result["pid"] == other.pid and result["attempt"] == 2  # the first attempt's lease expired
    assert [(a, pid) for a, pid, _ in faults.markers(str(tmp_path), "hold")] == [(1, proc.pid), (2, other.pid)]
    assert_each_step_recorded_once(history(client, "held"), "held")


@SIGNALS
def test_graceful_timeout_bounds_the_wait_and_hands_the_step_back(data_dir: str, tmp_path: Path,
                                                                  sig: signal.Signals) -> None:
    """--graceful-timeout: an async step still running when it ends is handed back (not counted)
    and the worker exits 0; a SIGTERM meanwhile does not stop it at once."""
    client = durable.Client(data_dir)
    proc = start_worker_process(data_dir, MODULE, lease=1.0, extra=("--graceful-timeout", "0.2"))
    try:
        handle = client.start(faults.wait_workflow, str(tmp_path), 600.0, id="long")
        wait_until(lambda: faults.markers(str(tmp_path), "wait"), timeout=20, what="the step to start")
        proc.send_signal(sig)
        waiting = f"waiting for 1 running activity: wait_then_finish ({stop_hint(sig)})"
        wait_until(lambda: logged(proc, waiting), timeout=20, what=repr(waiting))
    finally:
        assert stop_worker_process(proc, signal.SIGTERM) == 0
    assert logged(proc, "worker stopped")
    assert handle.describe().activity_attempts == 0  # handed back: not counted
    with worker_process(data_dir, MODULE, lease=1.0) as other:
        result: dict[str, Any] = handle.result(timeout=30)
    assert result["pid"] == other.pid and result["attempt"] == 1
    assert [(a, pid) for a, pid, _ in faults.markers(str(tmp_path), "wait")] == sorted([(1, proc.pid), (1, other.pid)])


# --- handing back what cannot finish within the grace period (workers in threads) -----------------


def test_async_step_is_handed_back_and_finished_elsewhere(data_dir: str, tmp_path: Path) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [faults.wait_workflow], [faults.wait_then_finish], graceful_timeout=0.3):
        handle = client.start(faults.wait_workflow, str(tmp_path), 30.0, id="handed")
        wait_until(lambda: faults.markers(str(tmp_path), "wait"), timeout=10, what="the step to start")
    # the worker stopped: the attempt was handed back, not counted and not failed
    assert handle.describe().status == "running"
    assert handle.describe().activity_attempts == 0
    with worker_thread(data_dir, [faults.wait_workflow], [faults.wait_then_finish]):
        result = handle.result(timeout=20)
    assert result["attempt"] == 1
    assert [a for a, _, _ in faults.markers(str(tmp_path), "wait")] == [1, 1]
    [done] = final_events_by_seq(history(client, "handed"))[1]
    assert done["kind"] == "ActivityCompleted" and done["attempt"] == 1
    desc = handle.describe()
    assert (desc.activity_attempts, desc.activity_retries) == (1, 0)


def stop_holder_while_another_worker_serves(data_dir: str, name: str, wid: str, seconds: float) -> durable.WorkflowHandle:
    """Worker A takes the step; worker B starts; A stops (grace 0.2 s) while the step runs; B
    serves on. Return the workflow's handle once it completed."""
    client = durable.Client(data_dir)
    acts = [uninterruptible, cooperative]
    holder = worker_thread(data_dir, [one], acts, lease=0.5, graceful_timeout=0.2)
    holder.__enter__()
    try:
        handle = client.start(one, name, seconds, id=wid)
        wait_until(lambda: RUNS.get(wid), timeout=10, what="the step to start")
        with worker_thread(data_dir, [one], acts, lease=0.5):
            stopping, holder = holder, None
            stopping.__exit__(None, None, None)
            assert handle.result(timeout=20) == 1
    finally:
        if holder is not None:
            holder.__exit__(None, None, None)
    return handle


def test_uninterruptible_step_is_never_run_twice_at_once(data_dir: str) -> None:
    """A sync step that never heartbeats cannot be stopped: the stopping worker must not hand it
    to another worker while it still runs. It finishes it under its lease instead."""
    handle = stop_holder_while_another_worker_serves(data_dir, "uninterruptible", "sync", 1.0)
    runs = assert_runs_disjoint("sync")
    assert len(runs) == 1
    desc = handle.describe()
    assert (desc.activity_attempts, desc.activity_retries) == (1, 0)


def test_cooperative_step_is_handed_back_once_it_stopped(data_dir: str) -> None:
    """A sync step that heartbeats learns at its next beat that its worker is stopping; its
    lease is handed back once it has stopped, and the other worker runs it again."""
    handle = stop_holder_while_another_worker_serves(data_dir, "cooperative", "coop", 30.0)
    runs = assert_runs_disjoint("coop")
    assert len(runs) == 2
    desc = handle.describe()
    assert (desc.activity_attempts, desc.activity_retries) == (1, 0)


# --- the real thing, with the default grace period of 10 s ------------------------------------------


@pytest.mark.slow
@SIGNALS
def test_worker_process_hands_back_a_long_step_and_exits_0(data_dir: str, tmp_path: Path, sig: signal.Signals) -> None:
    client = durable.Client(data_dir)
    proc = start_worker_process(data_dir, MODULE, lease=1.0)
    try:
        handle = client.start(faults.wait_workflow, str(tmp_path), 600.0, id="long")
        wait_until(lambda: faults.markers(str(tmp_path), "wait"), timeout=20, what="the step to start")
    finally:
        assert stop_worker_process(proc, sig) == 0
    with worker_process(data_dir, MODULE, lease=1.0) as other:
        result: dict[str, Any] = handle.result(timeout=30)
    assert result["pid"] == other.pid and result["attempt"] == 1
    assert [(a, pid) for a, pid, _ in faults.markers(str(tmp_path), "wait")] == sorted([(1, proc.pid), (1, other.pid)])
    desc = handle.describe()
    assert (desc.activity_attempts, desc.activity_retries) == (1, 0)
