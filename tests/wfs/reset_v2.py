"""The fixed deploy of the reset tests (see reset_v1.py)."""

from __future__ import annotations

from typing import Any

import durable

from tests.wfs.reset_steps import charge, ship


@durable.workflow(name="order")
class OrderV2:
    """The fix: same steps up to the note, then the working activity."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    async def run(self, x: int) -> Any:
        paid = await charge(x)
        await durable.wait_condition(lambda: bool(self.notes))
        return [await ship(paid), self.notes]

    @durable.signal
    def note(self, text: str) -> None:
        self.notes.append(text)
