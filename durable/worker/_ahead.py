"""Fast path ``ahead``: a new workflow task that only schedules async activities of our queue runs
them before it is recorded; if every one finishes at once, the task, their results and the task
they make are recorded in one transaction (`_ops.complete_task_run_ahead`): one synced commit less
on the way of each workflow, and no attempt records at all.

Invariant: nothing is written before that one transaction, which holds the task's lease (its
token is checked in it; a task run before it was claimed is claimed in it, `_claimed_then`) or
writes nothing. The next task's commands are recorded only if the history is still the one the
instance saw; else the results alone (a task is queued for them). If the process dies before the
commit, or the lease is lost, the task is run again elsewhere and so are its activities: an
activity run here and not recorded ran once more than the history says, which activities allow
(at least once), as when a process dies between an attempt and its result's commit. If an
activity waits or fails, the task is recorded the usual way with every activity claimed, and
the attempts that ran are reported under those claims (`_record_ahead_usual`).

With ``unclaimed`` on, a task run before it is claimed may run its activities ahead too: if
another worker claims the task meanwhile, its attempts of the same steps may run while ours do
(same idempotency keys); ours are then not recorded (the claim in our transaction fails). At
least once still holds, as on the usual path when a lease expires under a worker that still
runs the step; only one outcome is ever recorded.

Off (``FastPaths(ahead=False)``): `_can_run_ahead` is false, and the task is recorded first.
"""

from __future__ import annotations

from typing import Any

import trio

from durable import _activity, _crashpoint, _ops
from durable import _events as ev
from durable._errors import NotRegistered
from durable._ops import TaskStatus
from durable._runtime import Runtime
from durable._store import Txn

from ._base import UNCLAIMED_LOST, WorkerBase, advance_taken, log
from ._records import Handle, Item, Ok, Pending, Report


class RunAhead(WorkerBase):
    """Running a new workflow task's activities before the task is recorded."""

    def _can_run_ahead(self, commands: list[dict[str, Any]], queue: str) -> bool:
        """Engine thread: whether the activities an activation schedules may run before it is
        recorded: all it does is schedule async activities of our queue, and we have room."""
        if (not commands or self._stopping or not self.fast.ahead
                or len(commands) > self.max_activities - len(self._running_acts)):
            return False
        for c in commands:
            if c["k"] != ev.ACTIVITY_SCHEDULED or (c["opts"].get("queue") or queue) != self.queue:
                return False
            try:
                act = self.registry.activity(c["name"])
                if not act.is_async or self._on_asyncio(act):  # an asyncio one runs in its loop's thread
                    return False
            except NotRegistered:
                return False
        return True

    async def _run_ahead(self, item: Item, commands: list[dict[str, Any]]) -> None:
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
        entries: list[tuple[Item, _activity.ActivityContext]] = []
        for c in commands:
            attempt = {"kind": "act", "num": num, "seq": c["seq"], "token": None, "name": c["name"], "in": c["in"],
                       "attempt": 1, "opts": c["opts"], "hb": None, "wid": item["id"], "wtype": item["type"],
                       "queue": self.queue, "start": now, "sched": now}
            entries.append((attempt, self._activity_context(attempt)))
        done: list[tuple[Item, bytes]] = []
        stopped: tuple[Item, _activity.ActivityContext, Report | Pending] | None = None
        rest: list[Item] = []
        seqs = [c["seq"] for c in commands]
        waited: tuple[Item, _activity.ActivityContext, trio.Event] | None = None
        report: Report = None
        # one cancel scope around the first steps, as in _run_inline: it becomes the scope of one that waits
        with trio.CancelScope() as scope:
            for i, (attempt, ctx) in enumerate(entries):
                self.stats["inline"] += 1
                step = self._first_step(attempt, ctx)
                if isinstance(step, Ok):
                    done.append((attempt, step.payload))
                    continue
                stopped = (attempt, ctx, step)
                rest = [a for a, _ in entries[i + 1:]]
                break
            if done and _crashpoint.ENABLED:  # fault tests only: die with the effects done, nothing recorded
                _crashpoint.hit("activity-after-effect")
            if stopped is not None and isinstance(stopped[2], Pending):
                # it waits: it goes on in this task at once (its trio scopes are this task's); the
                # workflow task is recorded by another task, which hands it its claim or cancels it
                attempt, ctx, pending = stopped[0], stopped[1], stopped[2]
                handle, recorded = Handle(), trio.Event()
                assert self._work is not None
                self._work.start_soon(self._record_ahead_usual, item, commands, seqs, done, None, rest,
                                      (attempt, ctx, handle), recorded)
                waited = (attempt, ctx, recorded)
                self._arm(scope, attempt, handle)
                report = await self._finish_step(attempt, ctx, pending)
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
            if status != TaskStatus.OK:  # lease lost: replay next time
                await self._in_engine(rt.close)
                return
            self.stats["wft"] += 1
            self.stats["act"] += len(done)
            self.stats["ahead"] += 1
            if status2 == TaskStatus.OK:
                self.stats["wft"] += 1
                self.stats["continued"] += 1
            if status2 == TaskStatus.OK and not rt.done and num not in self._cache and len(self._cache) < self.max_cached:
                rt.mark_recorded()
                self._cache[num] = rt
            else:
                await self._in_engine(rt.close)
            if claimed2:
                await self._run_eager(claimed2)
            return
        # the usual recording, with every activity claimed; the attempts go on under their claims
        await self._record_ahead_usual(item, commands, seqs, done, stopped, rest, None, None)

    async def _record_ahead_usual(self, item: Item, commands: list[dict[str, Any]], seqs: list[int],
                                  done: list[tuple[Item, bytes]],
                                  stopped: tuple[Item, _activity.ActivityContext, Report | Pending] | None,
                                  rest: list[Item],
                                  waiting: tuple[Item, _activity.ActivityContext, Handle] | None,
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
            if not isinstance(written, tuple) or written[0] != TaskStatus.OK:
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
        reports: list[tuple[Item, Report]] = [(by_seq[a["seq"]], Ok(payload)) for a, payload in done]
        if stopped is not None:
            step = stopped[2]
            assert not isinstance(step, Pending)  # one that waits is `waiting`, reported by its own task
            reports.append((by_seq[stopped[0]["seq"]], step))
        later = [by_seq[a["seq"]] for a in rest]
        if later:
            batch = self._dispatch_all_but_inlinable(later)  # all of them, unless ``inline`` is off
            if batch:
                assert self._work is not None
                self._work.start_soon(self._run_inline, self._register_inline(batch), [])
        if reports:
            await self._record_reports(reports)

    def _ahead_advance(self, num: int, events: list[dict[str, Any]]) -> tuple[Runtime, int, list[dict[str, Any]], list[int]] | None:
        """Engine thread: take the instance whose activities ran ahead out of the cache and feed it
        their results, as if its task were recorded; None if it cannot go on so (then its task is
        recorded the usual way, and the results after it)."""
        rt = self._cache.pop(num, None)
        if rt is None:
            return None
        if self.metrics is not None:
            self.metrics.cache_used(True)
        if rt.done:
            self._cache[num] = rt
            return None
        rt.mark_recorded()
        advanced = advance_taken(rt, events)
        if advanced is None:
            return None
        hlen, commands = advanced
        return rt, hlen, commands, self._eager_seqs(commands, self.queue)

    def _record_ahead(self, t: Txn, num: int, token: int, started: int, commands: list[dict[str, Any]],
                      events: list[dict[str, Any]], hlen: int, commands2: list[dict[str, Any]],
                      seqs2: list[int]) -> tuple[TaskStatus, TaskStatus | None, list[Item]]:
        """Writer thread: record a task run ahead, its activities' results and the next task's
        commands (`_ops.complete_task_run_ahead`), the activities of those claimed for us: (the
        first task's status, the second's, the claimed attempts)."""
        claimed: list[Item] = []
        status, status2 = _ops.complete_task_run_ahead(
            t, num, token, started, commands, events, hlen, commands2, self._eager(seqs2, claimed))
        return status, status2, claimed
