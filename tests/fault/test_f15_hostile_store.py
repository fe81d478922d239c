"""F15 with a real worker process: a store naming code the worker does not have runs nothing.

The worker process serves `tests.wfs.hostile`, which registers no activity at all. Workflows ask
it, through the names stored in their histories, for `touch_sentinel` (a function of that very
module), ``os.system``, dotted and ``module:function`` paths, and a module whose import creates
a file. Nothing of it may run or be imported: the sentinel files never appear, each workflow
waits with the refusal shown in `describe`, and the worker goes on serving the others.

A history whose bytes were replaced by garbage, a nesting bomb or a regex bomb (CBOR tag 35) is
refused as undecodable: the workflow waits with the error shown; the worker neither hangs nor dies.
An activity record of the wrong shape fails that one step with a clear DecodeError; the worker
that claims it goes on serving.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cbor2
import pytest

import durable
from durable._store import u64x2
from tests.conftest import worker_process, worker_thread
from tests.fault._util import history, kinds, wait_until
from tests.wfs import basic, hostile

WORKER_ENV_SENTINEL = "imported-by-worker"


def test_names_from_the_store_never_run_or_import_code(data_dir: str, tmp_path: Path) -> None:
    client = durable.Client(data_dir)
    touched = tmp_path / "touched"
    imported = tmp_path / WORKER_ENV_SENTINEL
    activity_names = [
        ("touch_sentinel", str(touched)),
        ("tests.wfs.hostile:touch_sentinel", str(touched)),
        ("tests.wfs.hostile.touch_sentinel", str(touched)),
        ("os.system", f"touch {touched}"),
        ("subprocess:getoutput", f"touch {touched}"),
        ("tests.wfs.import_sentinel:main", str(touched)),
        ("tests.wfs.import_sentinel", str(touched)),
    ]
    workflow_types = ["os.system", "tests.wfs.import_sentinel", "tests.wfs.import_sentinel:main",
                      "tests.wfs.hostile.touch_sentinel"]
    # started before any worker served the queue, so the type names are accepted as they are
    by_type = [client.start(name, f"touch {touched}", id=f"type-{i}") for i, name in enumerate(workflow_types)]
    by_activity = [client.start(hostile.calls_by_name, name, arg, id=f"act-{i}")
                   for i, (name, arg) in enumerate(activity_names)]
    with worker_process(data_dir, "tests.wfs.hostile", env={"DURABLE_TEST_IMPORT_SENTINEL": str(imported)}) as proc:
        for handle in by_type + by_activity:
            desc = wait_until(lambda h=handle: (d := h.describe()).task_failures >= 2 and d, timeout=30,
                              what=f"{handle.id} to be refused twice")
            assert desc.status == "running" and "is not registered on this worker" in (desc.task_error or "")
        for handle in by_type:
            assert kinds(history(client, handle.id)) == ["WorkflowStarted"]
        for handle in by_activity:
            assert handle.describe().activity_attempts == 0
            assert not {"ActivityCompleted", "ActivityFailed"} & set(kinds(history(client, handle.id)))
        # the same worker still serves what it has
        assert client.start(hostile.harmless, 41).result(timeout=30) == 42
        assert proc.poll() is None
    assert not touched.exists() and not imported.exists()


def test_undecodable_history_bytes_stop_only_their_workflow(data_dir: str, tmp_path: Path) -> None:
    client = durable.Client(data_dir)
    bombs = {
        "garbage": b"\xff\x00\x13\x37",
        "nesting": b"\x81" * 100_000 + b"\x00",
        "regex": cbor2.dumps({"k": "WorkflowStarted", "t": 0, "type": "harmless",
                              "in": cbor2.CBORTag(35, "(a+)+$"), "seed": 1, "id": "x", "queue": "default"}),
        "wrong-type": cbor2.dumps({"k": "WorkflowStarted", "t": 0, "type": "harmless", "in": [1],
                                   "seed": 1, "id": "x", "queue": "default"}),
        "claims-2**63-bytes": b"\x5b" + (2**63).to_bytes(8, "big"),
    }
    handles = {name: client.start(hostile.harmless, 1, id=name) for name in bombs}
    nums = {name: int(handle.describe().run_id, 16) for name, handle in handles.items()}

    def plant(t: Any) -> None:  # as someone with write access to the store might
        for name, raw in bombs.items():
            key = u64x2(nums[name], 0)
            assert t.get("hist", key) is not None
            t.put("hist", key, raw)

    client._store.write(plant)
    with worker_process(data_dir, "tests.wfs.hostile") as proc:
        t0 = time.monotonic()
        for name, handle in handles.items():
            desc = wait_until(lambda h=handle: (d := h.describe()).task_failures >= 1 and d, timeout=30,
                              what=f"the workflow task of {name} to fail")
            assert desc.status == "running" and "DecodeError" in (desc.task_error or ""), desc.task_error
        assert client.start(hostile.harmless, 1).result(timeout=30) == 2
        assert proc.poll() is None and time.monotonic() - t0 < 30


def test_control_the_sentinel_appears_when_the_name_is_registered(data_dir: str, tmp_path: Path) -> None:
    """The probe works: registered under the name the store gives, the same function does run."""
    touched = tmp_path / "touched"
    registered = durable.activity(name="os.system")(hostile.touch_sentinel)
    with worker_thread(data_dir, [hostile.calls_by_name], [registered]):
        client = durable.Client(data_dir)
        assert client.start(hostile.calls_by_name, "os.system", str(touched)).result(timeout=30) == "ran"
    assert touched.read_text() == "ran"


def test_a_malformed_activity_record_does_not_kill_the_worker(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [basic.three_steps], []):  # has the workflow, not its activities
        handle = client.start(basic.three_steps, 1)
        wait_until(lambda: handle.describe().activities_scheduled == 1, what="an activity to be scheduled")

    def corrupt(t: Any) -> None:
        [(key, raw)] = list(t.scan("act", b""))
        state = cbor2.loads(raw)
        state["opts"] = [1]  # as someone with write access to the store might
        t.put("act", key, cbor2.dumps(state))

    client._store.write(corrupt)
    with worker_process(data_dir, "tests.wfs.basic") as proc:
        # the malformed step fails alone, with a clear error; the worker goes on serving
        with pytest.raises(durable.WorkflowFailed) as failed:
            handle.result(timeout=20)
        assert "DecodeError" in str(failed.value) and "'opts' is not dict" in str(failed.value)
        assert client.start(basic.three_steps, 1).result(timeout=20) == 5
        assert proc.poll() is None, "".join(proc.log_lines[-5:])  # type: ignore[attr-defined]
