"""The worker: claims tasks of one queue under leases and runs them, all in one trio program.

Tasks running concurrently in the worker's nursery:

- the *writer* batches every write the other tasks ask for into one transaction (group commit);
- the *poller* claims workflow tasks, activity attempts and queries when the store says there are
  some (woken by the data directory's wake-up socket; polling is only the fallback);
- the *clock* fires due timers and ends expired leases (any worker may: the store decides);
- the *heartbeat* renews the leases this worker holds and learns which activities to cancel;
- the activities: an attempt claimed on its own runs in a task and cancel scope of its own (a
  sync one in a thread); the async attempts a workflow task's transaction claims run by hand in
  that task, one after another (`_run_inline`, `_step_here`), and one that waits gets the task and
  its cancel scope to itself. A workflow task that only schedules async activities of our queue
  runs them before it is recorded (`_run_ahead`): if they all finish at once, the task, their
  results and the task they make are recorded in one transaction.

Workflow activations run one at a time in a separate thread (the engine), never on the trio
thread: so a stray ``trio.sleep`` in workflow code fails loudly instead of touching the worker's
own scopes. Live workflow instances stay in a bounded cache; a miss replays the history through
the same code path.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import os
import signal as _signal
import socket
import sys
import threading
import time
import types
import uuid
from collections import OrderedDict
from queue import Empty, SimpleQueue
from collections.abc import Callable, Iterable
from typing import Any

import trio

from durable import _activity, _crashpoint, _ops
from durable import _events as ev
from durable import _wake
from durable._codec import Converter, PayloadCodec, format_error_record
from durable._defs import Activity, Registry
from durable._errors import ApplicationError, DurableError, NotRegistered, PayloadError
from durable._limits import (
    DEFAULT_LEASE_SECONDS,
    MAX_CLAIM_BATCH,
    MAX_TASK_ERROR_CHARS,
    MIN_PRESENCE_SECONDS,
    POLL_FALLBACK_SECONDS,
    PRESENCE_KEEP_NS,
)
from durable._runtime import Runtime, task_error_text
from durable._store import Store, Txn
from durable._wake import Listener

log = logging.getLogger("durable.worker")

_NS = 1_000_000_000
# A poll that finds at most this many workflow tasks waiting, each over at most this many events,
# runs them before claiming them (see _poll); more are claimed in batches first.
UNCLAIMED_MAX_TASKS = 8
UNCLAIMED_MAX_EVENTS = 64
UNCLAIMED_LOST = "unclaimed-lost"  # what recording a run-before-claimed task gives if it could not claim it


class Worker:
    """Serves one queue of a store with the given workflows and activities.

    ``Worker(data, workflows=[...], activities=[...]).run_sync()`` runs until SIGINT/SIGTERM
    (in the main thread) or `shutdown` (from any thread); ``await worker.run()`` runs inside a
    trio program until `shutdown` is called or it is cancelled. Several workers (in one process
    or many) can serve the same store and queue.

    A payload `codec` is the worker's own (workers of one process may have different ones); it
    encodes the failures the worker records as well, unless ``encode_failures=False``.
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
    ) -> None:
        if max_concurrent_activities < 1 or max_cached_workflows < 1:
            raise DurableError("max_concurrent_activities and max_cached_workflows must be at least 1")
        if not (0.05 <= lease <= 3600):
            raise DurableError(f"lease must be between 0.05 and 3600 seconds, not {lease!r}")
        if not graceful_timeout >= 0:
            raise DurableError(f"graceful_timeout must be 0 or more seconds, not {graceful_timeout!r}")
        self.registry = Registry(workflows, activities)
        self.store = Store.open(data, create=True)
        # this worker's own: the store is shared by everything in the process that opens it
        self.converter = Converter(codec, encode_failures=encode_failures)
        self.queue = queue
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.max_activities = max_concurrent_activities
        self.max_cached = max_cached_workflows
        self.lease_ns = int(lease * _NS)
        self.graceful_timeout = graceful_timeout
        self._cache: OrderedDict[int, Runtime] = OrderedDict()
        self._running_acts: dict[tuple[int, int], tuple[dict[str, Any], _activity.ActivityContext, trio.CancelScope]] = {}
        self._running_wfts: dict[int, int | None] = {}  # None: run before it is claimed (see _poll)
        self._work: trio.Nursery | None = None
        self._continuing: dict[int, list[_Result]] = {}  # results waiting to continue their run
        self._heartbeat_wakeup = trio.Event()
        self._changed = trio.Event()
        self._acts_changed = trio.Event()
        self._room_wanted = False  # the poller waits for an activity slot to come free
        self._change_count = 0
        self._stopping = False
        self._started = trio.Event()
        self._engine = trio.CapacityLimiter(1)
        self._threads = trio.CapacityLimiter(max_concurrent_activities)
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._listener: Listener | None = None
        self._quiet: str | None = None  # our listener: our own commits wake us directly (_write_batch)
        self._presence = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time_ns()}
        self._presence_at = 0.0  # trio time of the last presence record written
        self.stats = {"wft": 0, "act": 0, "query": 0, "refused": 0, "continued": 0, "timer_claims": 0,
                      "unclaimed": 0, "unclaimed_lost": 0, "inline": 0, "ahead": 0}

    # --- running -----------------------------------------------------------------------------

    def run_sync(self) -> None:
        """Run until `shutdown` is called or, in the main thread, a signal comes (see
        `_watch_signals`). In another thread no signal handler is installed (Python allows
        them in the main thread only): `shutdown` stops it."""
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
            parts.append(_count(len(self._running_wfts), "workflow task", "workflow tasks"))
        return " and ".join(parts)

    def _describe_activities(self) -> str:
        """The activities running here, by name, for the operator: "3 running activities: charge,
        ship (x2)"."""
        names: dict[str, int] = {}
        for item, _, _ in self._running_acts.values():
            names[item["name"]] = names.get(item["name"], 0) + 1
        listed = ", ".join(name if n == 1 else f"{name} (x{n})" for name, n in sorted(names.items()))
        return f"{_count(len(self._running_acts), 'running activity', 'running activities')}: {listed}"

    def _stop_now(self) -> None:
        """End the process at once (exit code 130), recording nothing: the attempts and workflow
        tasks running here keep their leases until those expire, then other workers run them
        again. Nothing is lost; a step in flight runs again (activities are at least once). The
        process must end: a sync activity cannot be stopped, and it must not go on running
        here once another worker may run it."""
        acts, wfts = len(self._running_acts), len(self._running_wfts)
        left = [_count(acts, "activity", "activities")] if acts else []
        if wfts:
            left.append(_count(wfts, "workflow task", "workflow tasks"))
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
        # Two threads that run what trio tasks queue for them, in batches, each starting its next
        # batch as soon as the last one is done (without waiting for the trio thread to pick up
        # the results): the writer commits (group commit), the engine runs workflow code.
        self._writer = _BatchThread("durable-writer", self._write_batch, token)
        self._engine_thread = _BatchThread("durable-engine", _run_jobs, token, forward_to=self._writer)
        listener = self._listener = Listener(os.path.join(self.store.path, "wake"), self.store.notifier)
        self._quiet = listener.path
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
                await trio.to_thread.run_sync(self._clear_cache, limiter=self._engine)

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

    async def _drain(self, work: trio.Nursery) -> None:
        with trio.move_on_after(self.graceful_timeout) as grace:
            while self._running_acts or self._running_wfts:
                await self._wait_changed(0.05)
        if grace.cancelled_caught and self._running_acts:
            log.warning("grace period of %g s over: handing back %s (a sync activity stops at its next "
                        "durable.heartbeat(), or when it returns)", self.graceful_timeout, self._describe_activities())
        # Hand back the attempts that did not finish. Each releases its lease itself once its code
        # has stopped (see _run_attempt), under heartbeats until then: a sync activity cannot be
        # interrupted unless it calls heartbeat(), and handing it back while it still runs would let
        # another worker run the same step at the same time (it finishes here instead).
        for _, ctx, scope in list(self._running_acts.values()):
            ctx.lost = True
            scope.cancel()
        while self._running_acts:
            await self._wait_changed(0.05)
        work.cancel_scope.cancel()

    # --- wake-ups ----------------------------------------------------------------------------

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

    async def _listen(self, listener: Listener) -> None:
        while True:
            await trio.lowlevel.wait_readable(listener.sock)
            if _wake.RUNNING_ACTIVITIES in listener.drain():
                self._acts_changed.set()
            self._notify_local()

    # --- group commit ------------------------------------------------------------------------

    async def _write(self, op: Callable[[Txn], Any]) -> Any:
        """Have `op` committed in the next batch; return its result (or raise its error)."""
        result = await self._writer.submit(op)
        if isinstance(result, BaseException):
            raise result
        return result

    def _write_batch(self, ops: list[Callable[[Txn], Any]]) -> list[Any]:
        """Writer thread: one transaction for all the ops queued meanwhile (group commit).

        Our own commits do not come back through our wake-up socket: the poller and the clock
        are woken here only if the batch queued or scheduled something due within their
        fallback wait (most commits only record results and claim what they made, and a wake-up
        costs two store reads), and the cancellation watcher if running attempts changed."""
        woke: list[tuple[int | None, bool]] = []
        try:
            results = self.store.write_batch(ops, quiet=self._quiet, woke=woke)
        except Exception as exc:  # the whole batch failed (disk full...): tell each waiter
            log.error("store write failed: %s", exc)
            return [exc] * len(ops)
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

    # --- the engine thread: workflow code, in batches -----------------------------------------

    async def _in_engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` in the engine thread with the other jobs queued meanwhile; return its
        result (or raise its error). One thread hop serves a whole batch of activations."""
        ok, value = await self._engine_thread.submit((fn, args))
        if not ok:
            raise value
        return value

    async def _engine_then_write(self, fn: Callable[..., _Forward | None], *args: Any) -> tuple[Any, Any]:
        """Run `fn(*args)` in the engine thread; if it returns a `_Forward`, the engine thread hands
        its op straight to the writer (one wake-up of this thread per step, not two). Returns the
        forward's value and the op's result (or the exception it raised, or the batch's), or
        (None, None) if `fn` returned None."""
        box = await self._engine_thread.submit_box((fn, args))
        ok, value = box[0]
        if not ok:
            raise value
        if value is None or isinstance(value, _Ahead):
            return value, None
        return value.value, box[1]

    # --- claiming ----------------------------------------------------------------------------

    async def _poll(self, work: trio.Nursery) -> None:
        while not self._stopping:
            seen = self._change_count
            free = self.max_activities - len(self._running_acts)
            earliest = self.store.read(lambda t: _ops.has_claimable(t, self.queue))
            now = self.store.clock.now_ns()
            if earliest is None or earliest > now:
                wait = POLL_FALLBACK_SECONDS if earliest is None else min((earliest - now) / _NS, POLL_FALLBACK_SECONDS)
                await self._wait_changed(wait, seen)
                continue
            # An idle worker that finds few workflow tasks waiting, with short histories (new
            # workflows, say), runs them before claiming them and claims each in the transaction
            # that records its outcome, if no other worker took it meanwhile (workflow code has
            # no effects to undo): one commit less on the way to a result. A busy worker claims
            # in batches first (cheaper per task; the latency is then in the queue anyway).
            unclaimed = [num for num, token in self._running_wfts.items() if token is None]
            peeked: list[dict[str, Any]] = []
            rest = True
            if not self._running_acts and len(unclaimed) == len(self._running_wfts):
                peeked, rest = self.store.read(lambda t: _ops.peek_workflow_tasks(
                    t, self.queue, UNCLAIMED_MAX_TASKS, UNCLAIMED_MAX_EVENTS, set(unclaimed)))
            for item in peeked:
                self._dispatch(item)
            items: list[dict[str, Any]] = []
            if rest:
                skip = frozenset(unclaimed).union(item["num"] for item in peeked)
                try:
                    items = await self._write(
                        lambda t: _ops.claim(t, self.queue, self.identity, self.lease_ns, MAX_CLAIM_BATCH,
                                             min(free, MAX_CLAIM_BATCH), MAX_CLAIM_BATCH, skip)
                    )
                except Exception as exc:  # noqa: BLE001 - e.g. a full disk: keep serving once it clears
                    log.error("claiming tasks failed: %s", exc)
                    await self._wait_changed(POLL_FALLBACK_SECONDS)
                    continue
                for item in items:
                    self._dispatch(item)
            if not items or free <= 0:
                # nothing claimable now (taken by another worker, or queries waiting for their
                # workflow's task, or run here before claiming), or no room: the next commit
                # wakes us, or woke us while we claimed, or an activity slot coming free does
                # (its commit may come first)
                self._room_wanted = free <= 0
                await self._wait_changed(POLL_FALLBACK_SECONDS, seen)

    def _dispatch(self, item: dict[str, Any]) -> None:
        """Start running a claimed task in the work nursery."""
        work = self._work
        assert work is not None
        if item["kind"] == "act":
            key = (item["num"], item["seq"])
            ctx, scope = self._activity_context(item), trio.CancelScope()
            self._running_acts[key] = (item, ctx, scope)
            if item["opts"].get("hb"):  # its heartbeat timeout may be shorter than our beat
                self._heartbeat_wakeup.set()
            work.start_soon(self._run_activity, item, ctx, scope)
        elif item["kind"] == "wft":
            self._running_wfts[item["num"]] = item["token"]
            work.start_soon(self._run_wft, item)
        else:
            work.start_soon(self._run_query, item)

    async def _run_eager(self, items: list[dict[str, Any]]) -> None:
        """Run the attempts a workflow task's transaction claimed: the async ones in this task
        (`_run_inline`), instead of a task and a cancel scope each; the others as usual."""
        batch = self._dispatch_all_but_inlinable(items)
        if batch:
            await self._run_inline(self._register_inline(batch), [])

    def _dispatch_all_but_inlinable(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Start each claimed task the usual way but the async attempts; return those."""
        inlinable = []
        for item in items:
            if self._inlinable(item):
                inlinable.append(item)
            else:
                self._dispatch(item)
        return inlinable

    def _register_inline(self, items: list[dict[str, Any]]) -> list[_Entry]:
        """Count attempts as running here, each with a `_Handle` for its cancel scope."""
        entries: list[_Entry] = []
        for item in items:
            ctx, handle = self._activity_context(item), _Handle()
            self._running_acts[(item["num"], item["seq"])] = (item, ctx, handle)
            if item["opts"].get("hb"):
                self._heartbeat_wakeup.set()
            entries.append((item, ctx, handle))
        return entries

    def _inlinable(self, item: dict[str, Any]) -> bool:
        if item["kind"] != "act":
            return False
        try:
            return self.registry.activity(item["name"]).is_async
        except NotRegistered:
            return False

    # --- workflow tasks ----------------------------------------------------------------------

    async def _run_wft(self, item: dict[str, Any]) -> None:
        num = item["num"]
        claimed: list[dict[str, Any]] = []  # the attempts its transaction claimed, run below
        try:
            commands, written = await self._engine_then_write(self._activate_and_record, item)
            if item["token"] is None:
                self.stats["unclaimed"] += 1
            if isinstance(commands, _Ahead):
                await self._run_ahead(item, commands.commands)
                return
            if written is UNCLAIMED_LOST:  # another worker took it, or events came in: drop ours
                self.stats["unclaimed_lost"] += 1
                await self._in_engine(self._evict, num)
                self._running_wfts.pop(num, None)
                self._notify_local()  # the poller skipped it meanwhile: it may be claimable still
                return
            if commands is None:  # the workflow code failed: `written` says whether that was recorded
                if isinstance(written, Exception):
                    raise written
                return
            if isinstance(written, Exception):  # not recorded: the lease expires, another try follows
                log.error("recording the workflow task of %r failed: %s", item["id"], written)
                result, eager = "failed", []
            else:
                result, eager = written
            rt = self._cache.get(num)
            if result == "ok" and rt is not None and not rt.done:
                rt.mark_recorded()  # two counters: done here, so the activities below can continue it
            else:  # finished, lease lost, or signals arrived as it closed: replay next time
                await self._in_engine(self._evict, num)
            self._running_wfts.pop(num, None)
            claimed = eager
            self.stats["wft"] += 1
        except Exception as exc:  # noqa: BLE001 - one task's trouble must not stop the worker
            log.error("workflow task of %r: %s", item["id"], exc)
        finally:
            self._running_wfts.pop(num, None)
            if not self._running_wfts and self._stopping:
                self._notify_local()
        if claimed:
            await self._run_eager(claimed)

    def _activate_and_record(self, item: dict[str, Any]) -> _Forward:
        """Engine thread: run the activation, then have the writer record what it made, with the
        activities it schedules on our queue claimed in the same transaction as far as we have
        room (eager dispatch: no round trip through the queue). A task not claimed yet (token
        None) is claimed in that transaction, or its outcome dropped if it cannot be."""
        num, token = item["num"], item["token"]
        outcome = self._activate(item)
        if isinstance(outcome, str):
            error = self.converter.encode_text(outcome[:MAX_TASK_ERROR_CHARS])
            return _Forward(self._claimed_then(item, lambda t, tok: _ops.fail_workflow_task(t, num, tok, error)), None)
        commands = outcome
        if self._can_run_ahead(commands, item["queue"]):
            return _Ahead(commands)  # type: ignore[return-value]
        seqs = self._eager_seqs(commands, item["queue"])
        return _Forward(self._claimed_then(item, self._completing(num, commands, seqs)), commands)

    def _completing(self, num: int, commands: list[dict[str, Any]], seqs: list[int]) -> Callable[[Txn, int], Any]:
        """The op (under a token) that records a workflow task's commands, with the activities
        `seqs` claimed for us in the same transaction: ("ok"/"lost"/"retry", the claimed attempts)."""
        def record(t: Txn, tok: int) -> tuple[str, list[dict[str, Any]]]:
            claimed: list[dict[str, Any]] = []
            status = _ops.complete_workflow_task(t, num, tok, commands, self._eager(seqs, claimed))
            return status, claimed

        return record

    # --- running ahead: a new workflow task's activities before its commit -------------------

    def _can_run_ahead(self, commands: list[dict[str, Any]], queue: str) -> bool:
        """Engine thread: whether the activities an activation schedules may run before it is
        recorded: all it does is schedule async activities of our queue, and we have room."""
        if not commands or self._stopping or len(commands) > self.max_activities - len(self._running_acts):
            return False
        for c in commands:
            if c["k"] != ev.ACTIVITY_SCHEDULED or (c["opts"].get("queue") or queue) != self.queue:
                return False
            try:
                if not self.registry.activity(c["name"]).is_async:
                    return False
            except NotRegistered:
                return False
        return True

    async def _run_ahead(self, item: dict[str, Any], commands: list[dict[str, Any]]) -> None:
        """Run the activities a workflow task schedules before recording it (one synced commit
        less on the way of each workflow): each attempt's first step runs here, as `_run_inline`
        runs them. If every one finishes, the instance goes on with their results, and the task,
        their results and the next task's commands are recorded in one transaction
        (`_record_ahead`; the attempts need no record of their own), as the usual path would have
        recorded them in two. Else the task is recorded with its activities claimed the usual
        way, and the attempts that ran go on under the claims: results and failures reported,
        one that waits driven on in this task while another records the task and hands it its
        claim, the others not started run as usual.

        An attempt run here that is not recorded (the task's lease was lost, the process died
        before the commit) has run once more than the history says: activities are at least
        once, as they are when a process dies between an attempt and its result's commit."""
        num = item["num"]
        now = self.store.clock.now_ns()
        entries: list[tuple[dict[str, Any], _activity.ActivityContext]] = []
        for c in commands:
            attempt = {"kind": "act", "num": num, "seq": c["seq"], "token": None, "name": c["name"], "in": c["in"],
                       "attempt": 1, "opts": c["opts"], "hb": None, "wid": item["id"], "wtype": item["type"],
                       "queue": self.queue, "start": now, "sched": now}
            entries.append((attempt, self._activity_context(attempt)))
        done: list[tuple[dict[str, Any], bytes]] = []
        stopped: tuple[dict[str, Any], _activity.ActivityContext, Any] | None = None
        rest: list[dict[str, Any]] = []
        seqs = [c["seq"] for c in commands]
        waited: tuple[dict[str, Any], _activity.ActivityContext, trio.Event] | None = None
        report: tuple[Any, ...] | None = None
        # one cancel scope around the first steps, as in _run_inline: it becomes the scope of one that waits
        with trio.CancelScope() as scope:
            for i, (attempt, ctx) in enumerate(entries):
                self.stats["inline"] += 1
                step = self._first_step(attempt, ctx)
                if isinstance(step, tuple) and step[0] == "ok":
                    done.append((attempt, step[1]))
                    continue
                stopped = (attempt, ctx, step)
                rest = [a for a, _ in entries[i + 1:]]
                break
            if done and _crashpoint.ENABLED:  # fault tests only: die with the effects done, nothing recorded
                _crashpoint.hit("activity-after-effect")
            if stopped is not None and isinstance(stopped[2], _Pending):
                # it waits: it goes on in this task at once (its trio scopes are this task's); the
                # workflow task is recorded by another task, which hands it its claim or cancels it
                attempt, ctx, step = stopped
                handle, recorded = _Handle(), trio.Event()
                assert self._work is not None
                self._work.start_soon(self._record_ahead_usual, item, commands, seqs, done, None, rest,
                                      (attempt, ctx, handle), recorded)
                waited = (attempt, ctx, recorded)
                self._arm(scope, attempt, handle)
                report = await self._finish_step(attempt, ctx, step)
        if waited is not None:
            attempt, ctx, recorded = waited
            if scope.cancelled_caught:
                report = self._cancelled_report(attempt, ctx)
            await recorded.wait()
            if attempt["token"] is not None:  # claimed: reported under its claim
                await self._record_reports([(attempt, report)])
            return
        nxt = None
        if stopped is None:
            t_done = self.store.clock.now_ns()
            events = [{"k": ev.ACTIVITY_COMPLETED, "seq": a["seq"], "out": payload, "attempt": 1, "t": t_done}
                      for a, payload in done]
            nxt = await self._in_engine(self._ahead_advance, num, events)
        if nxt is not None:
            rt, hlen, commands2, seqs2 = nxt
            op = self._claimed_then(item, lambda t, tok: self._record_ahead(
                t, num, tok, now, commands, events, hlen, commands2, seqs2))
            try:
                written = await self._write(op)
            except BaseException:
                self._running_wfts.pop(num, None)
                with trio.CancelScope(shield=True):  # closed explicitly, never by the garbage collector
                    await self._in_engine(rt.close)
                raise
            self._running_wfts.pop(num, None)
            if written == UNCLAIMED_LOST:
                self.stats["unclaimed_lost"] += 1
                await self._in_engine(rt.close)
                self._notify_local()
                return
            status, status2, claimed2 = written
            if status != "ok":  # lease lost: replay next time
                await self._in_engine(rt.close)
                return
            self.stats["wft"] += 1
            self.stats["act"] += len(done)
            self.stats["ahead"] += 1
            if status2 == "ok":
                self.stats["wft"] += 1
                self.stats["continued"] += 1
            if status2 == "ok" and not rt.done and num not in self._cache and len(self._cache) < self.max_cached:
                rt.mark_recorded()
                self._cache[num] = rt
            else:
                await self._in_engine(rt.close)
            if claimed2:
                await self._run_eager(claimed2)
            return
        # the usual recording, with every activity claimed; the attempts go on under their claims
        await self._record_ahead_usual(item, commands, seqs, done, stopped, rest, None, None)

    async def _record_ahead_usual(self, item: dict[str, Any], commands: list[dict[str, Any]], seqs: list[int],
                                  done: list[tuple[dict[str, Any], bytes]], stopped: tuple[Any, ...] | None,
                                  rest: list[dict[str, Any]],
                                  waiting: tuple[dict[str, Any], _activity.ActivityContext, _Handle] | None,
                                  recorded: trio.Event | None) -> None:
        """Record a task whose activities ran ahead the usual way, every activity claimed; then
        report the attempts that ran (`done`, `stopped`) under their claims and start the others
        (`rest`). One that `waiting` runs in another task gets its claim (its token), or is
        cancelled if the task could not be recorded; `recorded` is set then."""
        num = item["num"]
        try:
            try:
                written: Any = await self._write(self._claimed_then(item, self._completing(num, commands, seqs)))
            except Exception as exc:  # noqa: BLE001 - not recorded: the lease expires, another try follows
                log.error("recording the workflow task of %r failed: %s", item["id"], exc)
                written = None
            self._running_wfts.pop(num, None)
            if written == UNCLAIMED_LOST:
                self.stats["unclaimed_lost"] += 1
            if not isinstance(written, tuple) or written[0] != "ok":
                await self._in_engine(self._evict, num)
                self._notify_local()
                if waiting is not None:  # started, and not ours to run: it must stop
                    waiting[1].lost = True
                    waiting[2].cancel()
                return
            self.stats["wft"] += 1
            rt = self._cache.get(num)
            if rt is not None and not rt.done:
                rt.mark_recorded()
            else:
                await self._in_engine(self._evict, num)
            by_seq = {c["seq"]: c for c in written[1]}  # every one: the task's commands claim them all
            if waiting is not None:
                attempt, ctx, handle = waiting
                claim = by_seq[attempt["seq"]]
                attempt.update(token=claim["token"], start=claim["start"])
                self._running_acts[(num, attempt["seq"])] = (attempt, ctx, handle)
                if attempt["opts"].get("hb"):
                    self._heartbeat_wakeup.set()
        finally:
            if recorded is not None:
                recorded.set()
        reports: list[tuple[dict[str, Any], tuple[Any, ...] | None]] = [
            (by_seq[a["seq"]], ("ok", payload)) for a, payload in done]
        if stopped is not None:
            reports.append((by_seq[stopped[0]["seq"]], stopped[2]))
        later = [by_seq[a["seq"]] for a in rest]
        if later:
            assert self._work is not None
            self._work.start_soon(self._run_inline, self._register_inline(later), [])
        if reports:
            await self._record_reports(reports)

    def _ahead_advance(self, num: int, events: list[dict[str, Any]]) -> tuple[Runtime, int, list[dict[str, Any]], list[int]] | None:
        """Engine thread: take the instance whose activities ran ahead out of the cache and feed it
        their results, as if its task were recorded; None if it cannot go on so (then its task is
        recorded the usual way, and the results after it)."""
        rt = self._cache.pop(num, None)
        if rt is None:
            return None
        if rt.done:
            self._cache[num] = rt
            return None
        rt.mark_recorded()
        advanced = _advance_taken(rt, events)
        if advanced is None:
            return None
        hlen, commands = advanced
        return rt, hlen, commands, self._eager_seqs(commands, self.queue)

    def _record_ahead(self, t: Txn, num: int, token: int, started: int, commands: list[dict[str, Any]],
                      events: list[dict[str, Any]], hlen: int, commands2: list[dict[str, Any]],
                      seqs2: list[int]) -> tuple[str, str | None, list[dict[str, Any]]]:
        """Writer thread: record a task run ahead, its activities' results and the next task's
        commands (`_ops.complete_task_run_ahead`), the activities of those claimed for us: (the
        first task's status, the second's, the claimed attempts)."""
        claimed: list[dict[str, Any]] = []
        status, status2 = _ops.complete_task_run_ahead(
            t, num, token, started, commands, events, hlen, commands2, self._eager(seqs2, claimed))
        return status, status2, claimed

    def _claimed_then(self, item: dict[str, Any], op: Callable[[Txn, int], Any]) -> Callable[[Txn], Any]:
        """`op(t, token)` under the task's token; for a task not claimed yet, claim it first in the
        same transaction, and if that cannot be, return `UNCLAIMED_LOST` without running `op`."""
        if item["token"] is not None:
            return lambda t: op(t, item["token"])

        def claim_then(t: Txn) -> Any:
            token = _ops.claim_peeked_wft(t, item, self.identity, self.lease_ns)
            return UNCLAIMED_LOST if token is None else op(t, token)

        return claim_then

    def _activate(self, item: dict[str, Any]) -> list[dict[str, Any]] | str:
        """Engine thread: bring the instance up to date and run the live activation."""
        num = item["num"]
        rt = self._cache.pop(num, None)
        try:
            if rt is None:
                defn = self.registry.workflow(item["type"])
                rt = Runtime(defn, item["id"], f"{num:x}", self.converter)
            start = rt.processed
            events = self.store.read(lambda t: _ops.read_history(t, num, start, item["hlen"]))
            commands = rt.advance(events)
        except Exception as exc:  # noqa: BLE001 - a workflow-code failure: kept in the record
            if rt is not None:
                rt.close()
            text = task_error_text(exc)
            log.warning("workflow task of %r failed (the workflow goes on once its code is fixed): %s",
                        item["id"], text)
            return text
        self._cache[num] = rt
        self._trim_cache()
        return commands

    def _evict(self, num: int) -> None:
        rt = self._cache.pop(num, None)
        if rt is not None:
            rt.close()

    def _trim_cache(self) -> None:
        while len(self._cache) > self.max_cached:
            _, rt = self._cache.popitem(last=False)
            rt.close()

    def _clear_cache(self) -> None:
        while self._cache:
            _, rt = self._cache.popitem()
            rt.close()

    # --- queries -----------------------------------------------------------------------------

    async def _run_query(self, item: dict[str, Any]) -> None:
        answer = await self._in_engine(self._answer_query, item)
        try:
            await self._write(lambda t: _ops.answer_query(t, item["qnum"], answer))
        except Exception as exc:  # noqa: BLE001 - the asker times out with a clear error
            log.error("answering query %r failed: %s", item["name"], exc)
        self.stats["query"] += 1

    def _answer_query(self, item: dict[str, Any]) -> dict[str, Any]:
        num = item["num"]
        try:
            rt = self._cache.get(num)
            if rt is None:
                rt = Runtime(self.registry.workflow(item["type"]), item["id"], f"{num:x}", self.converter)
            if rt._pending_recorded == 0:  # otherwise it already holds the newest state
                start = rt.processed
                events = self.store.read(lambda t: _ops.read_history(t, num, start))
                rt.advance(events, run_live=False)
            if num not in self._cache and not rt.done:
                self._cache[num] = rt
                self._trim_cache()
            args = self.converter.from_payload(item["in"], "query arguments")
            value = rt.query(item["name"], args)
            return {"ok": self.converter.to_payload(value, f"answer to query {item['name']!r}")}
        except Exception as exc:  # noqa: BLE001 - reported to the asker
            self._evict(num)
            text = str(exc) if isinstance(exc, DurableError) else f"{type(exc).__name__}: {exc}"
            return {"err": self.converter.encode_text(text)}

    # --- activities --------------------------------------------------------------------------

    def _activity_context(self, item: dict[str, Any]) -> _activity.ActivityContext:
        return _activity.ActivityContext(lambda: self._activity_info(item))

    def _activity_info(self, item: dict[str, Any]) -> _activity.ActivityInfo:
        details = None
        if item.get("hb") is not None:
            try:
                details = self.converter.from_payload(item["hb"], "heartbeat details")
            except DurableError:
                details = None
        return _activity.ActivityInfo(
            activity=item["name"], workflow_id=item["wid"], workflow_type=item["wtype"], seq=item["seq"],
            attempt=item["attempt"], idempotency_key=f"{item['wid']}/{item['num']:x}/{item['seq']}",
            heartbeat_details=details, queue=item["queue"],
            started_at=_dt.datetime.fromtimestamp(item["start"] / 1e9, tz=_dt.timezone.utc),
        )

    async def _run_activity(self, item: dict[str, Any], ctx: _activity.ActivityContext, scope: trio.CancelScope) -> None:
        try:
            report = await self._attempt(item, ctx, scope)
        except Exception as exc:  # noqa: BLE001 - not recorded: the lease expires, another attempt follows
            log.error("activity %r (seq %d) failed to run: %s", item["name"], item["seq"], exc)
            self._activity_ended(item)
            return
        except BaseException:
            self._activity_ended(item)
            raise
        await self._record_reports([(item, report)])

    def _activity_ended(self, item: dict[str, Any]) -> None:
        key = (item["num"], item["seq"])
        # a retry of this step may run here now (this attempt timed out): leave its entry
        if self._running_acts.get(key, (None,))[0] is item:
            del self._running_acts[key]
            if self._room_wanted:  # the poller waits for a free slot: this is one
                self._room_wanted = False
                self._notify_local()
        if self._stopping:
            self._notify_local()

    async def _run_inline(self, entries: list[_Entry], reports: list[tuple[dict[str, Any], tuple[Any, ...] | None]]) -> None:
        """Run async attempts one after another in this task, inside one cancel scope, stepping
        each coroutine by hand: one that finishes without waiting for anything (most do) needs
        no task or scope of its own. The first that waits makes this task its own (the scope
        becomes its scope; its deadline is set), and the attempts after it go on in a new task
        with the reports so far, to be recorded there. Then record the reports: results that
        can continue their run join one round (one transaction for all)."""
        owned: tuple[dict[str, Any], _activity.ActivityContext] | None = None
        report: tuple[Any, ...] | None = None
        try:
            with trio.CancelScope() as scope:
                for i, (item, ctx, handle) in enumerate(entries):
                    self.stats["inline"] += 1
                    step = self._first_step(item, ctx)
                    if not isinstance(step, _Pending):
                        reports.append((item, step))
                        continue
                    self._arm(scope, item, handle)
                    if i + 1 < len(entries) or reports:
                        assert self._work is not None
                        self._work.start_soon(self._run_inline, entries[i + 1:], reports)
                        reports = []
                    owned = (item, ctx)
                    report = await self._finish_step(item, ctx, step)
                    break
            if owned is not None:
                if scope.cancelled_caught:
                    report = self._cancelled_report(owned[0], owned[1])
                reports.append((owned[0], report))
        finally:
            await self._record_reports(reports)

    def _arm(self, scope: trio.CancelScope, item: dict[str, Any], handle: _Handle) -> None:
        """An attempt run by hand waits: `scope` becomes its scope (cancelling it cancels the
        scope), with its start_to_close deadline."""
        handle.scope = scope
        if handle.cancel_called:
            scope.cancel()
        s2c = item["opts"].get("s2c")
        if s2c is not None:
            scope.deadline = trio.current_time() + max(0.0, s2c - (self.store.clock.now_ns() - item["start"]) / _NS)

    def _first_step(self, item: dict[str, Any], ctx: _activity.ActivityContext) -> tuple[Any, ...] | _Pending | None:
        """Start an async attempt: its report if it finished (or could not start), else what
        `_finish_step` needs to run the rest of it."""
        if ctx.lost:
            return None
        if ctx.cancel_requested:
            return _CANCELLED
        act = self.registry.activity(item["name"])
        try:
            args = self.converter.from_payload(item["in"], f"arguments of activity {item['name']!r}")
        except DurableError as exc:
            return ("err", self.converter.failure(exc), True, False)
        token = _activity.set_current(ctx)
        try:
            coro = act.fn(*args)
            trap = coro.send(None)
        except StopIteration as stop:
            _activity._current.reset(token)
            return self._ok_report(item, stop.value)
        except (Exception, _activity.ActivityCancelled) as exc:  # noqa: BLE001 - the attempt's failure, reported
            _activity._current.reset(token)
            return self._error_report(ctx, exc)
        except BaseException:
            _activity._current.reset(token)
            raise
        return _Pending(coro, trap, token)

    async def _finish_step(self, item: dict[str, Any], ctx: _activity.ActivityContext, step: _Pending) -> tuple[Any, ...] | None:
        try:
            result = await _drive(step.coro, step.trap)
        except (Exception, _activity.ActivityCancelled) as exc:  # noqa: BLE001 - the attempt's failure, reported
            return self._error_report(ctx, exc)
        finally:
            _activity._current.reset(step.token)
        return self._ok_report(item, result)

    def _ok_report(self, item: dict[str, Any], result: Any) -> tuple[Any, ...]:
        try:
            payload = self.converter.to_payload(result, f"result of activity {item['name']!r}")
        except PayloadError as exc:  # F08: a result that cannot be stored fails the step, clearly
            return ("err", self.converter.encode_failure({"type": "PayloadError", "msg": str(exc), "nr": True}), False, False)
        return ("ok", payload)

    def _error_report(self, ctx: _activity.ActivityContext, exc: BaseException) -> tuple[Any, ...] | None:
        if isinstance(exc, _activity.ActivityCancelled):
            return None if ctx.lost else _CANCELLED
        retryable = not (isinstance(exc, ApplicationError) and exc.non_retryable)
        return ("err", self.converter.failure(exc), retryable, False)

    @staticmethod
    def _cancelled_report(item: dict[str, Any], ctx: _activity.ActivityContext) -> tuple[Any, ...] | None:
        """The report of an attempt whose scope caught a cancellation: lost, cancelled, or timed out."""
        if ctx.lost:
            return None
        if ctx.cancel_requested:
            return _CANCELLED
        s2c = item["opts"].get("s2c")
        return ("err", {"type": "StartToCloseTimeout",
                        "msg": f"attempt {item['attempt']} passed its start_to_close timeout of {s2c:g} s"}, True, False)

    async def _record_reports(self, reports: list[tuple[dict[str, Any], tuple[Any, ...] | None]]) -> None:
        """Record attempts' reports (of `_run_activity`, or all that `_run_inline` ran). A result
        of a run whose live instance we hold, with nothing else running it, is fed to it and
        recorded with the workflow task it makes in one transaction; results of one run that come
        in while such a transaction is in flight go together into the next (a fan-out costs two
        or three transactions, not one each). The first result of a run starts the rounds
        (`_continue_run`), in this task. The other reports, and results that could not continue
        their run, are recorded one by one, the usual way (`_record_report`)."""
        joined: list[tuple[dict[str, Any], tuple[Any, ...] | None, _Result | None]] = []
        owners: list[tuple[int, str]] = []
        for item, report in reports:
            result, owner = self._join_continue(item, report)
            if owner:
                owners.append((item["num"], item["queue"]))
            joined.append((item, report, result))
        try:
            for num, queue in owners:
                await self._continue_run(num, queue)
        except Exception as exc:  # noqa: BLE001 - its results take the usual path below
            log.error("recording results of run %x with its workflow task failed: %s", num, exc)
        finally:
            for item, report, result in joined:
                if result is not None:
                    try:
                        await result.wait()
                    except BaseException:
                        self._activity_ended(item)
                        raise
                await self._settle(item, report, result)

    async def _settle(self, item: dict[str, Any], report: tuple[Any, ...] | None, result: _Result | None) -> None:
        """End an attempt: count its result if its run's round recorded it (or refused it), else
        record its report the usual way (unless that round's write failed)."""
        try:
            if result is not None:
                if result.error is not None:
                    raise result.error
                if result.accepted is not None:
                    self.stats["act"] += 1
                    return
            await self._record_report(item, report)
        except Exception as exc:  # noqa: BLE001 - not recorded: the lease expires, another attempt follows
            log.error("recording activity %r (seq %d) failed: %s", item["name"], item["seq"], exc)
        finally:
            self._activity_ended(item)

    async def _record_report(self, item: dict[str, Any], report: tuple[Any, ...] | None) -> None:
        """Record an attempt's report the usual way (not with the workflow task it makes)."""
        num, seq, token = item["num"], item["seq"], item["token"]
        if report is None:
            if self._stopping:  # stopped by _drain: queued again, the attempt not counted
                await self._write(lambda t: _ops.release_activity(t, num, seq, token))
            return
        if report[0] == "unknown":  # F15: nothing ran; hand it back for a worker with the code
            log.warning("activity task of %r refused: %s", item["wid"], report[1])
            await self._write(lambda t: _ops.refuse_activity(t, num, seq, token, report[1]))
            return
        if report[0] == "ok":
            # Sticky dispatch: if we hold the workflow's live instance, take the workflow task
            # this result makes in the same transaction (no replay elsewhere, no queue round trip).
            sticky = num in self._cache and not self._stopping

            def record(t: Txn) -> tuple[bool, dict[str, Any] | None]:
                ok = _ops.complete_activity(t, num, seq, token, report[1])
                if not ok or not sticky:
                    return ok, None
                return ok, _ops.claim_workflow_task(t, num, self.queue, self.identity, self.lease_ns)

            accepted, follow = await self._write(record)
            if follow is not None:
                self._dispatch(follow)
        else:
            _, err, retryable, cancelled = report
            details = self._unsent_details(item)
            accepted = await self._write(
                lambda t: _ops.fail_activity(t, num, seq, token, err, retryable, cancelled, details)
            )
            if accepted and not cancelled:
                log.warning("activity %r of workflow %r failed, attempt %d: %s", item["name"], item["wid"],
                            item["attempt"], format_error_record(self.converter.readable_failure(err)).split("\n", 1)[0])
        if not accepted:
            self.stats["refused"] += 1
            log.info("result of activity %r (seq %d, attempt %d) refused: lease lost", item["name"], seq, item["attempt"])
        self.stats["act"] += 1

    def _unsent_details(self, item: dict[str, Any]) -> bytes | None:
        """Heartbeat details an attempt gave since its last heartbeat went out, encoded, or None."""
        running = self._running_acts.get((item["num"], item["seq"]))
        if running is None or not running[1].details_dirty or running[1].details is None:
            return None
        try:
            return self.converter.to_payload(running[1].details, "heartbeat details")
        except PayloadError as exc:
            log.warning("heartbeat details of %r dropped: %s", item["name"], exc)
            return None

    def _join_continue(self, item: dict[str, Any], report: tuple[Any, ...] | None) -> tuple[_Result | None, bool]:
        """Queue an attempt's result for the next round of its run, if it is a result and can
        continue the run: (the result, whether the caller must run the rounds, `_continue_run`),
        or (None, False)."""
        if report is None or report[0] != "ok":
            return None, False
        if _crashpoint.ENABLED:  # fault tests only: die with the effect done but not recorded
            _crashpoint.hit("activity-after-effect")
        num = item["num"]
        joining = num in self._continuing
        if self._stopping or not joining and self._continuable(num) is None:
            return None, False
        result = _Result(item, item["seq"], item["token"], report[1])
        self._continuing.setdefault(num, []).append(result)
        return result, not joining

    async def _continue_run(self, num: int, queue: str) -> None:
        """Record the results queued for run `num` with the workflow tasks they make, round by round
        (in the task of the first result; the others wait for theirs).

        The async attempts a round claims for the run start here, in this task (`_step_here`):
        one that finishes without waiting (most do) joins the next round with no task of its
        own, so a sequence of steps runs in one task. If one waits, this task becomes its own
        and the rounds go on in a new task."""
        owned: tuple[dict[str, Any], _activity.ActivityContext] | None = None
        report: tuple[Any, ...] | None = None
        try:
            # first let the other activities that finish now join the first round
            await trio.lowlevel.cancel_shielded_checkpoint()
            # one cancel scope for the attempts started here: it becomes the scope of one that waits
            with trio.CancelScope() as scope:
                while self._continuing[num] and not self._stopping:
                    batch, self._continuing[num] = self._continuing[num], []
                    now = self.store.clock.now_ns()
                    events = [{"k": ev.ACTIVITY_COMPLETED, "seq": r.seq, "out": r.payload, "attempt": r.item["attempt"],
                               "t": now} for r in batch]
                    try:
                        rt, written = await self._engine_then_write(self._speculate_and_record, num, events, batch, queue)
                    except BaseException:  # cancelled: the waiting attempts take the usual path
                        self._finish_round(batch, None)
                        raise
                    if rt is None:  # the usual path records them
                        self._finish_round(batch, None)
                        continue
                    if isinstance(written, Exception):  # not recorded (full disk...): the usual handling
                        await self._in_engine(rt.close)
                        self._finish_round(batch, None, written)
                        continue
                    accepted, status, eager = written
                    if status == "ok" and not rt.done and num not in self._cache and len(self._cache) < self.max_cached:
                        rt.mark_recorded()  # back in the cache before the activities below can finish
                        self._cache[num] = rt
                    else:  # finished, or the history differs from what it ran on: replay next time
                        await self._in_engine(rt.close)
                    here = self._dispatch_all_but_inlinable(eager)
                    if status == "ok":
                        self.stats["wft"] += 1
                        self.stats["continued"] += 1
                    for r, ok in zip(batch, accepted):
                        if not ok:
                            self.stats["refused"] += 1
                            log.info("result of activity %r (seq %d, attempt %d) refused: lease lost", r.item["name"],
                                     r.seq, r.item["attempt"])
                    self._finish_round(batch, accepted)
                    if not here:
                        continue
                    pending = self._step_here(here)
                    if pending is not None:  # it waits: this task becomes its own
                        item, ctx, handle, step, rest = pending
                        owned = (item, ctx)
                        assert self._work is not None
                        if rest:
                            self._work.start_soon(self._run_inline, rest, [])
                        self._work.start_soon(self._continue_run, num, queue)  # the rounds go on there
                        self._arm(scope, item, handle)
                        report = await self._finish_step(item, ctx, step)
                        break
            if owned is not None and scope.cancelled_caught:
                report = self._cancelled_report(owned[0], owned[1])
        finally:
            if owned is None:
                self._finish_round(self._continuing.pop(num, []), None)
        if owned is not None:
            await self._record_reports([(owned[0], report)])

    def _step_here(self, items: list[dict[str, Any]]) -> tuple[dict[str, Any], _activity.ActivityContext, _Handle, _Pending, list[_Entry]] | None:
        """In `_continue_run`'s task and cancel scope: start the async attempts a round claimed,
        one after another, until one waits; return it (with its entry and the entries after it),
        or None if none did. A result joins the next round of its run (`_finish_round` ends its
        attempt); any other report is recorded by a task of its own."""
        entries = self._register_inline(items)
        for i, (item, ctx, handle) in enumerate(entries):
            self.stats["inline"] += 1
            step = self._first_step(item, ctx)
            if isinstance(step, _Pending):
                return item, ctx, handle, step, entries[i + 1:]
            result, _ = self._join_continue(item, step)  # a result joins: its run is being continued
            if result is not None:
                result.local = True
                continue
            assert self._work is not None
            self._work.start_soon(self._record_reports, [(item, step)])
        return None

    def _finish_round(self, results: list[_Result], accepted: list[bool] | None, error: Exception | None = None) -> None:
        """Wake the attempts waiting for their results' round; end those started by the rounds
        (`_step_here`), in a task of their own if their result is yet to be recorded."""
        for i, r in enumerate(results):
            r.accepted = None if accepted is None else accepted[i]
            r.error = error
            r.done = True
            if r._event is not None:
                r._event.set()
            if r.local:
                if error is None and r.accepted is not None:
                    self.stats["act"] += 1
                    self._activity_ended(r.item)
                else:
                    assert self._work is not None
                    self._work.start_soon(self._settle, r.item, ("ok", r.payload), r)

    def _speculate_and_record(self, num: int, events: list[dict[str, Any]], batch: list[_Result],
                              queue: str) -> _Forward | None:
        """Engine thread: run the activation these results make, then have the writer record the
        results with it in one transaction; None if the cached instance cannot take them."""
        spec = self._speculate(num, events)
        if spec is None:
            return None
        rt, hlen, commands = spec
        seqs = self._eager_seqs(commands, queue)
        results = [(r.seq, r.token, e) for r, e in zip(batch, events)]

        def record(t: Txn) -> tuple[list[bool], str, list[dict[str, Any]]]:
            claimed: list[dict[str, Any]] = []
            accepted, status = _ops.complete_activities_and_continue(
                t, num, results, hlen, commands, self._eager(seqs, claimed))
            return accepted, status, claimed

        return _Forward(record, rt)

    def _speculate(self, num: int, events: list[dict[str, Any]]) -> tuple[Runtime, int, list[dict[str, Any]]] | None:
        """Engine thread: take the cached instance out of the cache (no other activation may use
        it meanwhile) and run the activation these results make; None if it cannot."""
        rt = self._continuable(num)
        if rt is None:
            return None
        del self._cache[num]
        advanced = _advance_taken(rt, events)
        if advanced is None:
            return None
        hlen, commands = advanced
        return rt, hlen, commands

    def _continuable(self, num: int) -> Runtime | None:
        """Run `num`'s cached instance if a result can be fed to it now: it is up to date with
        its history and no workflow task of it runs."""
        rt = self._cache.get(num)
        if rt is None or rt._pending_recorded or rt.done or num in self._running_wfts:
            return None
        return rt

    def _eager(self, seqs: list[int], claimed: list[dict[str, Any]]) -> _ops.Eager | None:
        return (frozenset(seqs), self.queue, self.identity, self.lease_ns, claimed) if seqs else None

    def _eager_seqs(self, commands: list[dict[str, Any]], queue: str) -> list[int]:
        """Activities scheduled by `commands` that we can claim at once in the same transaction."""
        seqs = [c["seq"] for c in commands if c["k"] == ev.ACTIVITY_SCHEDULED
                and (c["opts"].get("queue") or queue) == self.queue]
        room = 0 if self._stopping else max(0, self.max_activities - len(self._running_acts))
        return seqs[:room]

    async def _attempt(self, item: dict[str, Any], ctx: _activity.ActivityContext, scope: trio.CancelScope) -> tuple[Any, ...] | None:
        """Run one attempt; return ("ok", payload), ("err", record, retryable, cancelled),
        ("unknown", error) if this worker does not have the activity, or None."""
        try:
            act = self.registry.activity(item["name"])
        except NotRegistered as exc:
            return ("unknown", str(exc))
        try:
            args = self.converter.from_payload(item["in"], f"arguments of activity {item['name']!r}")
        except DurableError as exc:
            return ("err", self.converter.failure(exc), True, False)
        s2c = item["opts"].get("s2c")
        if s2c is not None:
            scope.deadline = trio.current_time() + max(0.0, s2c - (self.store.clock.now_ns() - item["start"]) / _NS)
        try:
            with scope:
                if act.is_async:
                    token = _activity.set_current(ctx)
                    try:
                        result = await act.fn(*args)
                    finally:
                        _activity._current.reset(token)
                else:
                    result = await trio.to_thread.run_sync(ctx.run_sync, act.fn, args, limiter=self._threads)
        except (Exception, _activity.ActivityCancelled) as exc:  # noqa: BLE001 - the attempt's failure, reported
            return self._error_report(ctx, exc)
        if scope.cancelled_caught:
            return self._cancelled_report(item, ctx)
        return self._ok_report(item, result)

    # --- timers and leases -------------------------------------------------------------------

    async def _clock(self) -> None:
        while True:
            seen = self._change_count
            due = self.store.read(_ops.next_due)
            now = self.store.clock.now_ns()
            if due is not None and due <= now:
                try:
                    for item in await self._write(self._fire_and_claim):
                        self.stats["timer_claims"] += 1
                        self._dispatch(item)
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a full disk: try again later
                    log.error("firing timers failed: %s", exc)
                    due = now + int(POLL_FALLBACK_SECONDS * _NS)
            wait = POLL_FALLBACK_SECONDS if due is None else min((due - now) / _NS, POLL_FALLBACK_SECONDS)
            await self._wait_changed(wait, seen)

    def _fire_and_claim(self, t: Txn) -> list[dict[str, Any]]:
        """Fire what is due; claim the workflow tasks of our queue that the timers made, in the
        same transaction (no round trip through the queue)."""
        fired: list[int] = []
        _ops.fire_due(t, 256, fired)
        if self._stopping or self._work is None:
            return []
        items = []
        for num in dict.fromkeys(fired):
            item = _ops.claim_workflow_task(t, num, self.queue, self.identity, self.lease_ns)
            if item is not None:
                items.append(item)
        return items

    async def _heartbeat(self) -> None:
        last = trio.current_time()
        while True:
            # wake early when an activity starts whose heartbeat timeout is shorter than the wait
            with trio.move_on_after(max(0.0, last + self._heartbeat_interval() - trio.current_time())):
                await self._heartbeat_wakeup.wait()
            self._heartbeat_wakeup = trio.Event()
            if trio.current_time() < last + self._heartbeat_interval():
                continue
            last = trio.current_time()
            items: list[tuple[Any, ...]] = []
            keys: list[Any] = []
            for key, (item, ctx, _) in list(self._running_acts.items()):
                details = None
                if ctx.details_dirty:
                    try:
                        details = self.converter.to_payload(ctx.details, "heartbeat details")
                    except PayloadError as exc:
                        log.warning("heartbeat details of %r dropped: %s", item["name"], exc)
                    ctx.details_dirty = False
                items.append(("act", key[0], key[1], item["token"], details))
                keys.append(key)
            for num, token in list(self._running_wfts.items()):
                if token is not None:  # one run before it is claimed holds no lease yet
                    items.append(("wft", num, token))
                    keys.append(None)
            present = trio.current_time() >= self._presence_at + self._presence_interval()
            if present:
                self._presence_at = trio.current_time()
            if not items:
                if present:  # an idle worker still shows that it serves the queue
                    with contextlib.suppress(DurableError):
                        await self._write(self._present)
                continue

            def beat(t: Txn) -> list[str]:
                if present:
                    self._present(t)
                return _ops.heartbeat(t, self.identity, self.lease_ns, items)

            try:
                statuses = await self._write(beat)
            except DurableError as exc:
                log.error("heartbeat failed: %s", exc)
                continue
            self._apply_statuses(keys, statuses)

    def _apply_statuses(self, keys: list[Any], statuses: list[str]) -> None:
        """Cancel the scopes of activities whose workflow asked to cancel them or that we lost."""
        for key, status in zip(keys, statuses):
            if key is None or key not in self._running_acts:
                continue
            _, ctx, scope = self._running_acts[key]
            if status == "cancel" and not ctx.cancel_requested:
                ctx.cancel_requested = True
                scope.cancel()
            elif status == "lost" and not ctx.lost:
                ctx.lost = True
                scope.cancel()

    async def _watch_cancellations(self) -> None:
        """Between heartbeats, learn of cancel requests as soon as they are committed: a wake-up
        that says running attempts changed (`_wake.RUNNING_ACTIVITIES`), or the fallback poll,
        triggers a read-only look at the activities running here (at most every 20 ms)."""
        while True:
            with trio.move_on_after(POLL_FALLBACK_SECONDS):
                await self._acts_changed.wait()
            self._acts_changed = trio.Event()
            if self._running_acts:
                keys = list(self._running_acts)
                items = [(num, seq, self._running_acts[(num, seq)][0]["token"]) for num, seq in keys]
                statuses = self.store.read(lambda t: _ops.activity_status(t, items))
                self._apply_statuses(keys, statuses)
                await trio.sleep(0.02)

    def _heartbeat_interval(self) -> float:
        interval = self.lease_ns / _NS / 3
        for item, _, _ in self._running_acts.values():
            hb = item["opts"].get("hb")
            if hb:
                interval = min(interval, hb / 3)
        return max(interval, 0.01) if math.isfinite(interval) else 1.0


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


class _BatchThread:
    """A thread that runs the jobs trio tasks queue for it in batches: each batch is every job
    queued while the previous one ran. Results go back to the waiting tasks through the trio
    token, so the thread starts its next batch at once. With `forward_to`, a job whose result is
    `(True, _Forward)` goes on to that thread: its task wakes once the op there is done.

    A submitting task waits without a `trio.Event` (rescheduled directly), and cannot be
    cancelled while its job is in a thread: it is woken once the job is done."""

    def __init__(self, name: str, run_batch: Callable[[list[Any]], list[Any]], token: trio.lowlevel.TrioToken,
                 forward_to: _BatchThread | None = None) -> None:
        self._run_batch = run_batch
        self._token = token
        self._forward_to = forward_to
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    async def submit(self, job: Any) -> Any:
        """Queue `job`; return what the batch function made of it."""
        return (await self.submit_box(job))[0]

    async def submit_box(self, job: Any) -> list[Any]:
        """Queue `job`; return what the batch functions made of it, of this thread first and then
        of the thread it was forwarded to, if it was."""
        box: list[Any] = []
        self._queue.put((job, box, trio.lowlevel.current_task()))
        # no checkpoint in between: _deliver runs on this thread, so it cannot come first
        await trio.lowlevel.wait_task_rescheduled(_cannot_abort)
        return box

    def _loop(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            batch = [get()]
            try:
                while True:
                    batch.append(get_nowait())
            except Empty:
                pass
            jobs = [entry for entry in batch if entry is not _STOP]
            if jobs:
                results = self._run_batch([job for job, _, _ in jobs])
                kept, kept_results = self._forward(jobs, results) if self._forward_to else (jobs, results)
                if kept:
                    try:
                        self._token.run_sync_soon(_deliver, kept, kept_results)
                    except trio.RunFinishedError:
                        return
            if len(jobs) != len(batch):  # stop() was called: what came before it is done
                return

    def _forward(self, batch: list[tuple[Any, list[Any], Any]],
                 results: list[Any]) -> tuple[list[tuple[Any, list[Any], Any]], list[Any]]:
        assert self._forward_to is not None
        kept: list[tuple[Any, list[Any], Any]] = []
        kept_results: list[Any] = []
        for entry, result in zip(batch, results):
            if result[0] and isinstance(result[1], _Forward):
                entry[1].append(result)
                self._forward_to._queue.put((result[1].op, entry[1], entry[2]))
            else:
                kept.append(entry)
                kept_results.append(result)
        return kept, kept_results

    def stop(self) -> None:
        """Run what is queued, then end the thread (stop a thread before the one it forwards to)."""
        self._queue.put(_STOP)
        self._thread.join()


_STOP = object()  # what stop() queues


def _cannot_abort(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


def _deliver(batch: list[tuple[Any, list[Any], Any]], results: list[Any]) -> None:
    reschedule = trio.lowlevel.reschedule
    for (_, box, task), result in zip(batch, results):
        box.append(result)
        reschedule(task)


class _Ahead:
    """An engine job's result: the activation's commands, whose activities run ahead (`Worker._run_ahead`)."""

    __slots__ = ("commands",)

    def __init__(self, commands: list[dict[str, Any]]) -> None:
        self.commands = commands


class _Forward:
    """An engine job's result that has the writer run `op` next; `value` goes back with its result."""

    __slots__ = ("op", "value")

    def __init__(self, op: Callable[[Txn], Any], value: Any) -> None:
        self.op, self.value = op, value


class _Result:
    """An activity's result waiting to be recorded with the workflow task it makes."""

    __slots__ = ("item", "seq", "token", "payload", "done", "_event", "accepted", "error", "local")

    def __init__(self, item: dict[str, Any], seq: int, token: int, payload: bytes) -> None:
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


def _advance_taken(rt: Runtime, events: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]] | None:
    """Engine thread: run the activation `events` make on `rt` (taken out of the cache): the
    history length it had seen and its commands; None, `rt` closed, if its code failed (the usual
    path then runs it again and records the failure)."""
    hlen = rt.processed
    try:
        return hlen, rt.advance(events)
    except Exception:  # noqa: BLE001 - recorded by the usual path
        rt.close()
        return None


def _run_jobs(jobs: list[Any]) -> list[Any]:
    """Engine thread: run each job in order; keep its result or its error."""
    out: list[tuple[bool, Any]] = []
    for fn, args in jobs:
        try:
            out.append((True, fn(*args)))
        except Exception as exc:  # noqa: BLE001 - handed back to the job's own task
            out.append((False, exc))
    return out


_CANCELLED = ("err", {"type": "Cancelled", "msg": "cancelled"}, False, True)  # an attempt's report


class _Handle:
    """Stands for the cancel scope of an attempt run by `Worker._run_inline`: until the attempt
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


class _Pending:
    """An async attempt that waits for something after its first step (see `Worker._first_step`)."""

    __slots__ = ("coro", "trap", "token")

    def __init__(self, coro: Any, trap: Any, token: Any) -> None:
        self.coro, self.trap, self.token = coro, trap, token


#: An attempt run by hand (`Worker._run_inline`, `Worker._step_here`): its item, context and handle.
_Entry = tuple[dict[str, Any], _activity.ActivityContext, _Handle]


@types.coroutine
def _drive(coro: Any, trap: Any) -> Any:
    """Go on running `coro`, which has yielded `trap` to trio, in the awaiting task (what
    ``yield from`` does, for a coroutine already started)."""
    while True:
        try:
            value = yield trap
        except BaseException as exc:  # noqa: BLE001 - thrown in by trio (Cancelled...): pass it on
            try:
                trap = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                trap = coro.send(value)
            except StopIteration as stop:
                return stop.value
