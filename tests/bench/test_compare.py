"""`python -m bench.compare`: the table and its ratios from a saved results file, the peers that
are not installed skipped with how to install them, and the plumbing of a run (results file,
time limits) with stand-in peers scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import compare
from bench._util import bench_env
from tests.conftest import ROOT


def rec(system: str, workload: str, wf_per_s: float, p50_ms: float, n: int = 200, concurrency: int = 50) -> dict[str, object]:
    return {"system": system, "workload": workload, "n": n, "concurrency": concurrency, "wall_s": n / wf_per_s,
            "wf_per_s": wf_per_s, "p50_ms": p50_ms, "p95_ms": p50_ms, "p99_ms": p50_ms}


def run_compare(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.compare", *args], cwd=ROOT, env=bench_env(),
                          capture_output=True, text=True, timeout=timeout)


def block(output: str, section: int) -> list[str]:
    """The lines of table `section` (0: throughput, 1: latency), title and header first."""
    title = ("throughput", "latency")[section]
    (lines,) = [b.splitlines() for b in output.split("\n\n") if b.startswith(title)]
    return lines


def cells(output: str, label: str, section: int) -> list[str]:
    """The cells of the row `label` of table `section` (0: throughput, 1: latency)."""
    for line in block(output, section)[2:]:
        if line.startswith(label + "  "):
            return [c.strip() for c in line[len(label):].split("  ") if c.strip()]
    raise AssertionError(f"no row {label!r} in:\n{output}")


def test_the_table_from_a_results_file(tmp_path: Path) -> None:
    records = [
        {"compare": "config", "n": 200, "n_timer": 50, "concurrency": 50, "started": "then"},
        rec("durable", "three_steps", 100.0, 50.0),
        rec("durable", "three_steps", 25.0, 40.0, n=50, concurrency=1),  # one at a time: not compared
        rec("durable", "fanout10", 80.0, 60.0),
        rec("durable", "timer", 45.0, 1010.0, n=50),
        {"system": "temporal", "workload": "server_start", "ready_s": 3.2},  # not one of the four
        {"system": "temporal", "workload": "cold_start", "proc_start_to_first_result_s": 1.5},
        rec("temporal", "three_steps", 50.0, 100.0),
        rec("temporal", "fanout10", 160.0, 30.0, n=20),
        rec("temporal", "timer", 45.0, 1040.0, n=50),
        rec("restate", "three_steps", 200.0, 25.0),
        rec("restate", "timer", 45.0, 1005.0, n=50),
        {"compare": "run", "system": "dbos-sqlite", "status": "failed", "reason": "timed out after 5 s (stopped)"},
    ]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    proc = run_compare("--from", str(path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "dbos-sqlite: failed: timed out after 5 s (stopped)" in out
    for section in (0, 1):
        assert block(out, section)[1].split() == ["workload", "durable", "temporal", "restate", "best", "peer"]
    # throughput: durable / peer
    assert cells(out, "three_steps", 0) == ["100.0", "50.0 (2.00x)", "200.0 (0.50x)", "restate 200.0 (0.50x)"]
    assert cells(out, "fanout10", 0) == ["80.0", "160.0 (0.50x)", "-", "temporal 160.0 (0.50x)"]
    assert cells(out, "signal_roundtrip", 0) == ["-", "-", "-", "-"]
    # latency: peer p50 / durable p50; the timer's overhead above its one second
    assert cells(out, "three_steps", 1) == ["50.0", "100.0 (2.00x)", "25.0 (0.50x)", "restate 25.0 (0.50x)"]
    assert cells(out, "fanout10", 1) == ["60.0", "30.0 (0.50x)", "-", "temporal 30.0 (0.50x)"]
    assert cells(out, "timer overhead", 1) == ["10.0", "40.0 (4.00x)", "5.0 (0.50x)", "restate 5.0 (0.50x)"]
    assert "timer" not in [line.split("  ")[0] for line in block(out, 0)]  # its throughput is its sleep's
    assert "temporal fanout10 ran n=20, durable n=200" in out


def test_peers_not_installed_are_skipped_with_how_to_install(tmp_path: Path) -> None:
    peers_dir = tmp_path / "peers"
    peers_dir.mkdir()
    out = tmp_path / "results.jsonl"
    proc = run_compare("--no-durable", "--peers-dir", str(peers_dir), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for system, script in [("temporal", "temporal_run.sh"), ("dbos-sqlite", "dbos_run.sh"),
                           ("dbos-postgres", "dbos_run.sh"), ("restate", "restate_run.sh")]:
        (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith(system + ":")]
        assert line.startswith(f"{system}: skipped: not installed in {peers_dir.resolve()}"), line
        assert f"install it with: PEERS_DIR={peers_dir.resolve()} " in line and line.count(script) == 1, line
    assert "no results of the four workloads to compare" in proc.stdout
    statuses = [r for r in compare.load(out) if r.get("compare") == "run"]
    assert [(r["system"], r["status"]) for r in statuses] == [
        ("temporal", "skipped"), ("dbos-sqlite", "skipped"), ("dbos-postgres", "skipped"), ("restate", "skipped")]
    assert os.listdir(peers_dir) == []  # nothing was installed


def test_a_tiny_durable_run_with_a_subset_of_peers(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    proc = run_compare("--peers", "restate", "--peers-dir", str(tmp_path / "none"), "--out", str(out),
                       "--n", "2", "--n-timer", "1", "--concurrency", "2", timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines if ln.startswith(("durable:", "restate:", "temporal:"))] == ["durable", "restate"]
    assert "restate: skipped: not installed" in proc.stdout
    durable = [r for r in compare.load(out) if r.get("system") == "durable" and "compare" not in r]
    assert [(r["workload"], r["n"], r["concurrency"]) for r in durable] == [
        ("three_steps", 2, 2), ("fanout10", 2, 2), ("signal_roundtrip", 2, 2), ("timer", 1, 2)]
    assert cells(proc.stdout, "three_steps", 0)[0] == f"{durable[0]['wf_per_s']:.1f}"


def stand_ins(tmp_path: Path) -> tuple[Path, Path]:
    """A peers directory where temporal and restate look installed, and scripts for them: the
    temporal one prints its records (and a line that is not JSON), the restate one hangs."""
    peers, scripts = tmp_path / "peers", tmp_path / "scripts"
    cli = peers / "temporal-venv" / "bin" / "temporal"
    npm = peers / "restate-npm" / "node_modules" / "@restatedev"
    for path in (cli, npm / "restate-server-linux-x64/bin/restate-server", npm / "restate-linux-x64/bin/restate",
                 peers / "restate-venv/bin/python"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    scripts.mkdir()
    lines = [{"system": "temporal", "workload": "server_start", "ready_s": 1.0},
             rec("temporal", "three_steps", 10.0, 20.0, n=3)]
    (scripts / "temporal_run.sh").write_text(
        "echo \"n=$BENCH_N timer=$BENCH_N_TIMER c=$BENCH_CONCURRENCY dir=$PEERS_DIR\" >&2\n"
        "echo 'not json'\n" + "".join(f"echo '{json.dumps(r)}'\n" for r in lines))
    (scripts / "restate_run.sh").write_text(
        f"echo '{json.dumps(rec('restate', 'three_steps', 5.0, 40.0, n=3))}'\nsleep 600\n")
    return peers, scripts


def test_a_run_collects_every_line_and_stops_a_peer_past_its_time(tmp_path: Path) -> None:
    peers, scripts = stand_ins(tmp_path)
    out = tmp_path / "results.jsonl"
    proc = run_compare("--no-durable", "--peers", "temporal,restate", "--peers-dir", str(peers), "--scripts",
                       str(scripts), "--out", str(out), "--n", "3", "--n-timer", "1", "--concurrency", "2",
                       "--timeout", "3")
    assert proc.returncode == 1, proc.stderr  # a run failed
    records = compare.load(out)
    assert [r.get("workload") for r in records if "compare" not in r] == ["server_start", "three_steps", "three_steps"]
    statuses = {r["system"]: r for r in records if r.get("compare") == "run"}
    assert statuses["temporal"]["status"] == "ok" and statuses["temporal"]["records"] == 2
    assert statuses["restate"]["status"] == "failed"
    assert statuses["restate"]["reason"] == "timed out after 3 s (stopped)"
    log = Path(statuses["temporal"]["log"]).read_text()
    assert f"n=3 timer=1 c=2 dir={peers}" in log and "stdout: not json" in log
    assert "restate: failed: timed out after 3 s (stopped)" in proc.stdout
    assert cells(proc.stdout, "three_steps", 0) == ["-", "10.0", "5.0", "temporal 10.0"]  # no durable: no ratios


def test_with_several_rounds_each_figure_is_the_median_of_the_runs(tmp_path: Path) -> None:
    records = [
        rec("durable", "three_steps", 100.0, 50.0), rec("restate", "three_steps", 40.0, 90.0),
        rec("durable", "three_steps", 300.0, 10.0), rec("restate", "three_steps", 10.0, 70.0),
        rec("durable", "three_steps", 200.0, 30.0), rec("restate", "three_steps", 20.0, 80.0),
        rec("durable", "three_steps", 900.0, 1.0, n=50, concurrency=1),  # one at a time: not compared
        {"compare": "run", "system": "restate", "status": "ok", "seconds": 1.0, "records": 4, "round": 2},
    ]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    proc = run_compare("--from", str(path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert cells(out, "three_steps", 0) == ["200.0", "20.0 (10.00x)", "restate 20.0 (10.00x)"]
    assert cells(out, "three_steps", 1) == ["30.0", "80.0 (2.67x)", "restate 80.0 (2.67x)"]
    assert "each figure is the median of 3 runs" in out
    assert "restate (round 2): ok in 1.0 s (4 records)" in out


def test_rounds_must_be_at_least_one() -> None:
    proc = run_compare("--rounds", "0")
    assert proc.returncode == 2 and "--rounds must be at least 1" in proc.stderr


def test_rounds_run_the_whole_sequence_again_with_a_log_each(tmp_path: Path) -> None:
    peers, scripts = stand_ins(tmp_path)
    out = tmp_path / "results.jsonl"
    proc = run_compare("--no-durable", "--peers", "temporal", "--peers-dir", str(peers), "--scripts",
                       str(scripts), "--out", str(out), "--n", "3", "--rounds", "2")
    assert proc.returncode == 0, proc.stderr
    records = compare.load(out)
    runs = [r for r in records if r.get("compare") == "run"]
    assert [(r["system"], r["round"], r["status"]) for r in runs] == [("temporal", 1, "ok"), ("temporal", 2, "ok")]
    assert len({r["log"] for r in runs}) == 2
    assert [r.get("round") for r in records if r.get("workload") == "three_steps"] == [1, 2]  # each its round
    assert "each figure is the median of 2 runs" in proc.stdout


def test_round_by_round_ratios_pair_each_round_s_runs(tmp_path: Path) -> None:
    """With rounds, durable is also compared with the best peer round by round: each ratio from
    the runs of one round. Records carry their round, or (older files) belong to the run status
    of their system that follows them."""
    def status(system: str, rnd: int) -> dict[str, object]:
        return {"compare": "run", "system": system, "status": "ok", "seconds": 1.0, "records": 2, "round": rnd}

    records: list[dict[str, object]] = []
    for rnd, (d, r, d_timer, r_timer) in enumerate([(100.0, 50.0, 1010.0, 1100.0), (400.0, 100.0, 1020.0, 1060.0),
                                                    (300.0, 50.0, 1040.0, 1080.0)], start=1):
        tagged = rnd == 2  # round 2 as bench.compare writes them now, the others as it did before
        for system, tp, timer in (("durable", d, d_timer), ("restate", r, r_timer)):
            for one in (rec(system, "three_steps", tp, 10.0), rec(system, "timer", 45.0, timer, n=50)):
                records.append(dict(one, round=rnd) if tagged else one)
            records.append(status(system, rnd))
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    proc = run_compare("--from", str(path))
    assert proc.returncode == 0, proc.stderr
    # medians of all rounds: 300 / 50 = 6x; round by round 2x, 4x, 6x: median 4x
    assert cells(proc.stdout, "three_steps", 0)[-1] == "restate 50.0 (6.00x)"
    (section,) = [b.splitlines() for b in proc.stdout.split("\n\n") if b.startswith("round by round")]
    rows = {line.split()[0]: line.split()[1:] for line in section[2:]}
    assert rows["three_steps"] == ["restate", "4.00x", "2.00-6.00x", "3", "rounds"]
    # timer overhead, restate's / durable's: 100/10, 60/20, 80/40 -> 10x, 3x, 2x
    assert rows["timer"] == ["overhead", "restate", "3.00x", "2.00-10.00x", "3", "rounds"]
