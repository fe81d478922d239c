"""Workflows and activities of the crash torture (tests/fault/test_torture.py) and lease races
(tests/fault/test_lease_race.py).

Every activity attempt writes its effect into an *effect log*: one file per run, named after its
idempotency key, attempt, process and a random suffix, written atomically (tmp + rename), so a
SIGKILL never leaves half a record. Then it *applies* its effect to an "apply once" sink: a file
named after the key, created with O_EXCL. A repeat of a key (a retry after a kill struck between
the effect and its recorded completion) is refused and counted in a "repeats" directory. The
effect of one step is therefore applied once if and only if its key is the same for every attempt.

Each workflow's result is a pure function of its input (`expected` gives it: the oracle).
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from typing import Any

import trio

import durable

RETRY = durable.RetryPolicy(max_attempts=1000, initial_interval=0.05, backoff=2.0, max_interval=0.2)
SHAPES = ("seq", "fanout", "timer", "signal", "saga")


def _safe(key: str) -> str:
    return key.replace("/", "_")


def _atomic_write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def _effect(root: str, tag: str) -> str:
    """Log this run of the step (effect log), then apply its effect once per key (sink). Return
    the run's name in the log (``<key>.<attempt>.<pid>.<random>``)."""
    info = durable.activity_info()
    key = _safe(info.idempotency_key)
    run = f"{key}.{info.attempt}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    _atomic_write(os.path.join(root, "effects", run), f"{info.idempotency_key}\n{tag}")
    # Apply once, atomically with its content: link a complete temporary file to the key's name
    # (link fails if the name exists), so a SIGKILL never leaves an empty applied effect.
    tmp = os.path.join(root, "sink", f"{key}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w") as f:
        f.write(f"{info.idempotency_key}\n{tag}")
    try:
        os.link(tmp, os.path.join(root, "sink", key))
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
        _atomic_write(os.path.join(root, "repeats", f"{key}.{info.attempt}.{os.getpid()}.{uuid.uuid4().hex[:8]}"),
                      info.idempotency_key)
    finally:
        os.unlink(tmp)
    return run


def make_dirs(root: str) -> None:
    for sub in ("effects", "sink", "repeats"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)


@durable.activity(retry=RETRY)
def t_step(root: str, x: int, k: int, seconds: float) -> list[Any]:
    """One step: [x * 3 + k, the name of this run], after `seconds` of work. The run's name lets
    the checker tell which attempt's result history recorded."""
    run = _effect(root, f"step {x} {k}")
    time.sleep(seconds)
    return [x * 3 + k, run]


@durable.activity(retry=RETRY)
async def t_async_step(root: str, x: int, k: int, seconds: float) -> list[Any]:
    run = _effect(root, f"astep {x} {k}")
    await trio.sleep(seconds)
    return [x * 3 + k, run]


@durable.activity(retry=RETRY)
def t_undo(root: str, what: str) -> str:
    _effect(root, f"undo {what}")
    return f"undone {what}"


@durable.activity(retry=RETRY)
def t_fail(root: str) -> None:
    _effect(root, "fail")
    raise durable.ApplicationError("the last booking is refused", non_retryable=True)


@durable.workflow
async def t_seq(root: str, x: int, steps: int, seconds: float) -> int:
    for k in range(steps):
        x = (await t_step(root, x, k, seconds))[0] % 1_000_003
    return x


@durable.workflow
async def t_fanout(root: str, x: int, width: int, seconds: float) -> int:
    results: dict[int, int] = {}

    async def one(k: int) -> None:
        step = t_async_step if k % 2 else t_step
        results[k] = (await step(root, x, k, seconds))[0]

    async with durable.open_nursery() as nursery:
        for k in range(width):
            nursery.start_soon(one, k)
    return sum(results.values())


@durable.workflow
async def t_timer(root: str, x: int, wait: float, seconds: float) -> int:
    x = (await t_step(root, x, 1, seconds))[0]
    await durable.sleep(wait)
    return (await t_step(root, x, 2, seconds))[0]


@durable.workflow
class TSignal:
    """Waits for `n` 'add' signals, then runs one step on their sum."""

    def __init__(self) -> None:
        self.values: list[int] = []

    async def run(self, root: str, x: int, n: int, seconds: float) -> int:
        await durable.wait_condition(lambda: len(self.values) >= n)
        return (await t_step(root, x + sum(self.values), 0, seconds))[0]

    @durable.signal
    def add(self, value: int) -> None:
        self.values.append(value)


@durable.workflow
async def t_saga(root: str, x: int, bookings: int, fail: bool, seconds: float) -> dict[str, Any]:
    """Book `bookings` steps, each compensated; if `fail`, a last step fails and every booking is
    undone (newest first)."""
    booked: list[int] = []
    try:
        async with durable.saga() as saga:
            for k in range(bookings):
                booked.append((await t_step(root, x, k, seconds))[0])
                saga.add_compensation(t_undo, root, f"{x}-{k}")
            if fail:
                await t_fail(root)
    except Exception:  # noqa: BLE001 - the compensations ran; report it as the result
        return {"booked": booked, "undone": True}
    return {"booked": booked, "undone": False}


def make_spec(rng: Any, i: int, seconds: tuple[float, float]) -> dict[str, Any]:
    """The input of workflow number `i` (shape and arguments), drawn from `rng`."""
    shape = SHAPES[i % len(SHAPES)]
    # one workflow in four has long steps (1-2 s): a worker frozen past its lease then resumes
    # while another worker still runs the retry, so its late result meets a live lease
    s = round(rng.uniform(*seconds) if rng.random() >= 0.25 else rng.uniform(1.0, 2.0), 3)
    x = rng.randrange(1000)
    if shape == "seq":
        args = [x, rng.randint(3, 6), s]
    elif shape == "fanout":
        args = [x, rng.randint(2, 5), s]
    elif shape == "timer":
        args = [x, round(rng.uniform(0.1, 1.5), 3), s]
    elif shape == "signal":
        args = [x, rng.randint(1, 3), s]
    else:
        args = [x, rng.randint(1, 3), rng.random() < 0.5, s]
    spec: dict[str, Any] = {"id": f"{shape}-{i}", "shape": shape, "args": args}
    if shape == "signal":
        spec["signals"] = [rng.randrange(100) for _ in range(args[1])]
    return spec


def expected(spec: dict[str, Any]) -> Any:
    """The oracle: the result workflow `spec` must have, computed without the engine."""
    shape, a = spec["shape"], spec["args"]
    if shape == "seq":
        x = a[0]
        for k in range(a[1]):
            x = (x * 3 + k) % 1_000_003
        return x
    if shape == "fanout":
        return sum(a[0] * 3 + k for k in range(a[1]))
    if shape == "timer":
        return (a[0] * 3 + 1) * 3 + 2
    if shape == "signal":
        return (a[0] + sum(spec["signals"])) * 3
    x, bookings, fail = a[0], a[1], a[2]
    return {"booked": [x * 3 + k for k in range(bookings)], "undone": fail}


WORKFLOW_OF_SHAPE = {"seq": t_seq, "fanout": t_fanout, "timer": t_timer, "signal": TSignal, "saga": t_saga}


# --- lease races ---------------------------------------------------------------------------------


@durable.activity(retry=RETRY)
def beating(marker_dir: str, iterations: int, pause: float) -> dict[str, Any]:
    """Loops `iterations` times (100 times in later attempts): heartbeat, then a progress marker
    ``it-<attempt>-<pid>-<i>`` (with the wall time); on ActivityCancelled it writes
    ``stop-<attempt>-<pid>`` and re-raises."""
    info = durable.activity_info()
    pid = os.getpid()
    iterations = iterations if info.attempt == 1 else 100
    _atomic_write(os.path.join(marker_dir, f"start-{info.attempt}-{pid}"), repr(time.time()))
    try:
        for i in range(iterations):
            durable.heartbeat(i)
            _atomic_write(os.path.join(marker_dir, f"it-{info.attempt}-{pid}-{i}"), repr(time.time()))
            time.sleep(pause)
    except durable.ActivityCancelled:
        _atomic_write(os.path.join(marker_dir, f"stop-{info.attempt}-{pid}"), repr(time.time()))
        raise
    _atomic_write(os.path.join(marker_dir, f"done-{info.attempt}-{pid}"), repr(time.time()))
    return {"pid": pid, "attempt": info.attempt}


@durable.activity(retry=RETRY)
async def async_beating(marker_dir: str, iterations: int, pause: float) -> dict[str, Any]:
    """Like `beating`, async: a lost lease cancels its trio scope (trio.Cancelled at an await)."""
    info = durable.activity_info()
    pid = os.getpid()
    iterations = iterations if info.attempt == 1 else 100
    _atomic_write(os.path.join(marker_dir, f"start-{info.attempt}-{pid}"), repr(time.time()))
    try:
        for i in range(iterations):
            durable.heartbeat(i)
            _atomic_write(os.path.join(marker_dir, f"it-{info.attempt}-{pid}-{i}"), repr(time.time()))
            await trio.sleep(pause)
    except (durable.ActivityCancelled, trio.Cancelled):
        _atomic_write(os.path.join(marker_dir, f"stop-{info.attempt}-{pid}"), repr(time.time()))
        raise
    _atomic_write(os.path.join(marker_dir, f"done-{info.attempt}-{pid}"), repr(time.time()))
    return {"pid": pid, "attempt": info.attempt}


@durable.workflow
async def beating_workflow(marker_dir: str, iterations: int, pause: float, use_async: bool) -> dict[str, Any]:
    step = async_beating if use_async else beating
    return await step(marker_dir, iterations, pause)


@durable.activity(retry=RETRY)
def late(marker_dir: str, seconds: float, retry_seconds: float) -> dict[str, Any]:
    """The first attempt sleeps `seconds` without heartbeating, then returns (a late result if
    its lease was lost meanwhile); later attempts sleep `retry_seconds`."""
    info = durable.activity_info()
    pid = os.getpid()
    _atomic_write(os.path.join(marker_dir, f"start-{info.attempt}-{pid}"), repr(time.time()))
    time.sleep(seconds if info.attempt == 1 else retry_seconds)
    _atomic_write(os.path.join(marker_dir, f"done-{info.attempt}-{pid}"), repr(time.time()))
    return {"pid": pid, "attempt": info.attempt}


@durable.workflow
async def late_workflow(marker_dir: str, seconds: float, retry_seconds: float) -> dict[str, Any]:
    return await late(marker_dir, seconds, retry_seconds)
