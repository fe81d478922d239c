"""Hello, durable: three activities in sequence, and a workflow with a signal and a query.

Run a worker for this module, then start workflows from a script or the command line:

    durable worker examples.hello --data ./.durable --queue default
    durable start three_steps --input 1 --id wf-1 --wait --data ./.durable    # prints 5

The code below is the README's, line for line (tests/test_readme.py checks it).
"""

from __future__ import annotations

import durable

@durable.activity
def add_one(x: int) -> int:              # a plain sync function: runs in a worker thread
    return x + 1

@durable.activity(start_to_close=5, retry=durable.RetryPolicy(max_attempts=3))
async def double(x: int) -> int:         # an async (trio) function
    return 2 * x

@durable.workflow
async def three_steps(x: int) -> int:    # each activity call is scheduled durably
    x = await add_one(x)
    x = await double(x)
    return await add_one(x)

@durable.workflow
class Approval:                          # class form, for signal and query handlers
    def __init__(self) -> None:
        self.decision: str | None = None

    async def run(self, request: dict[str, int]) -> str:
        await durable.wait_condition(lambda: self.decision is not None, timeout=3600)
        assert self.decision is not None     # for type checkers: the wait ended on it
        return self.decision

    @durable.signal
    def decide(self, decision: str) -> None:
        self.decision = decision

    @durable.query
    def status(self) -> str:
        return self.decision or "pending"
