"""A synchronous activity that ignores cancellation for a while, in a real worker process.

The workflow is cancelled (``handle.cancel()``) while the step sleeps without heartbeating. Its
worker learns of the cancel request at its next lease heartbeat (lease 1 s) but cannot interrupt a
thread: the step goes on until it calls ``durable.heartbeat()``, which raises
``ActivityCancelled`` (or, in the second workflow, until it returns without ever looking: its
result counts, and the workflow meets the cancellation at its next await). Either way the saga's
compensations start only after the step's final event is in history, and each compensation, run
by the same worker, finds the step's "stopped" marker already written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import durable
from tests.conftest import worker_process
from tests.fault._util import assert_each_step_recorded_once, history, wait_until
from tests.wfs import sagas

IGNORE_SECONDS = 2.0


def test_compensation_starts_only_after_a_sync_activity_that_ignored_cancellation_reports(
    data_dir: str, tmp_path: Path
) -> None:
    client = durable.Client(data_dir)
    cases = {"heartbeats-late": True, "never-looks": False}
    dirs = {wid: tmp_path / wid for wid in cases}
    for path in dirs.values():
        path.mkdir()
    with worker_process(data_dir, "tests.wfs.sagas", lease=1.0):
        handles = {wid: client.start(sagas.stubborn_saga, str(dirs[wid]), IGNORE_SECONDS, hb, id=wid)
                   for wid, hb in cases.items()}
        for wid, path in dirs.items():
            wait_until(lambda: "stubborn-started" in sagas.seen(str(path)), timeout=20,
                       what=f"{wid}: the stubborn step to start")
            handles[wid].cancel("the customer gave up")
        outcomes = {}
        for wid, h in handles.items():
            with pytest.raises(durable.WorkflowFailed) as info:
                h.result(timeout=30)
            outcomes[wid] = info.value.status

    assert outcomes == {"heartbeats-late": "cancelled", "never-looks": "cancelled"}
    for wid, heartbeats in cases.items():
        events = history(client, wid)
        assert_each_step_recorded_once(events, wid)
        step_seq = next(e["seq"] for e in events if e["kind"] == "ActivityScheduled" and e["name"] == "stubborn")
        requested = next(e["index"] for e in events if e["kind"] == "ActivityCancelRequested" and e["seq"] == step_seq)
        [final] = [e for e in events if e.get("seq") == step_seq and e["kind"] in
                   ("ActivityCompleted", "ActivityFailed", "ActivityCancelled")]
        # it heard the request at its heartbeat, or finished without ever asking
        assert final["kind"] == ("ActivityCancelled" if heartbeats else "ActivityCompleted"), wid
        # the step after the stubborn one never starts: the cancellation is seen at its await
        assert [e["name"] for e in events if e["kind"] == "ActivityScheduled"] == [
            "book", "stubborn", "compensate", "compensate"], wid
        compensations = [e for e in events if e["kind"] == "ActivityScheduled" and e["name"] == "compensate"]
        assert [e["input"][1] for e in compensations] == ["stubborn", "book"], wid
        assert requested < final["index"] < compensations[0]["index"], wid
        assert events[-1]["kind"] == "WorkflowCancelled"

        markers = sagas.seen(str(dirs[wid]))
        stopped = "stubborn-cancelled" if heartbeats else "stubborn-finished"
        assert stopped in markers and "stubborn-woke" in markers, (wid, markers)
        # the witness outside the store: when each compensation started, the step had stopped
        for tag in ("stubborn", "book"):
            found = (dirs[wid] / f"undo-{tag}").read_text().split("\n")
            assert stopped in found, (wid, tag, found)
        assert durable.replay(sagas.stubborn_saga, client.get_handle(wid).export_history()) == len(events)
