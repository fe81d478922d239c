"""One change deployed in four steps with real worker processes (Temporal's patching).

tests/wfs/patch_v1.py ... patch_v4.py are four versions of the workflow `refund`: v1 refunds
with `refund_old`; v2 asks ``durable.patched("fix-refund")`` and refunds with `refund_new` on
the new path; v3 has ``durable.deprecate_patch("fix-refund")`` and the new path only; v4 has
no call. Each workflow parks on a signal before or after the changed step, so that workers of
the next version pick it up on either side. At each step, the workflows still running are
those the next version may take over, as the rules say it may: v2 takes over everything; v3
only once every workflow that took the old path has closed; v4 once every workflow that ran
v2's `patched` call has closed.

Every workflow ends with the result of the path it should have taken, and replaying each
recorded history with each version breaks or not as Temporal's rules say.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

import durable
from tests.conftest import ROOT, start_worker_process, stop_worker_process
from tests.wfs import patch_v1, patch_v2, patch_v3, patch_v4

VERSIONS = {"v1": patch_v1.Refund, "v2": patch_v2.Refund, "v3": patch_v3.Refund, "v4": patch_v4.Refund}


def wait_parked(handle: durable.WorkflowHandle[Any], steps_done: int, timeout: float = 30.0) -> None:
    """Wait until the workflow has `steps_done` activities completed and waits for a signal."""
    deadline = time.monotonic() + timeout
    while True:
        kinds = [e["kind"] for e in handle.history()]
        if kinds.count("ActivityCompleted") == steps_done and kinds[-1] == "TaskCompleted":
            return
        desc = handle.describe()
        assert desc.task_error is None, desc.task_error
        assert time.monotonic() < deadline, f"{handle.id} did not park: {kinds}"
        time.sleep(0.05)


def markers(handle: durable.WorkflowHandle[Any]) -> list[tuple[str, bool]]:
    return [(e["patch"], e["deprecated"]) for e in handle.history() if e["kind"] == "MarkerRecorded"]


def steps(handle: durable.WorkflowHandle[Any]) -> list[str]:
    return [e["name"] for e in handle.history() if e["kind"] == "ActivityScheduled"]


def check(data_dir: str, module: str) -> tuple[int, list[dict[str, Any]]]:
    """`durable check MODULE --json`: its exit code, and the workflows that would break."""
    out = subprocess.run(
        [sys.executable, "-m", "durable", "check", module, "--data", data_dir, "--json", "--jobs", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode in (0, 1), out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    return out.returncode, [row for row in rows if not row["ok"]]


#: what replaying the whole history of each workflow with each version does (True: replays)
EXPECTED = {
    # v1 started it and passed the step: the old path, no marker
    "a1": {"v1": True, "v2": True, "v3": False, "v4": False},
    # v1 started it, v2 reached the step: new path, marker
    "b1": {"v1": False, "v2": True, "v3": True, "v4": False},
    # v2 started it and passed the step: new path, marker
    "a2": {"v1": False, "v2": True, "v3": True, "v4": False},
    # v2 started it, v3 reached the step: new path, deprecated marker
    "c2": {"v1": False, "v2": True, "v3": True, "v4": True},
    # v3 started it: deprecated marker
    "d3": {"v1": False, "v2": True, "v3": True, "v4": True},
    # v4 started it: new path, no marker (v2 would take the old path: there is no marker)
    "e4": {"v1": False, "v2": False, "v3": True, "v4": True},
}


def test_a_change_goes_through_patched_deprecate_patch_and_removal(data_dir: str) -> None:
    client = durable.Client(data_dir)
    h = {wid: client.get_handle(wid) for wid in EXPECTED}
    partial: dict[str, bytes] = {}

    # --- v1: a1 passes the step (old path); b1 stops before it ---------------------------------
    w = start_worker_process(data_dir, "tests.wfs.patch_v1")
    try:
        client.start("refund", 1, False, id="a1")
        client.start("refund", 2, True, id="b1")
        wait_parked(h["a1"], 2)
        wait_parked(h["b1"], 1)
    finally:
        assert stop_worker_process(w) == 0
    partial = {wid: h[wid].export_history() for wid in ("a1", "b1")}
    # the pre-deploy check says what each next version would do to the running ones
    assert check(data_dir, "tests.wfs.patch_v2") == (0, [])
    code, broken = check(data_dir, "tests.wfs.patch_v3")
    assert code == 1 and [row["id"] for row in broken] == ["a1"]
    assert "ActivityScheduled('refund_old', seq=2)" in broken[0]["error"]

    # --- v2: a1 finishes on the old path; b1 takes the new one; a2 starts on it; c2 waits ----
    w = start_worker_process(data_dir, "tests.wfs.patch_v2")
    try:
        h["a1"].signal("proceed")
        assert h["a1"].result(timeout=30) == "old"
        h["b1"].signal("proceed")
        wait_parked(h["b1"], 2)
        client.start("refund", 3, False, id="a2")
        client.start("refund", 4, True, id="c2")
        wait_parked(h["a2"], 2)
        wait_parked(h["c2"], 1)
    finally:
        assert stop_worker_process(w) == 0
    assert markers(h["a1"]) == [] and steps(h["a1"]) == ["charge", "refund_old"]
    assert markers(h["b1"]) == markers(h["a2"]) == [("fix-refund", False)]
    assert steps(h["b1"]) == steps(h["a2"]) == ["charge", "refund_new"]
    assert check(data_dir, "tests.wfs.patch_v3") == (0, [])  # no running workflow took the old path
    code, broken = check(data_dir, "tests.wfs.patch_v4")  # but the marker of patched() is still needed
    assert code == 1 and sorted(row["id"] for row in broken) == ["a2", "b1"]
    assert all("MarkerRecorded(patch 'fix-refund')" in row["error"] for row in broken)

    # --- v3: b1 and a2 finish; c2 reaches the step under deprecate_patch; d3 starts -----------
    w = start_worker_process(data_dir, "tests.wfs.patch_v3")
    try:
        for wid in ("b1", "a2"):
            h[wid].signal("proceed")
        assert h["b1"].result(timeout=30) == "new"
        assert h["a2"].result(timeout=30) == "new"
        h["c2"].signal("proceed")
        wait_parked(h["c2"], 2)
        client.start("refund", 5, False, id="d3")
        wait_parked(h["d3"], 2)
    finally:
        assert stop_worker_process(w) == 0
    assert markers(h["c2"]) == markers(h["d3"]) == [("fix-refund", True)]
    assert check(data_dir, "tests.wfs.patch_v4") == (0, [])

    # --- v4: c2 and d3 finish (their deprecated markers passed over); e4 runs without any -----
    w = start_worker_process(data_dir, "tests.wfs.patch_v4")
    try:
        for wid in ("c2", "d3"):
            h[wid].signal("proceed")
        client.start("refund", 6, False, id="e4")
        wait_parked(h["e4"], 2)
        h["e4"].signal("proceed")
        for wid in ("c2", "d3", "e4"):
            assert h[wid].result(timeout=30) == "new"
    finally:
        assert stop_worker_process(w) == 0
    assert markers(h["e4"]) == [] and steps(h["e4"]) == ["charge", "refund_new"]
    for wid in EXPECTED:
        assert h[wid].describe().status == "completed"
        assert h[wid].describe().task_failures == 0, wid

    # --- replaying every recorded history with every version -----------------------------
    for wid, rules in EXPECTED.items():
        history = h[wid].export_history()
        for version, replays in rules.items():
            if replays:
                durable.replay(VERSIONS[version], history)
            else:
                with pytest.raises(durable.NondeterminismError, match=f"workflow '{wid}' \\(refund\\), event "):
                    durable.replay(VERSIONS[version], history)
    # v1's partial histories: a1 had passed the step (only v3 and v4 break it); b1 had not (none does)
    for version in VERSIONS:
        if version in ("v3", "v4"):
            with pytest.raises(durable.NondeterminismError):
                durable.replay(VERSIONS[version], partial["a1"])
        else:
            durable.replay(VERSIONS[version], partial["a1"])
        durable.replay(VERSIONS[version], partial["b1"])

    # the history shows the markers readably
    lines = subprocess.run([sys.executable, "-m", "durable", "history", "c2", "--data", data_dir],
                           cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
    [line] = [line for line in lines if "MarkerRecorded" in line]
    assert line.endswith('MarkerRecorded           patch="fix-refund" deprecated=true')
