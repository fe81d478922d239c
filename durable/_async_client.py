"""`AsyncClient`: the client for async applications, on asyncio or trio.

It has the methods of `Client` (each awaited) and hands out `AsyncWorkflowHandle`s. Store calls,
which block (a write waits for its commit to reach the disk), run in a worker thread of whichever
loop is running (sniffio tells which: trio's or asyncio's default thread pool), so the loop goes
on serving other requests meanwhile. Waiting never holds a thread: ``await handle.result()``
sleeps in the loop until the store's close watcher says the workflow may have ended, and
``follow_history`` until the data directory's wake-up socket is readable; both can be cancelled
as any await can. The code that reads and decodes is `Client`'s own (`sync`).
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as _dt
import functools
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar, TypeVarTuple, cast, overload

import sniffio
import trio

from . import _ops
from ._backend import Listener
from ._client import (
    DEFAULT_QUEUE,
    Client,
    WorkerDescription,
    WorkflowDescription,
    WorkflowHandle,
    _CloseWatcher,
    _Seconds,
    readable_event,
)
from ._codec import PayloadCodec
from ._update_client import UpdateHandle
from ._defs import WorkflowInstance
from ._schedule_client import ScheduleDescription, ScheduleHandle
from ._errors import DurableError, WaitTimeout
from ._limits import DEFAULT_QUERY_TIMEOUT, POLL_FALLBACK_SECONDS

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def _library() -> str:
    """The async library running here: "asyncio" or "trio"."""
    try:
        name = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise DurableError("durable.AsyncClient is used from async code (asyncio or trio); "
                           "from plain code, use durable.Client") from None
    if name not in ("asyncio", "trio"):
        raise DurableError(f"durable.AsyncClient works on asyncio and trio, not {name}")
    return name


async def _in_thread(fn: Callable[..., T], *args: Any, abandon: bool = False) -> T:
    """``fn(*args)`` in a worker thread of the running loop. Cancelled, asyncio stops waiting at
    once (the call goes on in its thread); trio waits for the call unless `abandon`."""
    call = functools.partial(fn, *args)
    if _library() == "trio":
        return await trio.to_thread.run_sync(call, abandon_on_cancel=abandon)
    return await asyncio.to_thread(call)


class _LoopEvent(threading.Event):
    """An event the close watcher sets from its thread that also wakes a task waiting for it in
    the loop that made it (`wait_async`)."""

    def __init__(self) -> None:
        super().__init__()
        self._trio = _library() == "trio"
        if self._trio:
            self._token = trio.lowlevel.current_trio_token()
            self._trio_event = trio.Event()
        else:
            self._loop = asyncio.get_running_loop()
            self._asyncio_event = asyncio.Event()

    def set(self) -> None:
        super().set()
        try:
            if self._trio:
                self._token.run_sync_soon(self._wake)
            else:
                self._loop.call_soon_threadsafe(self._wake)
        except (trio.RunFinishedError, RuntimeError):  # the loop has ended: nobody waits
            pass

    def _wake(self) -> None:
        (self._trio_event if self._trio else self._asyncio_event).set()

    def clear(self) -> None:
        """Clear (in the loop's thread): a `set` after this wakes the next `wait_async`."""
        super().clear()
        if self._trio:
            self._trio_event = trio.Event()
        else:
            self._asyncio_event.clear()

    async def wait_async(self, timeout: float) -> None:
        """Wait until set, or `timeout` seconds."""
        if self._trio:
            with trio.move_on_after(timeout):
                await self._trio_event.wait()
            return
        try:
            await asyncio.wait_for(self._asyncio_event.wait(), timeout)
        except TimeoutError:
            pass


async def _readable(listener: Listener, timeout: float) -> None:
    """Wait until `listener` has a wake-up, or `timeout` seconds; consume its wake-ups."""
    if _library() == "trio":
        with trio.move_on_after(timeout):
            await trio.lowlevel.wait_readable(listener.sock)
    else:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(listener.sock.fileno(), wake)
        try:
            await asyncio.wait_for(ready, timeout)
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(listener.sock.fileno())
    listener.drain()


def _remaining(deadline: float | None) -> float:
    if deadline is None:
        return POLL_FALLBACK_SECONDS
    return max(0.0, min(deadline - time.monotonic(), POLL_FALLBACK_SECONDS))


class AsyncClient:
    """`Client` for async code, on asyncio or trio: the same methods, awaited, and handles
    (`AsyncWorkflowHandle`) whose ``await result()`` waits without blocking the loop.

    Make one when the application starts (opening the store is quick and done here, in the
    caller's thread) and share it. `sync` is the `Client` it wraps, for plain code.
    """

    def __init__(self, data: str | os.PathLike[str] | None = None, *, codec: PayloadCodec | None = None,
                 create: bool = True) -> None:
        #: the `Client` this one runs its calls with
        self.sync = Client(data, codec=codec, create=create)

    def __repr__(self) -> str:
        return f"<durable.AsyncClient {self.data_dir!r}>"

    @property
    def data_dir(self) -> str:
        """The store's directory."""
        return self.sync.data_dir

    @overload
    async def start(self, workflow: str, *args: Any, id: str | None = None, queue: str = DEFAULT_QUEUE,
                    id_reuse_policy: str = "allow_duplicate", id_conflict_policy: str = "fail",
                    start_delay: float | _dt.timedelta | None = None, execution_timeout: _Seconds = None,
                    run_timeout: _Seconds = None, timeout_grace: _Seconds = None) -> AsyncWorkflowHandle[Any]: ...
    @overload
    async def start(self, workflow: Callable[[*Ts], Awaitable[R]], *args: *Ts, id: str | None = None,
                    queue: str = DEFAULT_QUEUE, id_reuse_policy: str = "allow_duplicate",
                    id_conflict_policy: str = "fail",
                    start_delay: float | _dt.timedelta | None = None, execution_timeout: _Seconds = None,
                    run_timeout: _Seconds = None, timeout_grace: _Seconds = None) -> AsyncWorkflowHandle[R]: ...
    @overload
    async def start(self, workflow: Callable[[], WorkflowInstance[*Ts, R]], *args: *Ts, id: str | None = None,
                    queue: str = DEFAULT_QUEUE, id_reuse_policy: str = "allow_duplicate",
                    id_conflict_policy: str = "fail",
                    start_delay: float | _dt.timedelta | None = None, execution_timeout: _Seconds = None,
                    run_timeout: _Seconds = None, timeout_grace: _Seconds = None) -> AsyncWorkflowHandle[R]: ...

    async def start(self, workflow: Any, *args: object, id: str | None = None, queue: str = DEFAULT_QUEUE,
                    id_reuse_policy: str = "allow_duplicate", id_conflict_policy: str = "fail",
                    start_delay: float | _dt.timedelta | None = None, execution_timeout: _Seconds = None,
                    run_timeout: _Seconds = None, timeout_grace: _Seconds = None) -> AsyncWorkflowHandle[Any]:
        """`Client.start`, awaited: start `workflow` with `args`; return the run's handle."""
        start = functools.partial(self.sync.start, workflow, *args, id=id, queue=queue,
                                  id_reuse_policy=id_reuse_policy, id_conflict_policy=id_conflict_policy,
                                  start_delay=start_delay, execution_timeout=execution_timeout,
                                  run_timeout=run_timeout, timeout_grace=timeout_grace)
        return AsyncWorkflowHandle(await _in_thread(start))

    @overload
    def get_handle(self, workflow_id: str, run_id: str | None = None, *,
                   workflow: None = None) -> AsyncWorkflowHandle[Any]: ...
    @overload
    def get_handle(self, workflow_id: str, run_id: str | None = None, *,
                   workflow: Callable[..., Awaitable[R]]) -> AsyncWorkflowHandle[R]: ...
    @overload
    def get_handle(self, workflow_id: str, run_id: str | None = None, *,
                   workflow: Callable[[], WorkflowInstance[*Ts, R]]) -> AsyncWorkflowHandle[R]: ...

    def get_handle(self, workflow_id: str, run_id: str | None = None, *,
                   workflow: Any = None) -> AsyncWorkflowHandle[Any]:
        """`Client.get_handle`: a handle to an existing workflow (checked when used); given its
        `workflow`, values convert by its hints (`result` builds its return annotation's type)."""
        return AsyncWorkflowHandle(self.sync.get_handle(workflow_id, run_id, workflow=workflow))

    async def list(self, *, status: str | None = None, workflow: str | None = None, limit: int = 1000,
                   since: _dt.datetime | None = None, until: _dt.datetime | None = None,
                   all_runs: bool = False, schedule: str | None = None) -> list[WorkflowDescription]:
        """`Client.list`, awaited: workflows, newest first."""
        return await _in_thread(functools.partial(self.sync.list, status=status, workflow=workflow, limit=limit,
                                                  since=since, until=until, all_runs=all_runs, schedule=schedule))

    async def count(self, *, status: str | None = None, workflow: str | None = None,
                    since: _dt.datetime | None = None, until: _dt.datetime | None = None,
                    all_runs: bool = False) -> int:
        """`Client.count`, awaited: how many workflows `list` would give without a limit."""
        return await _in_thread(functools.partial(self.sync.count, status=status, workflow=workflow,
                                                  since=since, until=until, all_runs=all_runs))

    # Typed as `start` is: the arguments must fit the workflow's parameters.
    @overload
    async def create_schedule(self, schedule_id: str, workflow: str, *args: Any, cron: str | None = None,
                              every: float | _dt.timedelta | None = None, queue: str = DEFAULT_QUEUE,
                              jitter: float | _dt.timedelta | None = None, overlap: str = "skip",
                              catchup_window: float | _dt.timedelta = _dt.timedelta(days=365),
                              pause_on_failure: bool = False, paused: bool = False,
                              note: str = "") -> AsyncScheduleHandle: ...
    @overload
    async def create_schedule(self, schedule_id: str, workflow: Callable[[*Ts], Awaitable[Any]], *args: *Ts,
                              cron: str | None = None,
                              every: float | _dt.timedelta | None = None, queue: str = DEFAULT_QUEUE,
                              jitter: float | _dt.timedelta | None = None, overlap: str = "skip",
                              catchup_window: float | _dt.timedelta = _dt.timedelta(days=365),
                              pause_on_failure: bool = False, paused: bool = False,
                              note: str = "") -> AsyncScheduleHandle: ...
    @overload
    async def create_schedule(self, schedule_id: str, workflow: Callable[[], WorkflowInstance[*Ts, Any]],
                              *args: *Ts, cron: str | None = None,
                              every: float | _dt.timedelta | None = None, queue: str = DEFAULT_QUEUE,
                              jitter: float | _dt.timedelta | None = None, overlap: str = "skip",
                              catchup_window: float | _dt.timedelta = _dt.timedelta(days=365),
                              pause_on_failure: bool = False, paused: bool = False,
                              note: str = "") -> AsyncScheduleHandle: ...

    async def create_schedule(self, schedule_id: str, workflow: Any, *args: object, cron: str | None = None,
                              every: float | _dt.timedelta | None = None, queue: str = DEFAULT_QUEUE,
                              jitter: float | _dt.timedelta | None = None, overlap: str = "skip",
                              catchup_window: float | _dt.timedelta = _dt.timedelta(days=365),
                              pause_on_failure: bool = False, paused: bool = False,
                              note: str = "") -> AsyncScheduleHandle:
        """`Client.create_schedule`, awaited: create a schedule; return its handle."""
        create = functools.partial(self.sync.create_schedule, schedule_id, workflow, *args, cron=cron, every=every,
                                   queue=queue, jitter=jitter, overlap=overlap, catchup_window=catchup_window,
                                   pause_on_failure=pause_on_failure, paused=paused, note=note)
        return AsyncScheduleHandle(await _in_thread(create))

    def get_schedule_handle(self, schedule_id: str) -> AsyncScheduleHandle:
        """`Client.get_schedule_handle`: a handle to a schedule (checked when used)."""
        return AsyncScheduleHandle(self.sync.get_schedule_handle(schedule_id))

    async def list_schedules(self) -> builtins.list[ScheduleDescription]:
        """`Client.list_schedules`, awaited: every schedule, by id."""
        return await _in_thread(self.sync.list_schedules)

    async def workers(self, *, queue: str | None = None,
                      include_gone: bool = False) -> builtins.list[WorkerDescription]:
        """`Client.workers`, awaited: the workers that serve a queue now."""
        return await _in_thread(functools.partial(self.sync.workers, queue=queue, include_gone=include_gone))


class AsyncScheduleHandle:
    """`ScheduleHandle` for async code: the same methods, awaited. `sync` is the handle it wraps."""

    def __init__(self, handle: ScheduleHandle) -> None:
        #: the `ScheduleHandle` whose methods these await
        self.sync = handle

    def __repr__(self) -> str:
        return f"AsyncScheduleHandle({self.sync.id!r})"

    @property
    def id(self) -> str:
        """The schedule's id."""
        return self.sync.id

    async def describe(self) -> ScheduleDescription:
        """`ScheduleHandle.describe`, awaited."""
        return await _in_thread(self.sync.describe)

    async def pause(self, note: str = "") -> None:
        """`ScheduleHandle.pause`, awaited."""
        await _in_thread(self.sync.pause, note)

    async def unpause(self, note: str = "") -> None:
        """`ScheduleHandle.unpause`, awaited."""
        await _in_thread(self.sync.unpause, note)

    async def trigger(self) -> None:
        """`ScheduleHandle.trigger`, awaited."""
        await _in_thread(self.sync.trigger)

    async def backfill(self, start: _dt.datetime, end: _dt.datetime, *, overlap: str = "allow_all") -> int:
        """`ScheduleHandle.backfill`, awaited."""
        return await _in_thread(functools.partial(self.sync.backfill, start, end, overlap=overlap))

    async def delete(self) -> None:
        """`ScheduleHandle.delete`, awaited."""
        await _in_thread(self.sync.delete)

    async def list_workflows(self, limit: int = 1000) -> list[WorkflowDescription]:
        """`ScheduleHandle.list_workflows`, awaited."""
        return await _in_thread(self.sync.list_workflows, limit)


class AsyncWorkflowHandle(Generic[R_co]):
    """`WorkflowHandle` for async code: the same methods, awaited (`follow_history` is an async
    iterator). `R_co` is the workflow's result type, as ``await result()`` gives it."""

    def __init__(self, handle: WorkflowHandle[R_co]) -> None:
        #: the `WorkflowHandle` this one runs its calls with
        self.sync = handle

    def __repr__(self) -> str:
        return "<Async" + repr(self.sync)[1:]

    @property
    def id(self) -> str:
        """The workflow's id."""
        return self.sync.id

    @property
    def run_id(self) -> str | None:
        """The run this handle is bound to (None: whichever run of the id is the latest)."""
        return self.sync.run_id

    @property
    def warning(self) -> str | None:
        """Set by `AsyncClient.start` when no worker served the workflow's queue at the time."""
        return self.sync.warning

    async def describe(self) -> WorkflowDescription:
        """`WorkflowHandle.describe`, awaited."""
        return await _in_thread(self.sync.describe)

    async def result(self, timeout: float | None = None) -> R_co:
        """Wait for the run to end, without blocking the loop; return its result or raise
        `WorkflowFailed` (`WaitTimeout` after `timeout` seconds). Cancel it as any await."""
        h = self.sync
        deadline = None if timeout is None else time.monotonic() + timeout
        ended = _LoopEvent()
        with _CloseWatcher.of(h._store).watch(h.id, ended):
            while True:
                ended.clear()
                rec, last = await _in_thread(h._store.read, h._closing_event, abandon=True)
                if last is not None:
                    return cast(R_co, h._outcome(rec, last))
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"workflow {h.id!r} is still {rec['status']} after {timeout:g} s")
                await ended.wait_async(_remaining(deadline))

    async def signal(self, name: str, *args: Any) -> None:
        """`WorkflowHandle.signal`, awaited: send signal `name` with `args`."""
        await _in_thread(self.sync.signal, name, *args)

    async def query(self, name: str, *args: Any, timeout: float = DEFAULT_QUERY_TIMEOUT) -> Any:
        """`WorkflowHandle.query`, awaited (in a thread, at most `timeout` seconds; cancelled,
        the caller stops waiting at once)."""
        return await _in_thread(functools.partial(self.sync.query, name, *args, timeout=timeout), abandon=True)

    async def update(self, name: str, *args: Any, update_id: str | None = None, timeout: float | None = None) -> Any:
        """`WorkflowHandle.update`, awaited (in a thread; cancelled, the caller stops waiting
        at once, and the update goes on)."""
        return await _in_thread(functools.partial(self.sync.update, name, *args, update_id=update_id,
                                                  timeout=timeout), abandon=True)

    async def start_update(self, name: str, *args: Any, update_id: str | None = None,
                           timeout: float | None = None) -> AsyncUpdateHandle:
        """`WorkflowHandle.start_update`, awaited: send the update, wait until it is accepted;
        `await handle.result()` waits for its outcome."""
        sync = await _in_thread(functools.partial(self.sync.start_update, name, *args, update_id=update_id,
                                                  timeout=timeout), abandon=True)
        return AsyncUpdateHandle(sync)

    async def cancel(self, reason: str = "") -> None:
        """`WorkflowHandle.cancel`, awaited: ask the workflow to cancel."""
        await _in_thread(self.sync.cancel, reason)

    async def terminate(self, reason: str = "") -> None:
        """`WorkflowHandle.terminate`, awaited: end the workflow at once."""
        await _in_thread(self.sync.terminate, reason)

    async def reset(self, to_event: int, *, reason: str = "", reapply_signals: bool = True) -> AsyncWorkflowHandle[R_co]:
        """`WorkflowHandle.reset`, awaited: a new run from events 0..`to_event` of this one; a
        handle on it."""
        new = await _in_thread(lambda: self.sync.reset(to_event, reason=reason, reapply_signals=reapply_signals))
        return AsyncWorkflowHandle(new)

    async def history(self, start: int = 0) -> list[dict[str, Any]]:
        """`WorkflowHandle.history`, awaited: the run's events from `start` on."""
        return await _in_thread(self.sync.history, start)

    async def follow_history(self, start: int = 0, timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """`WorkflowHandle.follow_history` as an async iterator: the run's events from `start`
        on, each as soon as it is recorded, until the run has closed (or `timeout` seconds
        pass: `WaitTimeout`). Waits in the loop, on the store's wake-ups."""
        h = self.sync
        if not isinstance(start, int) or start < 0:
            h.history(start)  # raises its error for a bad start
        deadline = None if timeout is None else time.monotonic() + timeout
        listener = h._store.listener()
        try:
            while True:
                first = start
                rec, events = await _in_thread(h._store.read, lambda t: h._history(t, first))
                for i, event in enumerate(events):
                    yield readable_event(first + i, event, h._converter)
                start += len(events)
                if rec["status"] != _ops.RUNNING and start >= rec["hlen"]:
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"workflow {h.id!r} is still {rec['status']} after {timeout:g} s")
                await _readable(listener, _remaining(deadline))
        finally:
            listener.close()

    async def export_history(self) -> bytes:
        """`WorkflowHandle.export_history`, awaited: the raw history as CBOR bytes."""
        return await _in_thread(self.sync.export_history)


class AsyncUpdateHandle:
    """`UpdateHandle` for async code: an accepted update whose outcome `await result()` waits for."""

    def __init__(self, sync: UpdateHandle) -> None:
        self.sync = sync

    def __repr__(self) -> str:
        return repr(self.sync).replace("<UpdateHandle", "<AsyncUpdateHandle", 1)

    @property
    def id(self) -> str:
        """The update's id."""
        return self.sync.id

    @property
    def name(self) -> str:
        """The update's name."""
        return self.sync.name

    @property
    def workflow_id(self) -> str:
        """The id of the workflow it was sent to."""
        return self.sync.workflow_id

    async def result(self, timeout: float | None = None) -> Any:
        """`UpdateHandle.result`, awaited (in a thread; cancelled, the caller stops waiting)."""
        return await _in_thread(functools.partial(self.sync.result, timeout=timeout), abandon=True)
