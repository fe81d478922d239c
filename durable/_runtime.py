"""The deterministic workflow runtime: a small coroutine scheduler with a trio-shaped API.

One `Runtime` drives one workflow instance. Workflow code is plain ``async def`` that awaits only
objects of this module; the scheduler runs it with ``coro.send()``. Its order is our
specification, so replaying a history through the same code yields the same commands:

- input events are applied in history order; tasks run from a FIFO queue; blocked tasks live in
  an insertion-ordered dict; no sets, no clock, no random numbers on the path that emits commands;
- cancellation is delivered to blocked tasks in the order they blocked;
- `wait_condition` predicates are checked, in the order they were registered, whenever the run
  queue is empty.

Scopes follow trio: a nursery does not exit before all its children end, and the first error
cancels the siblings; a `CancelScope` catches the `Cancelled` it caused; a shielded scope keeps
outer cancellation out. Cancelling a scope that waits on an activity records a cancel request
and, by default, keeps waiting until the activity's final event: so no step outlives its scope.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import logging
import os
import random as _random
import uuid as _uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, replace
from types import CoroutineType as _CoroutineType
from types import TracebackType
from typing import Any, TypeVar

from . import _context
from . import _continue
from . import _updates_rt
from . import _events as ev
from ._codec import Converter, error_from_record, error_to_record
from ._convert import IDENTITY, Plan
from ._defs import ActivityOptions, WorkflowDef, check_name, check_seconds
from ._errors import (
    ActivityError,
    DecodeError,
    DurableError,
    NondeterminismError,
    PayloadError,
    QueryFailed,
    TooSlowError,
)

T = TypeVar("T")

_log = logging.getLogger("durable.workflow")


class Cancelled(BaseException):
    """Raised inside workflow code at an await point when an enclosing scope is cancelled.

    Like trio's `Cancelled`, it is a `BaseException`: let it propagate; the scope that caused it
    catches it. Catch it only to clean up, and re-raise.
    """


@dataclass(frozen=True)
class WorkflowInfo:
    """Facts about the running workflow, the same on every replay (but `is_replaying`)."""

    workflow_id: str
    workflow_type: str
    run_id: str
    queue: str
    started_at: _dt.datetime
    #: True while the code runs again through events already recorded (after a restart, or on
    #: a worker without the instance cached): its effects on the world must not repeat, so
    #: `durable.logger` is silent then. Never branch on it in code that emits commands.
    is_replaying: bool = False
    #: events in the run's history up to the ones this activation handles (the same on replay)
    history_length: int = 0
    #: the history's size in bytes up to there (payloads plus 32 per event: `_continue.event_size`)
    history_size: int = 0
    #: whether the history is long or large enough that the run should call
    #: `durable.continue_as_new` (at `SUGGEST_CONTINUE_AS_NEW_EVENTS` events or
    #: `SUGGEST_CONTINUE_AS_NEW_BYTES` bytes; at `MAX_HISTORY_EVENTS` it fails)
    continue_as_new_suggested: bool = False
    #: the run this one continues (`durable.continue_as_new`), or None for a chain's first run
    continued_from_run_id: str | None = None


class _Waiter:
    """What a task waits on. `abort` is called when the task's scope is cancelled while it
    waits: it returns True if the wait is over (the task then gets `Cancelled`), False if the
    task must go on waiting for a final event."""

    __slots__ = ("task", "abort", "abort_called", "ready")

    def __init__(self, abort: Callable[[], bool] | None) -> None:
        self.task: _Task | None = None
        self.abort = abort
        self.abort_called = False
        self.ready: tuple[Any, BaseException | None] | None = None

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self)


class _Task:
    __slots__ = ("coro", "scope", "nursery", "name")

    def __init__(self, coro: Coroutine[Any, Any, Any], scope: CancelScope, nursery: Nursery, name: str) -> None:
        self.coro = coro
        self.scope = scope
        self.nursery = nursery
        self.name = name


class CancelScope:
    """A region of workflow code that can be cancelled as a unit (trio's `CancelScope`).

    ``with durable.CancelScope() as scope: ...``; ``scope.cancel()`` cancels everything inside at
    its next await; ``shield=True`` keeps cancellation of enclosing scopes out, for example so
    that compensation code runs to completion in a cancelled workflow.
    """

    def __init__(self, *, shield: bool = False) -> None:
        self._shield = shield
        self.cancel_called = False
        self.cancelled_caught = False
        self.parent: CancelScope | None = None
        self._rt: Runtime | None = None
        self._task: _Task | None = None
        self._deadline: float | None = None
        self._timer_seq: int | None = None
        self._deadline_fired = False
        #: the nursery whose scope this is (children started by `start_child` join the nursery
        #: of the innermost such scope around the caller)
        self._nursery: Nursery | None = None

    @property
    def shield(self) -> bool:
        """Whether cancellation of enclosing scopes is kept out of this scope."""
        return self._shield

    @shield.setter
    def shield(self, value: bool) -> None:
        _refuse_in_query("CancelScope.shield")
        self._shield = bool(value)
        if self._rt is not None and not value:
            self._rt._deliver_cancellations()

    def cancel(self) -> None:
        """Cancel everything inside this scope (idempotent)."""
        if self.cancel_called:
            return
        _refuse_in_query("CancelScope.cancel")
        self.cancel_called = True
        if self._rt is not None:
            self._rt._cancel_timer(self)
            self._rt._deliver_cancellations()

    def __enter__(self) -> CancelScope:
        rt = _context.current("CancelScope")
        task = rt._require_task("CancelScope")
        if self._task is not None:
            raise DurableError("a CancelScope can be entered only once")
        self._rt, self._task = rt, task
        self.parent = task.scope
        task.scope = self
        if self._deadline is not None and not self.cancel_called:
            rt._start_deadline(self, self._deadline)
        return self

    def __exit__(
        self, etype: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        rt, task = self._rt, self._task
        assert rt is not None and task is not None
        task.scope = self.parent  # type: ignore[assignment]
        rt._cancel_timer(self)
        if isinstance(exc, Cancelled) and self.cancel_called:
            self.cancelled_caught = True
            return True
        return False


def move_on_after(seconds: float, *, shield: bool = False) -> CancelScope:
    """A scope cancelled when a durable timer of `seconds` fires; code after it goes on."""
    scope = CancelScope(shield=shield)
    scope._deadline = check_seconds(seconds, "move_on_after(seconds)", allow_none=False)
    return scope


class _FailAfter:
    def __init__(self, seconds: float, shield: bool) -> None:
        self._scope = move_on_after(seconds, shield=shield)
        self._seconds = seconds

    def __enter__(self) -> CancelScope:
        return self._scope.__enter__()

    def __exit__(self, etype: Any, exc: Any, tb: Any) -> bool:
        handled = self._scope.__exit__(etype, exc, tb)
        if self._scope.cancelled_caught and self._scope._deadline_fired:
            raise TooSlowError(f"fail_after({self._seconds:g}): the durable deadline passed")
        return handled


def fail_after(seconds: float, *, shield: bool = False) -> _FailAfter:
    """Like `move_on_after`, but raise `TooSlowError` if the deadline cancelled the block."""
    check_seconds(seconds, "fail_after(seconds)", allow_none=False)
    return _FailAfter(seconds, shield)


class Nursery:
    """Runs tasks concurrently inside workflow code; made by `open_nursery()`.

    The nursery block does not exit until every child has ended. The first child that raises
    cancels the others; all errors are raised together as an exception group, so ``except*``
    works.
    """

    def __init__(self, rt: Runtime, scope: CancelScope) -> None:
        self._rt = rt
        self.cancel_scope = scope
        self._children: dict[_Task, None] = {}
        self._errors: list[BaseException] = []
        self._parent_waiter: _Waiter | None = None
        self._closed = False

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        """Start ``fn(*args)`` as a child task; it first runs at the scheduler's next turn."""
        if self._closed:
            raise DurableError("this nursery is closed: start tasks inside its 'async with' block")
        _refuse_in_query("Nursery.start_soon")
        coro = fn(*args)
        if type(coro) is not _CoroutineType and not isinstance(coro, Coroutine):  # the first: no ABC check
            raise DurableError(f"start_soon needs an async function, and {fn!r} returned {coro!r}")
        task = _Task(coro, self.cancel_scope, self, name or str(getattr(fn, "__name__", "task")))
        self._children[task] = None
        self._rt._ready.append((task, None, None))

    def _child_done(self, task: _Task, error: BaseException | None) -> None:
        del self._children[task]
        if error is not None:
            self._errors.append(error)
            if not isinstance(error, Cancelled):
                self.cancel_scope.cancel()
        if not self._children and self._parent_waiter is not None:
            waiter, self._parent_waiter = self._parent_waiter, None
            self._rt._wake(waiter, None, None)


class _NurseryManager:
    def __init__(self) -> None:
        self._nursery: Nursery | None = None

    async def __aenter__(self) -> Nursery:
        rt = _context.current("open_nursery")
        rt._checkpoint()
        scope = CancelScope()
        scope.__enter__()
        self._nursery = Nursery(rt, scope)
        scope._nursery = self._nursery
        return self._nursery

    async def __aexit__(self, etype: Any, exc: BaseException | None, tb: Any) -> bool:
        n = self._nursery
        assert n is not None
        if exc is not None:
            n._errors.append(exc)
            if not isinstance(exc, Cancelled):
                n.cancel_scope.cancel()
        while n._children:
            # An outer cancellation reaches the children through their scopes' parents; the
            # nursery's own scope must not be cancelled here, or it would catch (and so hide)
            # that outer cancellation when the block exits.
            waiter = _Waiter(abort=lambda: False)
            n._parent_waiter = waiter
            await waiter
        n._closed = True
        errors = [e for e in n._errors if not isinstance(e, Cancelled)]
        cancels = [e for e in n._errors if isinstance(e, Cancelled)]
        if errors:
            n.cancel_scope.__exit__(None, None, None)
            raise BaseExceptionGroup("errors in a durable nursery", errors)
        if cancels:
            if n.cancel_scope.__exit__(Cancelled, cancels[0], None):
                return True  # the nursery's own scope caught it
            if exc is cancels[0]:
                return False  # re-raise the body's own Cancelled
            raise cancels[0]
        n.cancel_scope.__exit__(None, None, None)
        return False


def open_nursery() -> _NurseryManager:
    """``async with durable.open_nursery() as n: n.start_soon(step, arg)`` in workflow code."""
    return _NurseryManager()


class Event:
    """A one-shot flag that workflow tasks can wait for (trio's `Event`)."""

    def __init__(self) -> None:
        self._set = False
        self._waiters: dict[_Waiter, None] = {}

    def is_set(self) -> bool:
        """Whether `set` has been called."""
        return self._set

    def set(self) -> None:
        """Set the flag and wake every task waiting for it."""
        if self._set:
            return
        rt = _context.current("Event.set")
        _refuse_in_query("Event.set")
        self._set = True
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters:
            rt._wake(waiter, None, None)

    async def wait(self) -> None:
        """Wait until the flag is set."""
        rt = _context.current("Event.wait")
        rt._checkpoint()
        if self._set:
            return

        waiter = _Waiter(abort=lambda: (self._waiters.pop(waiter, None), True)[1])
        self._waiters[waiter] = None
        await waiter


class Runtime:
    """Drives one workflow instance through its history. See the module docstring."""

    def __init__(self, defn: WorkflowDef, workflow_id: str, run_id: str, converter: Converter) -> None:
        self.defn = defn
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.converter = converter
        #: number of history events consumed so far (always at an activation boundary)
        self.processed = 0
        self.done = False
        self.instance: Any = None
        self._info: WorkflowInfo | None = None
        self._seed: Any = 0  # of the workflow's random numbers (WorkflowStarted)
        self._rng: _random.Random | None = None  # made from it when first asked for (seeding costs)
        self._now_ns = 0
        self._seq = 0
        self._commands: list[dict[str, Any]] = []
        self._pending_recorded = 0
        self._ready: deque[tuple[_Task, Any, BaseException | None]] = deque()
        self._blocked: dict[_Task, _Waiter] = {}
        self._activities: dict[int, tuple[_Waiter, str, Plan]] = {}  # seq -> waiter, name, its plan
        self._timers: dict[int, Callable[[], None]] = {}
        self._conditions: dict[_Waiter, Callable[[], bool]] = {}
        self._root_scope = CancelScope()
        self._root_scope._rt = self
        self._root = Nursery(self, self._root_scope)
        self._root_scope._nursery = self._root
        #: seq -> what to do with the input events about that command (child workflows and
        #: requests to other workflows: see _children.py); the callback removes itself
        self._callbacks: dict[int, Callable[[dict[str, Any]], None]] = {}
        self._main: _Task | None = None
        self._main_result: tuple[Any] | None = None
        self._current: _Task | None = None
        self._emitting = True
        self._in_query = False
        #: the activation running is one of the history's: its commands are compared with the
        #: recorded ones (kind, seq and name), never written, so their payloads are not made
        self._replaying = False
        #: the recorded commands of the activation being replayed (None when it runs live):
        #: `patched` looks ahead in them for its marker
        self._recorded: list[dict[str, Any]] | None = None
        #: patch id -> what `patched` answered first in this run (it answers the same ever after)
        self._patches: dict[str, bool] = {}
        #: the history's length and size up to the inputs of the activation running (`info()`)
        self._hist_len = 0
        self._hist_size = 0
        self._pending_size = 0
        #: (update id, error text) of the updates the last live activation's validators refused
        self.update_rejections: list[tuple[str, str]] = []

    # --- the API's entry points ------------------------------------------------------------

    def advance(self, events: list[dict[str, Any]], *, run_live: bool = True,
                updates: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Feed history events that follow `processed`; return the commands of a live activation.

        Activations already recorded are replayed and their commands compared with the history
        (`NondeterminismError` on a difference). A trailing run of input events with no recorded
        commands is the live activation: it runs only if `run_live`, and its commands are
        returned; call `mark_recorded` once they are committed.

        `updates` are pending update requests (durable/_updates.py): the live activation runs
        their validators after applying its inputs; the accepted ones lead its returned
        commands as ``UpdateAccepted`` input events, the refused ones are kept in
        `update_rejections`. With updates but no new inputs, they make an activation of their own.
        """
        i, n = 0, len(events)
        while i < n:
            j = i
            while j < n and events[j]["k"] in ev.INPUT_KINDS:
                j += 1
            k = j
            while k < n and events[k]["k"] in ev.COMMAND_KINDS:
                k += 1
            if i == j:
                if events[i]["k"] in (ev.WORKFLOW_TERMINATED, ev.WORKFLOW_TIMED_OUT):
                    self.processed += n - i
                    self.done = True
                    return []
                raise DecodeError(
                    f"workflow {self.workflow_id!r}, event {self.processed}: {events[i]['k']} "
                    "is not preceded by the input events of an activation"
                )
            inputs, recorded = events[i:j], events[j:k]
            if not recorded and not run_live:
                return []
            before = self._hist_len
            self._hist_len = self.processed + (j - i)
            self._hist_size += _size(inputs)
            if not recorded and before < _continue.SUGGEST_CONTINUE_AS_NEW_EVENTS <= self._hist_len:
                _log.warning("workflow %r (%s): %s", self.workflow_id, self.defn.name,
                             _continue.history_warning(self._hist_len))
            self._replaying = bool(recorded)
            self._recorded = recorded if recorded else None
            try:
                commands = self._activate(inputs, None if recorded else updates)
            finally:
                self._replaying = False
                self._recorded = None
            if not recorded:
                self.processed += j - i
                self._pending_recorded = len(commands)
                self._pending_size = _size(commands)
                return commands
            self._compare(commands, recorded, self.processed + (j - i))
            self._hist_size += _size(recorded)
            self.processed += k - i
            i = k
        if updates and run_live and not self.done:  # no new inputs: the updates alone
            commands = self._activate([], updates)
            self._pending_recorded = len(commands)
            self._pending_size = _size(commands)
            return commands
        return []

    def mark_recorded(self) -> None:
        """The commands last returned by `advance` are now in the history."""
        self.processed += self._pending_recorded
        self._pending_recorded = 0
        self._hist_size += self._pending_size
        self._pending_size = 0

    def query(self, name: str, args: list[Any]) -> Any:
        """Run a query handler against the current state; it must not change anything."""
        method = self.defn.queries.get(name)
        if method is None:
            known = ", ".join(sorted(self.defn.queries)) or "none"
            raise QueryFailed(f"workflow type {self.defn.name!r} has no query {name!r} (queries: {known})")
        if self.instance is None:
            raise QueryFailed(f"workflow {self.workflow_id!r} has not started running yet")
        prev = _context.set_current(self)
        self._in_query = True
        # a query may draw numbers; the workflow must not notice
        rng_state = None if self._rng is None else self._rng.getstate()
        plan = self.defn.handler_plan(method)
        try:
            if plan.args_in:
                args = plan.args_from_plain(args, f"query {name!r}")
            answer = getattr(self.instance, method)(*args)
            return plan.result_to_plain(answer, f"answer to query {name!r}") if plan.ret_out else answer
        except PayloadError as exc:
            raise QueryFailed(str(exc)) from None
        except DurableError:
            raise
        except Exception as exc:
            raise QueryFailed(f"query {name!r} raised {type(exc).__name__}: {exc}") from None
        finally:
            if rng_state is None:
                self._rng = None
            else:
                self._rng.setstate(rng_state)  # type: ignore[union-attr]
            self._in_query = False
            _context.set_current(prev)

    def close(self) -> None:
        """Tear the instance down explicitly (eviction): finish every task without emitting."""
        prev = _context.set_current(self)
        self._emitting = False
        try:
            tasks = list(self._blocked) + [t for t, _, _ in self._ready]
            self._blocked.clear()
            self._ready.clear()
            for task in tasks:
                try:
                    task.coro.close()
                except BaseException:  # noqa: BLE001 - teardown must finish whatever the code does
                    pass
        finally:
            _context.set_current(prev)

    # --- activation ------------------------------------------------------------------------

    def _activate(self, inputs: list[dict[str, Any]],
                  updates: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        prev = _context.set_current(self)
        try:
            self._commands = []
            if inputs:
                last = inputs[-1]  # an accepted update keeps the time the workflow saw it at
                self._now_ns = last["at"] if last["k"] == ev.UPDATE_ACCEPTED else last["t"]
            for event in inputs:
                if not self.done:
                    self._apply(event)
            accepted: list[dict[str, Any]] = []
            if updates and not self.done:
                accepted = _updates_rt.validate(self, updates)
                for event in accepted:
                    self._now_ns = event["at"]  # as a replay sees it (the last input's)
                    self._apply(event)
                if not inputs and not accepted:
                    return []  # all refused: nothing to record
            self._run()
            commands = self._commands
            self._commands = []
            return accepted + (commands or [{"k": ev.TASK_COMPLETED}])
        finally:
            _context.set_current(prev)

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event["k"]
        if kind == ev.WORKFLOW_STARTED:
            self._start(event)
        elif kind == ev.ACTIVITY_COMPLETED:
            entry = self._activities.pop(event["seq"], None)
            if entry is not None:
                value = self.converter.from_payload(event["out"], f"result of activity {entry[1]!r}")
                if entry[2].ret_in:  # by its return annotation; a value that does not fit fails the task
                    value = entry[2].result_from_plain(value, f"result of activity {entry[1]!r}")
                self._wake(entry[0], value, None)
        elif kind == ev.ACTIVITY_FAILED:
            entry = self._activities.pop(event["seq"], None)
            if entry is not None:
                self._wake(entry[0], None, self._activity_error(event, entry[1]))
        elif kind == ev.ACTIVITY_CANCELLED:
            entry = self._activities.pop(event["seq"], None)
            if entry is not None:
                waiter, name = entry[0], entry[1]
                if waiter.task is not None and self._is_cancelled(waiter.task):
                    self._wake(waiter, None, Cancelled())
                else:
                    err = ActivityError(
                        f"activity {name!r} (seq {event['seq']}) was cancelled",
                        activity=name, seq=event["seq"], kind="cancelled", attempts=0,
                    )
                    self._wake(waiter, None, err)
        elif kind == ev.TIMER_FIRED:
            callback = self._timers.pop(event["seq"], None)
            if callback is not None:
                callback()
        elif kind == ev.SIGNAL_RECEIVED:
            self._signal(event["name"], event["in"])
        elif kind == ev.CANCEL_REQUESTED:
            self._root_scope.cancel()
        elif kind in ev.CHILD_INPUT_KINDS:
            on_event = self._callbacks.get(event["seq"])
            if on_event is not None:
                on_event(event)
        elif kind == ev.UPDATE_ACCEPTED:
            _updates_rt.start_handler(self, event)

    def _start(self, event: dict[str, Any]) -> None:
        self._seed, self._rng = event["seed"], None
        started = _dt.datetime.fromtimestamp(event["t"] / 1e9, tz=_dt.timezone.utc)
        prev = event.get("prev")
        self._info = WorkflowInfo(self.workflow_id, self.defn.name, self.run_id, event["queue"], started,
                                  continued_from_run_id=prev if isinstance(prev, str) else None)
        args = self.converter.from_payload(event["in"], "workflow input")
        if not isinstance(args, list):
            raise DecodeError(f"workflow {self.workflow_id!r}: its input is not an argument list")
        plan = self.defn.plan
        if plan.args_in:  # by the parameters' annotations; input that does not fit fails the task
            args = plan.args_from_plain(args, f"input of workflow {self.defn.name!r}")
        fn: Callable[..., Any]
        if self.defn.is_class:
            try:
                # __init__ is workflow code too: it runs here, deterministically, before signals
                self.instance = self.defn.target()
                fn = self.instance.run
            except Exception as exc:
                fn = _raiser(exc)
        else:
            fn = self.defn.target
        task = _Task(_call(fn, args), self._root_scope, self._root, "main")
        self._root._children[task] = None
        self._main = task
        self._ready.append((task, None, None))

    def _signal(self, name: str, payload: bytes) -> None:
        method = self.defn.signals.get(name)
        if method is None or self.instance is None:
            return  # the client refuses unknown signals; an old history may still hold one
        args = self.converter.from_payload(payload, f"signal {name!r}")
        fits = self.defn.signal_params.get(name)
        if fits is not None and not _fits(fits, args):
            # A caller's mistake, recorded before the workers published the handler's signature:
            # dropped (the same way on every replay) rather than failing the workflow.
            if not self._replaying:
                _log.warning(
                    "workflow %r: signal %r dropped: its handler takes %s arguments, it came with %d",
                    self.workflow_id, name, _arity_text(fits), len(args),
                )
            return
        plan = self.defn.handler_plan(method)
        if plan.args_in:
            try:
                args = plan.args_from_plain(args, f"signal {name!r}")
            except PayloadError as exc:
                # A caller's mistake, as a wrong count is: dropped, the same way on every replay
                # (converting the same data to the same types fails the same way each time).
                if not self._replaying:
                    _log.warning("workflow %r: signal %r dropped: %s", self.workflow_id, name, exc)
                return
        handler = getattr(self.instance, method)
        if inspect.iscoroutinefunction(handler):
            task = _Task(_call(handler, args), self._root_scope, self._root, f"signal {name}")
            self._root._children[task] = None
            self._ready.append((task, None, None))
            return
        try:
            handler(*args)
        except Exception as exc:
            if not self._fails_workflow(exc):
                raise  # a bug in the handler fails the workflow task, as in any workflow code
            self._root._errors.append(exc)  # a failure raised on purpose fails the workflow
            self._root_scope.cancel()

    # --- the scheduler ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            while self._ready:
                task, value, error = self._ready.popleft()
                self._step(task, value, error)
            if not self._check_conditions():
                break
        self._maybe_finish()

    def _step(self, task: _Task, value: Any, error: BaseException | None) -> None:
        self._current = task
        try:
            if error is not None:
                yielded = task.coro.throw(error)
            else:
                yielded = task.coro.send(value)
        except StopIteration as stop:
            self._task_done(task, stop.value, None)
        except BaseException as exc:  # noqa: BLE001 - the task's outcome, whatever it is
            exc = _explain_foreign(exc)
            if not self._fails_workflow(exc):
                raise exc  # a bug: the activation fails (see WorkflowDef)
            self._task_done(task, None, exc)
        else:
            if not isinstance(yielded, _Waiter):
                err = DurableError(
                    f"workflow code awaited {yielded!r}, which is not a durable operation: "
                    "use durable.sleep, activities and durable's own primitives, not trio or asyncio"
                )
                self._ready.append((task, None, err))
                return
            if yielded.ready is not None:
                self._ready.append((task, *yielded.ready))
                return
            yielded.task = task
            self._blocked[task] = yielded
            if yielded.abort is not None and self._is_cancelled(task):
                self._abort(task, yielded)
        finally:
            self._current = None

    def _fails_workflow(self, exc: BaseException) -> bool:
        """Whether `exc` leaving workflow code is the workflow's outcome (else a bug in the code:
        the workflow task fails and nothing of this activation is recorded)."""
        if isinstance(exc, BaseExceptionGroup):
            return all(self._fails_workflow(e) for e in exc.exceptions)
        return isinstance(exc, (Cancelled, _continue.ContinueAsNew)) or isinstance(exc, self.defn.failure_types)

    def _task_done(self, task: _Task, value: Any, error: BaseException | None) -> None:
        if task is self._main and error is None:
            self._main_result = (value,)
        task.nursery._child_done(task, error)

    def _wake(self, waiter: _Waiter, value: Any, error: BaseException | None) -> None:
        task = waiter.task
        if task is None:
            waiter.ready = (value, error)
            return
        waiter.task = None
        del self._blocked[task]
        self._ready.append((task, value, error))

    def _is_cancelled(self, task: _Task) -> bool:
        scope: CancelScope | None = task.scope
        while scope is not None:
            if scope.cancel_called:
                return True
            if scope._shield:
                return False
            scope = scope.parent
        return False

    def _abort(self, task: _Task, waiter: _Waiter) -> None:
        if waiter.abort_called or waiter.abort is None:
            return
        waiter.abort_called = True
        if waiter.abort():
            self._wake(waiter, None, Cancelled())

    def _deliver_cancellations(self) -> None:
        for task, waiter in list(self._blocked.items()):
            if waiter.abort is not None and not waiter.abort_called and self._is_cancelled(task):
                self._abort(task, waiter)

    def _check_conditions(self) -> bool:
        progressed = False
        for waiter, predicate in list(self._conditions.items()):
            if waiter not in self._conditions:
                continue
            try:
                ok = predicate()
            except Exception as exc:
                del self._conditions[waiter]
                self._wake(waiter, None, exc)
                progressed = True
                continue
            if ok:
                del self._conditions[waiter]
                self._wake(waiter, None, None)
                progressed = True
        return progressed

    def _maybe_finish(self) -> None:
        if self.done or self._main is None:
            return
        root = self._root
        errors = [e for e in root._errors if not isinstance(e, Cancelled)]
        if self._main_result is not None and not errors:
            out = None if self._replaying else self._result_payload(self._main_result[0])
            self._finish({"k": ev.WORKFLOW_COMPLETED, "out": out})
            return
        # continue-as-new: as soon as it left the main task (as a return would), else once the
        # other tasks it cancelled are over (it left a signal handler's task)
        can = _continue.only_continue(errors) if errors else None
        if can is not None and (self._main not in root._children or not root._children):
            self._finish(can.command)
            return
        if root._children:
            return
        if errors:
            err = errors[0] if len(errors) == 1 else BaseExceptionGroup("workflow failed", errors)
            # a replayed activation's commands are never written (see _activity): not encoded
            rec = error_to_record(err) if self._replaying else self.converter.failure(err)
            self._finish({"k": ev.WORKFLOW_FAILED, "err": rec})
        elif self._main_result is None:
            self._finish({"k": ev.WORKFLOW_CANCELLED})

    def _result_payload(self, value: Any) -> bytes:
        plan = self.defn.plan
        if plan.ret_out:  # by the return annotation
            value = plan.result_to_plain(value, f"result of workflow {self.defn.name!r}")
        return self.converter.to_payload(value, "workflow result")

    def _finish(self, command: dict[str, Any]) -> None:
        self._emit(command)
        self.done = True
        # Handlers still running when main returned are torn down, not left to the GC.
        self._emitting = False
        for task in list(self._blocked) + [t for t, _, _ in self._ready]:
            try:
                task.coro.close()
            except BaseException:  # noqa: BLE001
                pass
        self._blocked.clear()
        self._ready.clear()
        self._emitting = True

    # --- commands --------------------------------------------------------------------------

    def _emit(self, command: dict[str, Any]) -> None:
        if self._in_query:
            raise DurableError("a query handler must not change the workflow (it tried to emit a command)")
        if self._emitting:
            self._commands.append(command)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _require_task(self, what: str) -> _Task:
        task = self._current
        if task is None:
            raise DurableError(f"{what} must be used from a workflow task, not from a signal or query handler")
        return task

    def _checkpoint(self) -> None:
        task = self._current
        if task is not None and self._is_cancelled(task):
            raise Cancelled()

    def _compare(self, produced: list[dict[str, Any]], recorded: list[dict[str, Any]], base: int) -> None:
        i, j = _align(produced, recorded)
        if i == len(recorded) and j == len(produced):
            return
        if [c["k"] for c in produced] == [ev.TASK_COMPLETED] and all(
            c["k"] == ev.MARKER_RECORDED and c["dep"] for c in recorded
        ):
            return  # all it recorded was deprecated markers, which the code no longer makes
        have = recorded[i] if i < len(recorded) else None
        made = produced[j] if j < len(produced) else None
        where = f"workflow {self.workflow_id!r} ({self.defn.name}), event {base + i}"
        if have is None:
            msg = f"{where}: the history has no more commands here but the code now does {ev.describe_command(made)}"  # type: ignore[arg-type]
        elif made is None:
            msg = f"{where}: the history has {ev.describe_command(have)} but the code now does nothing more"
        else:
            msg = (
                f"{where}: the history has {ev.describe_command(have)} "
                f"but the code now does {ev.describe_command(made)}"
            )
        if have is not None and have["k"] == ev.MARKER_RECORDED:
            patch = have["patch"]
            msg += (
                f" (the code no longer calls durable.patched({patch!r}) here: keep it there, or "
                f"durable.deprecate_patch({patch!r}), until every workflow that recorded it has closed)"
            )
        raise NondeterminismError(
            msg + f". Deploy code that matches the history (see `durable history {self.workflow_id}`)."
        )

    def patch(self, patch_id: str, deprecated: bool) -> bool:
        """`durable.patched` (and `deprecate_patch`): whether this run takes the new code path.

        Live, yes, and a marker records it. Replaying, yes only if the history has the marker
        where the code is now: after the commands it made so far in this activation, among the
        markers that come next (a history without it was recorded by the old code). The first
        answer holds for the rest of the run, and only the first call records a marker."""
        use = self._patches.get(patch_id)
        if use is not None:
            return use
        recorded = self._recorded
        use = recorded is None or _marker_ahead(patch_id, self._commands, recorded)
        self._patches[patch_id] = use
        if use:
            self._emit({"k": ev.MARKER_RECORDED, "patch": patch_id, "dep": deprecated})
        return use

    # --- operations called by workflow code -------------------------------------------------

    async def _activity(self, name: str, args: tuple[Any, ...], options: ActivityOptions, plan: Plan) -> Any:
        self._require_task(f"activity {name!r}")
        self._checkpoint()
        payload = None
        if not self._replaying:
            what = f"arguments of activity {name!r}"
            payload = self.converter.to_payload(plan.args_to_plain(args, what) if plan.args_out else list(args), what)
        seq = self._next_seq()
        self._emit({"k": ev.ACTIVITY_SCHEDULED, "seq": seq, "name": name, "in": payload, "opts": options.to_record()})
        mode = options.cancellation

        def abort() -> bool:
            if mode != "abandon":
                self._emit({"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": seq})
            if mode == "wait":
                return False
            self._activities.pop(seq, None)
            return True

        waiter = _Waiter(abort)
        self._activities[seq] = (waiter, name, plan)
        return await waiter

    def schedule_activity(self, name: str, args: tuple[Any, ...], options: ActivityOptions,
                          plan: Plan = IDENTITY) -> Awaitable[Any]:
        """Called by `Activity.__call__` inside workflow code (`plan`: the activity's, `_convert`)."""
        return self._activity(name, args, options, plan)

    def _activity_error(self, event: dict[str, Any], name: str) -> ActivityError:
        why = event["why"]
        cause = error_from_record(self.converter.decode_failure(event["err"], f"failure of activity {name!r}"))
        verb = {"timed_out": "timed out", "failed": "failed"}.get(why, why)
        err = ActivityError(
            f"activity {name!r} (seq {event['seq']}) {verb} after {event['attempt']} attempt(s): {cause}",
            activity=name, seq=event["seq"], kind=why, attempts=event["attempt"],
        )
        err.__cause__ = cause
        return err

    def _start_timer(self, seconds: float, callback: Callable[[], None]) -> int:
        seq = self._next_seq()
        self._emit({"k": ev.TIMER_STARTED, "seq": seq, "dur": int(seconds * 1e9)})
        self._timers[seq] = callback
        return seq

    def _start_deadline(self, scope: CancelScope, seconds: float) -> None:
        def fired() -> None:
            scope._timer_seq = None
            scope._deadline_fired = True
            scope.cancel()

        scope._timer_seq = self._start_timer(seconds, fired)

    def _cancel_timer(self, scope: CancelScope) -> None:
        seq = scope._timer_seq
        if seq is not None:
            scope._timer_seq = None
            if self._timers.pop(seq, None) is not None:
                self._emit({"k": ev.TIMER_CANCELLED, "seq": seq})

    async def sleep(self, seconds: float) -> None:
        self._require_task("durable.sleep")
        self._checkpoint()
        if seconds <= 0:
            waiter = _Waiter(None)
            waiter.ready = (None, None)
            await waiter
            return
        holder: list[_Waiter] = []
        seq = self._start_timer(seconds, lambda: self._wake(holder[0], None, None))

        def abort() -> bool:
            if self._timers.pop(seq, None) is not None:
                self._emit({"k": ev.TIMER_CANCELLED, "seq": seq})
            return True

        holder.append(_Waiter(abort))
        await holder[0]

    async def wait_condition(self, predicate: Callable[[], bool], timeout: float | None) -> None:
        self._require_task("durable.wait_condition")
        self._checkpoint()
        if predicate():
            return
        if timeout is None:
            await self._condition(predicate)
            return
        with move_on_after(timeout) as scope:
            await self._condition(predicate)
        if scope.cancelled_caught and scope._deadline_fired:
            raise TooSlowError(f"wait_condition: the condition did not hold within {timeout:g} s")

    async def _condition(self, predicate: Callable[[], bool]) -> None:
        waiter = _Waiter(abort=lambda: (self._conditions.pop(waiter, None), True)[1])
        self._conditions[waiter] = predicate
        await waiter

    def info(self) -> WorkflowInfo:
        assert self._info is not None
        return replace(self._info, is_replaying=self._replaying, **_continue.info_fields(self))

    @property
    def replaying(self) -> bool:
        """Whether the activation running is one already recorded (see `WorkflowInfo.is_replaying`)."""
        return self._replaying

    def now(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self._now_ns / 1e9, tz=_dt.timezone.utc)

    def random(self) -> _random.Random:
        if self._rng is None:
            self._rng = _random.Random(self._seed)
        return self._rng


def _size(events: list[dict[str, Any]]) -> int:
    """The size of `events` as `WorkflowInfo.history_size` counts it (`_continue.event_size`,
    written out here: it runs on every activation)."""
    return 32 * len(events) + sum([len(e.get("in") or e.get("out") or b"") for e in events])


def _refuse_in_query(what: str) -> None:
    rt = _context.current_or_none()
    if rt is not None and rt._in_query:
        raise DurableError(f"a query handler must not change the workflow (it called {what})")


_FOREIGN_LIBRARIES = ("trio", "asyncio", "anyio", "sniffio")


def _explain_foreign(exc: BaseException) -> BaseException:
    """A `RuntimeError` raised inside trio or asyncio (for example "must be called from async
    context" from ``trio.sleep(1)``) means workflow code called them: say so."""
    if not isinstance(exc, RuntimeError) or exc.__traceback__ is None:
        return exc
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    if module.partition(".")[0] not in _FOREIGN_LIBRARIES:
        return exc
    err = DurableError(
        f"workflow code called {module} ({exc}), which is not a durable operation: "
        "use durable.sleep, activities and durable's own primitives, not trio or asyncio"
    )
    err.__cause__ = exc
    return err


def _same_command(have: dict[str, Any], made: dict[str, Any]) -> bool:
    if have["k"] != made["k"]:
        return False
    if have.get("seq") != made.get("seq"):
        return False
    # a marker's deprecated flag is not compared: patched() and deprecate_patch() accept either
    return (have.get("name") == made.get("name") and have.get("patch") == made.get("patch")
            and have.get("id") == made.get("id")  # a child's or another workflow's id
            and have.get("uid") == made.get("uid"))  # an update's id


def _align(produced: list[dict[str, Any]], recorded: list[dict[str, Any]],
           stop_after_produced: bool = False) -> tuple[int, int]:
    """Walk an activation's commands (`produced`) and the history's (`recorded`) side by side
    while they match; return where each stands when they part (both at their ends: a match).

    A deprecated patch marker in the history that the code does not make here is passed over:
    it was recorded by `deprecate_patch`, whose call may since have been removed (Temporal's
    rule). With `stop_after_produced`, stop as soon as the code's commands are used up."""
    i = j = 0
    n, m = len(recorded), len(produced)
    while True:
        if stop_after_produced and j == m:
            return i, j
        have = recorded[i] if i < n else None
        if have is None:
            return i, j
        if j < m and _same_command(have, produced[j]):
            i += 1
            j += 1
        elif have["k"] == ev.MARKER_RECORDED and have["dep"]:
            i += 1
        else:
            return i, j


def _marker_ahead(patch_id: str, produced: list[dict[str, Any]], recorded: list[dict[str, Any]]) -> bool:
    """Whether the history has the marker of `patch_id` where the code now is: among the run of
    markers that follows the commands the activation made so far. A history with another
    command there, or none, was recorded before the patch existed."""
    i, j = _align(produced, recorded, stop_after_produced=True)
    if j < len(produced):
        return False  # the code already departs from the history: replay will say where
    while i < len(recorded) and recorded[i]["k"] == ev.MARKER_RECORDED:
        if recorded[i]["patch"] == patch_id:
            return True
        i += 1
    return False


# --- the module-level API used by workflow code ----------------------------------------------


async def sleep(seconds: float) -> None:
    """Sleep for `seconds` on a durable timer: survives restarts of every process."""
    check_seconds(seconds, "sleep(seconds)", allow_none=False)
    await _context.current("durable.sleep").sleep(seconds)


async def wait_condition(predicate: Callable[[], bool], *, timeout: float | None = None) -> None:
    """Wait until ``predicate()`` is true; raise `TooSlowError` after `timeout` seconds (durable)."""
    check_seconds(timeout, "wait_condition(timeout)")
    await _context.current("durable.wait_condition").wait_condition(predicate, timeout)


def now() -> _dt.datetime:
    """The workflow's current time (UTC): the time of the events being processed, not the clock."""
    return _context.current("durable.now").now()


def random() -> _random.Random:
    """A random generator seeded from history: the same numbers on every replay."""
    return _context.current("durable.random").random()


def uuid4() -> _uuid.UUID:
    """A random UUID taken from the workflow's deterministic generator."""
    bits = _context.current("durable.uuid4").random().getrandbits(128)
    return _uuid.UUID(int=bits, version=4)


def info() -> WorkflowInfo:
    """Facts about the current workflow: id, type, run id, queue, start time, the run it
    continues, and its history's length and size with whether to continue as new."""
    return _context.current("durable.info").info()


def patched(patch_id: str) -> bool:
    """Whether this workflow takes the new code path of change `patch_id` (Temporal's patching).

    ``if durable.patched("fix-refund"): new code, else: old code``. Running live, it returns True
    and records a marker in the history (the first time this run asks); replaying a history
    recorded before the change (no marker at this point) it returns False, so the old path
    replays as it ran; replaying one with the marker, True. The first answer holds for the rest
    of the run. Once no running workflow took the old path, replace it by `deprecate_patch`.
    """
    rt = _context.current("durable.patched")
    _refuse_in_query("durable.patched")
    return rt.patch(check_name(patch_id, "a patch id"), False)


def deprecate_patch(patch_id: str) -> None:
    """Mark change `patch_id` as the only code path, the old one removed (after `patched`).

    Running live, it records a marker (flagged deprecated); replaying, it accepts a history with
    or without the marker here. Deploy it once every workflow that took the old path has closed;
    once those that ran the `patched` call have closed too, remove the call: a deprecated
    marker the code no longer makes is passed over on replay.
    """
    rt = _context.current("durable.deprecate_patch")
    _refuse_in_query("durable.deprecate_patch")
    rt.patch(check_name(patch_id, "a patch id"), True)


_OWN_DIR = os.path.dirname(os.path.abspath(__file__))


def task_error_text(exc: BaseException) -> str:
    """One line for a workflow task that failed: the error, and where in the user's code it was
    raised (the innermost frame outside durable itself), for `describe` and the worker's log."""
    text = f"{type(exc).__name__}: {exc}"
    where = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_OWN_DIR + os.sep):
            where = f"{os.path.relpath(filename) if not filename.startswith('<') else filename}, line {tb.tb_lineno}, in {tb.tb_frame.f_code.co_name}"
        tb = tb.tb_next
    return f"{text} ({where})" if where else text


def _fits(fits: tuple[int, int | None], args: list[Any]) -> bool:
    return fits[0] <= len(args) and (fits[1] is None or len(args) <= fits[1])


def _arity_text(fits: tuple[int, int | None]) -> str:
    return f"at least {fits[0]}" if fits[1] is None else str(fits[0]) if fits[0] == fits[1] else f"{fits[0]} to {fits[1]}"


async def _call(fn: Callable[..., Awaitable[Any]], args: list[Any]) -> Any:
    return await fn(*args)


def _raiser(exc: Exception) -> Callable[..., Awaitable[Any]]:
    async def raise_it(*args: Any) -> Any:
        raise exc

    return raise_it
