"""Cold start: from launching a worker process and a client process on a fresh store to the
first `three_steps` result.

Each round makes a new store directory (neither process has opened it), then launches, back to
back, ``durable worker bench.workloads`` and ``python -m bench.cold DATA`` (the client: it starts
one ``three_steps_wf`` and waits for its result, printing it). The clock starts just before the
first launch and stops when this process reads the client's result line; the worker's own start
(launch to its "serving queue" log line) is reported too. Both processes pay for their imports,
opening the store and the first workflow.

    python -m bench.cold DATA    the client side (run by `measure`)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from ._util import ROOT, bench_env, median, stop_worker, wait_serving, worker_command


def one_round(tmp: str, i: int) -> dict[str, float]:
    """One cold start on a fresh store under `tmp`: milliseconds to the result and to serving."""
    data = os.path.join(tmp, f"store-{i}")
    env = bench_env()
    serving: list[float] = []
    t0 = time.perf_counter()
    worker = subprocess.Popen(worker_command(data), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        watcher = threading.Thread(target=lambda: serving.append(wait_serving(worker, t0)), daemon=True)
        watcher.start()
        client = subprocess.Popen([sys.executable, "-m", "bench.cold", data], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert client.stdout is not None
        line = client.stdout.readline()
        first_result = time.perf_counter() - t0
        _, err = client.communicate(timeout=60)
        if client.returncode != 0 or not line:
            raise RuntimeError(f"the cold-start client failed ({client.returncode}): {err.decode(errors='replace')}")
        assert json.loads(line)["result"] == 3, line
        watcher.join(60)
        if not serving:
            raise RuntimeError("the worker never said it was serving")
    finally:
        stop_worker(worker)
    return {"first_result_ms": first_result * 1000, "worker_serving_ms": serving[0] * 1000}


def measure(*, repeats: int = 3) -> dict[str, Any]:
    """`repeats` cold starts, each on a fresh store; return the JSON record (medians and all)."""
    rounds = []
    with tempfile.TemporaryDirectory(prefix="durable-cold-") as tmp:
        for i in range(max(1, repeats)):
            rounds.append(one_round(tmp, i))
    firsts = [r["first_result_ms"] for r in rounds]
    servings = [r["worker_serving_ms"] for r in rounds]
    return {
        "system": "durable", "workload": "cold_start", "repeats": len(rounds),
        "first_result_ms": round(median(firsts), 1), "first_result_ms_min": round(min(firsts), 1),
        "worker_serving_ms": round(median(servings), 1),
        "first_result_ms_all": [round(v, 1) for v in firsts],
        "worker_serving_ms_all": [round(v, 1) for v in servings],
    }


def client_main(data: str) -> None:
    """The client process: start one three_steps workflow, wait for it, print the result."""
    import durable

    handle = durable.Client(data).start("three_steps_wf", 0, id="cold-0")
    print(json.dumps({"result": handle.result(timeout=60)}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.cold DATA")
    client_main(sys.argv[1])
