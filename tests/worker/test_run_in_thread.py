"""A `Worker` run in a thread of its own (``threading.Thread(target=worker.run_sync)``), as tests
and applications that embed one do, and stopped with `Worker.shutdown` from another thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import durable
from tests.fault._util import wait_until
from tests.wfs import basic, faults


@contextlib.contextmanager
def in_thread(worker: durable.Worker) -> Iterator[threading.Thread]:
    """`worker.run_sync()` in a thread; on leaving, the thread must have ended without an error."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run_sync()
        except BaseException as exc:  # noqa: BLE001 - checked in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(30)
        assert not thread.is_alive(), "the worker's thread did not end"
        assert errors == []


def test_a_worker_runs_in_a_thread_and_shutdown_from_another_stops_it(data_dir: str) -> None:
    worker = durable.Worker(data_dir, workflows=[basic.three_steps], activities=[basic.add_one, basic.double])
    client = durable.Client(data_dir)
    with in_thread(worker):
        assert client.start(basic.three_steps, 1, id="wf-1").result(timeout=20) == 5
        assert client.start(basic.three_steps, 2, id="wf-2").result(timeout=20) == 7
        worker.shutdown()  # from this thread, while the worker's own waits for work
    worker.shutdown()  # once it has stopped: nothing left to do
    assert worker.stats["wft"] >= 2


def test_shutdown_waits_for_a_running_step(data_dir: str, tmp_path: Path) -> None:
    """Called from another thread while a step runs, shutdown lets it finish (within the grace
    period) and the result is recorded before the thread ends."""
    worker = durable.Worker(data_dir, workflows=[faults.hold_workflow], activities=[faults.hold_then_finish])
    client = durable.Client(data_dir)
    with in_thread(worker):
        handle = client.start(faults.hold_workflow, str(tmp_path), 0.3, id="held")
        wait_until(lambda: faults.markers(str(tmp_path), "hold"), timeout=20, what="the step to start")
        worker.shutdown()
    events = handle.history()
    assert [e["kind"] for e in events].count("ActivityCompleted") == 1


def test_shutdown_before_the_worker_runs(data_dir: str) -> None:
    worker = durable.Worker(data_dir, workflows=[basic.three_steps], activities=[basic.add_one, basic.double])
    worker.shutdown()
    with in_thread(worker):
        pass
