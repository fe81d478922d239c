"""An order saga: reserve inventory, charge the payment, ship; undo what was done if a step fails.

Each step and each compensation is a durable activity. When a step fails (or the workflow is
cancelled), the steps that completed are compensated in reverse order: the payment is refunded,
then the inventory released. The compensations run in a shielded `durable.CancelScope`, so a
cancellation cannot stop them half-way. Then the workflow fails with an ``OrderFailed`` error
naming the failed step and the compensations that ran (or, if it was cancelled, ends as
cancelled). On success it returns ``{"order_id", "status": "shipped", "reservation", "payment",
"shipment"}``.

To see a failure, name the step that should fail in the input (``"fail_at"``: "reserve",
"charge" or "ship"); ``"ship_delay"`` makes shipping wait that many seconds, time enough to
cancel the workflow while it ships:

    durable worker examples.order_saga
    durable start order_saga --input '{"order_id": "o-1"}' --wait
    durable start order_saga --input '{"order_id": "o-2", "fail_at": "ship"}' --id o-2 --wait
    durable history o-2       # ActivityScheduled: reserve, charge, ship, refund, release
"""

from __future__ import annotations

from typing import Any

import trio

import durable


def _maybe_fail(order: dict[str, Any], step: str) -> None:
    # A declined card is not accepted on a retry either: a business failure is not retried.
    if order.get("fail_at") == step:
        raise durable.ApplicationError(f"{step} failed for order {order['order_id']}", non_retryable=True)


@durable.activity
def reserve_inventory(order: dict[str, Any]) -> str:
    """Hold the items of the order; returns the reservation id."""
    _maybe_fail(order, "reserve")
    return f"res-{order['order_id']}"


@durable.activity
def charge_payment(order: dict[str, Any]) -> str:
    """Charge the customer; the idempotency key makes a retried charge a no-op at the bank."""
    _maybe_fail(order, "charge")
    return f"pay-{durable.activity_info().idempotency_key}"


@durable.activity
async def ship_order(order: dict[str, Any]) -> str:
    """Hand the parcel to the carrier (after ``ship_delay`` seconds); returns the tracking id."""
    await trio.sleep(order.get("ship_delay", 0))
    _maybe_fail(order, "ship")
    return f"ship-{order['order_id']}"


@durable.activity
def refund_payment(payment_id: str) -> None:
    """Compensation of `charge_payment`: retried (default policy) if the bank is briefly down."""


@durable.activity
def release_inventory(reservation_id: str) -> None:
    """Compensation of `reserve_inventory`."""


@durable.workflow
async def order_saga(order: dict[str, Any]) -> dict[str, Any]:
    """Reserve, charge, ship; on failure or cancellation, compensate in reverse order."""
    undo: list[tuple[durable.Activity[[str], None], str]] = []
    try:
        reservation = await reserve_inventory(order)
        undo.append((release_inventory, reservation))
        payment = await charge_payment(order)
        undo.append((refund_payment, payment))
        shipment = await ship_order(order)
    except BaseException as exc:  # also durable.Cancelled: compensate, then let it go on
        with durable.CancelScope(shield=True):
            for compensate, arg in reversed(undo):
                await compensate(arg)
        if isinstance(exc, durable.ActivityError):
            done = ", ".join(c.name for c, _ in reversed(undo)) or "nothing"
            raise durable.ApplicationError(
                f"order {order['order_id']} failed at {exc.activity}; compensated: {done}",
                type="OrderFailed",
            ) from exc
        raise
    return {"order_id": order["order_id"], "status": "shipped", "reservation": reservation,
            "payment": payment, "shipment": shipment}
