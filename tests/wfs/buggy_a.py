"""A workflow with a bug that fails its *task*, not the workflow: after its step it returns a
value that cannot be stored (an object()), so recording its result fails each time the task runs.
The fixed version is buggy_b.py (same names)."""

from __future__ import annotations

import durable


@durable.activity
def double(x: int) -> int:
    return 2 * x


@durable.workflow(name="buggy")
async def buggy(x: int) -> object:
    y = await double(x)
    return [y, x, object()]  # a bug: an object() is not a storable payload
