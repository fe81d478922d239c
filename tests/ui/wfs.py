"""Workflows for the UI's tests: an order with retries, a timer, a signal and a query, and a
step that keeps failing (with a message full of HTML, as user data may be)."""

from __future__ import annotations

import durable

FLAKY = durable.RetryPolicy(max_attempts=5, initial_interval=0.05, backoff=1.0)
STUCK = durable.RetryPolicy(max_attempts=50, initial_interval=30.0, backoff=1.0)


@durable.activity(retry=FLAKY)
def reserve(item: str) -> str:
    """Fails its first two attempts: its bar shows three attempts."""
    if durable.activity_info().attempt < 3:
        raise RuntimeError(f"stock service busy (attempt {durable.activity_info().attempt})")
    return f"reserved {item}"


@durable.activity
def ship(item: str) -> str:
    return f"shipped {item}"


@durable.activity(retry=STUCK)
def charge(note: str) -> str:
    """Always fails, with the note in its message: the next attempt waits 30 s."""
    raise RuntimeError(f"card declined: {note}")


@durable.workflow
class Order:
    """Reserves (with retries), waits a short timer, then waits for `approve`; `status` tells
    where it is."""

    def __init__(self) -> None:
        self.state = "new"
        self.approved_by: str | None = None

    async def run(self, item: str) -> str:
        self.state = "reserving"
        await reserve(item)
        self.state = "cooling"
        await durable.sleep(0.05)
        self.state = "waiting for approval"
        await durable.wait_condition(lambda: self.approved_by is not None)
        self.state = "shipping"
        await ship(item)
        return f"{item} approved by {self.approved_by}"

    @durable.signal
    def approve(self, who: str) -> None:
        self.approved_by = who

    @durable.query
    def status(self) -> str:
        return self.state


@durable.workflow
async def billing(note: str) -> str:
    """Waits on a step that keeps failing (its last failure is the note)."""
    return await charge(note)


@durable.workflow
async def doomed(reason: str) -> str:
    """Fails on purpose: the workflow ends as failed, with `reason` in its error."""
    raise durable.ApplicationError(f"refused: {reason}")


@durable.workflow
async def buggy(key: str) -> str:
    """A bug: each workflow task fails (a KeyError), the workflow stays running."""
    return {}[key]  # type: ignore[no-any-return]


WORKFLOWS = [Order, billing, doomed, buggy]
ACTIVITIES = [reserve, ship, charge]
