"""Benchmarks of `durable`: the peers' four workloads, one worker process, synced commits.

    python -m bench [--n 200] [--n-timer 50] [--concurrency 50] [--workloads a,b] [--sequential 50]

Prints one JSON line per workload in the peers' format (system, workload, n, concurrency,
wall_s, wf_per_s, p50_ms, p95_ms, p99_ms), then one line per workload for one workflow at a
time (`concurrency: 1`). The worker runs in its own process on a fresh store; the client runs
here, with one thread per workflow in flight.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import durable

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("three_steps", "fanout10", "signal_roundtrip", "timer")


def pct(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), as in the peers' scripts."""
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def one(client: durable.Client, workload: str, i: int, tag: str) -> float:
    """Run one workflow of `workload`; return its latency from start to result in seconds."""
    wid = f"{tag}-{workload}-{i}"
    t0 = time.perf_counter()
    if workload == "three_steps":
        assert client.start("three_steps_wf", i, id=wid).result(timeout=60) == i + 3
    elif workload == "fanout10":
        assert client.start("fanout10_wf", i, id=wid).result(timeout=60) == 10 * i + 45 + 10
    elif workload == "signal_roundtrip":
        handle = client.start("signal_wf", id=wid)
        handle.signal("sig", f"payload-{i}")
        assert handle.result(timeout=60) == f"payload-{i}"
    elif workload == "timer":
        assert client.start("timer_wf", i, id=wid).result(timeout=60) == i
    else:
        raise ValueError(workload)
    return time.perf_counter() - t0


def run_workload(client: durable.Client, workload: str, n: int, concurrency: int, tag: str) -> dict[str, object]:
    """Run `n` workflows with `concurrency` in flight; return the peers' JSON record."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def loop() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            latency = one(client, workload, i, tag)
            with lock:
                latencies.append(latency)

    threads = [threading.Thread(target=loop) for _ in range(min(concurrency, n))]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    s = sorted(latencies)
    return {
        "system": "durable", "workload": workload, "n": n, "concurrency": concurrency,
        "wall_s": round(wall, 3), "wf_per_s": round(n / wall, 2),
        "p50_ms": round(pct(s, 0.5) * 1000, 2), "p95_ms": round(pct(s, 0.95) * 1000, 2),
        "p99_ms": round(pct(s, 0.99) * 1000, 2),
    }


def start_worker(data: str, concurrency: int) -> subprocess.Popen[bytes]:
    """The worker in its own process; returns once it serves the queue."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "durable", "--data", data, "worker", "bench.workloads",
         "--concurrency", str(max(concurrency * 2, 100))],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if b"serving queue" in line:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
            return proc
    raise RuntimeError("the worker did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--n-timer", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--sequential", type=int, default=50, help="workflows run one at a time per workload (0: skip)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--data", default=None, help="store directory (default: a fresh temporary one)")
    args = parser.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            parser.error(f"unknown workload {w!r} (one of {', '.join(WORKLOADS)})")
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        data = args.data or os.path.join(tmp, "store")
        worker = start_worker(data, args.concurrency)
        try:
            client = durable.Client(data)
            for w in workloads:  # warm-up, not measured
                if w != "timer":
                    run_workload(client, w, 5, 5, "warm")
            for w in workloads:
                n = args.n_timer if w == "timer" else args.n
                print(json.dumps(run_workload(client, w, n, args.concurrency, "c")), flush=True)
            if args.sequential:
                for w in workloads:
                    n = min(args.sequential, 10) if w == "timer" else args.sequential
                    print(json.dumps(run_workload(client, w, n, 1, "s")), flush=True)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
