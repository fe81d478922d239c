"""Crash points: a real worker process kills itself (SIGKILL) at a named point of the engine,
and a restarted worker recovers the work with each step recorded once (issue 4, point 3).

The points (``DURABLE_CRASHPOINT=name[:n]``, see ``durable/_crashpoint.py``):

- ``activity-after-effect``: the activity's effect is done, its completion not yet written: the
  step runs again after the lease expires, and its effect, keyed by the idempotency key, is
  applied once;
- ``batch-before-commit``: a group-commit batch ran in the write transaction but did not commit:
  nothing of it is in the store, and the work it held is done again;
- ``timer-before-commit``: a timer fired inside ``fire_due`` but the transaction did not commit:
  the timer is still pending in the store and fires exactly once after the restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import durable
from tests.conftest import ROOT, start_worker_process, stop_worker_process
from tests.fault._util import assert_each_step_recorded_once, history, kinds
from tests.wfs import crashpoints as wfs

MODULE = "tests.wfs.crashpoints"
LEASE = 1.0
X = 10


def crashing_worker(data_dir: str, point: str) -> subprocess.Popen[str]:
    return start_worker_process(data_dir, MODULE, lease=LEASE, env={"DURABLE_CRASHPOINT": point})


def wait_killed(proc: subprocess.Popen[str], point: str) -> None:
    """The worker dies by SIGKILL at the crash point (and says so on stderr)."""
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the worker never reached crash point {point}") from None
    assert stop_worker_process(proc) == -signal.SIGKILL
    name = point.partition(":")[0]
    assert any(f"crash point {name} reached" in line for line in proc.log_lines), proc.log_lines  # type: ignore[attr-defined]


def finish_and_check(client: durable.Client, data_dir: str, marker_dir: str, wid: str) -> list[dict]:
    """Restart a plain worker; the workflow completes with the right result, each step once, and
    each step's keyed effect applied exactly once."""
    worker = start_worker_process(data_dir, MODULE, lease=LEASE)
    try:
        assert client.get_handle(wid).result(timeout=60) == X + 4
    finally:
        assert stop_worker_process(worker) == 0
    events = history(client, wid)
    assert_each_step_recorded_once(events, wid)
    assert kinds(events).count("ActivityCompleted") == 4
    assert kinds(events).count("TimerFired") == 1
    assert kinds(events).count("WorkflowCompleted") == 1
    assert client.get_handle(wid).describe().status == "completed"
    effects = wfs.effects(marker_dir)
    runs = wfs.runs(marker_dir)
    assert sorted(v.split(":")[0] for v in effects.values()) == ["s1", "s2", "s3", "s4"]
    assert set(runs) == set(effects)  # every key that ran has its effect, applied once
    return events


def test_crash_after_activity_effect_before_its_completion(data_dir: str, tmp_path: Path) -> None:
    marker_dir = str(tmp_path / "markers")
    os.makedirs(marker_dir)
    client = durable.Client(data_dir)
    client.start(wfs.steps_and_timer, marker_dir, X, 0.2, id="wf")
    proc = crashing_worker(data_dir, "activity-after-effect")
    wait_killed(proc, "activity-after-effect")
    # the effect of step 1 happened, its completion was never recorded
    assert [v.split(":")[0] for v in wfs.effects(marker_dir).values()] == ["s1"]
    assert "ActivityCompleted" not in kinds(history(client, "wf"))
    [key] = wfs.runs(marker_dir)

    events = finish_and_check(client, data_dir, marker_dir, "wf")
    assert wfs.runs(marker_dir)[key] == 2  # the step ran again after the dead worker's lease expired...
    assert wfs.effects(marker_dir)[key] == f"s1:{X}"  # ...but its keyed effect was applied once
    first = next(e for e in events if e["kind"] == "ActivityCompleted")
    assert first["attempt"] == 2
    assert client.get_handle("wf").describe().activity_attempts == 5


@pytest.mark.parametrize("n", [2, 3, 4, 6, 8])  # 2: the first workflow task, claimed as it is recorded
def test_crash_inside_a_group_commit_batch(data_dir: str, tmp_path: Path, n: int) -> None:
    marker_dir = str(tmp_path / "markers")
    os.makedirs(marker_dir)
    client = durable.Client(data_dir)
    client.start(wfs.steps_and_timer, marker_dir, X, 0.2, id="wf")
    before = history(client, "wf")
    point = f"batch-before-commit:{n}"  # batch 1 publishes the worker's registry
    proc = crashing_worker(data_dir, point)
    wait_killed(proc, point)
    # what the store holds is a whole prefix of the workflow: well formed, not finished
    events = history(client, "wf")
    assert events[: len(before)] == before
    assert_each_step_recorded_once(events, "after the crash")
    assert "WorkflowCompleted" not in kinds(events)
    assert client.get_handle("wf").describe().status == "running"
    finish_and_check(client, data_dir, marker_dir, "wf")


def test_crash_between_a_timer_firing_and_its_recording(data_dir: str, tmp_path: Path) -> None:
    marker_dir = str(tmp_path / "markers")
    os.makedirs(marker_dir)
    client = durable.Client(data_dir)
    client.start(wfs.steps_and_timer, marker_dir, X, 0.5, id="wf")
    proc = crashing_worker(data_dir, "timer-before-commit")
    wait_killed(proc, "timer-before-commit")
    events = history(client, "wf")
    assert "TimerStarted" in kinds(events) and "TimerFired" not in kinds(events)  # fired, not recorded
    assert kinds(events).count("ActivityCompleted") == 2
    finish_and_check(client, data_dir, marker_dir, "wf")
    assert all(n == 1 for n in wfs.runs(marker_dir).values())  # no step ran twice


def test_crash_points_are_off_unless_named_and_unknown_names_are_refused() -> None:
    code = "from durable import _crashpoint as c; print(c.ENABLED)"
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_CRASHPOINT"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    bad = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(env, DURABLE_CRASHPOINT="nope"),
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown crash point 'nope'" in bad.stderr
