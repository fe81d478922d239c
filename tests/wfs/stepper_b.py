"""stepper_a.py with step 2 changed: it waits on a durable timer first (an incompatible change
for every workflow that had reached step 2; compatible with those that had not)."""

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
            if i == 2:
                await durable.sleep(0.01)  # the change
            done.append(await step(i))
        return done

    @durable.signal
    def proceed(self) -> None:
        self.go = True
