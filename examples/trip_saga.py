"""A trip booking saga: hotel, flight and car reserved in parallel, then a charge under a deadline.

``durable.saga()`` keeps the list of what to undo. Each reservation registers its cancellation
once it has succeeded. If anything in the block fails (a reservation, the charge, the itinerary)
or the workflow is cancelled, the saga waits until every reservation still running has ended
(the nursery cancels them and does not exit before they confirm), then runs the registered
compensations newest first, each a durable activity, shielded from the cancellation; then the
error goes on. The reservations ran in parallel, so "newest first" is the reverse of the order in
which they completed, as recorded in the history.

A failed reservation reaches the workflow as an exception group (the nursery's), which ``except*``
can take apart; the workflow's failure in history keeps that whole tree. If a compensation fails
too, the saga raises an ``ExceptionGroup`` holding the original error and one
``durable.CompensationFailed`` per compensation that did not complete: nothing fails silently.

To see it fail, name a step in the input: ``"fail": "flight"`` (or "hotel", "car", "charge",
"itinerary"); ``"fail_compensation": "cancel_hotel"`` makes that compensation fail as well.
``"delays"`` sets how long each reservation takes (seconds; by default the hotel is quickest,
then the car, then the flight).

    durable worker examples.trip_saga
    durable start book_trip --input '{"trip_id": "t-1"}' --wait
    durable start book_trip --input '{"trip_id": "t-2", "fail": "flight"}' --id t-2 --wait
    durable history t-2      # reserve x3, flight fails, car and hotel cancelled, newest first
"""

from __future__ import annotations

from typing import Any

import trio

import durable

DELAYS = {"hotel": 0.05, "car": 0.15, "flight": 0.3}


async def _reserve(trip: dict[str, Any], kind: str) -> str:
    await trio.sleep(trip.get("delays", {}).get(kind, DELAYS[kind]))  # cancellable: an async step
    _maybe_fail(trip, kind)
    return f"{kind}-{trip['trip_id']}"


def _maybe_fail(trip: dict[str, Any], step: str) -> None:
    # a business failure (no seats, card declined) is not retried
    if trip.get("fail") == step or trip.get("fail_compensation") == step:
        raise durable.ApplicationError(f"{step} failed for trip {trip['trip_id']}", non_retryable=True)


@durable.activity
async def reserve_hotel(trip: dict[str, Any]) -> str:
    """Hold a room; returns the booking reference."""
    return await _reserve(trip, "hotel")


@durable.activity
async def reserve_flight(trip: dict[str, Any]) -> str:
    """Hold a seat; returns the booking reference."""
    return await _reserve(trip, "flight")


@durable.activity
async def reserve_car(trip: dict[str, Any]) -> str:
    """Hold a rental car; returns the booking reference."""
    return await _reserve(trip, "car")


@durable.activity
def cancel_hotel(trip: dict[str, Any], booking: str) -> str:
    """Compensation of `reserve_hotel` (retried by the default policy if the hotel is down)."""
    _maybe_fail(trip, "cancel_hotel")
    return f"cancelled {booking}"


@durable.activity
def cancel_flight(trip: dict[str, Any], booking: str) -> str:
    """Compensation of `reserve_flight`."""
    _maybe_fail(trip, "cancel_flight")
    return f"cancelled {booking}"


@durable.activity
def cancel_car(trip: dict[str, Any], booking: str) -> str:
    """Compensation of `reserve_car`."""
    _maybe_fail(trip, "cancel_car")
    return f"cancelled {booking}"


@durable.activity
def charge(trip: dict[str, Any], bookings: list[str]) -> str:
    """Charge the traveller for the bookings; the idempotency key makes a retry a no-op."""
    _maybe_fail(trip, "charge")
    return f"pay-{durable.activity_info().idempotency_key}"


@durable.activity
def refund(trip: dict[str, Any], payment: str) -> str:
    """Compensation of `charge`."""
    _maybe_fail(trip, "refund")
    return f"refunded {payment}"


@durable.activity
def send_itinerary(trip: dict[str, Any], bookings: dict[str, str]) -> None:
    """Email the traveller; the last step, so it needs no compensation."""
    _maybe_fail(trip, "itinerary")


RESERVATIONS = [("hotel", reserve_hotel, cancel_hotel), ("flight", reserve_flight, cancel_flight),
                ("car", reserve_car, cancel_car)]


@durable.workflow
async def book_trip(trip: dict[str, Any]) -> dict[str, Any]:
    """Reserve hotel, flight and car in parallel, charge, send the itinerary; undo on failure."""
    bookings: dict[str, str] = {}
    async with durable.saga(compensation_timeout=600) as saga:

        async def reserve(kind: str, make: durable.Activity[..., str], undo: durable.Activity[..., str]) -> None:
            bookings[kind] = await make(trip)
            saga.add_compensation(undo, trip, bookings[kind])  # registered only once it is booked

        async with durable.open_nursery() as nursery:  # the first failure cancels the others
            for kind, make, undo in RESERVATIONS:
                nursery.start_soon(reserve, kind, make, undo)

        with durable.fail_after(30):  # a durable deadline: survives restarts of every process
            payment = await charge(trip, sorted(bookings.values()))
        saga.add_compensation(refund, trip, payment)
        await send_itinerary(trip, bookings)
    return {"trip_id": trip["trip_id"], "bookings": bookings, "payment": payment}
