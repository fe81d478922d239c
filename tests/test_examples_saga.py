"""The saga examples run against real workers (a worker thread, and once a worker process); every
history they leave is replayed through the same code afterwards.

What is checked is read from the history, so that it holds whatever the timing of the run:
compensations are scheduled in the reverse order in which their steps completed, and only after
every step of the saga's block has a final event (F05).
"""

from __future__ import annotations

from typing import Any

import pytest

import durable
from examples import cancellation, trip_saga
from tests.conftest import worker_process
from tests.test_examples import TIMEOUT, assert_replays, serving, wait_for

FINAL = ("ActivityCompleted", "ActivityFailed", "ActivityCancelled")
RESERVE = {"reserve_hotel": "cancel_hotel", "reserve_flight": "cancel_flight", "reserve_car": "cancel_car"}


def index_of(events: list[dict[str, Any]], kind: str, name: str) -> int:
    """Index of the first event of `kind` for activity `name` (final events are found by seq)."""
    seqs = [e["seq"] for e in events if e["kind"] == "ActivityScheduled" and e["name"] == name]
    assert seqs, f"{name} was never scheduled"
    return next(e["index"] for e in events if e["kind"] == kind and e.get("seq") == seqs[0])


def names(events: list[dict[str, Any]], *, kind: str = "ActivityScheduled") -> list[str]:
    by_seq = {e["seq"]: e["name"] for e in events if e["kind"] == "ActivityScheduled"}
    return [by_seq[e["seq"]] if "seq" in e else e["kind"] for e in events if e["kind"] == kind]


def completed_in_order(events: list[dict[str, Any]], candidates: list[str]) -> list[str]:
    """The activities among `candidates` that completed, in the order of their completion."""
    return [n for n in names(events, kind="ActivityCompleted") if n in candidates]


# --- examples/trip_saga.py ---------------------------------------------------------------------


@pytest.fixture
def trip_client(data_dir: str) -> Any:
    with serving(trip_saga, data_dir, lease=1.0):
        yield durable.Client(data_dir)


def test_trip_saga_books_everything(trip_client: durable.Client) -> None:
    h = trip_client.start(trip_saga.book_trip, {"trip_id": "t-1"}, id="t-1")
    result = h.result(timeout=TIMEOUT)
    assert result["bookings"] == {"hotel": "hotel-t-1", "flight": "flight-t-1", "car": "car-t-1"}
    events = h.history()
    assert sorted(names(events)) == sorted([*RESERVE, "charge", "send_itinerary"])
    # the charge's durable deadline started and was cancelled; no compensation ran
    assert "TimerStarted" in [e["kind"] for e in events] and "TimerCancelled" in [e["kind"] for e in events]
    assert_replays(h, trip_saga.book_trip)


@pytest.mark.parametrize(("fail", "failed_step", "compensated_first"), [
    ("flight", "reserve_flight", []),
    ("charge", "charge", []),
    ("itinerary", "send_itinerary", ["refund"]),
])
def test_trip_saga_failure_compensates_newest_first_after_every_step_ended(
    trip_client: durable.Client, fail: str, failed_step: str, compensated_first: list[str]
) -> None:
    # the flight fails a second after the hotel and car are booked, so they are compensated
    trip = {"trip_id": f"t-{fail}", "fail": fail, "delays": {"hotel": 0, "car": 0, "flight": 1.0}}
    h = trip_client.start(trip_saga.book_trip, trip, id=f"t-{fail}")
    with pytest.raises(durable.WorkflowFailed) as info:
        h.result(timeout=TIMEOUT)
    assert info.value.status == "failed"
    assert f"{fail} failed for trip t-{fail}" in str(info.value)
    events = h.history()
    compensations = [n for n in names(events) if n.startswith("cancel_") or n == "refund"]
    # newest first: the refund (if charged), then the reservations in reverse order of completion
    booked = completed_in_order(events, list(RESERVE))
    assert compensations == compensated_first + [RESERVE[n] for n in reversed(booked)]
    if fail != "flight":
        assert len(booked) == 3
    else:
        assert "reserve_flight" not in booked and len(booked) == 2
    # every compensation started after every step of the block had its final event
    steps = [e["seq"] for e in events if e["kind"] == "ActivityScheduled" and e["name"] not in compensations]
    last_step_end = max(e["index"] for e in events if e["kind"] in FINAL and e["seq"] in steps)
    first_compensation = min(index_of(events, "ActivityScheduled", n) for n in compensations)
    assert last_step_end < first_compensation
    assert names(events, kind="ActivityFailed") == [failed_step]
    assert len(names(events, kind="ActivityCompleted")) == len(booked) + len(compensations) + (fail == "itinerary")
    assert events[-1]["kind"] == "WorkflowFailed"
    assert_replays(h, trip_saga.book_trip)


def test_trip_saga_a_failing_compensation_is_reported_with_the_original_error(trip_client: durable.Client) -> None:
    trip = {"trip_id": "t-9", "fail": "charge", "fail_compensation": "cancel_hotel"}
    h = trip_client.start(trip_saga.book_trip, trip, id="t-9")
    with pytest.raises(durable.WorkflowFailed) as info:
        h.result(timeout=TIMEOUT)
    group = info.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert group.message.startswith("saga failed (ActivityError: activity 'charge'")
    assert group.message.endswith("1 of 3 compensation(s) did not complete: cancel_hotel")
    original, failed = group.exceptions
    assert original.type == "durable.ActivityError" and "charge failed" in str(original.__cause__)
    assert failed.type == "durable.CompensationFailed" and "cancel_hotel failed" in str(failed)
    # the other compensations still ran
    events = h.history()
    assert sorted(n for n in names(events, kind="ActivityCompleted") if n.startswith("cancel_")) == [
        "cancel_car", "cancel_flight"]
    assert names(events, kind="ActivityFailed") == ["charge", "cancel_hotel"]
    assert_replays(h, trip_saga.book_trip)


# --- examples/cancellation.py ------------------------------------------------------------------


def cancel_while_transcoding(client: durable.Client, wid: str) -> list[dict[str, Any]]:
    """Start the example, cancel it while `transcode` runs on a worker, return its history."""
    h = client.start(cancellation.publish_video, {"video": "cat.mp4", "chunks": 2000}, id=wid)
    # upload and transcode both claimed: the transcode is running, not merely queued
    wait_for(lambda: h.describe().activity_attempts == 2, "the transcode to start")
    wait_for(lambda: any(e["kind"] == "ActivityScheduled" and e["name"] == "transcode" for e in h.history()),
             "the transcode to be scheduled")
    h.cancel("the uploader deleted the video")
    with pytest.raises(durable.WorkflowFailed) as info:
        h.result(timeout=TIMEOUT)
    assert info.value.status == "cancelled"
    events = h.history()
    kinds = [e["kind"] for e in events]
    assert kinds[-1] == "WorkflowCancelled"
    assert names(events) == ["upload", "transcode", "delete_partial_outputs", "delete_upload"]
    requested = index_of(events, "ActivityCancelRequested", "transcode")
    confirmed = index_of(events, "ActivityCancelled", "transcode")  # it stopped at a heartbeat
    assert "CancelRequested" in kinds[:requested]
    assert requested < confirmed < index_of(events, "ActivityScheduled", "delete_partial_outputs")
    assert names(events, kind="ActivityCompleted") == ["upload", "delete_partial_outputs", "delete_upload"]
    latency = events[confirmed]["time"] - events[requested]["time"]
    print(f"\n{wid}: cancel request to ActivityCancelled: {latency.total_seconds() * 1000:.0f} ms")
    assert_replays(h, cancellation.publish_video)
    return events


def test_cancellation_example_with_worker_thread(data_dir: str) -> None:
    with serving(cancellation, data_dir, lease=1.0):
        client = durable.Client(data_dir)
        cancel_while_transcoding(client, "v-1")
        # and uncancelled, it publishes
        h = client.start(cancellation.publish_video, {"video": "dog.mp4", "chunks": 3}, id="v-2")
        assert h.result(timeout=TIMEOUT) == "https://videos.example/outputs/dog.mp4"
        assert_replays(h, cancellation.publish_video)


def test_cancellation_example_with_worker_process(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_process(data_dir, "examples.cancellation", lease=1.0):
        cancel_while_transcoding(client, "v-3")
