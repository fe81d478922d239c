"""Hello, durable: three activities in sequence, and a workflow with a signal and a query.

Run a worker for this module, then start workflows from a script or the command line:

    durable worker examples.hello --data ./.durable
    durable start three_steps --input 1 --id wf-1 --wait        # prints 5
"""

from __future__ import annotations

import durable


@durable.activity
def add_one(x: int) -> int:
    """A plain sync function: the worker runs it in a thread."""
    return x + 1


@durable.activity(start_to_close=5, retry=durable.RetryPolicy(max_attempts=3))
async def double(x: int) -> int:
    """An async (trio) function."""
    return 2 * x


@durable.workflow
async def three_steps(x: int) -> int:
    """Each call schedules a durable activity; a restart resumes after the last finished one."""
    x = await add_one(x)
    x = await double(x)
    return await add_one(x)


@durable.workflow
class Approval:
    """Waits (durably, up to an hour) for a decision that arrives as a signal."""

    def __init__(self) -> None:
        self.decision: str | None = None

    async def run(self, request: dict) -> str:
        await durable.wait_condition(lambda: self.decision is not None, timeout=3600)
        assert self.decision is not None
        return self.decision

    @durable.signal
    def decide(self, decision: str) -> None:
        self.decision = decision

    @durable.query
    def status(self) -> str:
        return self.decision or "pending"
