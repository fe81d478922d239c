"""What the measurements share: percentiles, a worker process, and its memory as Linux reports it."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pct(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), as in the peers' scripts."""
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def median(values: list[float]) -> float:
    """The median (the mean of the middle two for an even count)."""
    return statistics.median(values)


def bench_env() -> dict[str, str]:
    """The environment of the processes a measurement starts: `bench` importable from the repo."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=str(ROOT) + (os.pathsep + path if path else ""))


def worker_command(data: str, *, concurrency: int = 100, cache: int | None = None,
                   log_workflows: bool = False) -> list[str]:
    """``durable worker bench.workloads`` on store `data`, as a command line. Without the INFO
    line per workflow started and closed (`log_workflows`): the benchmarks measure the engine;
    `python -m bench.instructions --log-workflows` measures what the lines cost."""
    cmd = [sys.executable, "-m", "durable", "--data", data, "worker", "bench.workloads",
           "--concurrency", str(concurrency), "--log-workflows" if log_workflows else "--no-log-workflows"]
    if cache is not None:
        cmd += ["--cache", str(cache)]
    return cmd


def wait_serving(proc: subprocess.Popen[bytes], t0: float) -> float:
    """Read the worker's log until it says it serves its queue; then keep draining it in a thread
    (so that it never blocks on a full pipe). Returns the seconds from `t0` to that line."""
    assert proc.stderr is not None
    stream = proc.stderr
    tail: list[bytes] = []
    for line in stream:
        if b"serving queue" in line:
            seen = time.perf_counter() - t0
            threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()
            return seen
        tail = (tail + [line])[-20:]
    proc.wait()
    raise RuntimeError(f"the worker exited with {proc.returncode} before serving:\n"
                       + b"".join(tail).decode(errors="replace"))


def start_worker(data: str, *, concurrency: int = 100, cache: int | None = None,
                 prefix: list[str] | None = None, log_workflows: bool = False) -> subprocess.Popen[bytes]:
    """The worker in its own process (its command line after `prefix`, such as a profiler's);
    returns once it serves the queue."""
    t0 = time.perf_counter()
    command = worker_command(data, concurrency=concurrency, cache=cache, log_workflows=log_workflows)
    proc = subprocess.Popen((prefix or []) + command, cwd=ROOT,
                            env=bench_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_serving(proc, t0)
    except BaseException:
        stop_worker(proc)
        raise
    return proc


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Stop a worker this program started: SIGTERM (a graceful stop), SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def proc_memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of process `pid`, in KiB, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
