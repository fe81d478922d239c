"""Benchmarks of `durable`: the peers' four workloads, replay, group commit, cold start, memory.

    python -m bench [--n 200] [--n-timer 50] [--concurrency 50] [--workloads a,b] [--sequential 50]
                    [--only M,M | --skip M,M] [sizes of each measurement: see --help]

The peers' four workloads (and children10, a parent with ten child workflows) run on one worker process
(``--worker-processes N``: N of them, on the one store) on a fresh store (synced commits); the client
runs here, with one thread per workflow in flight. Prints one JSON line per workload in the
peers' format (system, workload, n, concurrency, wall_s, wf_per_s, p50_ms, p95_ms, p99_ms), plus
the CPU time per workflow of the worker process and of the client (worker_cpu_ms_per_wf,
client_cpu_ms_per_wf, from /proc: steadier than wf/s on a shared machine; the worker's is that of
all the worker processes together, and worker_processes says how many), then one line per
workload for one workflow at a time (`concurrency: 1`). Then one line per further
measurement, each with ``"system": "durable"`` and its ``"workload"``: ``replay``
(bench/replay.py), ``continue_as_new`` (an entity workflow taking 1,000 signals and continuing as
new every 100: bench/entity.py), ``group_commit`` (one line per batch size and one for concurrent threads,
bench/group_commit.py), ``cold_start`` (bench/cold.py) and ``memory`` (bench/memory.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import durable
from durable._limits import MAX_HISTORY_EVENTS

from . import cold, entity, group_commit, memory, replay
from ._util import ROOT, pct, proc_cpu_s, start_worker, stop_worker

__all__ = ["MEASUREMENTS", "ROOT", "WORKLOADS", "main", "one", "pct", "run_workload"]

#: The peers' four workloads, then durable's own: children10, a parent with ten child workflows.
WORKLOADS = ("three_steps", "fanout10", "signal_roundtrip", "timer", "children10")
#: What --only and --skip choose from, in the order they run.
MEASUREMENTS = ("workloads", "sequential", "replay", "continue_as_new", "group_commit", "cold_start", "memory")


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
    elif workload == "children10":
        assert client.start("children10_wf", i, id=wid).result(timeout=60) == 10 * i + 45 + 10
    else:
        raise ValueError(workload)
    return time.perf_counter() - t0


def run_workload(client: durable.Client, workload: str, n: int, concurrency: int, tag: str,
                 worker_pid: int | list[int] | None = None) -> dict[str, object]:
    """Run `n` workflows with `concurrency` in flight; return the peers' JSON record. With
    `worker_pid` (one pid, or the pids of several worker processes), also the CPU time per
    workflow of those worker processes together and of this one (the client): a steadier figure
    to tune against than the throughput on a shared machine."""
    pids = [] if worker_pid is None else [worker_pid] if isinstance(worker_pid, int) else list(worker_pid)
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(n))
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                latency = one(client, workload, i, tag)
                with lock:
                    latencies.append(latency)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=loop) for _ in range(min(concurrency, n))]
    cpu0 = (sum(proc_cpu_s(pid) for pid in pids), _own_cpu_s()) if pids else None
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    s = sorted(latencies)
    record: dict[str, object] = {
        "system": "durable", "workload": workload, "n": n, "concurrency": concurrency,
        "wall_s": round(wall, 3), "wf_per_s": round(n / wall, 2),
        "p50_ms": round(pct(s, 0.5) * 1000, 2), "p95_ms": round(pct(s, 0.95) * 1000, 2),
        "p99_ms": round(pct(s, 0.99) * 1000, 2),
    }
    if cpu0 is not None:
        record["worker_processes"] = len(pids)
        record["worker_cpu_ms_per_wf"] = round((sum(proc_cpu_s(pid) for pid in pids) - cpu0[0]) * 1000 / n, 3)
        record["client_cpu_ms_per_wf"] = round((_own_cpu_s() - cpu0[1]) * 1000 / n, 3)
    return record


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _names(text: str, allowed: tuple[str, ...], what: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [w for w in text.split(",") if w]
    for w in names:
        if w not in allowed:
            parser.error(f"unknown {what} {w!r} (one of {', '.join(allowed)})")
    return names


def _sizes(text: str, parser: argparse.ArgumentParser) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        parser.error(f"--gc-batches must be positive integers separated by commas, not {text!r}")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; sizes are checked, names of workloads and measurements too."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                     epilog="Defaults in brackets. Every measurement prints JSON lines on stdout.")
    sel = parser.add_argument_group("what to run")
    sel.add_argument("--only", default="", metavar="M,M",
                     help=f"run only these measurements, of: {', '.join(MEASUREMENTS)} [all]")
    sel.add_argument("--skip", default="", metavar="M,M", help="run all the measurements but these [none]")
    sel.add_argument("--workloads", default=",".join(WORKLOADS),
                     help="the peers' workloads that 'workloads' and 'sequential' run [all four]")
    peers = parser.add_argument_group("the peers' workloads")
    peers.add_argument("--n", type=int, default=200, help="workflows per workload but timer [200]")
    peers.add_argument("--n-timer", type=int, default=50, help="workflows of the timer workload [50]")
    peers.add_argument("--concurrency", type=int, default=50, help="workflows in flight [50]")
    peers.add_argument("--sequential", type=int, default=50,
                       help="workflows run one at a time per workload (timer: at most 10; 0: skip) [50]")
    peers.add_argument("--warmup", type=int, default=5, help="unmeasured workflows run first per workload [5]")
    rep = parser.add_argument_group("replay")
    rep.add_argument("--replay-events", type=int, default=10_000, help="events in the replayed history, about [10000]")
    rep.add_argument("--replay-width", type=int, default=100, help="activities run at once to record it [100]")
    rep.add_argument("--replay-repeats", type=int, default=5, help="timed replays: best and median reported [5]")
    gc = parser.add_argument_group("group commit")
    gc.add_argument("--gc-batches", default="1,10,100,1000", help="changes per commit, one line each [1,10,100,1000]")
    gc.add_argument("--gc-threads", type=int, default=16, help="threads committing one change at a time (0: skip) [16]")
    gc.add_argument("--gc-seconds", type=float, default=2.0, help="seconds spent on each batch size [2]")
    gc.add_argument("--gc-workflows", type=int, default=1000, help="workflows the signals go to [1000]")
    can = parser.add_argument_group("continue as new")
    can.add_argument("--can-signals", type=int, default=1000, help="signals the entity takes in all [1000]")
    can.add_argument("--can-every", type=int, default=100, help="signals per run: it continues as new after these [100]")
    cs = parser.add_argument_group("cold start")
    cs.add_argument("--cold-repeats", type=int, default=3, help="cold starts, each on a fresh store [3]")
    mem = parser.add_argument_group("memory")
    mem.add_argument("--memory-workflows", type=int, default=10_000, help="live workflows waiting on a signal [10000]")
    mem.add_argument("--memory-complete", action="store_true",
                     help="signal them all and wait for them to complete before stopping the worker")
    peers.add_argument("--worker-processes", type=int, default=1,
                       help="worker processes (`durable worker`) serving the workloads, the replay and "
                            "continue-as-new, all on the one store [1]")
    parser.add_argument("--data", "--store", dest="data", default=None, metavar="DIR|URL",
                        help="store of the workloads and the replay: a directory, or a URL such as "
                             "postgresql://user@host/db (an empty schema) [a fresh temporary directory]")
    args = parser.parse_args(argv)
    args.workloads = _names(args.workloads, WORKLOADS, "workload", parser)
    only = _names(args.only, MEASUREMENTS, "measurement", parser)
    skip = _names(args.skip, MEASUREMENTS, "measurement", parser)
    args.measurements = [m for m in (only or MEASUREMENTS) if m not in skip]
    if not args.sequential:
        args.measurements = [m for m in args.measurements if m != "sequential"]
    args.gc_batches = _sizes(args.gc_batches, parser)
    for name in ("n", "n_timer", "concurrency", "worker_processes", "replay_events", "replay_width", "replay_repeats",
                 "can_signals", "can_every", "gc_workflows", "cold_repeats", "memory_workflows"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.gc_seconds <= 0:
        parser.error("--gc-seconds must be positive")
    if args.replay_events > MAX_HISTORY_EVENTS:
        parser.error(f"--replay-events: a history holds at most {MAX_HISTORY_EVENTS} events (MAX_HISTORY_EVENTS)")
    return args


def emit(record: dict[str, Any]) -> None:
    """One result: one JSON line on stdout, at once."""
    print(json.dumps(record), flush=True)


def run_with_worker(args: argparse.Namespace, data: str) -> None:
    """The measurements that share one worker on one store: the workloads, the replay and
    continue-as-new."""
    # activity slots for every activity the workloads have in flight (fanout10: ten per workflow);
    # with the default 100 the rest wait in the queue (fanout10 at 50 in flight: p95 ~2x)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(args.worker_processes):
            workers.append(start_worker(data, concurrency=max(args.concurrency * 10, 100)))
        pids = [w.pid for w in workers]
        client = durable.Client(data)
        if args.warmup and {"workloads", "sequential"} & set(args.measurements):
            for w in args.workloads:  # warm-up, not measured
                if w != "timer":
                    run_workload(client, w, args.warmup, args.warmup, "warm")
        if "workloads" in args.measurements:
            for w in args.workloads:
                n = args.n_timer if w == "timer" else args.n
                emit(run_workload(client, w, n, args.concurrency, "c", pids))
        if "sequential" in args.measurements:
            for w in args.workloads:
                n = min(args.sequential, 10) if w == "timer" else args.sequential
                emit(run_workload(client, w, n, 1, "s", pids))
        if "replay" in args.measurements:
            emit(replay.measure(client, events=args.replay_events, width=args.replay_width,
                                repeats=args.replay_repeats))
        if "continue_as_new" in args.measurements:
            emit(entity.measure(client, signals=args.can_signals, every=args.can_every))
    finally:
        for worker in workers:
            stop_worker(worker)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        if {"workloads", "sequential", "replay", "continue_as_new"} & set(args.measurements):
            run_with_worker(args, args.data or os.path.join(tmp, "store"))
    if "group_commit" in args.measurements:
        for record in group_commit.measure(batches=args.gc_batches, threads=args.gc_threads,
                                           seconds=args.gc_seconds, workflows=args.gc_workflows):
            emit(record)
    if "cold_start" in args.measurements:
        emit(cold.measure(repeats=args.cold_repeats))
    if "memory" in args.measurements:
        emit(memory.measure(workflows=args.memory_workflows, complete=args.memory_complete))
    return 0


if __name__ == "__main__":
    sys.exit(main())
