"""Workflows that report the context they see, for the F04 test."""

from __future__ import annotations

import trio

import durable


@durable.activity
async def whoami_async(expected: str) -> list[str]:
    await trio.sleep(0)  # let other activities interleave
    info = durable.activity_info()
    return [expected, info.workflow_id, info.idempotency_key]


@durable.activity
def whoami_sync(expected: str) -> list[str]:
    info = durable.activity_info()
    return [expected, info.workflow_id, info.idempotency_key]


@durable.workflow
async def report_context() -> list[list[str]]:
    me = durable.info().workflow_id
    seen = [await whoami_async(me)]
    seen.append([me, durable.info().workflow_id, ""])
    seen.append(await whoami_sync(me))
    seen.append([me, durable.info().workflow_id, ""])
    return seen
