"""Due work: the clock fires due timers and ends expired leases and timeouts (any worker may:
the store decides what is due), and claims the workflow tasks fired timers make."""

from __future__ import annotations

from durable import _ops
from durable._limits import POLL_FALLBACK_SECONDS
from durable._store import Txn

from ._base import _NS, WorkerBase, log
from ._records import Item


class Clock(WorkerBase):
    """Timers, deadlines and lease expiries."""

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

    def _fire_and_claim(self, t: Txn) -> list[Item]:
        """Fire what is due; claim the workflow tasks of our queue that the timers made, in the
        same transaction (no round trip through the queue).

        Fast path (``timer_claims``): each task is claimed under a lease in the transaction that
        queues it (`_ops.claim_workflow_task`), so it is never visible unclaimed; if the process
        dies after the commit, the lease expires and another worker runs it. Off: the tasks stay
        queued and the poller claims them (woken by this commit)."""
        fired: list[int] = []
        _ops.fire_due(t, 256, fired)
        if self._stopping or self._work is None or not self.fast.timer_claims:
            return []
        items = []
        for num in dict.fromkeys(fired):
            item = _ops.claim_workflow_task(t, num, self.queue, self.identity, self.lease_ns)
            if item is not None:
                items.append(item)
        return items
