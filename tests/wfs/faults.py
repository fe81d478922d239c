"""Workflows and activities used by the fault tests (real worker processes and in-thread workers).

Activities that the tests must observe from outside the worker process write marker files into a
directory the test passes as an argument: one file per attempt, named
``<tag>-<attempt>-<pid>``, holding the attempt's idempotency key. Retry intervals are short so
that retries after a killed worker happen within a test's patience.
"""

from __future__ import annotations

import os
import time
import uuid

import trio

import durable

FAST_RETRY = durable.RetryPolicy(max_attempts=5, initial_interval=0.05, backoff=2.0, max_interval=0.2)


def mark(marker_dir: str, tag: str) -> tuple[durable.ActivityInfo, bool]:
    """Record that an attempt of the running activity started; return its info and whether it is
    the first run of `tag` in `marker_dir` (a handed-back attempt runs again with the same number)."""
    info = durable.activity_info()
    first = not markers(marker_dir, tag)
    path = os.path.join(marker_dir, f"{tag}-{info.attempt}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with open(path + ".tmp", "w") as f:
        f.write(info.idempotency_key)
    os.rename(path + ".tmp", path)
    return info, first


def markers(marker_dir: str, tag: str) -> list[tuple[int, int, str]]:
    """(attempt, pid, idempotency key) of every run of `tag` that started, by attempt."""
    out = []
    for name in os.listdir(marker_dir):
        parts = name.split("-")
        if parts[0] != tag or name.endswith(".tmp"):
            continue
        with open(os.path.join(marker_dir, name)) as f:
            out.append((int(parts[1]), int(parts[2]), f.read()))
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
    """The first run holds the lease for `first_seconds` (sync, in a thread); later runs finish."""
    info, first = mark(marker_dir, "hold")
    if first:
        time.sleep(first_seconds)
    return {"pid": os.getpid(), "attempt": info.attempt, "key": info.idempotency_key}


@durable.workflow
async def hold_workflow(marker_dir: str, first_seconds: float) -> dict[str, object]:
    return await hold_then_finish(marker_dir, first_seconds)


@durable.activity(retry=FAST_RETRY)
async def wait_then_finish(marker_dir: str, first_seconds: float) -> dict[str, object]:
    """Like `hold_then_finish`, but async: a shutting-down worker can interrupt it."""
    info, first = mark(marker_dir, "wait")
    if first:
        await trio.sleep(first_seconds)
    return {"pid": os.getpid(), "attempt": info.attempt, "key": info.idempotency_key}


@durable.workflow
async def wait_workflow(marker_dir: str, first_seconds: float) -> dict[str, object]:
    return await wait_then_finish(marker_dir, first_seconds)


# --- kill -9 at random points (F03) --------------------------------------------------------------


@durable.activity(retry=durable.RetryPolicy(max_attempts=20, initial_interval=0.05, max_interval=0.2))
def effect_inc(marker_dir: str, x: int, seconds: float) -> int:
    """An 'external effect' keyed by the idempotency key: one file per run of the step."""
    info = durable.activity_info()
    name = f"{info.idempotency_key.replace('/', '_')}.{info.attempt}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    path = os.path.join(marker_dir, name)
    with open(path + ".tmp", "w") as f:  # a kill -9 may strike here: never leave half a record
        f.write(info.idempotency_key)
    os.rename(path + ".tmp", path)
    time.sleep(seconds)
    return x + 1


@durable.workflow
async def effect_chain(marker_dir: str, x: int, steps: int, seconds: float) -> int:
    for _ in range(steps):
        x = await effect_inc(marker_dir, x, seconds)
    return x
