"""A small single-threaded worker over a real LMDB store, on a manual clock, for property tests of
workflows that start other workflows (child workflows, requests to other workflows).

It does what the worker does, without threads or processes: claims tasks with `_ops.claim`, runs
workflow tasks through `Runtime` (evicting every instance after each task when `evict`, so that
every activation after the first replays the whole history, as on a cache miss), records them
with `_ops.complete_workflow_task`, and ends each activity as its arguments say:
``act(path, how)`` with how "ok" (completes at once), "fail" (fails, not retryable) or "slow"
(completes `SLOW` seconds later unless a cancel request reaches it first). When nothing is left
to run, the clock moves to the next due item (a timer, or a slow activity's end).
"""

from __future__ import annotations

import shutil
from typing import Any

from durable import _ops
from durable._codec import Converter
from durable._defs import Registry
from durable._runtime import Runtime
from durable._backend import open_store
from durable._store import Clock

NS = 1_000_000_000
SLOW = 3.0
LEASE = 10**6 * NS  # never expires here: these tests are about scopes, not leases


class ManualClock(Clock):
    def __init__(self) -> None:
        self.ns = 1_800_000_000 * NS

    def now_ns(self) -> int:
        return self.ns


class Engine:
    """See the module docstring."""

    def __init__(self, path: str, workflows: list[Any], activities: list[Any], *, evict: bool = False,
                 queue: str = "q", remove: str | None = None) -> None:
        #: a directory to delete on `close` (a temporary one the caller made for the store)
        self.remove = remove
        self.clock = ManualClock()
        self.store = open_store(path, clock=self.clock)
        self.registry = Registry(workflows, activities)
        self.conv = Converter()
        self.queue = queue
        self.evict = evict
        self.cache: dict[int, Runtime] = {}
        self.slow: dict[tuple[int, int], tuple[int, int, bytes]] = {}  # (num, seq) -> (token, end, out)
        self.cancels: list[tuple[int, str]] = []  # (when ns, workflow id): requests from outside
        self.store.write(lambda t: _ops.publish_registry(t, queue, self.registry.describe()))

    def start(self, workflow: str, *args: Any, id: str) -> int:
        payload = self.conv.to_payload(list(args), "input")
        num, _ = self.store.write(lambda t: _ops.start_workflow(t, id, workflow, self.queue, payload, False, True))
        return num

    def cancel_at(self, seconds: float, wid: str) -> None:
        self.cancels.append((self.clock.ns + int(seconds * NS), wid))

    def run(self, max_rounds: int = 5000) -> None:
        """Run until nothing is left to do."""
        for _ in range(max_rounds):
            if self._round():
                continue
            if not self._advance_clock():
                return
        raise AssertionError("the workflows did not settle")

    def _round(self) -> bool:
        items = self.store.write(lambda t: _ops.claim(t, self.queue, "engine", LEASE, 1, 1, 0))
        for item in items:
            if item["kind"] == "wft":
                self._workflow_task(item)
            else:
                self._activity(item)
        progressed = bool(items)
        for key, (token, end, out) in list(self.slow.items()):
            status = self.store.read(lambda t: _ops.activity_status(t, [(key[0], key[1], token)]))[0]
            if status == _ops.LeaseStatus.LOST:
                del self.slow[key]
            elif status == _ops.LeaseStatus.CANCEL:
                del self.slow[key]
                self.store.write(lambda t: _ops.fail_activity(t, key[0], key[1], token, {"type": "Cancelled", "msg": "x"},
                                                              False, True))
                progressed = True
            elif end <= self.clock.ns:
                del self.slow[key]
                self.store.write(lambda t: _ops.complete_activity(t, key[0], key[1], token, out))
                progressed = True
        for when, wid in list(self.cancels):
            if when <= self.clock.ns:
                self.cancels.remove((when, wid))
                try:
                    self.store.write(lambda t: _ops.request_cancel(t, wid, "from outside"))
                except Exception:  # noqa: BLE001 - it may have closed already
                    pass
                progressed = True
        return progressed

    def _advance_clock(self) -> bool:
        times = [end for _, end, _ in self.slow.values()] + [when for when, _ in self.cancels]
        due = self.store.read(_ops.next_due)
        if due is not None:
            times.append(due)
        if not times:
            return False
        self.clock.ns = max(self.clock.ns, min(times))
        self.store.write(lambda t: _ops.fire_due(t, 1000))
        return True

    def _workflow_task(self, item: dict[str, Any]) -> None:
        num = item["num"]
        rt = self.cache.pop(num, None)
        if rt is None:
            rt = Runtime(self.registry.workflow(item["type"]), item["id"], f"{num:x}", self.conv)
        events = self.store.read(lambda t: _ops.read_history(t, num, rt.processed))
        commands = rt.advance(events)
        status = self.store.write(lambda t: _ops.complete_workflow_task(t, num, item["token"], commands))
        if status == _ops.TaskStatus.OK and not rt.done and not self.evict:
            rt.mark_recorded()
            self.cache[num] = rt
        else:
            rt.close()

    def _activity(self, item: dict[str, Any]) -> None:
        args = self.conv.from_payload(item["in"])
        how = args[1] if item["name"] == "act" else "ok"
        num, seq, token = item["num"], item["seq"], item["token"]
        out = self.conv.to_payload(args[0], "out")
        if how == "fail":
            self.store.write(lambda t: _ops.fail_activity(t, num, seq, token, {"type": "ValueError", "msg": args[0]},
                                                          False, False))
        elif how == "slow":
            self.slow[(num, seq)] = (token, self.clock.ns + int(SLOW * NS), out)
        else:
            self.store.write(lambda t: _ops.complete_activity(t, num, seq, token, out))

    # --- reading what happened --------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """Every run's record, in the order the runs were started."""
        def read(t: Any) -> list[dict[str, Any]]:
            recs = _ops.list_workflows(t, None, None, 1_000_000, all_runs=True)
            return sorted(recs, key=lambda r: r["num"])
        return self.store.read(read)

    def history(self, num: int) -> list[dict[str, Any]]:
        return self.store.read(lambda t: _ops.read_history(t, num))

    def close(self) -> None:
        """Evict the live instances and close the store (and, with `remove`, delete its directory)."""
        for rt in self.cache.values():
            rt.close()
        self.cache.clear()
        self.store.close()
        if self.remove is not None:
            shutil.rmtree(self.remove, ignore_errors=True)
