"""Version 1 of the `refund` workflow of the patching tests (tests/worker/test_patching_deploy.py):
it refunds with `refund_old`. v2 patches that step, v3 deprecates the patch, v4 removes the call.

The workflow charges, then (with `wait_before`) waits for a `proceed` signal before the changed
step, and always waits for one after it: so a test can stop it on either side of the change
while it deploys the next version."""

from __future__ import annotations

import durable


@durable.activity
def charge(x: int) -> int:
    return x


@durable.activity
def refund_old(x: int) -> str:
    return "old"


@durable.workflow(name="refund")
class Refund:
    def __init__(self) -> None:
        self.signals = 0

    async def run(self, x: int, wait_before: bool) -> str:
        await charge(x)
        if wait_before:
            await durable.wait_condition(lambda: self.signals >= 1)
        r = await refund_old(x)
        await durable.wait_condition(lambda: self.signals >= (2 if wait_before else 1))
        return r

    @durable.signal
    def proceed(self) -> None:
        self.signals += 1
