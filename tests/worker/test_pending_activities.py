"""A retrying activity is visible: `describe` (API, CLI, --json) lists each pending activity with
its attempt, last failure, next retry time and the worker holding it; the worker logs each
failed attempt at WARNING; a schedule_to_close deadline ends the step as timed out (its last
error the cause); heartbeat details given just before a failure reach the next attempt."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest
from click.testing import CliRunner

import durable
from durable.cli import main
from tests.conftest import worker_thread
from tests.fault._util import wait_until

release = threading.Event()


@durable.activity(retry=durable.RetryPolicy(max_attempts=5, initial_interval=30))
def flaky(x: int) -> int:
    raise ValueError(f"upstream said no to {x}")


@durable.activity
def held(x: int) -> int:
    assert release.wait(30)
    return x


@durable.workflow
async def two_steps(x: int) -> list[int]:
    async with durable.open_nursery() as nursery:
        nursery.start_soon(held, x)
        nursery.start_soon(flaky, x)
    return [x]


@durable.activity(schedule_to_close=0.5, retry=durable.RetryPolicy(max_attempts=10, initial_interval=2))
def hopeless(x: int) -> int:
    raise ValueError(f"still down ({x})")


@durable.workflow
async def bounded(x: int) -> dict[str, Any]:
    try:
        await hopeless(x)
    except durable.ActivityError as err:
        cause = err.__cause__
        return {"kind": err.kind, "cause": type(cause).__name__, "cause_text": str(cause),
                "root": str(cause.__cause__) if cause is not None else None}
    return {}


@durable.activity(retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.01))
def resumable(total: int) -> Any:
    info = durable.activity_info()
    if info.attempt == 1:
        durable.heartbeat({"done": 7})  # progress, then a failure before the next beat goes out
        raise ConnectionError("dropped halfway")
    return info.heartbeat_details


@durable.workflow
async def resume(total: int) -> Any:
    return await resumable(total)


def test_describe_lists_pending_activities_and_the_worker_logs_failed_attempts(
        data_dir: str, caplog: pytest.LogCaptureFixture) -> None:
    release.clear()
    client = durable.Client(data_dir)
    with caplog.at_level(logging.WARNING, logger="durable.worker"), \
            worker_thread(data_dir, [two_steps], [flaky, held]) as worker:
        handle = client.start(two_steps, 3, id="pending-1")
        desc = wait_until(lambda: (d := handle.describe()) and len(d.pending_activities) == 2
                          and d.pending_activities[1].state == "backing_off" and d, what="a failed attempt")
        running, retrying = desc.pending_activities
        assert (running.seq, running.name, running.state, running.attempt) == (1, "held", "running", 1)
        assert running.worker == worker.identity and running.started_at is not None
        assert running.next_attempt_at is None and running.last_failure_type is None
        assert (retrying.seq, retrying.name, retrying.attempt, retrying.worker) == (2, "flaky", 1, None)
        assert retrying.last_failure_type == "ValueError"
        assert retrying.last_failure_message == "upstream said no to 3"
        assert retrying.next_attempt_at is not None
        assert 25 < (retrying.next_attempt_at - desc.updated_at).total_seconds() <= 31  # the policy's 30 s

        as_json = json.loads(CliRunner().invoke(main, ["describe", "pending-1", "--json", "--data", data_dir]).stdout)
        assert [p["name"] for p in as_json["pending_activities"]] == ["held", "flaky"]
        assert as_json["pending_activities"][1]["last_failure_message"] == "upstream said no to 3"
        text = CliRunner().invoke(main, ["describe", "pending-1", "--data", data_dir]).stdout
        assert "pending activities:" in text
        assert f"seq 1 held: running, attempt 1, on {worker.identity}" in text
        assert "seq 2 flaky: backing off, attempt 1, next attempt at " in text
        assert "last failure: ValueError: upstream said no to 3" in text
        release.set()
        handle.terminate("seen enough")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "activity 'flaky' of workflow 'pending-1' failed, attempt 1: ValueError: upstream said no to 3" in warnings
    assert handle.describe().pending_activities == ()  # closed: nothing pending is shown


def test_schedule_to_close_ends_the_step_as_timed_out_with_the_last_error_as_cause(data_dir: str) -> None:
    with worker_thread(data_dir, [bounded], [hopeless]):
        out = durable.Client(data_dir).start(bounded, 4, id="s2c").result(timeout=30)
    assert out["kind"] == "timed_out"
    assert out["cause"] == "ApplicationError" and out["cause_text"].startswith("ScheduleToCloseTimeout: ")
    assert out["root"] == "ValueError: still down (4)"


def test_heartbeat_details_given_before_a_failure_reach_the_next_attempt(data_dir: str) -> None:
    with worker_thread(data_dir, [resume], [resumable]):
        assert durable.Client(data_dir).start(resume, 10, id="resume").result(timeout=30) == {"done": 7}
