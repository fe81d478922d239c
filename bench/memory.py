"""Worker memory with many live workflows: each one a `signal_wf` waiting on its signal.

One worker process on a fresh store, its cache large enough to keep every workflow live. The
client starts ``workflows`` `signal_wf` workflows (from a few threads), then waits until each has
had its first workflow task recorded (its history holds the timer of its `wait_condition`
timeout, so `describe().history_length >= 2`, read here for all at once with `Client.list`).
Then the worker's VmRSS and VmHWM (peak resident set) are read from /proc/<pid>/status, next to
the RSS it had once serving and idle. With ``complete`` the workflows are then signalled and
awaited, to show they were live; otherwise the worker is stopped with them still waiting.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from typing import Any

import durable

from ._util import proc_memory_kb, start_worker, stop_worker

#: The workflow the client starts (the signal_roundtrip workload's).
WORKFLOW = "signal_wf"
#: Its wait_condition timeout, in seconds: every workflow must be started and seen within it.
SIGNAL_TIMEOUT_S = 120


def _in_threads(n: int, threads: int, fn: Any) -> None:
    """Call ``fn(i)`` for i in range(n), spread over `threads` threads."""
    errors: list[BaseException] = []

    def loop(k: int) -> None:
        try:
            for i in range(k, n, threads):
                fn(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    pool = [threading.Thread(target=loop, args=(k,)) for k in range(min(threads, n))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]


def wait_first_tasks(client: durable.Client, n: int, timeout: float) -> float:
    """Wait until `n` running `signal_wf` workflows have had their first workflow task recorded;
    return the seconds it took."""
    t0 = time.monotonic()
    while True:
        recs = client.list(status="running", workflow=WORKFLOW, limit=n + 1)
        ready = sum(1 for r in recs if r.history_length >= 2)
        if ready >= n:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"only {ready} of {n} workflows had their first task after {timeout:g} s")
        time.sleep(0.2)


def measure(*, workflows: int = 10_000, threads: int = 8, complete: bool = False) -> dict[str, Any]:
    """Start `workflows` waiting workflows on a fresh worker; return the JSON record."""
    with tempfile.TemporaryDirectory(prefix="durable-memory-") as tmp:
        data = os.path.join(tmp, "store")
        worker = start_worker(data, cache=max(workflows, 10_000))
        try:
            time.sleep(0.2)  # settle: the idle worker's resident set, for the per-workflow figure
            idle = proc_memory_kb(worker.pid)
            client = durable.Client(data)
            t0 = time.monotonic()
            _in_threads(workflows, threads, lambda i: client.start(WORKFLOW, id=f"mem-{i}"))
            start_s = time.monotonic() - t0
            ready_s = wait_first_tasks(client, workflows, timeout=max(SIGNAL_TIMEOUT_S - start_s - 5, 1))
            mem = proc_memory_kb(worker.pid)
            complete_s = peak_after = None
            if complete:
                t0 = time.monotonic()

                def finish(i: int) -> None:
                    handle = client.get_handle(f"mem-{i}")
                    handle.signal("sig", "done")
                    assert handle.result(timeout=SIGNAL_TIMEOUT_S) == "done"

                _in_threads(workflows, threads, finish)
                complete_s = round(time.monotonic() - t0, 3)
                peak_after = proc_memory_kb(worker.pid)["VmHWM"]
        finally:
            stop_worker(worker)
    record: dict[str, Any] = {
        "system": "durable", "workload": "memory", "live_workflows": workflows,
        "rss_mb": round(mem["VmRSS"] / 1024, 1), "peak_rss_mb": round(mem["VmHWM"] / 1024, 1),
        "idle_rss_mb": round(idle["VmRSS"] / 1024, 1),
        "kb_per_workflow": round((mem["VmRSS"] - idle["VmRSS"]) / max(workflows, 1), 2),
        "start_s": round(start_s, 3), "first_tasks_s": round(ready_s, 3),
    }
    if complete_s is not None:
        record["complete_s"] = complete_s
        record["peak_rss_mb_after_complete"] = round(peak_after / 1024, 1)
    return record
