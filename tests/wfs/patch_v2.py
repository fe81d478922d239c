"""Version 2 of `refund` (see patch_v1.py): the changed step behind ``durable.patched``. Workflows
that passed the step under v1 replay on the old path; those that reach it now take the new one."""

from __future__ import annotations

import durable


@durable.activity
def charge(x: int) -> int:
    return x


@durable.activity
def refund_old(x: int) -> str:
    return "old"


@durable.activity
def refund_new(x: int) -> str:
    return "new"


@durable.workflow(name="refund")
class Refund:
    def __init__(self) -> None:
        self.signals = 0

    async def run(self, x: int, wait_before: bool) -> str:
        await charge(x)
        if wait_before:
            await durable.wait_condition(lambda: self.signals >= 1)
        if durable.patched("fix-refund"):
            r = await refund_new(x)
        else:
            r = await refund_old(x)
        await durable.wait_condition(lambda: self.signals >= (2 if wait_before else 1))
        return r

    @durable.signal
    def proceed(self) -> None:
        self.signals += 1
