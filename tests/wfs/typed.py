"""Workflows and activities with typed parameters and results (the data converter, issue 18).

Each side checks the types it is given (an activity or a handler that receives a dict where its
annotation says `Order` raises), so that a test that sees the right values at the end also
proves that every crossing built them again. String annotations (``from __future__``) on
purpose: the converter resolves them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Annotated, Any, NamedTuple, Optional

import durable


class Status(enum.Enum):
    NEW = "new"
    PAID = "paid"
    SHIPPED = "shipped"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(NamedTuple):
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class Item:
    sku: str
    qty: int
    price: Decimal


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    items: list[Item]
    status: Status
    placed: dt.datetime
    due: dt.date
    cutoff: dt.time
    window: dt.timedelta
    tags: frozenset[str]
    where: Point
    notes: dict[str, Status]
    sizes: tuple[int, ...]
    priority: Priority = Priority.LOW
    gift: Optional[Item] = None


class Money:
    """A type of the user's own, neither a dataclass nor plain: converted by `durable.Convert`."""

    def __init__(self, cents: int, currency: str) -> None:
        self.cents, self.currency = cents, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.cents, self.currency) == (other.cents, other.currency)

    def __hash__(self) -> int:
        return hash((self.cents, self.currency))

    def __repr__(self) -> str:
        return f"Money({self.cents}, {self.currency!r})"

    @classmethod
    def parse(cls, text: str) -> Money:
        cents, currency = text.split(" ")
        return cls(int(cents), currency)


MoneyT = Annotated[Money, durable.Convert(to_plain=lambda m: f"{m.cents} {m.currency}", from_plain=Money.parse)]


def _check(value: Any, kind: type, where: str) -> None:
    if not isinstance(value, kind):
        raise durable.ApplicationError(f"{where} got {type(value).__name__}, not {kind.__name__}", non_retryable=True)


@durable.activity
def echo_order(order: Order) -> Order:
    _check(order, Order, "echo_order")
    _check(order.where, Point, "echo_order: where")
    for item in order.items:
        _check(item, Item, "echo_order: item")
    return order


@durable.activity
async def total(order: Order) -> Decimal:
    _check(order, Order, "total")
    return sum((i.price * i.qty for i in order.items), Decimal(0))


@durable.activity
def pay(amount: MoneyT) -> MoneyT:
    _check(amount, Money, "pay")
    return Money(amount.cents + 1, amount.currency)


@durable.activity
def untyped(value):  # type: ignore[no-untyped-def]  # no annotation: values pass as plain data
    return {"got": value}


@durable.activity
def refund(order: Order, amount: Decimal) -> None:
    _check(order, Order, "refund")
    _check(amount, Decimal, "refund: amount")


@durable.workflow
async def process(order: Order) -> tuple[Order, Decimal]:
    _check(order, Order, "process")
    echoed = await echo_order(order)
    _check(echoed, Order, "process: echo_order's result")
    amount = await total(echoed)
    _check(amount, Decimal, "process: total's result")
    return echoed, amount


@durable.workflow
async def parent_of_process(order: Order) -> tuple[Order, Decimal]:
    """Gives its typed order to a child (`process`) and gets the child's typed result back."""
    result = await durable.execute_child(process, order, id="child-of-" + str(order.id))
    _check(result[0], Order, "parent_of_process: the child's result")
    _check(result[1], Decimal, "parent_of_process: the child's total")
    return result


@durable.workflow
async def charge(amount: MoneyT) -> MoneyT:
    _check(amount, Money, "charge")
    paid = await pay(amount)
    _check(paid, Money, "charge: pay's result")
    return paid


@durable.workflow
async def plain_out(order: Order) -> dict[str, Any]:
    """A dataclass given to an unannotated activity parameter crosses as a map."""
    return await untyped(order)  # type: ignore[no-any-return]


@durable.workflow
class Inbox:
    def __init__(self) -> None:
        self.orders: list[Order] = []

    async def run(self, expected: int) -> list[Order]:
        await durable.wait_condition(lambda: len(self.orders) >= expected)
        return self.orders

    @durable.signal
    def add(self, order: Order) -> None:
        _check(order, Order, "signal add")
        self.orders.append(order)

    @durable.update
    def add_and_count(self, order: Order) -> tuple[Order, Decimal]:
        """An update with typed arguments and result: adds the order, returns it and its total."""
        _check(order, Order, "update add_and_count")
        self.orders.append(order)
        return order, sum((i.price * i.qty for i in order.items), Decimal(0))

    @durable.query
    def last(self, default: Status) -> Order | Status:
        _check(default, Status, "query last")
        return self.orders[-1] if self.orders else default


@durable.workflow
async def strict(when: dt.date) -> dt.date:
    """Takes a date: input that is not one fails the workflow task (a bug, retried), not the workflow."""
    return when


@durable.workflow
async def refunded(order: Order) -> str:
    """A saga's compensation takes typed arguments too (checked when it is added, converted when it runs)."""
    try:
        async with durable.saga() as saga:
            saga.add_compensation(refund, order, Decimal("1.50"))
            raise durable.ApplicationError("out of stock", non_retryable=True)
    except durable.ApplicationError:
        return "compensated"


@durable.workflow
async def countdown(amount: MoneyT, left: int) -> MoneyT:
    """Continues as new with its typed argument (converted only by its annotation) until `left` is 0."""
    _check(amount, Money, f"countdown({left})")
    if left == 0:
        return amount
    durable.continue_as_new(amount, left - 1)


WORKFLOWS = [process, charge, plain_out, Inbox, strict, refunded, countdown, parent_of_process]
ACTIVITIES = [echo_order, total, pay, untyped, refund]
