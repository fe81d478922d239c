"""Helpers shared by the worker and fault tests: waiting with a timeout, reading histories."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

import durable

T = TypeVar("T")

FINAL_ACTIVITY_KINDS = ("ActivityCompleted", "ActivityFailed", "ActivityCancelled")
STATUS_OF_LAST_EVENT = {
    "WorkflowCompleted": "completed",
    "WorkflowFailed": "failed",
    "WorkflowCancelled": "cancelled",
    "WorkflowTerminated": "terminated",
    "WorkflowContinuedAsNew": "continued_as_new",
    "WorkflowTimedOut": "timed_out",
}


def wait_until(predicate: Callable[[], T], *, timeout: float = 20.0, what: str = "a condition",
               interval: float = 0.02) -> T:
    """Poll `predicate` until it returns something true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def history(client: durable.Client, wid: str) -> list[dict[str, Any]]:
    """The readable history of workflow `wid`."""
    return client.get_handle(wid).history()


def kinds(events: list[dict[str, Any]]) -> list[str]:
    """The kinds of `events`, in order."""
    return [e["kind"] for e in events]


def final_events_by_seq(events: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Final activity events (completed, failed, cancelled) grouped by activity seq."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["kind"] in FINAL_ACTIVITY_KINDS:
            out[e["seq"]].append(e)
    return dict(out)


def assert_each_step_recorded_once(events: list[dict[str, Any]], where: str = "") -> None:
    """Every scheduled activity is scheduled once and has exactly one final event (F03, F11)."""
    assert [e["index"] for e in events] == list(range(len(events))), f"{where}: gaps in event indexes"
    scheduled = [e["seq"] for e in events if e["kind"] == "ActivityScheduled"]
    assert len(scheduled) == len(set(scheduled)), f"{where}: an activity was scheduled twice: {scheduled}"
    finals = final_events_by_seq(events)
    for seq, evs in finals.items():
        assert len(evs) == 1, f"{where}: activity seq {seq} has {len(evs)} final events: {evs}"
        assert seq in scheduled, f"{where}: a final event for activity seq {seq}, which was never scheduled"
    closed = events and events[-1]["kind"] in STATUS_OF_LAST_EVENT
    if closed and events[-1]["kind"] == "WorkflowCompleted":
        assert sorted(finals) == sorted(scheduled), f"{where}: completed with unfinished activities"


def status_from_history(events: list[dict[str, Any]]) -> str:
    """The status a workflow must have, folded from its history: the last event decides."""
    if events and events[-1]["kind"] in STATUS_OF_LAST_EVENT:
        return STATUS_OF_LAST_EVENT[events[-1]["kind"]]
    return "running"


def store_snapshot(client: durable.Client) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every key and value of every database of the client's store, read in one transaction."""
    from durable._store import _DBS

    def read(t: Any) -> dict[str, list[tuple[bytes, bytes]]]:
        return {name: list(t.scan(name, b"")) for name in _DBS}

    return client._store.read(read)  # type: ignore[no-any-return]
