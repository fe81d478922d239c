"""Activity attempts: running one in a task and cancel scope of its own (a sync one in a thread,
an asyncio one as a task of the worker's asyncio loop: `_asyncio`),
its report (`_records.Ok`, `Err`, `Unknown`, or None) and recording it under the attempt's lease;
heartbeats, which renew the leases this worker holds and carry cancel requests and lost leases
back to the attempts; and the watcher that learns of cancel requests between heartbeats."""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
from typing import Any

import trio

from durable import _activity, _ops
from durable._codec import format_error_record
from durable._defs import Activity
from durable._errors import ApplicationError, DurableError, NotRegistered, PayloadError
from durable._limits import POLL_FALLBACK_SECONDS
from durable._ops import LeaseStatus
from durable._store import Txn

from ._asyncio import hint_asyncio
from ._base import _NS, WorkerBase, log
from ._records import CANCELLED, Err, Item, Ok, Report, Result, Unknown


class Activities(WorkerBase):
    """Activity attempts, their reports, heartbeats and cancellation."""

    def _activity_context(self, item: Item) -> _activity.ActivityContext:
        return _activity.ActivityContext(lambda: self._activity_info(item))

    def _activity_info(self, item: Item) -> _activity.ActivityInfo:
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

    # --- running an attempt --------------------------------------------------------------------

    async def _run_activity(self, item: Item, ctx: _activity.ActivityContext, scope: trio.CancelScope) -> None:
        metrics, tracer = self.metrics, self.tracer
        t0 = metrics.attempt_started(item["name"]) if metrics is not None else 0.0
        span = tracer.attempt_span(item) if tracer is not None else None
        report: Report = None
        try:
            report = await self._attempt(item, ctx, scope)
        except Exception as exc:  # noqa: BLE001 - not recorded: the lease expires, another attempt follows
            log.error("activity %r (seq %d) failed to run: %s", item["name"], item["seq"], exc)
            self._activity_ended(item)
            return
        except BaseException:
            self._activity_ended(item)
            raise
        finally:
            if metrics is not None:
                metrics.attempt_ended(item["name"], t0)
            if span is not None:
                tracer.end(span, not isinstance(report, Ok))
        await self._record_reports([(item, report)])

    def _activity_ended(self, item: Item) -> None:
        key = (item["num"], item["seq"])
        # a retry of this step may run here now (this attempt timed out): leave its entry
        if self._running_acts.get(key, (None,))[0] is item:
            del self._running_acts[key]
            if self._room_wanted:  # the poller waits for a free slot: this is one
                self._room_wanted = False
                self._notify_local()
        if self._stopping:
            self._notify_local()

    async def _attempt(self, item: Item, ctx: _activity.ActivityContext, scope: trio.CancelScope) -> Report:
        """Run one attempt; return its report: `Ok`, `Err`, `Unknown` if this worker does not
        have the activity, or None."""
        try:
            act = self.registry.activity(item["name"])
        except NotRegistered as exc:
            return Unknown(str(exc))
        try:
            what = f"arguments of activity {item['name']!r}"
            args = self.converter.from_payload(item["in"], what)
            plan = act._plan or act.plan
            if plan.args_in:  # by the parameters' annotations (`_convert`)
                args = plan.args_from_plain(args, what)
        except DurableError as exc:
            return Err(self.converter.failure(exc), True, False)
        s2c = item["opts"].get("s2c")
        if s2c is not None:
            scope.deadline = trio.current_time() + max(0.0, s2c - (self.store.clock.now_ns() - item["start"]) / _NS)
        try:
            with scope:
                if self._on_asyncio(act):
                    result = await self._asyncio.run(act.fn, args, ctx)
                elif act.is_async:
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

    def _on_asyncio(self, act: Activity[Any, Any]) -> bool:
        """Whether `act` runs on the worker's asyncio loop (`_asyncio`), not on trio."""
        return act.is_async and (act.loop or self.activity_loop) == "asyncio"

    # --- reports -------------------------------------------------------------------------------

    def _ok_report(self, item: Item, result: Any) -> Report:
        try:
            what = f"result of activity {item['name']!r}"
            act = self.registry.activities.get(item["name"])
            plan = None if act is None else act._plan or act.plan
            if plan is not None and plan.ret_out:  # by its return annotation (`_convert`)
                result = plan.result_to_plain(result, what)
            payload = self.converter.to_payload(result, what)
        except PayloadError as exc:  # F08: a result that cannot be stored fails the step, clearly
            return Err(self.converter.encode_failure({"type": "PayloadError", "msg": str(exc), "nr": True}), False, False)
        return Ok(payload)

    def _error_report(self, ctx: _activity.ActivityContext, exc: BaseException) -> Report:
        if isinstance(exc, _activity.ActivityCancelled):
            return None if ctx.lost else CANCELLED
        retryable = not (isinstance(exc, ApplicationError) and exc.non_retryable)
        if isinstance(exc, (RuntimeError, TypeError)):  # asyncio code run on trio: say how to fix it
            name = ctx.info.activity
            if not self._on_asyncio(self.registry.activity(name)):
                exc = hint_asyncio(exc, name)
        return Err(self.converter.failure(exc), retryable, False)

    @staticmethod
    def _cancelled_report(item: Item, ctx: _activity.ActivityContext) -> Report:
        """The report of an attempt whose scope caught a cancellation: lost, cancelled, or timed out."""
        if ctx.lost:
            return None
        if ctx.cancel_requested:
            return CANCELLED
        s2c = item["opts"].get("s2c")
        return Err({"type": "StartToCloseTimeout",
                    "msg": f"attempt {item['attempt']} passed its start_to_close timeout of {s2c:g} s"}, True, False)

    async def _record_reports(self, reports: list[tuple[Item, Report]]) -> None:
        """Record attempts' reports (of `_run_activity`, or all that `_run_inline` ran). A result
        of a run whose live instance we hold, with nothing else running it, is fed to it and
        recorded with the workflow task it makes in one transaction (fast path ``rounds``, see
        `_rounds`); results of one run that come in while such a transaction is in flight go
        together into the next (a fan-out costs two or three transactions, not one each). The
        first result of a run starts the rounds (`_continue_run`), in this task. The other
        reports, and results that could not continue their run, are recorded one by one, the
        usual way (`_record_report`)."""
        joined: list[tuple[Item, Report, Result | None]] = []
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

    async def _settle(self, item: Item, report: Report, result: Result | None) -> None:
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

    async def _record_report(self, item: Item, report: Report) -> None:
        """Record an attempt's report the usual way (not with the workflow task it makes)."""
        num, seq, token = item["num"], item["seq"], item["token"]
        if report is None:
            if self._stopping:  # stopped by _drain: queued again, the attempt not counted
                await self._write(lambda t: _ops.release_activity(t, num, seq, token))
            return
        if isinstance(report, Unknown):  # F15: nothing ran; hand it back for a worker with the code
            log.warning("activity task of %r refused: %s", item["wid"], report.error)
            await self._write(lambda t: _ops.refuse_activity(t, num, seq, token, report.error))
            return
        if isinstance(report, Ok):
            # Fast path (``sticky``): if we hold the workflow's live instance, take the workflow
            # task this result makes in the same transaction (no replay elsewhere, no queue round
            # trip). `_ops.claim_workflow_task` claims it only if it is queued, visible and of our
            # queue, under a lease like any claim: if the process dies after the commit, the lease
            # expires and another worker runs it. Off: the task is queued, the poller claims it.
            sticky = self.fast.sticky and num in self._cache and not self._stopping
            payload = report.payload

            def record(t: Txn) -> tuple[bool, Item | None]:
                ok = _ops.complete_activity(t, num, seq, token, payload)
                if not ok or not sticky:
                    return ok, None
                return ok, _ops.claim_workflow_task(t, num, self.queue, self.identity, self.lease_ns)

            accepted, follow = await self._write(record)
            if follow is not None:
                self._dispatch(follow)
        else:
            err, retryable, cancelled = report
            details = self._unsent_details(item)
            accepted = await self._write(
                lambda t: _ops.fail_activity(t, num, seq, token, err, retryable, cancelled, details)
            )
            if accepted and not cancelled:
                if self.metrics is not None:
                    self.metrics.attempt_failed(item["name"])
                log.warning("activity %r of workflow %r failed, attempt %d: %s", item["name"], item["wid"],
                            item["attempt"], format_error_record(self.converter.readable_failure(err)).split("\n", 1)[0])
        if not accepted:
            self.stats["refused"] += 1
            log.info("result of activity %r (seq %d, attempt %d) refused: lease lost", item["name"], seq, item["attempt"])
        self.stats["act"] += 1

    def _unsent_details(self, item: Item) -> bytes | None:
        """Heartbeat details an attempt gave since its last heartbeat went out, encoded, or None."""
        running = self._running_acts.get((item["num"], item["seq"]))
        if running is None or not running[1].details_dirty or running[1].details is None:
            return None
        try:
            return self.converter.to_payload(running[1].details, "heartbeat details")
        except PayloadError as exc:
            log.warning("heartbeat details of %r dropped: %s", item["name"], exc)
            return None

    # --- heartbeats and cancellation -------------------------------------------------------------

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

            def beat(t: Txn) -> list[LeaseStatus]:
                if present:
                    self._present(t)
                return _ops.heartbeat(t, self.identity, self.lease_ns, items)

            try:
                statuses = await self._write(beat)
            except DurableError as exc:
                log.error("heartbeat failed: %s", exc)
                continue
            self._apply_statuses(keys, statuses)

    def _apply_statuses(self, keys: list[Any], statuses: list[LeaseStatus]) -> None:
        """Cancel the scopes of activities whose workflow asked to cancel them or that we lost."""
        for key, status in zip(keys, statuses):
            if key is None or key not in self._running_acts:
                continue
            _, ctx, scope = self._running_acts[key]
            if status == LeaseStatus.CANCEL and not ctx.cancel_requested:
                ctx.cancel_requested = True
                scope.cancel()
            elif status == LeaseStatus.LOST and not ctx.lost:
                ctx.lost = True
                scope.cancel()

    async def _watch_cancellations(self) -> None:
        """Between heartbeats, learn of cancel requests as soon as they are committed: a wake-up
        that says running attempts changed (`_wake.RUNNING_ACTIVITIES`), or the fallback poll,
        triggers a read-only look at the activities running here (at most every 20 ms).

        A second way to learn what heartbeats say, not switched off with the fast paths: it
        only reads, acts on the same statuses, and the heartbeat still renews and reports."""
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
