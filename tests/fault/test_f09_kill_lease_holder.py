"""F09: `kill -9` of a worker holding activity leases; another worker finishes the work.

Real `durable worker` processes with a short lease (1 s). The killed worker cannot clean up: its
leases simply stop being renewed. The store returns each task to the queue once the lease expires,
counting the lost attempt; the surviving worker runs the retry. A late result from the dead
worker would be refused (fencing), so each step has exactly one completion in history.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import durable
from tests.conftest import start_worker_process, stop_worker_process
from tests.fault._util import assert_each_step_recorded_once, final_events_by_seq, history, wait_until
from tests.wfs import faults

MODULE = "tests.wfs.faults"


def test_f09_kill_9_of_the_lease_holder(data_dir: str, tmp_path: Path) -> None:
    client = durable.Client(data_dir)
    victim = start_worker_process(data_dir, MODULE, lease=1.0)
    dirs = {f"held-{i}": tmp_path / f"markers-{i}" for i in range(5)}
    for path in dirs.values():
        path.mkdir()
    survivor = None
    try:
        for wid, path in dirs.items():
            client.start(faults.hold_workflow, str(path), 60.0, id=wid)
        wait_until(lambda: all(faults.markers(str(p), "hold") for p in dirs.values()), timeout=20,
                   what="the victim to hold every activity's lease")
        survivor = start_worker_process(data_dir, MODULE, lease=1.0)
        assert stop_worker_process(victim, signal.SIGKILL) == -signal.SIGKILL
        results = {wid: client.get_handle(wid).result(timeout=30) for wid in dirs}
    finally:
        if victim.poll() is None:
            stop_worker_process(victim, signal.SIGKILL)
        if survivor is not None:
            assert stop_worker_process(survivor) == 0
    for wid, path in dirs.items():
        runs = faults.markers(str(path), "hold")
        assert [(attempt, pid) for attempt, pid, _ in runs] == [(1, victim.pid), (2, survivor.pid)]
        assert len({key for _, _, key in runs}) == 1  # F03: one idempotency key for every attempt
        assert results[wid] == {"pid": survivor.pid, "attempt": 2, "key": runs[0][2]}
        events = history(client, wid)
        assert_each_step_recorded_once(events, wid)
        [done] = final_events_by_seq(events)[1]
        assert done["kind"] == "ActivityCompleted" and done["attempt"] == 2
        desc = client.get_handle(wid).describe()
        assert (desc.activities_scheduled, desc.activity_attempts, desc.activity_retries) == (1, 2, 1)


def test_f09_kill_9_while_another_worker_runs(data_dir: str, tmp_path: Path) -> None:
    """Two workers serve the queue from the start; the one that took the step is killed."""
    client = durable.Client(data_dir)
    workers = [start_worker_process(data_dir, MODULE, lease=1.0) for _ in range(2)]
    try:
        handle = client.start(faults.hold_workflow, str(tmp_path), 60.0, id="held")
        [(_, holder, _)] = wait_until(lambda: faults.markers(str(tmp_path), "hold"), timeout=20,
                                      what="a worker to take the step")
        [victim] = [w for w in workers if w.pid == holder]
        [survivor] = [w for w in workers if w.pid != holder]
        os.kill(victim.pid, signal.SIGKILL)
        result = handle.result(timeout=30)
    finally:
        codes = {w.pid: stop_worker_process(w) for w in workers}
    assert codes == {victim.pid: -signal.SIGKILL, survivor.pid: 0}
    assert result["pid"] == survivor.pid and result["attempt"] == 2
    [done] = final_events_by_seq(history(client, "held"))[1]
    assert done["attempt"] == 2
    desc = handle.describe()
    assert (desc.activity_attempts, desc.activity_retries) == (2, 1)
