"""The four peer workloads (same shapes as ../shared/peers/*_bench.py), as durable workflows,
and durable's own beside them (children10: a parent with ten child workflows)."""

from __future__ import annotations

import durable


@durable.activity
async def add_one(x: int) -> int:
    return x + 1


@durable.workflow
async def three_steps_wf(x: int) -> int:
    x = await add_one(x)
    x = await add_one(x)
    return await add_one(x)


@durable.workflow
async def fanout10_wf(x: int) -> int:
    results: list[int] = []

    async def one(i: int) -> None:
        results.append(await add_one(x + i))

    async with durable.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(one, i)
    return sum(results)


@durable.workflow
class signal_wf:
    def __init__(self) -> None:
        self.message: str | None = None

    async def run(self) -> str:
        await durable.wait_condition(lambda: self.message is not None, timeout=120)
        assert self.message is not None
        return self.message

    @durable.signal
    def sig(self, message: str) -> None:
        self.message = message


@durable.workflow
async def timer_wf(x: int) -> int:
    await durable.sleep(1.0)
    return x


# --- used only by the measurements beyond the peers' four workloads -------------------------


@durable.workflow
async def child_wf(x: int) -> int:
    """A child of `children10_wf`: one activity."""
    return await add_one(x)


@durable.workflow
async def children10_wf(x: int) -> int:
    """A parent with ten child workflows at once, in a nursery (the shape of fanout10, with a
    child workflow around each activity)."""
    results: list[int] = []

    async def one(i: int) -> None:
        results.append(await durable.execute_child(child_wf, x + i))

    async with durable.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(one, i)
    return sum(results)


@durable.workflow
async def replay_wf(steps: int, width: int) -> int:
    """`steps` activities, `width` at a time: a long history for the replay measurement.

    Each activity leaves two events (scheduled, completed); an activation that schedules nothing
    (a completion that does not end its batch) leaves one `TaskCompleted`.
    """
    done = 0
    results: list[int] = []

    async def one(x: int) -> None:
        results.append(await add_one(x) - x)

    while done < steps:
        size = min(width, steps - done)
        async with durable.open_nursery() as nursery:
            for i in range(size):
                nursery.start_soon(one, done + i)
        done += size
    return sum(results)


@durable.workflow
class entity_wf:
    """An entity that takes `deposit` signals and continues as new after every `every` of them,
    until it has taken `total`: the continue-as-new measurement (bench/entity.py). The signals it
    has received but not applied go on to the next run in its input, so that each run applies
    exactly `every`: the chain has ``ceil(total / every)`` runs."""

    def __init__(self) -> None:
        self.pending: list[int] = []

    async def run(self, total: int, every: int, taken: int, balance: int, unapplied: list[int]) -> int:
        self.pending[:0] = unapplied  # older than the signals this run was handed
        applied = 0
        while taken < total:
            await durable.wait_condition(lambda: bool(self.pending))
            while self.pending and applied < every:
                balance += self.pending.pop(0)
                taken += 1
                applied += 1
            if applied >= every and taken < total:
                durable.continue_as_new(total, every, taken, balance, self.pending)
        return balance

    @durable.signal
    def deposit(self, amount: int) -> None:
        self.pending.append(amount)
