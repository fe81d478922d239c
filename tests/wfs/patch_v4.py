"""Version 4 of `refund` (see patch_v1.py): every workflow that ran v2's ``patched`` call has
closed, so the call is removed; the deprecated markers v3 recorded are passed over on replay."""

from __future__ import annotations

import durable


@durable.activity
def charge(x: int) -> int:
    return x


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
        r = await refund_new(x)
        await durable.wait_condition(lambda: self.signals >= (2 if wait_before else 1))
        return r

    @durable.signal
    def proceed(self) -> None:
        self.signals += 1
