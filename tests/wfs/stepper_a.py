"""A workflow of four steps that can park before any of them (for `durable check`'s tests):
``stepper(park_at)`` waits for a `go` signal before step `park_at` (never if it is 4 or more).
stepper_b.py changes step 2."""

from __future__ import annotations

import durable


@durable.activity
def step(i: int) -> int:
    return i


@durable.workflow(name="stepper")
class Stepper:
    def __init__(self) -> None:
        self.go = False

    async def run(self, park_at: int) -> list[int]:
        done = []
        for i in range(4):
            if i == park_at:
                await durable.wait_condition(lambda: self.go)
            done.append(await step(i))
        return done

    @durable.signal
    def proceed(self) -> None:
        self.go = True
