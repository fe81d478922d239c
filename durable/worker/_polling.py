"""Claiming: the poller looks for claimable tasks of the worker's queue when a change comes in
(or at the fallback interval), claims them in batches and starts each (`_dispatch`)."""

from __future__ import annotations

import trio

from durable import _ops
from durable._limits import MAX_CLAIM_BATCH, POLL_FALLBACK_SECONDS

from ._base import _NS, UNCLAIMED_MAX_EVENTS, UNCLAIMED_MAX_TASKS, WorkerBase, log
from ._records import Item


class Polling(WorkerBase):
    """The poller, and starting what it (or a transaction that claims at once) claimed."""

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
            # Fast path (``unclaimed``): an idle worker that finds few workflow tasks waiting,
            # with short histories (new workflows, say), runs them before claiming them and
            # claims each in the transaction that records its outcome (`_claimed_then`), if it is
            # still the same queued task over the same history (`_ops.claim_peeked_wft`): one
            # commit less on the way to a result. Workflow code has no effects and nothing is
            # written before that claim: if the process dies meanwhile, or another worker takes
            # the task, or an event comes in, the task is still queued (or run by the other) and
            # our outcome is dropped. No lease is held, so none is renewed. A busy worker claims
            # in batches first (cheaper per task; the latency is then in the queue anyway).
            unclaimed = [num for num, token in self._running_wfts.items() if token is None]
            peeked: list[Item] = []
            rest = True
            if self.fast.unclaimed and not self._running_acts and len(unclaimed) == len(self._running_wfts):
                peeked, rest = self.store.read(lambda t: _ops.peek_workflow_tasks(
                    t, self.queue, UNCLAIMED_MAX_TASKS, UNCLAIMED_MAX_EVENTS, set(unclaimed)))
            for item in peeked:
                self._dispatch(item)
            items: list[Item] = []
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

    def _dispatch(self, item: Item) -> None:
        """Start running a claimed task in the work nursery."""
        work = self._work
        assert work is not None
        if self.metrics is not None:
            self.metrics.dispatched(item)
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
