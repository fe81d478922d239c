"""The fast paths change how much is committed, never what: with every one of them off
(``DURABLE_FAST_PATHS=0``, read by the worker process when it starts), a real worker writes
histories of the same shape as with them on, for a few representative workflows: sequential
async and sync steps, a fan-out, signals, a saga that fails and compensates, and a crash after an
activity's effect (the step runs again once the dead worker's lease expires)."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from typing import Any

import pytest

import durable
from durable._store import unpack_u64
from durable.worker import FastPaths
from durable.worker._fast import fast_paths_setting
from tests.conftest import start_worker_process, stop_worker_process, worker_process, worker_thread
from tests.wfs import basic, fast_paths
from tests.wfs import crashpoints as crash_wfs
from tests.worker import test_fast_paths as fp

MODULES = ("tests.wfs.fast_paths", "tests.wfs.basic", "examples.order_saga", "tests.wfs.crashpoints")
LEASE = 1.0
TIMEOUT = 60


def shape(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a history must hold whichever path wrote it: each event's kind, the activity or
    signal it names and the attempt that ended it; not times, and not `TaskCompleted` (an
    activation that made no command: how inputs that race are batched into activations is
    timing, on either path)."""
    return [(e["kind"], e.get("name"), e.get("attempt")) for e in history if e["kind"] != "TaskCompleted"]


def run_all(data_dir: str, marker_dir: str, fast: str) -> tuple[dict[str, Any], dict[str, list[tuple[Any, ...]]], int]:
    """Run the workflows on a fresh store with worker processes whose fast paths are `fast`
    ("1" on, "0" off): their results, their histories' shapes, and how many tasks went through
    the queue (every task queued takes a number)."""
    env = {"DURABLE_FAST_PATHS": fast}
    client = durable.Client(data_dir)
    # a worker dies after the first step's effect, before its completion is written
    client.start(crash_wfs.steps_and_timer, marker_dir, 10, 0.2, id="crash")
    crashing = start_worker_process(data_dir, *MODULES, lease=LEASE,
                                    env=dict(env, DURABLE_CRASHPOINT="activity-after-effect"))
    crashing.wait(TIMEOUT)
    assert stop_worker_process(crashing) == -signal.SIGKILL
    results: dict[str, Any] = {}
    with worker_process(data_dir, *MODULES, lease=LEASE, env=env):
        results["crash"] = client.get_handle("crash").result(timeout=TIMEOUT)
        results["three"] = client.start(basic.three_steps, 1, id="three").result(timeout=TIMEOUT)
        results["async"] = client.start(fast_paths.async_steps, 1, id="async").result(timeout=TIMEOUT)
        results["fan"] = client.start(fast_paths.fan_out, 10, id="fan").result(timeout=TIMEOUT)
        signalled = client.start(fast_paths.Signalled, id="signalled")
        signalled.signal("give", 41)
        results["signalled"] = signalled.result(timeout=TIMEOUT)
        collector = client.start(basic.Collector, id="collector")
        for item in (1, 2, 3):
            collector.signal("add", item)
        collector.signal("finish")
        results["collector"] = collector.result(timeout=TIMEOUT)
        results["saga"] = client.start("order_saga", {"order_id": "o-1"}, id="saga").result(timeout=TIMEOUT)["status"]
        with pytest.raises(durable.WorkflowFailed) as failed:
            client.start("order_saga", {"order_id": "o-2", "fail_at": "ship"}, id="saga-failed").result(timeout=TIMEOUT)
        results["saga-failed"] = str(failed.value).splitlines()[0]
    shapes = {wid: shape(client.get_handle(wid).history()) for wid in results}
    queued = client._store.read(lambda t: unpack_u64(t.get("meta", b"taskseq")))
    assert sorted(crash_wfs.runs(marker_dir).values()) == [1, 1, 1, 2]  # the step that crashed ran again
    return results, shapes, queued


def test_histories_with_every_fast_path_off_have_the_shape_of_those_with_them_on(tmp_path: Path) -> None:
    runs = {}
    for fast in ("1", "0"):
        marker_dir = tmp_path / f"markers-{fast}"
        os.makedirs(marker_dir)
        runs[fast] = run_all(str(tmp_path / f"store-{fast}"), str(marker_dir), fast)
    (results_on, shapes_on, queued_on), (results_off, shapes_off, queued_off) = runs["1"], runs["0"]
    assert results_on == results_off == {
        "crash": 14, "three": 5, "async": 4, "fan": list(range(11, 21)), "signalled": 42, "collector": [1, 2, 3],
        "saga": "shipped",
        "saga-failed": "workflow 'saga-failed' failed: OrderFailed: order o-2 failed at ship_order; "
                       "compensated: refund_payment, release_inventory",
    }
    assert shapes_off == shapes_on
    crash = shapes_on["crash"]
    assert ("ActivityCompleted", None, 2) == crash[2] and crash[-1][0] == "WorkflowCompleted"
    # the setting reached the worker processes: without eager dispatch every activity (30 and
    # more here) went through the queue; with it, only workflow tasks did, and fewer of them
    assert queued_off > queued_on + 30, (queued_on, queued_off)


def test_the_setting_is_the_argument_unless_the_environment_turns_every_fast_path_off() -> None:
    none = FastPaths.none()
    assert not any(dataclasses.astuple(none)) and all(dataclasses.astuple(FastPaths()))
    assert fast_paths_setting(True, {}) == FastPaths() == fast_paths_setting(True, {"DURABLE_FAST_PATHS": "1"})
    assert fast_paths_setting(False, {}) == none == fast_paths_setting(True, {"DURABLE_FAST_PATHS": "0"})
    some = FastPaths(ahead=False, sticky=False)
    assert fast_paths_setting(some, {"DURABLE_FAST_PATHS": ""}) == some
    assert fast_paths_setting(some, {"DURABLE_FAST_PATHS": "0"}) == none
    with pytest.raises(durable.DurableError, match="DURABLE_FAST_PATHS must be 0 .* or 1, not 'off'"):
        fast_paths_setting(True, {"DURABLE_FAST_PATHS": "off"})
    with pytest.raises(durable.DurableError, match="fast_paths must be True, False or a FastPaths"):
        fast_paths_setting("no", {})  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        some.ahead = True  # type: ignore[misc]


@pytest.mark.parametrize("off", [field.name for field in dataclasses.fields(FastPaths)])
def test_each_fast_path_can_be_turned_off_alone(data_dir: str, off: str) -> None:
    """Any one path off, the others on (the paths lean on each other: running ahead hands the
    attempts it did not run to `_run_inline`, the rounds claim eagerly...): the same results."""
    fp._failed_once.clear()
    setting = dataclasses.replace(FastPaths(), **{off: False})
    workflows = [fp.fan, fp.mixed_fan, fp.nap_then_step, fp.seq_timeout, basic.three_steps]
    activities = [fp.plus, fp.waits_then_plus, fp.fails_once_then_plus, fp.plus_one, fp.sleepy,
                  basic.add_one, basic.double]
    with worker_thread(data_dir, workflows, activities, fast_paths=setting) as worker:
        assert worker.fast == (FastPaths.none() if os.environ.get("DURABLE_FAST_PATHS") == "0" else setting)
        client = durable.Client(data_dir)
        handles = [client.start(fp.fan, 0, id="fan"), client.start(fp.mixed_fan, 10, id="mixed"),
                   client.start(fp.nap_then_step, 1, id="nap"), client.start(fp.seq_timeout, id="seq"),
                   client.start(basic.three_steps, 1, id="three")]
        assert [h.result(timeout=30) for h in handles] == [
            list(range(1, 11)), [11, 12, 13], 2, [1, "timed_out", 3], 5]
        fp.wait_until_no_attempt_runs(worker)
    for h, wf in zip(handles, workflows):
        assert durable.replay(wf, h.export_history()) == len(h.history())
