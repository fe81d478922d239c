"""Workflows with child workflows and requests to other workflows (tests/durable/test_children*,
tests/worker/test_children*, tests/fault/test_children_torture.py)."""

from __future__ import annotations

import os
from typing import Any

import durable


@durable.activity
async def note(path: str, line: str) -> None:
    """Append a line to a file: what tests read to see which steps ran, in what order."""
    with open(path, "a") as f:
        f.write(line + "\n")


@durable.activity
async def slow(seconds: float) -> str:
    import trio

    await trio.sleep(seconds)
    return "slow done"


@durable.workflow
async def double(x: int) -> int:
    return 2 * x


@durable.workflow
async def fails(msg: str) -> None:
    raise durable.ApplicationError(msg, type="ChildBroke")


@durable.workflow
async def sleeper(seconds: float, path: str) -> str:
    """Sleeps; notes when it is cancelled, and once it has cleaned up (in a shielded scope)."""
    try:
        await durable.sleep(seconds)
        return "slept"
    except durable.Cancelled:
        with durable.CancelScope(shield=True):
            await note(path, f"{durable.info().workflow_id} cleanup")
        raise


@durable.workflow
async def parent_sum(n: int) -> int:
    """execute_child n times in a row."""
    total = 0
    for i in range(n):
        total += await durable.execute_child(double, i)
    return total


@durable.workflow
async def parent_fan_out(n: int) -> list[int]:
    """n children started at once in a nursery."""
    results: list[int] = [0] * n

    async def one(i: int) -> None:
        results[i] = await durable.execute_child(double, i, id=f"{durable.info().workflow_id}/line-{i}")

    async with durable.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return results


@durable.workflow
async def parent_of_failure(msg: str) -> str:
    try:
        await durable.execute_child(fails, msg)
    except durable.ChildWorkflowError as exc:
        return f"{exc.kind}: {exc.__cause__}"
    return "no error"


@durable.workflow
async def parent_fails_through(msg: str) -> None:
    await durable.execute_child(fails, msg)


@durable.workflow
async def parent_with_id(child_id: str) -> str:
    try:
        return str(await durable.execute_child(double, 21, id=child_id))
    except durable.ChildWorkflowError as exc:
        return f"{exc.kind}: {exc.__cause__}"


@durable.workflow
async def parent_cancels_scope(path: str) -> str:
    """A child in a scope that times out; compensation after the scope, which must not start
    before the child has closed."""
    with durable.move_on_after(0.5):
        await durable.execute_child(sleeper, 3600.0, path, id="sleepy-child")
    await note(path, "compensate")
    return "moved on"


@durable.workflow
async def parent_with_handle(path: str) -> str:
    async with durable.open_nursery():
        h = await durable.start_child(sleeper, 3600.0, path, id="handled-child")
        await note(path, f"started {h.id}")
        h.cancel()
        try:
            await h.result()
        except durable.ChildWorkflowError as exc:
            return exc.kind
    return "not cancelled"


@durable.workflow
async def parent_waits(path: str) -> str:
    """A child started in a nursery, not awaited: the nursery waits for it."""
    async with durable.open_nursery():
        h = await durable.start_child(sleeper, 3600.0, path, id=f"{durable.info().workflow_id}-kid")
        await note(path, f"started {h.id}")
    return "child closed"


@durable.workflow
async def parent_leaves(policy: str, child_id: str) -> str:
    """Starts a child, then returns at once: the child gets the parent close policy."""
    await durable.start_child(sleeper, 3600.0, os.devnull, id=child_id, parent_close_policy=policy)
    return "left"


@durable.workflow
class Mailbox:
    """Collects signals until told to stop."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.done = False

    async def run(self) -> list[Any]:
        await durable.wait_condition(lambda: self.done)
        return self.items

    @durable.signal
    def put(self, item: Any) -> None:
        self.items.append(item)

    @durable.signal
    def stop(self) -> None:
        self.done = True


@durable.workflow
async def sender(target: str, n: int) -> str:
    h = durable.get_external_handle(target)
    for i in range(n):
        await h.signal("put", i)
    await h.signal(Mailbox.stop)
    return "sent"


@durable.workflow
async def canceller(target: str) -> str:
    try:
        await durable.get_external_handle(target).cancel()
    except durable.ExternalWorkflowError as exc:
        return f"not delivered: {exc.__cause__}"
    return "cancel sent"


@durable.workflow
async def signals_missing(target: str, name: str = "put", *args: Any) -> str:
    try:
        await durable.get_external_handle(target).signal(name, *(args or (1,)))
    except durable.ExternalWorkflowError as exc:
        return f"not delivered: {exc.__cause__}"
    return "sent"


@durable.workflow
async def parent_signals_child() -> list[Any]:
    h = await durable.start_child(Mailbox, id=f"{durable.info().workflow_id}/mailbox")
    await h.signal("put", "a")
    await h.signal(Mailbox.put, "b")
    await h.signal("stop")
    return await h.result()


@durable.workflow
async def parent_of_blocked() -> str:
    """features: child_workflow/throws_on_termination."""
    try:
        await durable.execute_child(Mailbox, id=f"{durable.info().workflow_id}/blocked")
    except durable.ChildWorkflowError as exc:
        return f"{exc.kind}: {exc.__cause__}"
    return "no error"


@durable.workflow
async def parent_reject_duplicate() -> str:
    """features: child_workflow/throws_on_start."""
    wid = f"{durable.info().workflow_id}/once"
    first = await durable.execute_child(double, 1, id=wid)
    try:
        await durable.execute_child(double, 2, id=wid, id_reuse_policy="reject_duplicate")
    except durable.ChildWorkflowError as exc:
        return f"{first} then {exc.kind}: {exc.__cause__}"
    return "started twice"


@durable.workflow
async def stubborn(path: str) -> str:
    """Ignores its cancellation: cleans up, then completes anyway."""
    try:
        await durable.sleep(3600)
        return "slept"
    except durable.Cancelled:
        with durable.CancelScope(shield=True):
            await note(path, "ignored the cancel")
        return "finished anyway"


@durable.workflow
async def parent_cancel_wait_completed(path: str) -> str:
    """features: child_workflow/cancel_wait_completed: the scope's cancellation reaches the
    child, which completes anyway; the parent gets its result, then its own Cancelled."""
    got = "nothing"
    with durable.move_on_after(0.3) as scope:
        got = await durable.execute_child(stubborn, path, id=f"{durable.info().workflow_id}/stubborn")
        await durable.sleep(3600)
    return f"{got}, scope cancelled: {scope.cancelled_caught}"


@durable.workflow
async def parent_elsewhere(queue: str, wtype: str) -> Any:
    """A child (by its type's name) on another queue, served by other workers."""
    try:
        return await durable.execute_child(wtype, 5, queue=queue)
    except durable.ChildWorkflowError as exc:
        return f"{exc.kind}: {exc.__cause__}"


WORKFLOWS = [parent_elsewhere, parent_of_blocked, parent_reject_duplicate, stubborn, parent_cancel_wait_completed, double, fails, sleeper, parent_sum, parent_fan_out, parent_of_failure, parent_fails_through,
             parent_with_id, parent_cancels_scope, parent_with_handle, parent_waits, parent_leaves, Mailbox, sender,
             canceller, signals_missing, parent_signals_child]
ACTIVITIES = [note, slow]
