"""Workflows and activities used by the fault tests (real worker processes and in-thread workers).

Activities that the tests must observe from outside the worker process write marker files into a
directory the test passes as an argument: one file per attempt, named
``<tag>-<attempt>-<pid>``, holding the attempt's idempotency key. Retry intervals are short so
that retries after a killed worker happen within a test's patience.
"""

from __future__ import annotations

import os
import time

import trio

import durable

FAST_RETRY = durable.RetryPolicy(max_attempts=5, initial_interval=0.05, backoff=2.0, max_interval=0.2)


def mark(marker_dir: str, tag: str) -> durable.ActivityInfo:
    """Record that an attempt of the running activity started (one file per attempt)."""
    info = durable.activity_info()
    path = os.path.join(marker_dir, f"{tag}-{info.attempt}-{os.getpid()}")
    with open(path, "w") as f:
        f.write(info.idempotency_key)
    return info


def markers(marker_dir: str, tag: str) -> list[tuple[int, int, str]]:
    """(attempt, pid, idempotency key) of every attempt of `tag` that started, by attempt."""
    out = []
    for name in os.listdir(marker_dir):
        head, _, rest = name.partition("-")
        if head != tag:
            continue
        attempt, pid = rest.split("-")
        with open(os.path.join(marker_dir, name)) as f:
            out.append((int(attempt), int(pid), f.read()))
    return sorted(out)


# --- slow steps, timers and signals: a restart of every process in the middle (F12) -------------


@durable.activity(retry=FAST_RETRY)
def slow_inc(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x + 1


@durable.workflow
async def inc_chain(x: int, steps: int, seconds: float) -> int:
    for _ in range(steps):
        x = await slow_inc(x, seconds)
    return x


@durable.workflow
async def timer_then_inc(seconds: float, x: int) -> int:
    await durable.sleep(seconds)
    return await slow_inc(x, 0.0)


@durable.workflow
class Gate:
    """Waits for one 'open' signal and returns its value (cancellable while it waits)."""

    def __init__(self) -> None:
        self.value: object = None
        self.opened = False

    async def run(self) -> object:
        await durable.wait_condition(lambda: self.opened)
        return self.value

    @durable.signal
    def open(self, value: object) -> None:
        self.opened = True
        self.value = value

    @durable.query
    def state(self) -> str:
        return "open" if self.opened else "waiting"


# --- many workers on one queue (F11) ----------------------------------------------------------


@durable.activity(retry=FAST_RETRY)
def pid_step(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@durable.workflow
async def pid_chain(steps: int, seconds: float) -> list[int]:
    return [await pid_step(i, seconds) for i in range(steps)]


# --- a worker that dies or stops while it holds an activity's lease (F09, shutdown) -------------


@durable.activity(retry=FAST_RETRY)
def hold_then_finish(marker_dir: str, first_seconds: float) -> dict[str, object]:
    """Attempt 1 holds the lease for `first_seconds` (sync, in a thread); later attempts finish."""
    info = mark(marker_dir, "hold")
    if info.attempt == 1:
        time.sleep(first_seconds)
    return {"pid": os.getpid(), "attempt": info.attempt, "key": info.idempotency_key}


@durable.workflow
async def hold_workflow(marker_dir: str, first_seconds: float) -> dict[str, object]:
    return await hold_then_finish(marker_dir, first_seconds)


@durable.activity(retry=FAST_RETRY)
async def wait_then_finish(marker_dir: str, first_seconds: float) -> dict[str, object]:
    """Like `hold_then_finish`, but async: a shutting-down worker can interrupt it."""
    info = mark(marker_dir, "wait")
    if info.attempt == 1:
        await trio.sleep(first_seconds)
    return {"pid": os.getpid(), "attempt": info.attempt, "key": info.idempotency_key}


@durable.workflow
async def wait_workflow(marker_dir: str, first_seconds: float) -> dict[str, object]:
    return await wait_then_finish(marker_dir, first_seconds)
