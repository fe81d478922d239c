"""Version B: the same workflow name, but a durable timer now comes before the first step."""

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
        await durable.sleep(0.5)  # the incompatible change
        first = await step("a")
        await durable.wait_condition(lambda: self.go)
        second = await step("b")
        return [first, second]

    @durable.signal
    def proceed(self) -> None:
        self.go = True
