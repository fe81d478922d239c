"""The small records the worker's rooms hand each other: attempts' reports, engine results bound
for the writer, results waiting for their run's round, and attempts run by hand.

Task items (what `_ops` claims: a workflow task, an activity attempt, a query) stay plain dicts
(`Item`): they are made in the writer's transaction and read field by field on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import trio

from durable import _activity
from durable._store import Txn

#: A task handed out by `_ops` (``claim``, ``claim_workflow_task``...), keyed by field name.
Item = dict[str, Any]


# --- an attempt's report: what its run gives to be recorded ---------------------------------


class Ok(NamedTuple):
    """The attempt returned: its result, encoded."""

    payload: bytes


class Err(NamedTuple):
    """The attempt failed (or, after a cancel request, was cancelled): its error record."""

    err: dict[str, Any]
    retryable: bool
    cancelled: bool


class Unknown(NamedTuple):
    """This worker does not have the activity's code: nothing ran (F15)."""

    error: str


#: What an attempt's run gives: None if there is nothing to record (its lease was lost, or it
#: was stopped to be handed back: see `_activities.Activities._record_report`).
Report = Ok | Err | Unknown | None

CANCELLED = Err({"type": "Cancelled", "msg": "cancelled"}, False, True)  # an attempt that saw its cancel request


# --- what an engine job gives back ---------------------------------------------------------


class Forward:
    """An engine job's result that has the writer run `op` next; `value` goes back with its result."""

    __slots__ = ("op", "value")

    def __init__(self, op: Callable[[Txn], Any], value: Any) -> None:
        self.op, self.value = op, value


class Ahead:
    """An engine job's result: the activation's commands, whose activities run ahead (`_ahead`)."""

    __slots__ = ("commands",)

    def __init__(self, commands: list[dict[str, Any]]) -> None:
        self.commands = commands


# --- results of a run recorded round by round (`_rounds`) ----------------------------------


class Result:
    """An activity's result waiting to be recorded with the workflow task it makes."""

    __slots__ = ("item", "seq", "token", "payload", "done", "_event", "accepted", "error", "local")

    def __init__(self, item: Item, seq: int, token: int, payload: bytes) -> None:
        self.item, self.seq, self.token, self.payload = item, seq, token, payload
        self.done = False  # its round is over (see accepted and error)
        self._event: trio.Event | None = None  # made only if someone waits before that
        self.accepted: bool | None = None
        self.error: Exception | None = None  # the write failed: nothing was recorded
        self.local = False  # its attempt was started by its run's rounds, which end it (_finish_round)

    async def wait(self) -> None:
        """Return once its round is over: at once, with no checkpoint, if it is already (as it
        is when the waiting task ran the rounds itself)."""
        if not self.done:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()


# --- attempts run by hand (`_inline`) ------------------------------------------------------


class Handle:
    """Stands for the cancel scope of an attempt run by hand (`_inline`): until the attempt
    waits for something it has none (its flags on the context are enough: it has not started,
    or runs without a checkpoint); then the scope of the task that runs it."""

    __slots__ = ("scope", "cancel_called")

    def __init__(self) -> None:
        self.scope: trio.CancelScope | None = None
        self.cancel_called = False

    def cancel(self) -> None:
        self.cancel_called = True
        if self.scope is not None:
            self.scope.cancel()


class Pending:
    """An async attempt that waits for something after its first step (see `_inline.Inline._first_step`)."""

    __slots__ = ("coro", "trap", "token", "t0", "span")

    def __init__(self, coro: Any, trap: Any, token: Any) -> None:
        self.coro, self.trap, self.token = coro, trap, token
        self.t0 = 0.0  # when its code started (perf_counter), with metrics on
        self.span: Any = None  # its span, with tracing on


#: An attempt run by hand (`_run_inline`, `_step_here`): its item, context and handle.
Entry = tuple[Item, _activity.ActivityContext, Handle]

#: An attempt running here: its item, its context, and its cancel scope (or the `Handle` that
#: stands for it while it runs by hand).
Running = tuple[Item, _activity.ActivityContext, trio.CancelScope | Handle]
