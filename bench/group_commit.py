"""Group commit: durable events per second the store writes, by how many changes share a commit.

A fresh store (synced commits, as always), with ``workflows`` running `signal_wf` workflows and
no worker: each change appends one `SignalReceived` event to one of them (`durable._ops.signal`,
what `WorkflowHandle.signal` commits), round robin. Two ways of writing:

- ``writers: "batch"``: one writer hands `Store.write_batch` ``batch`` changes at a time (what the
  worker's writer task does with the changes its tasks ask for), for each batch size;
- ``writers: "threads"``: ``threads`` threads each commit one change at a time with `Store.write`
  (what clients in one process do), so that any grouping across threads shows.

Each runs for about ``seconds``. Commits are counted from LMDB's transaction id, so a grouping
done inside the store is counted as it happens.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from durable import _ops
from durable._codec import Converter
from durable._store import Store, Txn

SIGNAL = "sig"


def _signal_op(wid: str, payload: bytes) -> Callable[[Txn], Any]:
    return lambda t: _ops.signal(t, wid, SIGNAL, payload)


def _last_txn(store: Store) -> int:
    return int(store.env.info()["last_txnid"])


def _record(writers: str, size: int, events: int, commits: int, seconds: float) -> dict[str, Any]:
    return {
        "system": "durable", "workload": "group_commit", "writers": writers,
        ("batch" if writers == "batch" else "threads"): size,
        "events": events, "commits": commits, "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds), "commits_per_s": round(commits / seconds),
        "events_per_commit": round(events / max(commits, 1), 1),
    }


def run_batches(store: Store, wids: list[str], payload: bytes, batch: int, seconds: float) -> dict[str, Any]:
    """Commit `batch` signals per `write_batch` for about `seconds` (at least three commits)."""
    n = 0
    events = 0
    txn0 = _last_txn(store)
    t0 = time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        ops = [_signal_op(wids[(events + i) % len(wids)], payload) for i in range(batch)]
        for result in store.write_batch(ops):
            if isinstance(result, BaseException):
                raise result
        events += batch
        n += 1
    elapsed = time.perf_counter() - t0
    return _record("batch", batch, events, _last_txn(store) - txn0, elapsed)


def run_threads(store: Store, wids: list[str], payload: bytes, threads: int, seconds: float) -> dict[str, Any]:
    """`threads` threads each committing one signal at a time with `Store.write` for `seconds`."""
    counts = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def loop(k: int) -> None:
        try:
            start.wait()
            i = k
            while time.perf_counter() < deadline:
                store.write(_signal_op(wids[i % len(wids)], payload))
                counts[k] += 1
                i += threads
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    txn0 = _last_txn(store)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    start.wait()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return _record("threads", threads, sum(counts), _last_txn(store) - txn0, elapsed)


def measure(*, batches: list[int], threads: int = 16, seconds: float = 2.0,
            workflows: int = 1000) -> list[dict[str, Any]]:
    """One JSON record per batch size, then one for `threads` concurrent writers (0: none)."""
    converter = Converter()
    records = []
    with tempfile.TemporaryDirectory(prefix="durable-gc-") as tmp:
        store = Store.open(os.path.join(tmp, "store"))
        try:
            wids = [f"gc-{i}" for i in range(max(1, workflows))]
            start_input = converter.to_payload([], "input of workflow signal_wf")
            for result in store.write_batch([
                (lambda t, wid=wid: _ops.start_workflow(t, wid, "signal_wf", "default", start_input, False, False))
                for wid in wids
            ]):
                if isinstance(result, BaseException):
                    raise result
            payload = converter.to_payload(["payload"], "signal sig")
            for batch in batches:
                records.append(run_batches(store, wids, payload, batch, seconds))
            if threads > 0:
                records.append(run_threads(store, wids, payload, threads, seconds))
        finally:
            store.close()
    return records
