"""Workflow tasks: running an activation in the engine thread on a live instance (from the
cache, or replayed from the history), recording its commands under the task's lease; the cache
of live instances; queries answered from live state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from durable import _ops, _updates
from durable import _events as ev
from durable._errors import DurableError
from durable._limits import MAX_TASK_ERROR_CHARS
from durable._ops import TaskStatus
from durable._runtime import Runtime, task_error_text
from durable._store import Txn

from ._base import UNCLAIMED_LOST, WorkerBase, log
from ._observe import observing
from ._records import Ahead, Forward, Item


class WorkflowTasks(WorkerBase):
    """Running and recording workflow tasks, the instance cache, and queries."""

    async def _run_wft(self, item: Item) -> None:
        if self.tracer is None:
            return await self._run_wft_here(item)
        span = self.tracer.task_span(item)
        try:
            await self._run_wft_here(item)
        finally:
            self.tracer.end(span)

    async def _run_wft_here(self, item: Item) -> None:
        num = item["num"]
        claimed: list[Item] = []  # the attempts its transaction claimed, run below
        changes = self._change_count
        try:
            commands, written = await self._engine_then_write(self._activate_and_record, item)
            if item["token"] is None:
                self.stats["unclaimed"] += 1
            if isinstance(commands, Ahead):
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
            if result == TaskStatus.OK and rt is not None and not rt.done:
                rt.mark_recorded()  # two counters: done here, so the activities below can continue it
            else:  # finished, lease lost, or signals arrived as it closed: replay next time
                await self._in_engine(self._evict, num)
            self._running_wfts.pop(num, None)
            if item["token"] is None and result == TaskStatus.OK and changes != self._change_count:
                # The poller skips a run while a task of it runs unclaimed. If it looked meanwhile,
                # a task of this run queued since (by this commit, when a command's answer comes
                # in the same transaction, as a child's start does; by another op) waits for the
                # fallback poll unless it looks again now.
                self._notify_local()
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

    def _activate_and_record(self, item: Item) -> Forward | Ahead:
        """Engine thread: run the activation, then have the writer record what it made, with the
        activities it schedules on our queue claimed in the same transaction as far as we have
        room (eager dispatch: no round trip through the queue). A task not claimed yet (token
        None) is claimed in that transaction, or its outcome dropped if it cannot be."""
        num = item["num"]
        outcome = self._activate(item)
        if isinstance(outcome, str):
            error = self.converter.encode_text(outcome[:MAX_TASK_ERROR_CHARS])
            return Forward(self._claimed_then(item, lambda t, tok: _ops.fail_workflow_task(t, num, tok, error)), None)
        commands = outcome
        refused = item.pop("urej", None)
        if not refused and self._can_run_ahead(commands, item["queue"]):
            return Ahead(commands)
        seqs = self._eager_seqs(commands, item["queue"])
        op = self._completing(num, commands, seqs)
        if refused:  # updates its validators refused: recorded first, under the same token
            encoded = [(uid, self.converter.encode_text(text[:MAX_TASK_ERROR_CHARS])) for uid, text in refused]
            completing = op

            def op(t: Txn, tok: int) -> tuple[TaskStatus, list[Item]]:
                if not _updates.reject(t, num, tok, encoded):
                    return TaskStatus.LOST, []
                return completing(t, tok)  # type: ignore[no-any-return]

        return Forward(self._claimed_then(item, op), commands)

    def _completing(self, num: int, commands: list[dict[str, Any]], seqs: list[int]) -> Callable[[Txn, int], Any]:
        """The op (under a token) that records a workflow task's commands, with the activities
        `seqs` claimed for us in the same transaction: (its `TaskStatus`, the claimed attempts)."""
        def record(t: Txn, tok: int) -> tuple[TaskStatus, list[Item]]:
            claimed: list[Item] = []
            status = _ops.complete_workflow_task(t, num, tok, commands, self._eager(seqs, claimed))
            return status, claimed

        return record

    def _claimed_then(self, item: Item, op: Callable[[Txn, int], Any]) -> Callable[[Txn], Any]:
        """`op(t, token)` under the task's token; for a task not claimed yet (fast path
        ``unclaimed``, see `_poll`), claim it first in the same transaction, and if that cannot
        be, return `UNCLAIMED_LOST` without running `op`: nothing is written, the outcome is
        dropped (a second worker must never record a task twice)."""
        if item.get("first"):  # its first task: the log and metrics say it started, once recorded
            op = _noting_start(item, op)
        if item["token"] is not None:
            return lambda t: op(t, item["token"])

        def claim_then(t: Txn) -> Any:
            token = _ops.claim_peeked_wft(t, item, self.identity, self.lease_ns)
            return UNCLAIMED_LOST if token is None else op(t, token)

        return claim_then

    # --- eager dispatch ------------------------------------------------------------------------

    def _eager(self, seqs: list[int], claimed: list[Item]) -> _ops.Eager | None:
        return (frozenset(seqs), self.queue, self.identity, self.lease_ns, claimed) if seqs else None

    def _eager_seqs(self, commands: list[dict[str, Any]], queue: str) -> list[int]:
        """Activities scheduled by `commands` that we can claim at once in the same transaction.

        Fast path (``eager``): the attempt is claimed (token, lease, deadline: `_ops._start_attempt`)
        in the transaction that schedules it, so it never enters the queue and no claim commit
        follows. Only our queue's, only as far as we have room. If the process dies after the
        commit, the attempt's lease expires and it is retried as any claimed attempt is; before
        it, nothing of the task was written. Off: none, every activity is queued."""
        if not self.fast.eager:
            return []
        seqs = [c["seq"] for c in commands if c["k"] == ev.ACTIVITY_SCHEDULED
                and (c["opts"].get("queue") or queue) == self.queue]
        room = 0 if self._stopping else max(0, self.max_activities - len(self._running_acts))
        return seqs[:room]

    # --- the instance cache --------------------------------------------------------------------

    def _activate(self, item: Item) -> list[dict[str, Any]] | str:
        """Engine thread: bring the instance up to date and run the live activation."""
        num = item["num"]
        rt = self._cache.pop(num, None)
        if self.metrics is not None:
            self.metrics.cache_used(rt is not None)
        try:
            if rt is None:
                defn = self.registry.workflow(item["type"])
                rt = Runtime(defn, item["id"], f"{num:x}", self.converter)
            start = rt.processed

            # Fast path (``updates_known``, see `_fast`): no update was pending when the task was
            # handed out, so none to read; one sent since is for the task this one's end queues.
            with_updates = not self.fast.updates_known or item.get("upd", 1) > 0

            def read(t: Txn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
                return _ops.read_history(t, num, start, item["hlen"]), (
                    _updates.pending(t, num) if with_updates else [])

            events, updates = self.store.read(read)
            commands = rt.advance(events, updates=updates)
            if rt.update_rejections:
                item["urej"], rt.update_rejections = rt.update_rejections, []
        except Exception as exc:  # noqa: BLE001 - a workflow-code failure: kept in the record
            if rt is not None:
                rt.close()
            text = task_error_text(exc)
            log.warning("workflow task of %r failed (the workflow goes on once its code is fixed): %s",
                        item["id"], text)
            if self.metrics is not None:
                self.metrics.task_failed(item["type"])
            return text
        # the run's first activation (no command in its history yet): told once it is recorded
        if start == 0 and observing(self) and not any(e["k"] in ev.COMMAND_KINDS for e in events):
            item["first"] = True
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

    async def _run_query(self, item: Item) -> None:
        answer = await self._in_engine(self._answer_query, item)
        try:
            await self._write(lambda t: _ops.answer_query(t, item["qnum"], answer))
        except Exception as exc:  # noqa: BLE001 - the asker times out with a clear error
            log.error("answering query %r failed: %s", item["name"], exc)
        self.stats["query"] += 1

    def _answer_query(self, item: Item) -> dict[str, Any]:
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


def _noting_start(item: Item, op: Callable[[Txn, int], Any]) -> Callable[[Txn, int], Any]:
    """`op` (recording a run's first workflow task), noting in its transaction that the run
    started if it recorded the task (`_observe` tells it once committed)."""
    def noted(t: Txn, tok: int) -> Any:
        out = op(t, tok)
        if isinstance(out, tuple) and out[0] == TaskStatus.OK:
            t.note(("started", item["num"], item["id"], item["type"]), first=True)
        return out

    return noted
