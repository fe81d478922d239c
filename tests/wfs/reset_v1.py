"""The bad deploy of the reset tests: an order that ships with a broken activity; and a
workflow that parks with an open activity and timer."""

from __future__ import annotations

from typing import Any

import durable

from tests.wfs.reset_steps import charge, ship, ship_bad


@durable.workflow(name="order")
class OrderV1:
    """The bad deploy: it ships with the broken activity, after a note comes in."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    async def run(self, x: int) -> Any:
        paid = await charge(x)
        await durable.wait_condition(lambda: bool(self.notes))
        return await ship_bad(paid)

    @durable.signal
    def note(self, text: str) -> None:
        self.notes.append(text)


@durable.workflow
class Parked:
    """Waits for a signal with a timeout (a timer), an activity on a queue nobody serves open."""

    def __init__(self) -> None:
        self.go = False

    async def run(self) -> str:
        async with durable.open_nursery() as nursery:
            nursery.start_soon(self._far)
            await durable.wait_condition(lambda: self.go, timeout=3600)
            nursery.cancel_scope.cancel()
        return "went"

    async def _far(self) -> None:
        await ship.with_options(queue="nowhere", cancellation="abandon")(1)

    @durable.signal
    def proceed(self) -> None:
        self.go = True
