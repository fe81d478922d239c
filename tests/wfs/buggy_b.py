"""The fixed version of buggy_a.py: same workflow and activity names, a storable result."""

from __future__ import annotations

import durable


@durable.activity
def double(x: int) -> int:
    return 2 * x


@durable.workflow(name="buggy")
async def buggy(x: int) -> object:
    y = await double(x)
    return sorted({y, x})
