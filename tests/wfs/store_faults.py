"""Workflows for the store-fault tests (tests/fault/test_store_faults.py): big payloads that fill
a small disk quickly."""

from __future__ import annotations

import durable

RETRY = durable.RetryPolicy(max_attempts=50, initial_interval=0.05, max_interval=0.5)


@durable.activity(retry=RETRY)
def measure(blob: str) -> int:
    return len(blob)


@durable.workflow
async def blob_steps(blob: str, tag: int) -> list[int]:
    """Two steps on a big argument: the blob is in the history three times."""
    first = await measure(blob)
    second = await measure(blob[: len(blob) // 2])
    return [tag, first, second]
