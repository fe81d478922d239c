"""The worker's cache of live workflows is bounded; a miss replays the history (same code path)."""

from __future__ import annotations

import time

import durable
from tests.conftest import worker_thread
from tests.wfs import basic


def test_tiny_cache_still_completes_interleaved_workflows(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [basic.Collector, basic.three_steps], [basic.add_one, basic.double],
                       max_cached_workflows=1) as worker:
        collectors = [client.start(basic.Collector, id=f"c-{i}") for i in range(4)]
        steps = [client.start(basic.three_steps, i, id=f"s-{i}") for i in range(10)]
        for round_ in range(3):
            for h in collectors:  # every signal makes a task for another workflow: cache misses
                h.signal("add", round_)
        for h in collectors:
            assert h.query("count") == 3  # a query sees every signal sent before it
            h.signal("finish")
        assert [h.result(timeout=20) for h in collectors] == [[0, 1, 2]] * 4
        assert [h.result(timeout=20) for h in steps] == [2 * (i + 1) + 1 for i in range(10)]
        assert len(worker._cache) <= 1


def test_cache_holds_running_workflows_and_drops_finished_ones(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [basic.Collector, basic.three_steps], [basic.add_one, basic.double]) as worker:
        waiting = [client.start(basic.Collector, id=f"c-{i}") for i in range(5)]
        for h in waiting:
            assert h.query("count") == 0  # answered once the first task ran
        done = client.start(basic.three_steps, 1, id="s-1")
        assert done.result(timeout=20) == 5
        # the finished workflow is evicted right after its last task is recorded
        deadline = time.monotonic() + 10
        while {rt.workflow_id for rt in list(worker._cache.values())} != {h.id for h in waiting}:
            assert time.monotonic() < deadline, sorted(rt.workflow_id for rt in worker._cache.values())
            time.sleep(0.01)
