"""Workflow code with bugs that raise (version a): a KeyError after its first step, and a signal
handler that divides by zero. Neither is a failure raised on purpose, so each fails the
workflow *task*; raising_b.py is the fixed version (same names, same commands up to the bug)."""

from __future__ import annotations

import durable


@durable.activity
def double(x: int) -> int:
    return 2 * x


@durable.workflow(name="lookup")
async def lookup(x: int) -> int:
    y = await double(x)
    prices: dict[str, int] = {}
    return prices["missing"] + y  # a bug: KeyError


@durable.workflow(name="Counter")
class Counter:
    def __init__(self) -> None:
        self.total = 0
        self.done = False

    async def run(self) -> int:
        await durable.wait_condition(lambda: self.done)
        return self.total

    @durable.signal
    def add(self, n: int) -> None:
        self.total += 100 // n  # a bug for n == 0: ZeroDivisionError

    @durable.signal
    def finish(self) -> None:
        self.done = True


@durable.workflow(name="refuser")
async def refuser(x: int) -> int:
    y = await double(x)
    raise durable.ApplicationError(f"refused {y}", type="Refused")  # on purpose: fails the workflow
