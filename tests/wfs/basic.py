"""Workflows and activities used by tests that run real worker processes."""

from __future__ import annotations

import os
import time

import durable


@durable.activity
def add_one(x: int) -> int:
    return x + 1


@durable.activity
async def double(x: int) -> int:
    return 2 * x


@durable.workflow
async def three_steps(x: int) -> int:
    x = await add_one(x)
    x = await double(x)
    return await add_one(x)


@durable.activity
def slow_step(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x


@durable.workflow
async def slow_chain(x: int, steps: int, seconds: float) -> int:
    for _ in range(steps):
        x = await slow_step(x + 1, seconds)
    return x


@durable.workflow
async def sleeper(seconds: float) -> str:
    await durable.sleep(seconds)
    return "woke"


@durable.workflow
class Collector:
    """Collects signals until told to stop; answers queries about them."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.done = False

    async def run(self) -> list[int]:
        await durable.wait_condition(lambda: self.done)
        return self.items

    @durable.signal
    def add(self, item: int) -> None:
        self.items.append(item)

    @durable.signal
    def finish(self) -> None:
        self.done = True

    @durable.query
    def count(self) -> int:
        return len(self.items)


@durable.activity
def record_pid(x: int) -> int:
    return os.getpid()
