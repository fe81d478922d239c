"""Request/response with updates: a shopping cart whose `add_item` update returns the new total.

The caller waits for the handler's answer, as with a function call, but the change is durable:
accepted, it is recorded in the cart's history, and a retried call with the same update id gets
the same answer without adding the item twice. The validator refuses a bad item before anything
is recorded (`durable.UpdateRejected`). Pricing runs as an activity inside the handler.

    durable worker examples.cart
    durable start Cart --id cart-1
    durable update cart-1 add_item '"apple"' 3                  # -> 3.0 (3 apples at 1.00)
    durable update cart-1 add_item '"pear"' 2 --update-id req-7 # -> 6.0
    durable update cart-1 add_item '"pear"' 2 --update-id req-7 # -> 6.0 again: added once
    durable update cart-1 add_item '"rock"' 1                   # error: ... no such product 'rock'
    durable update cart-1 checkout                              # -> {"items": {...}, "total": 6.0}
    durable result cart-1
"""

from __future__ import annotations

from typing import Any

import durable

PRICES = {"apple": 1.0, "pear": 1.5, "melon": 4.0}
MAX_QUANTITY = 100


@durable.activity
async def price_of(product: str, quantity: int) -> float:
    """Look the price up (an activity: in a real shop, a call to the catalogue service)."""
    return PRICES[product] * quantity


@durable.workflow
class Cart:
    """A cart lives until it is checked out; `add_item` and `checkout` are updates."""

    def __init__(self) -> None:
        self.items: dict[str, int] = {}
        self.total = 0.0
        self.checked_out = False

    async def run(self) -> dict[str, Any]:
        await durable.wait_condition(lambda: self.checked_out)
        return {"items": self.items, "total": self.total}

    @durable.update
    async def add_item(self, product: str, quantity: int) -> float:
        """Add `quantity` of `product`; return the cart's new total."""
        cost = await price_of(product, quantity)
        self.items[product] = self.items.get(product, 0) + quantity
        self.total += cost
        return self.total

    @add_item.validator
    def _check_item(self, product: str, quantity: int) -> None:
        if self.checked_out:
            raise ValueError("the cart is checked out")
        if product not in PRICES:
            raise ValueError(f"no such product {product!r} (products: {', '.join(PRICES)})")
        if not isinstance(quantity, int) or not 0 < quantity <= MAX_QUANTITY:
            raise ValueError(f"quantity must be an integer from 1 to {MAX_QUANTITY}, not {quantity!r}")

    @durable.update
    def checkout(self) -> dict[str, Any]:
        """Close the cart; return what it holds."""
        self.checked_out = True
        return {"items": self.items, "total": self.total}

    @durable.query
    def current_total(self) -> float:
        return self.total
