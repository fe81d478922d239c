"""A workflow and an activity taking and giving pydantic models (pydantic is an optional extra:
import this module only where pydantic is installed)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pydantic

import durable


class Line(pydantic.BaseModel):
    sku: str
    price: Decimal


class Cart(pydantic.BaseModel):
    owner: str
    lines: list[Line]
    saved: dt.datetime
    tags: set[str] = set()


def _check(value: object, kind: type, where: str) -> None:
    if not isinstance(value, kind):
        raise durable.ApplicationError(f"{where} got {type(value).__name__}", non_retryable=True)


@durable.activity
def price(cart: Cart) -> Line:
    _check(cart, Cart, "price")
    return Line(sku="total", price=sum((line.price for line in cart.lines), Decimal(0)))


@durable.workflow
async def checkout(cart: Cart) -> tuple[Cart, Line]:
    _check(cart, Cart, "checkout")
    total = await price(cart)
    _check(total, Line, "checkout: price's result")
    return cart, total
