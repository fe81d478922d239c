"""Workflows for the crash-point tests (tests/fault/test_crashpoints.py).

`keyed_effect` is an activity with an external effect that checks its idempotency key: every run
leaves a file in ``<dir>/runs``, but the effect itself (a file named after the key, created with
O_EXCL) is applied at most once per key, however often the step runs.
"""

from __future__ import annotations

import os
import uuid

import durable

RETRY = durable.RetryPolicy(max_attempts=20, initial_interval=0.05, max_interval=0.2)


def _key_name(key: str) -> str:
    return key.replace("/", "_")


@durable.activity(retry=RETRY)
def keyed_effect(marker_dir: str, tag: str, x: int) -> int:
    info = durable.activity_info()
    runs = os.path.join(marker_dir, "runs")
    os.makedirs(runs, exist_ok=True)
    with open(os.path.join(runs, f"{_key_name(info.idempotency_key)}.{info.attempt}.{uuid.uuid4().hex[:8]}"), "w") as f:
        f.write(tag)
    effects = os.path.join(marker_dir, "effects")
    os.makedirs(effects, exist_ok=True)
    try:  # the effect, keyed: a second run of the same step finds it applied and skips it
        fd = os.open(os.path.join(effects, _key_name(info.idempotency_key)), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        pass
    else:
        os.write(fd, f"{tag}:{x}".encode())
        os.fsync(fd)
        os.close(fd)
    return x + 1


@durable.workflow
async def steps_and_timer(marker_dir: str, x: int, seconds: float) -> int:
    """Two keyed steps, a durable timer, two more keyed steps: returns x + 4."""
    x = await keyed_effect(marker_dir, "s1", x)
    x = await keyed_effect(marker_dir, "s2", x)
    await durable.sleep(seconds)
    x = await keyed_effect(marker_dir, "s3", x)
    return await keyed_effect(marker_dir, "s4", x)


def runs(marker_dir: str) -> dict[str, int]:
    """How many times each idempotency key (file-name form) ran."""
    out: dict[str, int] = {}
    path = os.path.join(marker_dir, "runs")
    for name in os.listdir(path) if os.path.isdir(path) else []:
        key = name.rsplit(".", 2)[0]
        out[key] = out.get(key, 0) + 1
    return out


def effects(marker_dir: str) -> dict[str, str]:
    """The applied effects: key (file-name form) -> what was applied."""
    out = {}
    path = os.path.join(marker_dir, "effects")
    for name in os.listdir(path) if os.path.isdir(path) else []:
        with open(os.path.join(path, name)) as f:
            out[name] = f.read()
    return out
