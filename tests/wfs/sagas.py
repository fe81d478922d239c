"""Sagas used by the fault tests (real worker processes and in-thread workers).

`stubborn_saga` runs a synchronous step that ignores cancellation for a while: it sleeps without
heartbeating, then either calls ``durable.heartbeat()`` (and so learns of the cancellation) or
simply returns. Its steps write marker files into a directory the test passes, and each
compensation writes down which markers existed when it started: a witness, taken outside the
store, that no compensation began before the step it follows had stopped.

`storm_saga` is the compensation storm of F02: quick steps, each with a compensation, then a
failing one.
"""

from __future__ import annotations

import os
import time

import durable


def _touch(marker_dir: str, name: str, text: str = "") -> None:
    path = os.path.join(marker_dir, name)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def seen(marker_dir: str) -> list[str]:
    """The markers written so far, sorted."""
    return sorted(n for n in os.listdir(marker_dir) if not n.endswith(".tmp"))


@durable.activity
def book(marker_dir: str) -> str:
    _touch(marker_dir, "book")
    return "booked"


@durable.activity
def stubborn(marker_dir: str, ignore_seconds: float, heartbeat: bool) -> str:
    """Sleeps `ignore_seconds` without heartbeating; then, if `heartbeat`, calls heartbeat()."""
    _touch(marker_dir, "stubborn-started")
    time.sleep(ignore_seconds)
    _touch(marker_dir, "stubborn-woke")
    if heartbeat:
        try:
            durable.heartbeat()
        except durable.ActivityCancelled:
            _touch(marker_dir, "stubborn-cancelled")
            raise
    _touch(marker_dir, "stubborn-finished")
    return "finished"


@durable.activity
def compensate(marker_dir: str, tag: str) -> None:
    """A compensation: records the markers it found when it started."""
    _touch(marker_dir, f"undo-{tag}", "\n".join(seen(marker_dir)))


@durable.workflow
async def stubborn_saga(marker_dir: str, ignore_seconds: float, heartbeat: bool) -> str:
    async with durable.saga() as saga:
        await book(marker_dir)
        saga.add_compensation(compensate, marker_dir, "book")
        saga.add_compensation(compensate, marker_dir, "stubborn")  # partial effects possible
        await stubborn(marker_dir, ignore_seconds, heartbeat)
        # a step that finished despite the request is not cancelled (as in trio): the
        # cancellation is seen at the next await, here
        await book(marker_dir)
    return "finished"


# --- F02: a compensation storm ----------------------------------------------------------------


@durable.activity
def storm_step(i: int, n: int) -> int:
    return i


@durable.activity
def storm_fail(n: int) -> None:
    raise durable.ApplicationError(f"saga {n} fails", non_retryable=True)


@durable.activity
def storm_undo(i: int, n: int, fail: bool) -> int:
    if fail:
        raise durable.ApplicationError(f"undo {i} of saga {n} fails", non_retryable=True)
    return i


@durable.workflow
async def storm_saga(n: int, steps: int, failing_undo: int) -> None:
    """`steps` steps, each compensated; then a step that fails. The compensation of step
    `failing_undo` (if in range) fails too, so the saga raises an exception group."""
    async with durable.saga() as saga:
        for i in range(steps):
            await storm_step(i, n)
            saga.add_compensation(storm_undo, i, n, i == failing_undo)
        await storm_fail(n)
