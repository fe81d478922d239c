"""Orders with one child workflow per line item, for the kill -9 torture of child workflows
(tests/fault/test_children_torture.py). Each step notes every run of it in a log (one file per
run, named by its key and the worker's pid), so the test can tell that a kill struck running work."""

from __future__ import annotations

import os
from typing import Any

import trio

import durable


@durable.activity
async def step(root: str, key: str, value: int) -> int:
    with open(os.path.join(root, f"{key}.{os.getpid()}.{durable.activity_info().attempt}"), "w"):
        pass
    await trio.sleep(0.1)
    return value + 1


@durable.workflow
async def line_item(root: str, order: str, i: int) -> int:
    a = await step(root, f"{order}-{i}-a", i)
    return await step(root, f"{order}-{i}-b", a)


@durable.workflow
async def order(root: str, order_id: str, lines: int, mailbox: str) -> int:
    """A child per line item, in a nursery; then one signal to the mailbox."""
    results = [0] * lines

    async def one(i: int) -> None:
        results[i] = await durable.execute_child(line_item, root, order_id, i, id=f"{order_id}/line-{i}")

    async with durable.open_nursery() as nursery:
        for i in range(lines):
            nursery.start_soon(one, i)
    await durable.get_external_handle(mailbox).signal("put", order_id)
    return sum(results)


@durable.workflow
class Mailbox:
    """Collects one signal per completed order, until told to stop."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.done = False

    async def run(self) -> list[Any]:
        await durable.wait_condition(lambda: self.done)
        return sorted(self.items)

    @durable.signal
    def put(self, item: Any) -> None:
        self.items.append(item)

    @durable.signal
    def stop(self) -> None:
        self.done = True
