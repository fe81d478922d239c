"""`python -m bench` at a tiny size, as a real process: every measurement prints well-formed JSON
lines with the expected keys and sane values (how fast anything is, is never asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

import durable
from bench._util import bench_env
from tests.conftest import ROOT

PEER_KEYS = {"system", "workload", "n", "concurrency", "wall_s", "wf_per_s", "p50_ms", "p95_ms", "p99_ms"}
CPU_KEYS = {"worker_cpu_ms_per_wf", "client_cpu_ms_per_wf"}
#: How many worker processes ran the workload (their CPU time is worker_cpu_ms_per_wf, together).
WORKERS_KEY = "worker_processes"
TINY = [
    "--n", "4", "--n-timer", "2", "--concurrency", "2", "--sequential", "1", "--warmup", "1",
    "--replay-events", "100", "--replay-width", "10", "--replay-repeats", "2", "--can-signals", "30", "--can-every", "4",
    "--gc-batches", "1,10", "--gc-threads", "3", "--gc-seconds", "0.05", "--gc-workflows", "10",
    "--cold-repeats", "1", "--memory-workflows", "20", "--memory-complete",
]


def run_bench(*args: str) -> list[dict[str, object]]:
    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=bench_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines, proc.stderr
    return [json.loads(line) for line in lines]


def positive(rec: dict[str, object], *keys: str) -> None:
    for key in keys:
        value = rec[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, rec)


@pytest.fixture(scope="module")
def records() -> list[dict[str, object]]:
    return run_bench(*TINY)


def test_every_line_is_durable_and_in_order(records: list[dict[str, object]]) -> None:
    assert all(r["system"] == "durable" for r in records)
    assert [r["workload"] for r in records] == [
        "three_steps", "fanout10", "signal_roundtrip", "timer", "children10",
        "three_steps", "fanout10", "signal_roundtrip", "timer", "children10",
        "replay", "continue_as_new", "group_commit", "group_commit", "group_commit", "cold_start", "memory",
    ]


def test_the_peers_workloads_in_the_peers_format(records: list[dict[str, object]]) -> None:
    concurrent, sequential = records[:5], records[5:10]
    for rec in concurrent + sequential:
        assert set(rec) == PEER_KEYS | CPU_KEYS | {WORKERS_KEY}
        assert rec[WORKERS_KEY] == 1
        positive(rec, "wall_s", "wf_per_s", "p50_ms", "p95_ms", "p99_ms")
        for key in CPU_KEYS:  # CPU clock ticks are 10 ms: a tiny run may show none
            value = rec[key]
            assert isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, (key, rec)
        assert rec["p50_ms"] <= rec["p95_ms"] <= rec["p99_ms"]  # type: ignore[operator]
    assert [(r["n"], r["concurrency"]) for r in concurrent] == [(4, 2), (4, 2), (4, 2), (2, 2), (4, 2)]
    assert [(r["n"], r["concurrency"]) for r in sequential] == [(1, 1)] * 5
    assert concurrent[3]["p50_ms"] >= 1000  # the timer sleeps one second


def test_continue_as_new(records: list[dict[str, object]]) -> None:
    (rec,) = [r for r in records if r["workload"] == "continue_as_new"]
    assert (rec["signals"], rec["every"]) == (30, 4)
    assert rec["runs"] == 8  # 30 signals, 4 a run
    positive(rec, "wall_s", "signals_per_s", "signal_p50_ms", "signal_p95_ms", "signal_p99_ms")


def test_replay(records: list[dict[str, object]]) -> None:
    (rec,) = [r for r in records if r["workload"] == "replay"]
    assert rec["activities"] == 49 and rec["width"] == 10 and rec["repeats"] == 2
    # two events per activity, start and end, and a TaskCompleted for some activations
    assert 100 <= rec["events"] <= 100 + 49  # type: ignore[operator]
    positive(rec, "history_kb", "record_s", "best_s", "median_s", "events_per_s", "us_per_event", "decode_best_s",
             "decoded_best_s")
    assert rec["best_s"] <= rec["median_s"]  # type: ignore[operator]


def test_group_commit(records: list[dict[str, object]]) -> None:
    batches = [r for r in records if r["workload"] == "group_commit" and r["writers"] == "batch"]
    assert [r["batch"] for r in batches] == [1, 10]
    for rec in batches:
        positive(rec, "events", "commits", "seconds", "events_per_s", "commits_per_s")
        assert rec["events"] == rec["commits"] * rec["batch"]  # type: ignore[operator]
        assert rec["commits"] >= 3  # type: ignore[operator]
    (threads,) = [r for r in records if r["workload"] == "group_commit" and r["writers"] == "threads"]
    assert threads["threads"] == 3
    positive(threads, "events", "commits", "seconds", "events_per_s", "commits_per_s")
    assert threads["commits"] <= threads["events"]  # type: ignore[operator]


def test_cold_start(records: list[dict[str, object]]) -> None:
    (rec,) = [r for r in records if r["workload"] == "cold_start"]
    assert rec["repeats"] == 1 and len(rec["first_result_ms_all"]) == 1  # type: ignore[arg-type]
    positive(rec, "first_result_ms", "worker_serving_ms")


def test_memory(records: list[dict[str, object]]) -> None:
    (rec,) = [r for r in records if r["workload"] == "memory"]
    assert rec["live_workflows"] == 20
    positive(rec, "rss_mb", "peak_rss_mb", "idle_rss_mb", "start_s", "first_tasks_s", "complete_s")
    assert rec["rss_mb"] <= rec["peak_rss_mb"] <= rec["peak_rss_mb_after_complete"]  # type: ignore[operator]


def test_only_and_skip_choose_the_measurements() -> None:
    records = run_bench("--only", "group_commit,replay", "--skip", "replay", "--gc-batches", "2",
                        "--gc-threads", "0", "--gc-seconds", "0.01", "--gc-workflows", "2")
    assert [(r["workload"], r["batch"]) for r in records] == [("group_commit", 2)]


def test_two_worker_processes_on_one_store(data_dir: str) -> None:
    """--worker-processes 2: two `durable worker` processes serve the one store (a directory, or
    with DURABLE_TEST_STORE a PostgreSQL schema) and every workflow of the four workloads gets its
    right result (the bench asserts each one)."""
    records = run_bench("--store", data_dir, "--only", "workloads", "--worker-processes", "2",
                        "--workloads", "three_steps,fanout10,signal_roundtrip,timer",
                        "--n", "6", "--n-timer", "2", "--concurrency", "3", "--warmup", "1")
    assert [r["workload"] for r in records] == ["three_steps", "fanout10", "signal_roundtrip", "timer"]
    for rec in records:
        assert rec[WORKERS_KEY] == 2
        positive(rec, "wall_s", "wf_per_s", "p50_ms")
    served = durable.Client(data_dir).workers(include_gone=True)
    assert len({(w.identity, w.pid) for w in served}) == 2, served
    assert not any(w.alive for w in served)  # both stopped when the bench ended


def test_bad_names_and_sizes_are_usage_errors() -> None:
    for args in (["--only", "nope"], ["--workloads", "three_steps,nope"], ["--gc-batches", "1,x"], ["--n", "0"],
                 ["--worker-processes", "0"]):
        proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, env=bench_env())
        assert proc.returncode == 2 and proc.stdout == "", (args, proc.stderr)
        assert "error:" in proc.stderr
