"""How long a cancellation takes to reach a running activity, end to end.

    python -m bench.cancel_latency [--n 40] [--lease 10] [--sync]

One worker process on a fresh store. Each round starts a workflow whose only step runs until it
is cancelled (an async activity sleeping, or with ``--sync`` a sync one heartbeating every 20 ms),
waits until a worker has claimed it, waits a random fraction of the heartbeat interval (so that
the request falls at a random point of the worker's heartbeat cycle), then cancels the workflow.
The latency is read from the history: from ``CancelRequested`` (written by the client) to the
step's ``ActivityCancelled`` (written once its worker stopped it). Prints one JSON line: n, lease,
p50/p95/max in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

import durable

ROOT = Path(__file__).resolve().parent.parent


@durable.activity
async def wait_forever() -> None:
    await trio.sleep(3600)


@durable.activity
def heartbeat_forever() -> None:
    while True:
        time.sleep(0.02)
        durable.heartbeat()


@durable.workflow
async def cancel_me(sync: bool) -> None:
    await (heartbeat_forever() if sync else wait_forever())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--sync", action="store_true")
    args = parser.parse_args()
    data = os.path.join(tempfile.mkdtemp(prefix="durable-cancel-"), "store")
    worker = subprocess.Popen(
        [sys.executable, "-m", "durable", "--data", data, "worker", "bench.cancel_latency", "--lease", str(args.lease)],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.DEVNULL,
    )
    try:
        client = durable.Client(data)
        rng = random.Random(1)
        latencies = []
        for i in range(args.n):
            h = client.start(cancel_me, args.sync, id=f"c-{i}")
            deadline = time.monotonic() + 30
            while h.describe().activity_attempts < 1:
                assert time.monotonic() < deadline, "no worker claimed the step"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, args.lease / 3))
            h.cancel()
            try:
                h.result(timeout=60)
            except durable.WorkflowFailed as exc:
                assert exc.status == "cancelled", exc
            events = h.history()
            requested = next(e["time"] for e in events if e["kind"] == "CancelRequested")
            confirmed = next(e["time"] for e in events if e["kind"] == "ActivityCancelled")
            latencies.append((confirmed - requested).total_seconds() * 1000)
        latencies.sort()
        print(json.dumps({
            "n": args.n, "lease_s": args.lease, "activity": "sync" if args.sync else "async",
            "p50_ms": round(latencies[len(latencies) // 2], 1),
            "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1], 1),
            "max_ms": round(latencies[-1], 1),
        }))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


if __name__ == "__main__":
    main()
