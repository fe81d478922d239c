"""F11: several worker processes racing on one queue never run a step twice.

Real `durable worker` processes share one store and one queue. Every activity returns the pid of
the process that ran it, so the test sees that the work really spread over the processes, and
every history is checked for duplicate completions; the store's attempt counters must equal the
number of steps (no step was claimed twice).
"""

from __future__ import annotations

import pytest

import durable
from tests.conftest import start_worker_process, stop_worker_process
from tests.fault._util import assert_each_step_recorded_once, final_events_by_seq, history
from tests.wfs import faults

MODULE = "tests.wfs.faults"


def race(data_dir: str, n_workers: int, n_workflows: int, steps: int) -> None:
    client = durable.Client(data_dir)
    workers = [start_worker_process(data_dir, MODULE, lease=5.0) for _ in range(n_workers)]
    pids = {w.pid for w in workers}
    try:
        handles = [client.start(faults.pid_chain, steps, 0.01, id=f"race-{i}") for i in range(n_workflows)]
        results = {h.id: h.result(timeout=60) for h in handles}
    finally:
        codes = [stop_worker_process(w) for w in workers]
    assert codes == [0] * n_workers
    used = set()
    for wid, result in results.items():
        assert len(result) == steps and set(result) <= pids, (wid, result, pids)
        used.update(result)
        events = history(client, wid)
        assert_each_step_recorded_once(events, wid)
        finals = final_events_by_seq(events)
        assert sorted(finals) == list(range(1, steps + 1))
        assert all(e["kind"] == "ActivityCompleted" and e["attempt"] == 1 for [e] in finals.values())
        desc = client.get_handle(wid).describe()
        assert (desc.status, desc.activities_scheduled, desc.activity_attempts) == ("completed", steps, steps)
    assert used == pids, f"the work ran on {sorted(used)}, not on every worker {sorted(pids)}"
    assert len(client.list(status="completed", limit=10_000)) == n_workflows
    assert client.list(status="running") == []


def test_f11_two_worker_processes_race_on_one_queue(data_dir: str) -> None:
    race(data_dir, n_workers=2, n_workflows=100, steps=3)


def test_f11_three_worker_processes_race_on_one_queue(data_dir: str) -> None:
    race(data_dir, n_workers=3, n_workflows=300, steps=4)


@pytest.mark.slow
def test_f11_three_worker_processes_race_on_one_queue_long(data_dir: str) -> None:
    race(data_dir, n_workers=3, n_workflows=3000, steps=4)
