"""The thinnest end-to-end checks: a worker in a thread, and one in a real process."""

from __future__ import annotations

import durable
from tests.conftest import worker_process, worker_thread
from tests.wfs import basic


def test_three_steps_in_thread(data_dir: str) -> None:
    with worker_thread(data_dir, [basic.three_steps], [basic.add_one, basic.double]):
        client = durable.Client(data_dir)
        assert client.start(basic.three_steps, 1, id="wf-1").result(timeout=10) == 5
        desc = client.get_handle("wf-1").describe()
        assert desc.status == "completed"
        assert desc.activities_scheduled == 3 and desc.activity_attempts == 3


def test_class_workflow_signal_and_query_with_worker_process(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_process(data_dir, "tests.wfs.basic"):
        h = client.start("Collector", id="c-1")
        assert h.query("count", timeout=10) == 0
        for i in range(3):
            h.signal("add", i)
        h.signal("finish")
        assert h.result(timeout=10) == [0, 1, 2]
