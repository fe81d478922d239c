"""Async activities that use asyncio libraries, run on the worker's asyncio loop.

A real worker (in a thread, or a real process for cancellation) and a real store; a real asyncio
HTTP client (aiohttp, which works on asyncio only) against a local HTTP server the test starts.
The activities leave markers (`tests.wfs.asyncio_acts.seen`) that say what their asyncio tasks saw.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
from tests.conftest import worker_process, worker_thread
from tests.fault._util import history, wait_until
from tests.wfs import asyncio_acts as wfs

WORKFLOWS = [wfs.fetch_flow, wfs.undeclared_flow, wfs.cancel_flow, wfs.heartbeat_flow, wfs.slow_flow,
             wfs.self_cancel_flow, wfs.leave_flow, wfs.foreign_future_flow]
ACTIVITIES = [wfs.fetch, wfs.sleeps_undeclared, wfs.waits_for_cancel, wfs.stops_heartbeating, wfs.too_slow_once,
              wfs.cancels_itself, wfs.leaves_a_task, wfs.awaits_an_asyncio_future]


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        body = f"hello from {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


@contextlib.contextmanager
def http_server() -> Iterator[str]:
    """A local HTTP server in a thread; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def asyncio_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("durable-asyncio")]


def test_an_asyncio_activity_fetches_with_aiohttp_and_sees_its_context(
    data_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = durable.Client(data_dir)
    caplog.set_level(logging.INFO, logger="durable.activity")
    with http_server() as url, worker_thread(data_dir, WORKFLOWS, ACTIVITIES):
        out = client.start(wfs.fetch_flow, f"{url}/orders/7", id="fetch").result(timeout=30)
        # the loop's thread lives while the worker does
        assert asyncio_threads()
    assert out == {"status": 200, "body": "hello from /orders/7", "library": "asyncio",
                   "workflow_id": "fetch", "attempt": 1}
    [done] = [e for e in history(client, "fetch") if e["kind"] == "ActivityCompleted"]
    assert done["result"] == out
    # durable.logger knew the activity it logged from
    [record] = [r for r in caplog.records if r.getMessage().startswith("fetching ")]
    assert (record.name, record.activity, record.workflow_id) == ("durable.activity", "fetch", "fetch")
    # stopped with the worker, its thread ended
    assert asyncio_threads() == []


def test_an_undeclared_asyncio_activity_fails_with_a_message_naming_loop_asyncio(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES):
        with pytest.raises(durable.WorkflowFailed) as info:
            client.start(wfs.undeclared_flow, 0.01, id="undeclared").result(timeout=30)
    text = str(info.value)
    assert 'loop="asyncio"' in text and "sleeps_undeclared" in text, text
    assert "no running event loop" in text, text


def test_an_asyncio_object_awaited_on_trio_fails_with_the_same_hint(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES):
        with pytest.raises(durable.WorkflowFailed) as info:
            client.start(wfs.foreign_future_flow, id="foreign").result(timeout=30)
    text = str(info.value)
    assert 'loop="asyncio"' in text and "unrecognized yield message" in text, text


def test_the_worker_default_runs_undeclared_async_activities_on_asyncio(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES, activity_loop="asyncio"):
        out = client.start(wfs.undeclared_flow, 0.01, id="default-asyncio").result(timeout=30)
    assert out == "slept on asyncio"


def test_the_worker_command_takes_the_default_loop(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_process(data_dir, "tests.wfs.asyncio_acts", extra=("--activity-loop", "asyncio")):
        out = client.start(wfs.undeclared_flow, 0.01, id="cli-asyncio").result(timeout=30)
    assert out == "slept on asyncio"


def test_a_cancelled_workflow_cancels_the_asyncio_task_and_the_attempt_is_reported_cancelled(
    data_dir: str, tmp_path: Path
) -> None:
    client = durable.Client(data_dir)
    marks = tmp_path / "marks"
    marks.mkdir()
    with worker_process(data_dir, "tests.wfs.asyncio_acts", lease=1.0):
        handle = client.start(wfs.cancel_flow, str(marks), id="cancel-me")
        wait_until(lambda: "started-1" in wfs.seen(str(marks)), timeout=20, what="the activity to start")
        handle.cancel("no longer needed")
        with pytest.raises(durable.WorkflowFailed) as info:
            handle.result(timeout=30)
    assert info.value.status == "cancelled"
    assert wfs.seen(str(marks)) == {"started-1", "cancelled-1"}
    kinds = [e["kind"] for e in history(client, "cancel-me")]
    assert "ActivityCancelled" in kinds and "ActivityCompleted" not in kinds, kinds
    requested, cancelled = kinds.index("ActivityCancelRequested"), kinds.index("ActivityCancelled")
    assert requested < cancelled < kinds.index("WorkflowCancelled")


def test_a_heartbeat_timeout_cancels_the_asyncio_task_and_the_next_attempt_gets_its_details(
    data_dir: str, tmp_path: Path
) -> None:
    client = durable.Client(data_dir)
    marks = tmp_path / "marks"
    marks.mkdir()
    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES, lease=1.0):
        out = client.start(wfs.heartbeat_flow, str(marks), id="hb").result(timeout=30)
        # attempt 1's task is cancelled once the worker learns its lease is gone
        wait_until(lambda: "cancelled-1" in wfs.seen(str(marks)), timeout=20, what="attempt 1 to be cancelled")
    assert out == {"attempt": 2, "details": {"done": 1}}
    assert wfs.seen(str(marks)) == {"started-1", "cancelled-1"}


def test_start_to_close_cancels_the_asyncio_task_and_the_step_is_retried(data_dir: str, tmp_path: Path) -> None:
    client = durable.Client(data_dir)
    marks = tmp_path / "marks"
    marks.mkdir()
    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES):
        out = client.start(wfs.slow_flow, str(marks), id="slow").result(timeout=30)
    assert out == "attempt-2"
    assert wfs.seen(str(marks)) == {"cancelled-1"}
    described = client.get_handle("slow").describe()
    assert described.pending_activities == () and described.activity_attempts == 2


def test_worker_shutdown_cancels_the_asyncio_task_hands_the_attempt_back_and_stops_the_loop(
    data_dir: str, tmp_path: Path
) -> None:
    client = durable.Client(data_dir)
    marks = tmp_path / "marks"
    marks.mkdir()
    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES, graceful_timeout=0.2):
        handle = client.start(wfs.cancel_flow, str(marks), id="handed-back")
        wait_until(lambda: "started-1" in wfs.seen(str(marks)), timeout=20, what="the activity to start")
    assert wfs.seen(str(marks)) == {"started-1", "cancelled-1"}
    assert asyncio_threads() == []
    # handed back, not failed: the step waits to run again, its attempt not counted as a failure
    [pending] = handle.describe().pending_activities
    assert pending.name == "waits_for_cancel" and pending.state == "scheduled"
    assert pending.last_failure_type is None


def test_tasks_an_activity_leaves_on_the_loop_are_cancelled_when_the_worker_stops(
    data_dir: str, tmp_path: Path
) -> None:
    client = durable.Client(data_dir)
    marks = tmp_path / "marks"
    marks.mkdir()
    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES):
        assert client.start(wfs.leave_flow, str(marks)).result(timeout=30) == "left"
        assert "leftover-cancelled" not in wfs.seen(str(marks))
    assert wfs.seen(str(marks)) == {"ran-in-a-thread", "leftover-cancelled"}
    assert asyncio_threads() == []


def test_a_task_cancelled_by_its_own_code_fails_the_attempt(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES):
        with pytest.raises(durable.WorkflowFailed) as info:
            client.start(wfs.self_cancel_flow, id="self-cancel").result(timeout=30)
    assert info.value.status == "failed"
    assert "was cancelled, but not by the worker" in str(info.value)
    kinds = [e["kind"] for e in history(client, "self-cancel")]
    assert "ActivityFailed" in kinds and "ActivityCancelled" not in kinds


def test_bad_loop_declarations_are_refused_clearly(data_dir: str) -> None:
    def plain() -> None:
        pass

    async def coro() -> None:
        pass

    with pytest.raises(durable.InvalidArgument, match="async def activities"):
        durable.activity(loop="asyncio")(plain)
    with pytest.raises(durable.InvalidArgument, match='must be "trio" or "asyncio"'):
        durable.activity(loop="uvloop")(coro)  # type: ignore[call-overload]
    with pytest.raises(durable.DurableError, match="activity_loop"):
        durable.Worker(data_dir, activity_loop="gevent")  # type: ignore[arg-type]
    declared = durable.activity(loop="asyncio")(coro)
    assert declared.with_options(start_to_close=5).loop == "asyncio"
