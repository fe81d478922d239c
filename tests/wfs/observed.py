"""Workflows whose lives the worker logs and counts (tests/worker/test_observability.py): one
that completes, one that fails, one whose activity fails once, one cancelled, one timed out,
one that continues as new."""

from __future__ import annotations

import durable


@durable.activity
async def step(x: int) -> int:
    return x + 1


@durable.activity(retry=durable.RetryPolicy(initial_interval=0.01, max_interval=0.05))
async def flaky(x: int) -> int:
    if durable.activity_info().attempt == 1:
        raise RuntimeError("first attempt fails")
    return x


@durable.activity
async def broken(x: int) -> int:
    raise durable.ApplicationError(f"broken {x}", type="Broken", non_retryable=True)


@durable.workflow
async def three_steps(x: int) -> int:
    for _ in range(3):
        x = await step(x)
    return x


@durable.workflow
async def retried(x: int) -> int:
    return await flaky(x)


@durable.workflow
async def fails(x: int) -> int:
    return await broken(x)


@durable.workflow
async def waits() -> None:
    await durable.sleep(3600)


@durable.workflow
async def again(n: int) -> int:
    if n > 0:
        durable.continue_as_new(n - 1)
    return n


WORKFLOWS = [three_steps, retried, fails, waits, again]
ACTIVITIES = [step, flaky, broken]
