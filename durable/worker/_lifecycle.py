"""The worker: claims tasks of one queue under leases and runs them, all in one trio program.

Tasks running concurrently in the worker's nursery:

- the *writer* batches every write the other tasks ask for into one transaction (group commit);
- the *poller* claims workflow tasks, activity attempts and queries when the store says there are
  some (woken by the data directory's wake-up socket; polling is only the fallback);
- the *clock* fires due timers and ends expired leases (any worker may: the store decides);
- the *heartbeat* renews the leases this worker holds and learns which activities to cancel;
- the activities: an attempt claimed on its own runs in a task and cancel scope of its own (a
  sync one in a thread, an asyncio one on the worker's asyncio loop: `_asyncio`); the async
  (trio) attempts a workflow task's transaction claims run by hand in that task, one after
  another (`_run_inline`, `_step_here`), and one that waits gets the task and its cancel scope
  to itself. A workflow task that only schedules async activities of our queue
  runs them before it is recorded (`_run_ahead`): if they all finish at once, the task, their
  results and the task they make are recorded in one transaction.

Workflow activations run one at a time in a separate thread (the engine), never on the trio
thread: so a stray ``trio.sleep`` in workflow code fails loudly instead of touching the worker's
own scopes. Live workflow instances stay in a bounded cache; a miss replays the history through
the same code path.

The `Worker` class here holds construction, running and stopping; the rest of it lives in its
rooms (see `_base`), and its fast paths are listed in `_fast`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal as _signal
import socket
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import trio

from durable import _ops, _wake
from durable._codec import Converter, PayloadCodec
from durable._defs import ACTIVITY_LOOPS, Activity, ActivityLoop, Registry
from durable._errors import DurableError
from durable._limits import DEFAULT_LEASE_SECONDS, MIN_PRESENCE_SECONDS, PRESENCE_KEEP_NS
from durable._store import Txn
from durable._backend import Listener, open_store

from ._activities import Activities
from ._ahead import RunAhead
from ._asyncio import AsyncioLoop
from ._base import _NS, count
from ._clock import Clock
from ._fast import FastPaths, fast_paths_setting
from ._inline import Inline
from ._metrics import Metrics
from ._polling import Polling
from ._rounds import Rounds
from ._workflow_tasks import WorkflowTasks

log = logging.getLogger("durable.worker")


class Worker(Polling, WorkflowTasks, RunAhead, Rounds, Inline, Activities, Clock):
    """Serves one queue of a store with the given workflows and activities.

    ``Worker(data, workflows=[...], activities=[...]).run_sync()`` runs until SIGINT/SIGTERM
    (in the main thread) or `shutdown` (from any thread); ``await worker.run()`` runs inside a
    trio program until `shutdown` is called or it is cancelled. Several workers (in one process
    or many) can serve the same store and queue. `data` names the store as `durable.Client`'s
    does: a directory, or a URL such as ``postgresql://user@host/db``.

    A payload `codec` is the worker's own (workers of one process may have different ones); it
    encodes the failures the worker records as well, unless ``encode_failures=False``.

    ``fast_paths=False`` makes every step take the usual path (see `durable.worker._fast`: one
    commit to claim a task, one to record it, a task and a scope per attempt); a `FastPaths`
    turns single fast paths off. ``DURABLE_FAST_PATHS=0`` in the environment, read here, turns
    them all off whatever is given.

    ``activity_loop`` is where an ``async def`` activity declared without a ``loop`` runs:
    "trio" (the worker's own loop) or "asyncio" (an asyncio event loop in a thread of the worker,
    for activities that use asyncio libraries; see ``@durable.activity(loop=...)``).

    ``metrics=durable.Metrics(port=...)`` exposes Prometheus metrics while the worker runs (see
    `durable.Metrics`); ``tracing=True`` makes an OpenTelemetry span per workflow task and
    activity attempt, children of the client's span that started the workflow (needs
    opentelemetry-api; see docs/observability.md).
    """

    def __init__(
        self,
        data: str | os.PathLike[str],
        *,
        workflows: Iterable[Any] = (),
        activities: Iterable[Activity[Any, Any]] = (),
        queue: str = "default",
        max_concurrent_activities: int = 100,
        max_cached_workflows: int = 10_000,
        lease: float = DEFAULT_LEASE_SECONDS,
        graceful_timeout: float = 10.0,
        codec: PayloadCodec | None = None,
        encode_failures: bool = True,
        identity: str | None = None,
        fast_paths: bool | FastPaths = True,
        activity_loop: ActivityLoop = "trio",
        metrics: Metrics | None = None,
        tracing: bool = False,
    ) -> None:
        if max_concurrent_activities < 1 or max_cached_workflows < 1:
            raise DurableError("max_concurrent_activities and max_cached_workflows must be at least 1")
        if not (0.05 <= lease <= 3600):
            raise DurableError(f"lease must be between 0.05 and 3600 seconds, not {lease!r}")
        if not graceful_timeout >= 0:
            raise DurableError(f"graceful_timeout must be 0 or more seconds, not {graceful_timeout!r}")
        if activity_loop not in ACTIVITY_LOOPS:
            raise DurableError(f"activity_loop must be \"trio\" or \"asyncio\", not {activity_loop!r}")
        if metrics is not None and not isinstance(metrics, Metrics):
            raise DurableError(f"metrics must be a durable.Metrics, not {metrics!r}")
        self.fast = fast_paths_setting(fast_paths)
        self.activity_loop = activity_loop
        self._asyncio = AsyncioLoop()
        self.registry = Registry(workflows, activities)
        self.store = open_store(data, create=True)
        self._metrics_setting = metrics
        if metrics is not None:
            # prometheus_client imported and the metrics made now: a clear error at once if it is
            # missing, and before `durable worker` freezes what is alive (gc.freeze)
            metrics._instruments()
        self.metrics = None  # set while running, with metrics on
        self.tracer = None
        if tracing:
            from durable._tracing import Tracer

            self.tracer = Tracer(self.store)
        # this worker's own: the store is shared by everything in the process that opens it
        self.converter = Converter(codec, encode_failures=encode_failures)
        self.queue = queue
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.max_activities = max_concurrent_activities
        self.max_cached = max_cached_workflows
        self.lease_ns = int(lease * _NS)
        self.graceful_timeout = graceful_timeout
        self._cache = OrderedDict()
        self._running_acts = {}
        self._running_wfts = {}  # None: run before it is claimed (see _poll)
        self._work = None
        self._continuing = {}  # results waiting to continue their run
        self._heartbeat_wakeup = trio.Event()
        self._changed = trio.Event()
        self._acts_changed = trio.Event()
        self._room_wanted = False  # the poller waits for an activity slot to come free
        self._change_count = 0
        self._stopping = False
        self._started = trio.Event()
        self._engine = trio.CapacityLimiter(1)
        self._threads = trio.CapacityLimiter(max_concurrent_activities)
        self._trio_token = None
        self._listener = None
        self._quiet = None  # our listener: our own commits wake us directly (_write_batch)
        self._presence = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time_ns()}
        self._presence_at = 0.0  # trio time of the last presence record written
        self.stats = {"wft": 0, "act": 0, "query": 0, "refused": 0, "continued": 0, "timer_claims": 0,
                      "unclaimed": 0, "unclaimed_lost": 0, "inline": 0, "ahead": 0}

    # --- running -----------------------------------------------------------------------------

    def run_sync(self) -> None:
        """Run until `shutdown` is called or, in the main thread, a signal comes (see
        `_watch_signals`). In another thread no signal handler is installed (Python allows
        them in the main thread only): `shutdown` stops it."""
        if self._metrics_setting is not None:  # a port that is taken: a clear error, before anything runs
            self._metrics_setting._serve()
        if threading.current_thread() is threading.main_thread():
            trio.run(self._run_with_signals)
        else:
            trio.run(self.run)

    async def _run_with_signals(self) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._watch_signals)
            await self.run()
            nursery.cancel_scope.cancel()

    async def _watch_signals(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The first SIGINT or SIGTERM shuts down gracefully, saying what it waits for; a SIGINT
        after that ends the process at once (`_stop_now`). Another SIGTERM changes nothing: a
        service manager that wants it gone sooner sends SIGKILL after its own delay."""
        with trio.open_signal_receiver(_signal.SIGINT, _signal.SIGTERM) as signals:
            task_status.started()
            async for sig in signals:
                if not self._stopping:
                    running = self._describe_running()
                    if running:
                        hint = "Ctrl-C again" if sig == _signal.SIGINT else "Ctrl-C (SIGINT)"
                        log.warning("waiting for %s (%s to stop now)", running, hint)
                    else:
                        log.info("%s received: stopping", _signal.Signals(sig).name)
                    self.shutdown()
                elif sig == _signal.SIGINT:
                    self._stop_now()

    def _describe_running(self) -> str:
        """What runs here, for the operator: "1 running activity: charge and 1 workflow task"
        ("" if nothing)."""
        parts = [self._describe_activities()] if self._running_acts else []
        if self._running_wfts:
            parts.append(count(len(self._running_wfts), "workflow task", "workflow tasks"))
        return " and ".join(parts)

    def _describe_activities(self) -> str:
        """The activities running here, by name, for the operator: "3 running activities: charge,
        ship (x2)"."""
        names: dict[str, int] = {}
        for item, _, _ in self._running_acts.values():
            names[item["name"]] = names.get(item["name"], 0) + 1
        listed = ", ".join(name if n == 1 else f"{name} (x{n})" for name, n in sorted(names.items()))
        return f"{count(len(self._running_acts), 'running activity', 'running activities')}: {listed}"

    def _stop_now(self) -> None:
        """End the process at once (exit code 130), recording nothing: the attempts and workflow
        tasks running here keep their leases until those expire, then other workers run them
        again. Nothing is lost; a step in flight runs again (activities are at least once). The
        process must end: a sync activity cannot be stopped, and it must not go on running
        here once another worker may run it."""
        acts, wfts = len(self._running_acts), len(self._running_wfts)
        left = [count(acts, "activity", "activities")] if acts else []
        if wfts:
            left.append(count(wfts, "workflow task", "workflow tasks"))
        if left:
            leases = "its lease expires" if acts + wfts == 1 else "their leases expire"
            log.warning("stopped now: %s left to be retried after %s", " and ".join(left), leases)
        else:
            log.warning("stopped now")
        if self._listener is not None:
            self._listener.close()
        logging.shutdown()  # flush what was logged
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)

    def shutdown(self) -> None:
        """Stop claiming; let running work finish within the grace period; hand back the rest.

        Safe to call from any thread, and before or after the worker runs; it returns at once
        (`run` returns once the running work is done or handed back)."""
        self._stopping = True  # read by the poller, and by the writer and engine threads
        token = self._trio_token
        if token is None:  # not running yet: `run` sees the flag before it claims anything
            return
        try:
            here = trio.lowlevel.current_trio_token() is token
        except RuntimeError:  # not in a trio thread
            here = False
        if here:
            self._notify_local()
            return
        try:
            token.run_sync_soon(self._notify_local)  # the worker's events belong to its own thread
        except trio.RunFinishedError:
            pass

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the queue until `shutdown` is called (or the caller cancels)."""
        self._trio_token = token = trio.lowlevel.current_trio_token()
        self._asyncio = AsyncioLoop(f"durable-asyncio-{self.identity}")  # its thread starts on first use
        # Two threads that run what trio tasks queue for them, in batches, each starting its next
        # batch as soon as the last one is done (without waiting for the trio thread to pick up
        # the results): the writer commits (group commit), the engine runs workflow code.
        self._start_threads(token)
        listener = self._listener = self.store.listener()
        self._quiet = listener.path if self.fast.local_wakeups else None
        if self._metrics_setting is not None:
            try:
                self.metrics = self._metrics_setting._attach(self.queue, self.store, lambda: len(self._cache))
            except BaseException:
                listener.close()
                await trio.to_thread.run_sync(self._engine_thread.stop)
                await trio.to_thread.run_sync(self._writer.stop)
                raise
            self.store.commit_observers.append(self.metrics.commit)
            port = self._metrics_setting.port
            if port is not None:
                log.info("serving metrics at http://%s:%d/metrics", self._metrics_setting.host, port)
        try:
            async with trio.open_nursery() as nursery:
                await self._write(self._announce)
                self._presence_at = trio.current_time()
                log.info(
                    "worker %s serving queue %r of %s: workflows %s, activities %s", self.identity, self.queue,
                    self.store.path, sorted(self.registry.workflows), sorted(self.registry.activities),
                )
                nursery.start_soon(self._listen, listener)
                nursery.start_soon(self._clock)
                nursery.start_soon(self._heartbeat)
                nursery.start_soon(self._watch_cancellations)
                async with trio.open_nursery() as work:
                    self._work = work
                    task_status.started()
                    self._started.set()
                    await self._poll(work)
                    await self._drain(work)
                with contextlib.suppress(DurableError):  # clients learn at once that nobody serves here
                    await self._write(lambda t: _ops.record_presence(t, self.queue, self.identity, t.now, self._presence))
                nursery.cancel_scope.cancel()
        finally:
            listener.close()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._engine_thread.stop)  # before the writer it forwards to
                await trio.to_thread.run_sync(self._writer.stop)
            if self.metrics is not None:  # once the threads that count are stopped
                with contextlib.suppress(ValueError):
                    self.store.commit_observers.remove(self.metrics.commit)
                assert self._metrics_setting is not None
                self._metrics_setting._detach(self.queue)
                self.metrics = None
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._clear_cache, limiter=self._engine)
                if self._asyncio.started:  # every attempt has ended: no task of ours is left on it
                    await trio.to_thread.run_sync(self._asyncio.stop)

    async def _listen(self, listener: Listener) -> None:
        while True:
            await trio.lowlevel.wait_readable(listener.sock)
            if _wake.RUNNING_ACTIVITIES in listener.drain():
                self._acts_changed.set()
            self._notify_local()

    # --- presence ----------------------------------------------------------------------------

    def _announce(self, t: Txn) -> None:
        """Publish the names this worker serves and show that it serves the queue (one write)."""
        _ops.publish_registry(t, self.queue, self.registry.describe())
        _ops.prune_presence(t, self.queue, t.now - PRESENCE_KEEP_NS)
        self._present(t)

    def _present(self, t: Txn) -> None:
        """Show that this worker serves its queue, until a while after its next heartbeat is due."""
        until = t.now + max(self.lease_ns, int(3 * _NS * self._presence_interval()))
        _ops.record_presence(t, self.queue, self.identity, until, self._presence)

    def _presence_interval(self) -> float:
        return max(self.lease_ns / _NS / 3, MIN_PRESENCE_SECONDS)

    # --- stopping ----------------------------------------------------------------------------

    async def _drain(self, work: trio.Nursery) -> None:
        with trio.move_on_after(self.graceful_timeout) as grace:
            while self._running_acts or self._running_wfts:
                await self._wait_changed(0.05)
        if grace.cancelled_caught and self._running_acts:
            log.warning("grace period of %g s over: handing back %s (a sync activity stops at its next "
                        "durable.heartbeat(), or when it returns)", self.graceful_timeout, self._describe_activities())
        # Hand back the attempts that did not finish. Each releases its lease itself once its code
        # has stopped (see `_record_report`), under heartbeats until then: a sync activity cannot be
        # interrupted unless it calls heartbeat(), and handing it back while it still runs would let
        # another worker run the same step at the same time (it finishes here instead).
        for _, ctx, scope in list(self._running_acts.values()):
            ctx.lost = True
            scope.cancel()
        while self._running_acts:
            await self._wait_changed(0.05)
        work.cancel_scope.cancel()
