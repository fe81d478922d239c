"""Activities that use asyncio libraries (aiohttp, ``asyncio.sleep``), and workflows that call them.

The activities leave markers in a directory the test gives (`seen`), so that a test can tell from
outside the store what their asyncio tasks saw: started, cancelled (``CancelledError`` at an
await), finished.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import sniffio

import durable

QUICK_RETRY = durable.RetryPolicy(initial_interval=0.05, max_interval=0.2, max_attempts=5)


def mark(directory: str, what: str) -> None:
    """Leave marker `what` in `directory` (an empty file; its name says what happened)."""
    Path(directory, what).touch()


def seen(directory: str) -> set[str]:
    """The markers left in `directory`."""
    return set(os.listdir(directory))


@durable.activity(loop="asyncio")
async def fetch(url: str) -> dict[str, Any]:
    """GET `url` with aiohttp (an asyncio-only library), with the activity's context in reach."""
    info = durable.activity_info()
    durable.heartbeat({"fetching": url})
    durable.logger.info("fetching %s", url)
    await asyncio.sleep(0.01)
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            body = await response.text()
    return {"status": response.status, "body": body, "library": sniffio.current_async_library(),
            "workflow_id": info.workflow_id, "attempt": info.attempt}


@durable.activity
async def sleeps_undeclared(seconds: float) -> str:
    """An async activity that uses asyncio but does not say so."""
    await asyncio.sleep(seconds)
    return f"slept on {sniffio.current_async_library()}"


@durable.activity(retry=durable.RetryPolicy(max_attempts=1))
async def awaits_an_asyncio_future() -> str:
    """An async activity that awaits an asyncio object without saying it uses asyncio."""
    loop = asyncio.new_event_loop()
    try:
        await loop.create_future()
    finally:
        loop.close()
    return "never"


@durable.workflow
async def foreign_future_flow() -> str:
    return await awaits_an_asyncio_future()


@durable.activity(loop="asyncio")
async def waits_for_cancel(directory: str) -> str:
    """Sleeps (asyncio) until cancelled; says what it saw."""
    mark(directory, f"started-{durable.activity_info().attempt}")
    try:
        await asyncio.sleep(120)
    except asyncio.CancelledError:
        mark(directory, f"cancelled-{durable.activity_info().attempt}")
        raise
    mark(directory, "finished")
    return "slept"


@durable.activity(loop="asyncio", heartbeat=1.0, retry=QUICK_RETRY)
async def stops_heartbeating(directory: str) -> Any:
    """Attempt 1 heartbeats twice, then stops (and is cancelled once its lease is lost); the next
    attempt returns the details attempt 1 gave."""
    info = durable.activity_info()
    if info.attempt > 1:
        return {"attempt": info.attempt, "details": info.heartbeat_details}
    mark(directory, "started-1")
    for i in range(2):
        durable.heartbeat({"done": i})
        await asyncio.sleep(0.05)
    try:
        await asyncio.sleep(120)
    except asyncio.CancelledError:
        mark(directory, "cancelled-1")
        raise
    return "never"


@durable.activity(loop="asyncio", start_to_close=1.0, retry=QUICK_RETRY)
async def too_slow_once(directory: str) -> str:
    """Attempt 1 outlives its start_to_close; attempt 2 returns at once."""
    info = durable.activity_info()
    if info.attempt > 1:
        return f"attempt-{info.attempt}"
    try:
        await asyncio.sleep(120)
    except asyncio.CancelledError:
        mark(directory, "cancelled-1")
        raise
    return "late"


@durable.activity(loop="asyncio", retry=durable.RetryPolicy(max_attempts=1))
async def cancels_itself() -> str:
    """Its own task is cancelled by its own code: an error of the attempt, not a cancellation."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(0)
    return "not cancelled"


_LEFT: set[asyncio.Task[None]] = set()


@durable.activity(loop="asyncio")
async def leaves_a_task(directory: str) -> str:
    """Returns at once, leaving a task of its own running on the loop (and a thread busy)."""

    async def linger() -> None:
        try:
            await asyncio.sleep(120)
        except asyncio.CancelledError:
            mark(directory, "leftover-cancelled")
            raise

    task = asyncio.create_task(linger())
    _LEFT.add(task)
    task.add_done_callback(_LEFT.discard)
    await asyncio.to_thread(mark, directory, "ran-in-a-thread")
    return "left"


@durable.workflow
async def leave_flow(directory: str) -> str:
    return await leaves_a_task(directory)


@durable.workflow
async def self_cancel_flow() -> str:
    return await cancels_itself()


@durable.workflow
async def fetch_flow(url: str) -> dict[str, Any]:
    return await fetch(url)


@durable.workflow
async def undeclared_flow(seconds: float) -> str:
    return await sleeps_undeclared.with_options(retry=durable.RetryPolicy(max_attempts=1))(seconds)


@durable.workflow
async def cancel_flow(directory: str) -> str:
    return await waits_for_cancel(directory)


@durable.workflow
async def heartbeat_flow(directory: str) -> Any:
    return await stops_heartbeating(directory)


@durable.workflow
async def slow_flow(directory: str) -> str:
    return await too_slow_once(directory)
