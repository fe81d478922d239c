"""The fixed version of raising_a.py: same names, the same commands up to where a bug raised."""

from __future__ import annotations

import durable


@durable.activity
def double(x: int) -> int:
    return 2 * x


@durable.workflow(name="lookup")
async def lookup(x: int) -> int:
    y = await double(x)
    prices: dict[str, int] = {}
    return prices.get("missing", 0) + y


@durable.workflow(name="Counter")
class Counter:
    def __init__(self) -> None:
        self.total = 0
        self.done = False

    async def run(self) -> int:
        await durable.wait_condition(lambda: self.done)
        return self.total

    @durable.signal
    def add(self, n: int) -> None:
        self.total += 100 // n if n else 0

    @durable.signal
    def finish(self) -> None:
        self.done = True


@durable.workflow(name="refuser")
async def refuser(x: int) -> int:
    y = await double(x)
    raise durable.ApplicationError(f"refused {y}", type="Refused")
