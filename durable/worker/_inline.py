"""Fast path ``inline``: the async attempts one transaction claimed run one after another in one
trio task, each coroutine stepped by hand, instead of a task and a cancel scope each.

Invariant: this changes how the code of an attempt runs here, not what is written. Each attempt
was claimed (token, lease, deadline) in a committed transaction before its code starts, and its
report is recorded under its token as on the usual path (`_activities`); if the process dies, its
lease expires and it is retried. Until an attempt waits for something it has no cancel scope, a
`Handle` stands for it: a cancel request or a lost lease seen before its first step stops it
there (its context's flags), and one that comes while it runs without a checkpoint is seen when
it waits or reports, as on the usual path. The attempt that waits takes the task over with a
real cancel scope carrying its start_to_close deadline (`_arm`).

Off (``FastPaths(inline=False)``): `_inlinable` is false, every claimed attempt is started the
usual way (`_polling.Polling._dispatch`).
"""

from __future__ import annotations

import types
from typing import Any

import trio

from durable import _activity
from durable._errors import DurableError, NotRegistered

from ._base import _NS, WorkerBase
from ._records import CANCELLED, Entry, Err, Handle, Item, Ok, Pending, Report


class Inline(WorkerBase):
    """Running claimed async attempts by hand, in the task that claimed them."""

    async def _run_eager(self, items: list[Item]) -> None:
        """Run the attempts a workflow task's transaction claimed: the async ones in this task
        (`_run_inline`), instead of a task and a cancel scope each; the others as usual."""
        batch = self._dispatch_all_but_inlinable(items)
        if batch:
            await self._run_inline(self._register_inline(batch), [])

    def _dispatch_all_but_inlinable(self, items: list[Item]) -> list[Item]:
        """Start each claimed task the usual way but the async attempts; return those."""
        inlinable = []
        for item in items:
            if self._inlinable(item):
                inlinable.append(item)
            else:
                self._dispatch(item)
        return inlinable

    def _register_inline(self, items: list[Item]) -> list[Entry]:
        """Count attempts as running here, each with a `Handle` for its cancel scope."""
        entries: list[Entry] = []
        for item in items:
            ctx, handle = self._activity_context(item), Handle()
            self._running_acts[(item["num"], item["seq"])] = (item, ctx, handle)
            if item["opts"].get("hb"):
                self._heartbeat_wakeup.set()
            entries.append((item, ctx, handle))
        return entries

    def _inlinable(self, item: Item) -> bool:
        if item["kind"] != "act" or not self.fast.inline:
            return False
        try:
            act = self.registry.activity(item["name"])
        except NotRegistered:
            return False
        return act.is_async and not self._on_asyncio(act)  # an asyncio one runs in its loop's thread

    async def _run_inline(self, entries: list[Entry], reports: list[tuple[Item, Report]]) -> None:
        """Run async attempts one after another in this task, inside one cancel scope, stepping
        each coroutine by hand: one that finishes without waiting for anything (most do) needs
        no task or scope of its own. The first that waits makes this task its own (the scope
        becomes its scope; its deadline is set), and the attempts after it go on in a new task
        with the reports so far, to be recorded there. Then record the reports: results that
        can continue their run join one round (one transaction for all)."""
        owned: tuple[Item, _activity.ActivityContext] | None = None
        report: Report = None
        try:
            with trio.CancelScope() as scope:
                for i, (item, ctx, handle) in enumerate(entries):
                    self.stats["inline"] += 1
                    step = self._first_step(item, ctx)
                    if not isinstance(step, Pending):
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

    def _arm(self, scope: trio.CancelScope, item: Item, handle: Handle) -> None:
        """An attempt run by hand waits: `scope` becomes its scope (cancelling it cancels the
        scope), with its start_to_close deadline."""
        handle.scope = scope
        if handle.cancel_called:
            scope.cancel()
        s2c = item["opts"].get("s2c")
        if s2c is not None:
            scope.deadline = trio.current_time() + max(0.0, s2c - (self.store.clock.now_ns() - item["start"]) / _NS)

    def _first_step(self, item: Item, ctx: _activity.ActivityContext) -> Report | Pending:
        """Start an async attempt: its report if it finished (or could not start), else what
        `_finish_step` needs to run the rest of it."""
        metrics, tracer = self.metrics, self.tracer
        if metrics is None and tracer is None:
            return self._start_step(item, ctx)
        t0 = metrics.attempt_started(item["name"]) if metrics is not None else 0.0
        span = tracer.attempt_span(item) if tracer is not None else None
        step = self._start_step(item, ctx)
        if isinstance(step, Pending):
            step.t0, step.span = t0, span
            return step
        if metrics is not None:
            metrics.attempt_ended(item["name"], t0)
        if span is not None:
            tracer.end(span, not isinstance(step, Ok))
        return step

    def _start_step(self, item: Item, ctx: _activity.ActivityContext) -> Report | Pending:
        """`_first_step` without metrics or spans."""
        if ctx.lost:
            return None
        if ctx.cancel_requested:
            return CANCELLED
        act = self.registry.activity(item["name"])
        try:
            what = f"arguments of activity {item['name']!r}"
            args = self.converter.from_payload(item["in"], what)
            plan = act._plan or act.plan
            if plan.args_in:  # by the parameters' annotations (`_convert`)
                args = plan.args_from_plain(args, what)
        except DurableError as exc:
            return Err(self.converter.failure(exc), True, False)
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
        return Pending(coro, trap, token)

    async def _finish_step(self, item: Item, ctx: _activity.ActivityContext, step: Pending) -> Report:
        failed = True
        try:
            result = await _drive(step.coro, step.trap)
            failed = False
        except (Exception, _activity.ActivityCancelled) as exc:  # noqa: BLE001 - the attempt's failure, reported
            return self._error_report(ctx, exc)
        finally:
            _activity._current.reset(step.token)
            if self.metrics is not None:  # also when it is cancelled (timed out...)
                self.metrics.attempt_ended(item["name"], step.t0)
            if step.span is not None:
                self.tracer.end(step.span, failed)
        return self._ok_report(item, result)


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
