"""What activity code can ask of the worker running it: `heartbeat` and `activity_info`.

The context is bound to the trio task (or the worker thread) that runs one activity attempt,
through a context variable, so concurrent activities never see each other's (F04).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ._errors import DurableError


class ActivityCancelled(BaseException):
    """Raised by `heartbeat()` when the activity's workflow asked to cancel it, or its lease was
    lost. Let it propagate (clean up in ``finally``); the worker reports the cancellation."""


@dataclass(frozen=True)
class ActivityInfo:
    """Facts about the running activity attempt."""

    activity: str
    workflow_id: str
    workflow_type: str
    seq: int
    attempt: int
    #: the same on every attempt of this activity: use it to make external effects idempotent
    idempotency_key: str
    #: details the previous attempt passed to `heartbeat`, or None
    heartbeat_details: Any
    queue: str
    started_at: _dt.datetime


class ActivityContext:
    """The worker's side of one running attempt (not part of the public API).

    Its `info` is made when first asked for (most activities never ask): `make_info` builds it.
    """

    __slots__ = ("_info", "_make_info", "details", "details_dirty", "cancel_requested", "lost")

    def __init__(self, make_info: Callable[[], ActivityInfo]) -> None:
        self._info: ActivityInfo | None = None
        self._make_info = make_info
        self.details: Any = None
        self.details_dirty = False
        self.cancel_requested = False
        self.lost = False

    @property
    def info(self) -> ActivityInfo:
        """Facts about this attempt."""
        if self._info is None:
            self._info = self._make_info()
        return self._info

    def run_sync(self, fn: Any, args: list[Any]) -> Any:
        """Run a sync activity in this (worker) thread with the context bound."""
        token = _current.set(self)
        try:
            return fn(*args)
        finally:
            _current.reset(token)


_current: ContextVar[ActivityContext | None] = ContextVar("durable_activity", default=None)


def _ctx(what: str) -> ActivityContext:
    ctx = _current.get()
    if ctx is None:
        raise DurableError(f"{what} can only be called inside an activity")
    return ctx


def heartbeat(details: Any = None) -> None:
    """Report that the activity is alive, with optional progress `details`.

    The next attempt (after a failure) can read the last details in
    `activity_info().heartbeat_details`. Raises `ActivityCancelled` if the workflow asked to cancel
    this activity or the worker lost its lease: that is how a synchronous activity learns of it.
    """
    ctx = _ctx("durable.heartbeat")
    if details is not None:
        ctx.details = details
    ctx.details_dirty = True  # a beat without details still counts for the heartbeat timeout
    if ctx.cancel_requested or ctx.lost:
        raise ActivityCancelled(
            f"activity {ctx.info.activity!r} of workflow {ctx.info.workflow_id!r} was "
            + ("cancelled" if ctx.cancel_requested else "taken away from this worker (lease lost)")
        )


def activity_info() -> ActivityInfo:
    """Facts about the running activity attempt: ids, attempt number, idempotency key."""
    return _ctx("durable.activity_info").info


def set_current(ctx: ActivityContext | None) -> Any:
    """Bind `ctx` to the current task (worker use)."""
    return _current.set(ctx)
