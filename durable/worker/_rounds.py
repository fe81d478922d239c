"""Fast path ``rounds``: a result of a run whose live instance this worker holds is fed to the
instance at once, and recorded together with the workflow task it makes, in one transaction
(`_ops.complete_activities_and_continue`), instead of being recorded alone and making a task that
goes through the queue and a claim. Results of one run that come in together share a round.

Invariant: each result is accepted only if its attempt holds its lease now (`_ops._fenced_act`,
in the transaction), and the task's commands are recorded only if every result was accepted and
the history is still the one the instance saw (same length, no task queued or running, nothing
in the inbox); otherwise the accepted results alone are recorded, exactly as the usual path
records them (a task is queued), and the instance is dropped, to be replayed. While a round runs
the instance is out of the cache, so no other activation uses it. If the process dies before the
commit nothing of the round is written: the attempts' leases expire and they are retried (at
least once, as on the usual path); after it, the attempts the round claimed hold leases as any
claim does.

Off (``FastPaths(rounds=False)``): `_join_continue` joins nothing, and every report is recorded
by `_activities.Activities._record_report`.
"""

from __future__ import annotations

from typing import Any

import trio

from durable import _activity, _crashpoint, _ops
from durable import _events as ev
from durable._ops import TaskStatus
from durable._runtime import Runtime
from durable._store import Txn

from ._base import WorkerBase, advance_taken, log
from ._records import Entry, Forward, Handle, Item, Ok, Pending, Report, Result


class Rounds(WorkerBase):
    """Recording a run's results round by round, with the workflow tasks they make."""

    def _join_continue(self, item: Item, report: Report) -> tuple[Result | None, bool]:
        """Queue an attempt's result for the next round of its run, if it is a result and can
        continue the run: (the result, whether the caller must run the rounds, `_continue_run`),
        or (None, False)."""
        if not isinstance(report, Ok):
            return None, False
        if _crashpoint.ENABLED:  # fault tests only: die with the effect done but not recorded
            _crashpoint.hit("activity-after-effect")
        num = item["num"]
        joining = num in self._continuing
        if self._stopping or not self.fast.rounds or not joining and self._continuable(num) is None:
            return None, False
        result = Result(item, item["seq"], item["token"], report.payload)
        self._continuing.setdefault(num, []).append(result)
        return result, not joining

    async def _continue_run(self, num: int, queue: str) -> None:
        """Record the results queued for run `num` with the workflow tasks they make, round by round
        (in the task of the first result; the others wait for theirs).

        The async attempts a round claims for the run start here, in this task (`_step_here`):
        one that finishes without waiting (most do) joins the next round with no task of its
        own, so a sequence of steps runs in one task. If one waits, this task becomes its own
        and the rounds go on in a new task."""
        owned: tuple[Item, _activity.ActivityContext] | None = None
        report: Report = None
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
                    if status == TaskStatus.OK and not rt.done and num not in self._cache and len(self._cache) < self.max_cached:
                        rt.mark_recorded()  # back in the cache before the activities below can finish
                        self._cache[num] = rt
                    else:  # finished, or the history differs from what it ran on: replay next time
                        await self._in_engine(rt.close)
                    here = self._dispatch_all_but_inlinable(eager)
                    if status == TaskStatus.OK:
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

    def _step_here(self, items: list[Item]) -> tuple[Item, _activity.ActivityContext, Handle, Pending, list[Entry]] | None:
        """In `_continue_run`'s task and cancel scope: start the async attempts a round claimed,
        one after another, until one waits; return it (with its entry and the entries after it),
        or None if none did. A result joins the next round of its run (`_finish_round` ends its
        attempt); any other report is recorded by a task of its own. (The attempts are claimed
        by the round's committed transaction: see `_inline` for why running them so is safe.)"""
        entries = self._register_inline(items)
        for i, (item, ctx, handle) in enumerate(entries):
            self.stats["inline"] += 1
            step = self._first_step(item, ctx)
            if isinstance(step, Pending):
                return item, ctx, handle, step, entries[i + 1:]
            result, _ = self._join_continue(item, step)  # a result joins: its run is being continued
            if result is not None:
                result.local = True
                continue
            assert self._work is not None
            self._work.start_soon(self._record_reports, [(item, step)])
        return None

    def _finish_round(self, results: list[Result], accepted: list[bool] | None, error: Exception | None = None) -> None:
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
                    self._work.start_soon(self._settle, r.item, Ok(r.payload), r)

    def _speculate_and_record(self, num: int, events: list[dict[str, Any]], batch: list[Result],
                              queue: str) -> Forward | None:
        """Engine thread: run the activation these results make, then have the writer record the
        results with it in one transaction; None if the cached instance cannot take them."""
        spec = self._speculate(num, events)
        if spec is None:
            return None
        rt, hlen, commands = spec
        seqs = self._eager_seqs(commands, queue)
        results = [(r.seq, r.token, e) for r, e in zip(batch, events)]

        def record(t: Txn) -> tuple[list[bool], TaskStatus, list[Item]]:
            claimed: list[Item] = []
            accepted, status = _ops.complete_activities_and_continue(
                t, num, results, hlen, commands, self._eager(seqs, claimed))
            return accepted, status, claimed

        return Forward(record, rt)

    def _speculate(self, num: int, events: list[dict[str, Any]]) -> tuple[Runtime, int, list[dict[str, Any]]] | None:
        """Engine thread: take the cached instance out of the cache (no other activation may use
        it meanwhile) and run the activation these results make; None if it cannot."""
        rt = self._continuable(num)
        if rt is None:
            return None
        del self._cache[num]
        if self.metrics is not None:
            self.metrics.cache_used(True)
        advanced = advance_taken(rt, events)
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
