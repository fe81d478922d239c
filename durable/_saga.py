"""Sagas: undo the steps already done when a block of workflow code fails or is cancelled.

``async with durable.saga() as saga:`` opens a block; ``saga.add_compensation(fn, *args)``
registers how to undo a step once it has been done. If the block exits with an error, or is
cancelled (a deadline, a sibling's failure, ``handle.cancel()``), the compensations run newest
first, one at a time, inside a shielded scope, so that the cancellation that stopped the block
cannot stop them half-way. Then the original error (or the cancellation) goes on.

The ordering promise (F05) comes from the scopes around it, not from bookkeeping here: the block
cannot exit before every activity it started, directly or in a nursery, has a final event in
history (activities cancelled in the default "wait" mode keep their scope open until they
confirm); compensations run only after the block exited. A compensation is an ordinary durable
activity (or workflow code that calls some), with its own retry policy: nothing here holds a
lock or a pool slot while it waits (F02).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Literal

from . import _context
from ._defs import Activity, check_seconds
from ._errors import CompensationFailed, DurableError, InvalidArgument, TooSlowError
from ._runtime import CancelScope, Cancelled, Runtime, _refuse_in_query, move_on_after

_NEW, _OPEN, _COMPENSATING, _CLOSED = "new", "open", "compensating", "closed"


class Saga:
    """A block of workflow code whose completed steps are undone if it fails; made by `saga()`.

    Inside the block, call `add_compensation` right after a step succeeds (or just before a step
    that may leave partial effects, with a compensation that tolerates "nothing to undo").

    When the block exits normally the compensations are dropped. When it exits with an error or
    a cancellation, every compensation runs, newest first, each awaited to its end before the
    next starts, inside ``CancelScope(shield=True)`` (with a durable deadline if the saga has a
    `compensation_timeout`). A compensation that fails does not stop the others. Then:

    - if every compensation completed, the original error (or `Cancelled`) is re-raised as is;
    - otherwise an `ExceptionGroup` is raised holding the original error followed by one
      `CompensationFailed` per compensation that did not complete (its cause is the
      compensation's error, or a `TooSlowError` if the deadline passed first). A cancellation
      is not put in the group: like a nursery, a real error wins over `Cancelled`, so a
      cancelled workflow whose compensation fails ends as *failed*, with every error reported.

    A step awaited with ``cancellation="try"`` or ``"abandon"`` (see `Activity.with_options`)
    opts out of the wait for its final event, so its compensation may run while it still runs:
    keep the default "wait" for steps that have compensations.

    `compensated` tells afterwards whether the compensations ran.
    """

    def __init__(self, *, compensation_timeout: float | None = None) -> None:
        self._timeout = check_seconds(compensation_timeout, "saga(compensation_timeout)")
        self._compensations: list[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...], str]] = []
        self._rt: Runtime | None = None
        self._state = _NEW
        self.compensated = False

    def __repr__(self) -> str:
        return f"<durable.Saga {self._state}, {len(self._compensations)} compensation(s)>"

    def add_compensation(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Register ``fn(*args)`` to run if the saga block fails or is cancelled.

        `fn` is an activity (scheduled durably, with its own retry policy and timeouts) or an
        ``async def`` function of workflow code. Arguments of an activity are checked here, so
        that a value that cannot be stored fails at this line, not during compensation.
        """
        _refuse_in_query("Saga.add_compensation")
        if self._state != _OPEN:
            raise DurableError({
                _NEW: "add compensations inside 'async with durable.saga() as saga:'",
                _COMPENSATING: "a compensation cannot add compensations: the saga is already compensating",
                _CLOSED: "this saga has ended: add compensations inside its 'async with' block",
            }[self._state])
        if isinstance(fn, Activity):
            name = fn.name
            assert self._rt is not None
            what = f"arguments of compensation {name!r}"
            self._rt.converter.to_payload(fn.plan.args_to_plain(args, what), what)
        elif inspect.iscoroutinefunction(fn):
            name = getattr(fn, "__qualname__", None) or repr(fn)
        else:
            raise InvalidArgument(
                f"add_compensation needs an activity or an async function, not {fn!r}: work with "
                "side effects must be an activity (@durable.activity) to be done durably"
            )
        self._compensations.append((fn, args, name))

    async def __aenter__(self) -> Saga:
        rt = _context.current("durable.saga")
        rt._require_task("durable.saga")
        if self._state != _NEW:
            raise DurableError("a saga can be entered only once")
        self._rt, self._state = rt, _OPEN
        return self

    async def __aexit__(
        self, etype: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:  # never swallows an exception (type checkers then see code after it end)
        if exc is None or not _compensates_for(exc):
            # GeneratorExit (the instance is being evicted) and the like: no workflow code may
            # run any more, so nothing is compensated; the next replay will do it.
            self._state = _CLOSED
            return False
        if not self._compensations:  # nothing to undo: no deadline timer in history either
            self._state = _CLOSED
            return False
        self._state = _COMPENSATING
        try:
            failures = await self._compensate()
        finally:
            self._state = _CLOSED
        if not failures:
            return False
        names = ", ".join(f.compensation for f in failures)
        total = len(self._compensations)
        what = "saga cancelled" if isinstance(exc, Cancelled) else f"saga failed ({_describe(exc)})"
        errors: list[BaseException] = [] if isinstance(exc, Cancelled) else [exc]
        raise BaseExceptionGroup(
            f"{what}; {len(failures)} of {total} compensation(s) did not complete: {names}",
            [*errors, *failures],
        ) from None

    async def _compensate(self) -> list[CompensationFailed]:
        todo = list(reversed(self._compensations))
        failures: list[CompensationFailed] = []
        finished = 0
        scope = CancelScope(shield=True) if self._timeout is None else move_on_after(self._timeout, shield=True)
        with scope:
            for fn, args, name in todo:
                try:
                    await fn(*args)
                except Exception as exc:  # noqa: BLE001 - reported in the group, after the others ran
                    failure = CompensationFailed(f"compensation {name} failed: {_describe(exc)}", compensation=name)
                    failure.__cause__ = exc
                    failures.append(failure)
                finished += 1
        if scope.cancelled_caught:  # the compensation deadline passed
            for _, _, name in todo[finished:]:
                failure = CompensationFailed(
                    f"compensation {name} did not complete within the saga's compensation_timeout "
                    f"of {self._timeout:g} s", compensation=name,
                )
                failure.__cause__ = TooSlowError(
                    f"saga(compensation_timeout={self._timeout:g}): the durable deadline passed"
                )
                failures.append(failure)
        self.compensated = True
        return failures


def saga(*, compensation_timeout: float | None = None) -> Saga:
    """``async with durable.saga() as saga:`` in workflow code: undo completed steps on failure.

    Register compensations with ``saga.add_compensation(activity_or_async_fn, *args)``. If the
    block raises or is cancelled, they run newest first, shielded from the cancellation, then
    the error goes on; failed compensations are reported in an `ExceptionGroup` with the original
    error (see `Saga`). `compensation_timeout` (seconds, on a durable timer) bounds the time all
    the compensations together may take.
    """
    return Saga(compensation_timeout=compensation_timeout)


def _compensates_for(exc: BaseException) -> bool:
    """Errors and cancellations are compensated; GeneratorExit, KeyboardInterrupt... are not."""
    if isinstance(exc, (Exception, Cancelled)):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.split((Exception, Cancelled))[1] is None
    return False


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
