"""`durable workers` lists the workers serving each queue; `durable history` shows wall-clock
times and readable durations, and `--follow` prints events as they are recorded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from typing import Any

import pytest
from click.testing import CliRunner

import durable
from durable.cli import main
from durable.cli._main import readable_duration
from examples import hello
from tests.conftest import ROOT, worker_thread
from tests.fault._util import wait_until

release = threading.Event()


@durable.activity
def held(x: int) -> int:
    assert release.wait(30)
    return x


@durable.workflow
async def holding(x: int) -> int:
    return await held(x)


def run(data_dir: str, *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--data", data_dir], prog_name="durable")
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_workers_lists_who_serves_what_and_what_it_runs(data_dir: str) -> None:
    release.clear()
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [holding], [held], queue="q1") as worker:
        handle = client.start(holding, 7, id="h", queue="q1")
        wait_until(lambda: handle.describe().pending_activities
                   and handle.describe().pending_activities[0].state == "running", what="the step to run")
        [row] = [json.loads(line) for line in run(data_dir, "workers", "--json").stdout.splitlines()]
        assert (row["identity"], row["queue"], row["alive"], row["pid"]) == (worker.identity, "q1", True, os.getpid())
        assert row["running_activities"] == ["held"]
        assert (row["workflows"], row["activities"]) == (["holding"], ["held"])
        text = run(data_dir, "workers").stdout
        assert f"{worker.identity}  queue=q1  serving, last seen " in text and "running: held" in text
        assert run(data_dir, "workers", "--queue", "other").stderr == (
            "no worker serves queue 'other' now (--all shows those gone)\n")
        release.set()
        assert handle.result(timeout=30) == 7
    assert run(data_dir, "workers").stdout == ""  # it stopped: gone at once
    [gone] = client.workers(include_gone=True)
    assert gone.identity == worker.identity and not gone.alive and gone.running_activities == ()
    assert "  queue=q1  gone, last seen " in run(data_dir, "workers", "--all").stdout


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 ms"), (0.0824, "82.4 ms"), (1.5, "1.50 s"), (59.994, "59.99 s"), (125, "2 min 05 s"),
    (3600, "1 h 00 min"), (3 * 3600 + 7 * 60 + 5, "3 h 07 min"), (2 * 86400 + 4 * 3600, "2 d 04 h"),
])
def test_readable_durations(seconds: float, text: str) -> None:
    assert readable_duration(seconds) == text


def test_history_shows_times_of_day_offsets_and_readable_durations(data_dir: str) -> None:
    with worker_thread(data_dir, [hello.Approval], []):
        client = durable.Client(data_dir)
        handle = client.start(hello.Approval, {"amount": 1}, id="ap")
        wait_until(lambda: len(handle.history()) >= 2, what="the timer")
        lines = run(data_dir, "history", "ap").stdout.splitlines()
    events = handle.history()
    assert len(lines) == len(events)
    for line, event in zip(lines, events):
        match = re.match(r"^ +(\d+)  (\d\d:\d\d:\d\d\.\d{3}) +\+(\S+ \S+)  (\w+) ", line)
        assert match, line
        assert int(match[1]) == event["index"] and match[4] == event["kind"]
        assert match[2] == event["time"].strftime("%H:%M:%S.%f")[:-3]
    assert "TimerStarted             seq=1 duration=1 h 00 min" in lines[1]
    as_json = [json.loads(line) for line in run(data_dir, "history", "ap", "--json").stdout.splitlines()]
    assert as_json[1]["duration_ns"] == 3600 * 10**9  # exact in JSON


def test_follow_history_gives_each_event_as_it_is_recorded_until_the_run_closes(data_dir: str) -> None:
    with worker_thread(data_dir, [hello.Approval], []):
        client = durable.Client(data_dir)
        handle = client.start(hello.Approval, {"amount": 1}, id="ap")
        seen: list[str] = []
        done = threading.Event()

        def follow() -> None:
            for event in client.get_handle("ap").follow_history(timeout=30):
                seen.append(event["kind"])
            done.set()

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        wait_until(lambda: "TimerStarted" in seen, what="the events so far")
        assert not done.is_set()  # still open: it waits for more
        handle.signal("decide", "yes")
        assert done.wait(30)
        thread.join(10)
    assert seen == [e["kind"] for e in handle.history()]
    assert seen[-1] == "WorkflowCompleted"
    with pytest.raises(durable.InvalidArgument, match="start must be a non-negative event index"):
        handle.history(-1)
    assert [e["index"] for e in handle.history(3)] == list(range(3, len(seen)))


def test_history_follow_on_the_command_line(data_dir: str) -> None:
    with worker_thread(data_dir, [hello.Approval], []):
        client = durable.Client(data_dir)
        handle = client.start(hello.Approval, {"amount": 2}, id="ap-cli")
        wait_until(lambda: len(handle.history()) >= 2, what="the timer")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with subprocess.Popen([sys.executable, "-m", "durable", "history", "ap-cli", "--follow", "--data", data_dir],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            first = [proc.stdout.readline(), proc.stdout.readline()]
            assert "WorkflowStarted" in first[0] and "TimerStarted" in first[1]
            handle.signal("decide", "no")
            rest, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    kinds = [re.split(r" {2,}", line.strip())[3] for line in first + rest.splitlines()]
    assert kinds == [e["kind"] for e in handle.history()]
