"""What the worker's rooms share: its state, declared in one place, and what each room offers
the others.

`durable.worker.Worker` (`_lifecycle`) is one object made of rooms, each a mixin class over
`WorkerBase` in a module of its own:

- `_lifecycle`: the `Worker` class: construction, run / run_sync / shutdown, signals, presence,
  draining at shutdown;
- this module: the shared state, wake-ups, and the hand-offs every room uses to the writer
  (group commit: `_write`) and engine (workflow code: `_in_engine`) threads of `_threads`;
- `_polling`: claiming tasks and starting them;
- `_workflow_tasks`: workflow tasks, the cache of live instances, queries;
- `_activities`: activity attempts, their reports, heartbeats, cancellation;
- `_clock`: timers and expired leases;
- the fast paths (`_fast` lists them and holds their switch): `_inline` (attempts run by hand),
  `_rounds` (results recorded with the task they make), `_ahead` (a new task's activities run
  before it is recorded).

Rooms import this module and the leaves (`_records`, `_fast`, `_threads`), never each other: what
one room calls in another is declared at the end of `WorkerBase` (for the type checker; the room
named defines it), so each room's dependencies can be read here. Only `_lifecycle` imports the
rooms, to compose them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from durable._codec import Converter
from durable._defs import Activity, ActivityLoop, Registry
from durable._limits import POLL_FALLBACK_SECONDS
from durable._runtime import Runtime
from durable._backend import Backend
from durable._store import Txn
from durable._backend import Listener

from ._asyncio import AsyncioLoop
from ._fast import FastPaths
from ._observe import observing, tell
from ._records import Ahead, Entry, Forward, Item, Pending, Report, Result, Running
from ._threads import BatchThread, run_jobs

if TYPE_CHECKING:
    from durable import _activity, _ops

    from ._metrics import Recorder

log = logging.getLogger("durable.worker")

_NS = 1_000_000_000

# A poll that finds at most this many workflow tasks waiting, each over at most this many events,
# runs them before claiming them (see _poll); more are claimed in batches first.
UNCLAIMED_MAX_TASKS = 8
UNCLAIMED_MAX_EVENTS = 64
UNCLAIMED_LOST = "unclaimed-lost"  # what recording a run-before-claimed task gives if it could not claim it


class WorkerBase:
    """The state of a worker, shared by its rooms (set by `Worker.__init__` and `Worker.run`)."""

    # --- configuration: set once, read by every room ----------------------------------------
    registry: Registry
    store: Backend
    converter: Converter  # this worker's own: the store is shared by everything in the process that opens it
    queue: str
    identity: str
    max_activities: int
    max_cached: int
    lease_ns: int
    graceful_timeout: float
    fast: FastPaths  # which fast paths are on (see `_fast`)
    activity_loop: ActivityLoop  # where async activities not declared with a `loop` run
    stats: dict[str, int]  # counters, for tests and benchmarks
    metrics: Recorder | None  # what counts this worker's metrics while it runs (`_metrics`), or None: off
    tracer: Any  # the OpenTelemetry spans of workflow tasks and attempts (`durable._tracing`), or None: off

    # --- what runs here ----------------------------------------------------------------------
    _cache: OrderedDict[int, Runtime]  # live workflow instances by run number, least recently used first
    _running_acts: dict[tuple[int, int], Running]  # attempts by (run, seq)
    _running_wfts: dict[int, int | None]  # workflow tasks by run: their token (None: run before it is claimed)
    _continuing: dict[int, list[Result]]  # results waiting to continue their run (`_rounds`)
    _work: trio.Nursery | None  # where claimed tasks run
    _stopping: bool  # shutting down: claim nothing more (read by the writer and engine threads too)

    # --- wake-ups ----------------------------------------------------------------------------
    _changed: trio.Event  # set (and replaced) on every change worth a look at the store
    _change_count: int
    _acts_changed: trio.Event  # the attempts some worker runs changed (cancel requests...)
    _heartbeat_wakeup: trio.Event  # an attempt with a short heartbeat timeout started
    _room_wanted: bool  # the poller waits for an activity slot to come free
    _started: trio.Event

    # --- threads and the trio run ------------------------------------------------------------
    _engine: trio.CapacityLimiter  # the engine's one slot, for work on the cache outside batches
    _threads: trio.CapacityLimiter  # threads of sync activities
    _asyncio: AsyncioLoop  # the asyncio loop (and its thread) of asyncio activities, started on first use
    _trio_token: trio.lowlevel.TrioToken | None
    _writer: BatchThread
    _engine_thread: BatchThread
    _listener: Listener | None
    _quiet: str | None  # our listener, whose own commits wake us directly (`_write_batch`), or None

    # --- presence (`_lifecycle`) -------------------------------------------------------------
    _presence: dict[str, Any]
    _presence_at: float  # trio time of the last presence record written

    # --- wake-ups, used by every room --------------------------------------------------------

    def _notify_local(self) -> None:
        self._change_count += 1
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_changed(self, timeout: float, since: int | None = None) -> None:
        """Wait for a change, or `timeout` seconds. With `since` (a `_change_count` read before
        looking at the store), return at once if a change came in the meantime."""
        if since is not None and since != self._change_count:
            return
        event = self._changed
        with trio.move_on_after(max(timeout, 0.0)):
            await event.wait()

    # --- group commit, used by every room ----------------------------------------------------

    def _start_threads(self, token: trio.lowlevel.TrioToken) -> None:
        """Start the two threads that run what trio tasks queue for them, in batches (`_threads`):
        the writer commits (group commit), the engine runs workflow code."""
        self._writer = BatchThread("durable-writer", self._write_batch, token)
        self._engine_thread = BatchThread("durable-engine", run_jobs, token,
                                          forward_to=self._writer if self.fast.forward else None)

    async def _write(self, op: Callable[[Txn], Any]) -> Any:
        """Have `op` committed in the next batch; return its result (or raise its error)."""
        result = await self._writer.submit(op)
        if isinstance(result, BaseException):
            raise result
        return result

    def _write_batch(self, ops: list[Callable[[Txn], Any]]) -> list[Any]:
        """Writer thread: one transaction for all the ops queued meanwhile (group commit).

        Fast path (``local_wakeups``): our own commits do not come back through our wake-up
        socket: the poller and the clock are woken here only if the batch queued or scheduled
        something due within their fallback wait (most commits only record results and claim
        what they made, and a wake-up costs two store reads), and the cancellation watcher if
        running attempts changed. Off (`_quiet` None), our commits wake us through the socket as
        any other process's do. Either way nothing written changes, and the fallback poll bounds
        a wake-up missed."""
        woke: list[tuple[int | None, bool]] | None = [] if self._quiet is not None else None
        notes: list[tuple[Any, ...]] | None = [] if observing(self) else None  # for the log and metrics
        try:
            results = self.store.write_batch(ops, quiet=self._quiet, woke=woke, notes=notes,
                                             serial=self.fast.serial_batches)
        except Exception as exc:  # the whole batch failed (disk full...): tell each waiter
            log.error("store write failed: %s", exc)
            return [exc] * len(ops)
        metrics = self.metrics
        if metrics is not None:
            metrics.batched(len(ops))
        if notes:
            tell(self, notes)
        if woke:
            ready_at, acts = woke[0]
            soon = ready_at is not None and ready_at <= self.store.clock.now_ns() + int(POLL_FALLBACK_SECONDS * _NS)
            if soon or acts:
                assert self._trio_token is not None
                try:
                    self._trio_token.run_sync_soon(self._wake_local, acts)
                except trio.RunFinishedError:
                    pass
        return results

    def _wake_local(self, acts: bool) -> None:
        if acts:
            self._acts_changed.set()
        self._notify_local()

    # --- the engine thread: workflow code, in batches ----------------------------------------

    async def _in_engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` in the engine thread with the other jobs queued meanwhile; return its
        result (or raise its error). One thread hop serves a whole batch of activations."""
        ok, value = await self._engine_thread.submit((fn, args))
        if not ok:
            raise value
        return value

    async def _engine_then_write(self, fn: Callable[..., Forward | Ahead | None], *args: Any) -> tuple[Any, Any]:
        """Run `fn(*args)` in the engine thread; if it returns a `Forward`, the engine thread hands
        its op straight to the writer (one wake-up of this thread per step, not two; with the
        fast path ``forward`` off, this task does). Returns the forward's value and the op's
        result (or the exception it raised, or the batch's), or (`fn`'s result, None) if it
        returned None or an `Ahead`."""
        box = await self._engine_thread.submit_box((fn, args))
        ok, value = box[0]
        if not ok:
            raise value
        if value is None or isinstance(value, Ahead):
            return value, None
        if len(box) == 1:  # not forwarded by the engine thread: hand the op to the writer from here
            return value.value, await self._writer.submit(value.op)
        return value.value, box[1]

    if TYPE_CHECKING:
        # --- offered by the rooms to each other (defined in the module named) -----------------

        # _lifecycle
        def _present(self, t: Txn) -> None: ...
        def _presence_interval(self) -> float: ...

        # _polling
        def _dispatch(self, item: Item) -> None: ...

        # _workflow_tasks
        async def _run_wft(self, item: Item) -> None: ...
        async def _run_query(self, item: Item) -> None: ...
        def _claimed_then(self, item: Item, op: Callable[[Txn, int], Any]) -> Callable[[Txn], Any]: ...
        def _completing(self, num: int, commands: list[dict[str, Any]],
                        seqs: list[int]) -> Callable[[Txn, int], Any]: ...
        def _evict(self, num: int) -> None: ...
        def _clear_cache(self) -> None: ...
        def _eager(self, seqs: list[int], claimed: list[Item]) -> _ops.Eager | None: ...
        def _eager_seqs(self, commands: list[dict[str, Any]], queue: str) -> list[int]: ...

        # _activities
        def _activity_context(self, item: Item) -> _activity.ActivityContext: ...
        async def _run_activity(self, item: Item, ctx: _activity.ActivityContext,
                                scope: trio.CancelScope) -> None: ...
        def _activity_ended(self, item: Item) -> None: ...
        async def _record_reports(self, reports: list[tuple[Item, Report]]) -> None: ...
        async def _settle(self, item: Item, report: Report, result: Result | None) -> None: ...
        def _ok_report(self, item: Item, result: Any) -> Report: ...
        def _error_report(self, ctx: _activity.ActivityContext, exc: BaseException) -> Report: ...
        def _on_asyncio(self, act: Activity[Any, Any]) -> bool: ...
        @staticmethod
        def _cancelled_report(item: Item, ctx: _activity.ActivityContext) -> Report: ...

        # _inline (fast path)
        async def _run_eager(self, items: list[Item]) -> None: ...
        def _dispatch_all_but_inlinable(self, items: list[Item]) -> list[Item]: ...
        def _register_inline(self, items: list[Item]) -> list[Entry]: ...
        async def _run_inline(self, entries: list[Entry], reports: list[tuple[Item, Report]]) -> None: ...
        def _arm(self, scope: trio.CancelScope, item: Item, handle: Any) -> None: ...
        def _first_step(self, item: Item, ctx: _activity.ActivityContext) -> Report | Pending: ...
        async def _finish_step(self, item: Item, ctx: _activity.ActivityContext, step: Pending) -> Report: ...

        # _rounds (fast path)
        def _join_continue(self, item: Item, report: Report) -> tuple[Result | None, bool]: ...
        async def _continue_run(self, num: int, queue: str) -> None: ...

        # _ahead (fast path)
        def _can_run_ahead(self, commands: list[dict[str, Any]], queue: str) -> bool: ...
        async def _run_ahead(self, item: Item, commands: list[dict[str, Any]]) -> None: ...


def count(n: int, one: str, many: str) -> str:
    """"1 activity", "2 activities"."""
    return f"{n} {one if n == 1 else many}"


def advance_taken(rt: Runtime, events: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]] | None:
    """Engine thread: run the activation `events` make on `rt` (taken out of the cache): the
    history length it had seen and its commands; None, `rt` closed, if its code failed (the usual
    path then runs it again and records the failure)."""
    hlen = rt.processed
    try:
        return hlen, rt.advance(events)
    except Exception:  # noqa: BLE001 - recorded by the usual path
        rt.close()
        return None
