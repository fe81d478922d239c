"""The timeline drawn from a history: what each event becomes, and its bounds."""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

import durable
from durable.ui import _timeline

T0 = _dt.datetime(2026, 12, 6, 12, 0, tzinfo=_dt.timezone.utc)


def at(ms: float) -> _dt.datetime:
    return T0 + _dt.timedelta(milliseconds=ms)


def desc(status: str = "running", pending: tuple[durable.PendingActivity, ...] = ()) -> durable.WorkflowDescription:
    return durable.WorkflowDescription(
        workflow_id="w", workflow_type="flow", run_id="1", queue="default", status=status, created_at=T0,
        updated_at=T0, closed_at=None, history_length=0, activities_scheduled=0, activity_attempts=0,
        activity_retries=0, cancel_requested=False, task_failures=0, task_error=None, pending_activities=pending)


def event(index: int, kind: str, ms: float, **fields: Any) -> dict[str, Any]:
    return {"index": index, "kind": kind, "time": at(ms), **fields}


def test_outcomes_become_bar_states_and_points() -> None:
    events = [
        event(0, "WorkflowStarted", 0, type="flow"),
        event(1, "ActivityScheduled", 1, seq=1, name="fetch"),
        event(2, "TimerStarted", 1, seq=2, duration_ns=5_000_000_000),
        event(3, "ActivityFailed", 40, seq=1, attempt=4, why="timed_out",
              error={"type": "TooSlowError", "msg": "start_to_close"}),
        event(4, "TimerCancelled", 41, seq=2),
        event(5, "SignalReceived", 50, name="poke", input=[]),
        event(6, "CancelRequested", 60, reason="stop"),
        event(7, "WorkflowCancelled", 70),
    ]
    timeline = _timeline.build(events, desc("cancelled"), at(10_000))
    assert timeline is not None
    wf, fetch, timer = timeline.bars
    assert (wf.state, wf.end) == ("cancelled", at(70))
    assert (fetch.state, fetch.attempts, fetch.end) == ("timed_out", 4, at(40))
    assert "TooSlowError: start_to_close" in "\n".join(fetch.details)
    assert (timer.state, timer.end) == ("cancelled", at(41))
    assert [p.css for p in timeline.points] == ["signal", "cancel", "close cancelled"]
    assert timeline.t1 == at(70)  # a closed run ends at its last event, not now
    svg = _timeline.render(timeline)
    assert '<g class="bar activity timed_out" data-label="fetch #1">' in svg and "\u00d74" in svg


def test_a_pending_activity_runs_to_now_and_shows_its_next_attempt() -> None:
    pending = durable.PendingActivity(
        seq=1, name="charge", state="backing_off", attempt=2, last_failure_type="RuntimeError",
        last_failure_message="declined", next_attempt_at=at(30_000), worker=None, started_at=at(500),
        last_heartbeat_at=None, cancel_requested=False)
    events = [event(0, "WorkflowStarted", 0, type="flow"), event(1, "ActivityScheduled", 5, seq=1, name="charge")]
    timeline = _timeline.build(events, desc(pending=(pending,)), at(1_000))
    assert timeline is not None and timeline.t1 == at(30_000) and timeline.now == at(1_000)
    bar = timeline.bars[1]
    assert (bar.state, bar.attempts, bar.end) == ("backing_off", 2, None)
    assert "last failure: RuntimeError: declined" in bar.details
    svg = _timeline.render(timeline)
    rect = re.search(r'data-label="charge #1">.*?<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg, re.S)
    assert rect is not None
    start, width = float(rect.group(1)), float(rect.group(2))
    assert start + width < 250  # to now (1 s of 30 s), not to the next attempt
    assert '<line class="wait"' in svg and 'class="mark retry"' in svg


def test_lanes_past_the_limit_are_left_out_with_a_note() -> None:
    n = _timeline.MAX_LANES + 5
    events = [event(0, "WorkflowStarted", 0, type="flow")]
    events += [event(i + 1, "ActivityScheduled", i, seq=i + 1, name="step") for i in range(n)]
    timeline = _timeline.build(events, desc(), at(n))
    assert timeline is not None and len(timeline.bars) == 1 + _timeline.MAX_LANES and timeline.cut == 5
    assert "5 more activities and timers are not drawn" in _timeline.render(timeline)
    assert _timeline.build([], desc(), T0) is None
    assert 'id="timeline-empty"' in _timeline.render(None)


def test_updates_are_points_named_by_their_outcome() -> None:
    events = [
        event(0, "WorkflowStarted", 0, type="flow"),
        event(1, "TaskCompleted", 1),
        event(2, "UpdateAccepted", 5, uid="u1", name="add_item", input=["pear", 2]),
        event(3, "UpdateCompleted", 6, uid="u1", name="add_item", result=3.0),
        event(4, "UpdateAccepted", 7, uid="u2", name="add_item", input=["pear", 2]),
        event(5, "UpdateCompleted", 8, uid="u2", name="add_item", error={"type": "ApplicationError", "msg": "no"}),
    ]
    timeline = _timeline.build(events, desc(), at(100))
    assert timeline is not None
    assert [p.label for p in timeline.points] == [
        "add_item accepted", "add_item completed", "add_item accepted", "add_item failed"]
    assert "update add_item failed (id u2)" in _timeline.render(timeline)
