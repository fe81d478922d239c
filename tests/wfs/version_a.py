"""Version A of a workflow that a later deploy changes incompatibly (see version_b.py)."""

from __future__ import annotations

import durable


@durable.activity
def step(name: str) -> str:
    return f"did {name}"


@durable.workflow(name="versioned")
class Versioned:
    def __init__(self) -> None:
        self.go = False

    async def run(self) -> list[str]:
        first = await step("a")
        await durable.wait_condition(lambda: self.go)
        second = await step("b")
        return [first, second]

    @durable.signal
    def proceed(self) -> None:
        self.go = True
