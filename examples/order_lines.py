"""An order with a child workflow per line item, run together in a nursery.

Each line item is its own workflow (`line_item`): reserve the stock, then pack it; if it is
cancelled after reserving, it releases the stock (in a shielded scope) before it ends. The order
(`order`) starts one child per line in a `durable.open_nursery()`: if a line fails (out of
stock), the nursery cancels the other lines, and the order's scope does not exit until every one
of them has closed, so their releases are done before the order fails with ``OrderFailed``.
On success it returns ``{"order_id", "packages": [...]}``, one package per line, in order.

A line is ``{"sku", "qty"}``; ``"stock"`` in the order (sku -> units) says what is in stock
(default: enough of everything); ``"pack_delay"`` makes packing wait that many seconds:

    durable worker examples.order_lines
    durable start order --input '{"order_id": "o-1", "lines": [{"sku": "tea", "qty": 2}, {"sku": "cup", "qty": 1}]}' --wait
    durable start order --id o-2 --input '{"order_id": "o-2", "lines": [{"sku": "tea", "qty": 2},
        {"sku": "cup", "qty": 9}], "stock": {"cup": 1}, "pack_delay": 1}' --wait
    durable history o-2       # ChildWorkflowInitiated, Started, then Failed / Cancelled per line
    durable history o-2/line-0   # reserve, then release after its cancellation
"""

from __future__ import annotations

from typing import Any

import trio

import durable


@durable.activity
def reserve_stock(order_id: str, line: dict[str, Any], stock: dict[str, int] | None) -> str:
    """Hold `qty` units of `sku`; returns the reservation id. Out of stock is not retried."""
    if stock is not None and stock.get(line["sku"], 0) < line["qty"]:
        raise durable.ApplicationError(f"{line['sku']}: only {stock.get(line['sku'], 0)} in stock",
                                       type="OutOfStock", non_retryable=True)
    return f"res-{order_id}-{line['sku']}"


@durable.activity
async def pack(reservation: str, delay: float) -> str:
    """Pack the reserved units (after `delay` seconds); returns the package id."""
    await trio.sleep(delay)
    return reservation.replace("res-", "pkg-", 1)


@durable.activity
def release_stock(reservation: str) -> None:
    """Compensation of `reserve_stock`."""


@durable.workflow
async def line_item(order_id: str, line: dict[str, Any], stock: dict[str, int] | None, delay: float) -> str:
    """One line of an order: reserve, then pack; release the reservation if cancelled."""
    reservation = await reserve_stock(order_id, line, stock)
    try:
        return await pack(reservation, delay)
    except durable.Cancelled:
        with durable.CancelScope(shield=True):
            await release_stock(reservation)
        raise


def _first_cause(exc: BaseException) -> BaseException:
    """The error a chain of errors began with (a line's failure is a child's failure, caused by
    its activity's failure, caused by what the activity raised)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


@durable.workflow
async def order(request: dict[str, Any]) -> dict[str, Any]:
    """A child workflow per line, together; the first that fails cancels the others."""
    order_id = request["order_id"]
    lines = request["lines"]
    packages: list[str] = [""] * len(lines)

    async def fill(i: int) -> None:
        packages[i] = await durable.execute_child(
            line_item, order_id, lines[i], request.get("stock"), request.get("pack_delay", 0),
            id=f"{order_id}/line-{i}",
        )

    try:
        async with durable.open_nursery() as nursery:
            for i in range(len(lines)):
                nursery.start_soon(fill, i)
    except* durable.ChildWorkflowError as group:
        failed = "; ".join(str(_first_cause(exc)) for exc in group.exceptions)
        raise durable.ApplicationError(f"order {order_id} failed: {failed}", type="OrderFailed") from None
    return {"order_id": order_id, "packages": packages}
