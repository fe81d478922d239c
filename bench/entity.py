"""Continue-as-new: an entity workflow (`bench.workloads.entity_wf`) takes `signals` signals,
sent one after another by `senders` client threads, and continues as new every `every` of them.

Reports the wall time from the start to the result, signals per second, how many runs the chain
had, and the latency of the client's `signal` calls (p50, p95, p99: each one synced commit).
Each run applies exactly `every` signals, so the chain has ``ceil(signals / every)`` runs; the
sum the last run returns shows that no signal was lost.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import durable

from . import workloads
from ._util import pct


def measure(client: durable.Client, *, signals: int = 1000, every: int = 100, senders: int = 4,
            tag: str = "entity") -> dict[str, Any]:
    """Run the measurement; return its JSON record."""
    wid = f"{tag}-{signals}x{every}"
    t0 = time.perf_counter()
    handle = client.start(workloads.entity_wf, signals, every, 0, 0, [], id=wid)
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(signals))
    errors: list[BaseException] = []

    def send() -> None:
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                s0 = time.perf_counter()
                handle.signal("deposit", i)
                with lock:
                    latencies.append(time.perf_counter() - s0)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(max(1, min(senders, signals)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    assert handle.result(timeout=max(120, signals / 10)) == signals * (signals - 1) // 2, "a signal was lost"
    wall = time.perf_counter() - t0
    runs = len([r for r in client.list(all_runs=True, workflow="entity_wf") if r.workflow_id == wid])
    s = sorted(latencies)
    return {
        "system": "durable", "workload": "continue_as_new", "signals": signals, "every": every,
        "senders": len(threads), "runs": runs, "wall_s": round(wall, 3),
        "signals_per_s": round(signals / wall, 1), "signal_p50_ms": round(pct(s, 0.5) * 1000, 2),
        "signal_p95_ms": round(pct(s, 0.95) * 1000, 2), "signal_p99_ms": round(pct(s, 0.99) * 1000, 2),
    }
