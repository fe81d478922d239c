"""Workflows whose steps take the worker's fast paths (async activities of the worker's queue):
run with and without them by tests/worker/test_fast_paths_off.py."""

from __future__ import annotations

import durable


@durable.activity
async def inc(x: int) -> int:
    return x + 1


@durable.workflow
async def async_steps(x: int) -> int:
    """Three async steps: the first runs ahead of its task, the others in their run's rounds."""
    x = await inc(x)
    x = await inc(x)
    return await inc(x)


@durable.workflow
async def fan_out(x: int) -> list[int]:
    """Ten async steps at once."""
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await inc(x + i)

    async with durable.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(one, i)
    return [results[i] for i in range(10)]


@durable.workflow
class Signalled:
    """Waits for a signal, then takes a step with what it was given."""

    def __init__(self) -> None:
        self.given: int | None = None

    async def run(self) -> int:
        await durable.wait_condition(lambda: self.given is not None)
        assert self.given is not None
        return await inc(self.given)

    @durable.signal
    def give(self, x: int) -> None:
        self.given = x
