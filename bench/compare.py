"""durable side by side with Temporal, DBOS and Restate: the peers' four workloads, one run each.

    python -m bench.compare [--peers temporal,dbos,restate] [--n 200] [--n-timer 50] [--concurrency 50]
                            [--peers-dir DIR] [--scripts DIR] [--out FILE] [--timeout S] [--install]
                            [--no-durable] [--rounds K]
    python -m bench.compare --from FILE        only print the table of a saved run

Runs ``python -m bench --only workloads`` (durable), then each installed peer one after the other
with its script from ``../shared/peers/`` (``temporal_run.sh``; ``dbos_run.sh`` once per backend,
``dbos-sqlite`` and ``dbos-postgres``; ``restate_run.sh``), all with the same sizes. A peer counts
as installed when what its script would install is in the peers directory; one that is not is
skipped, with the command that installs it (or pass ``--install`` to let the scripts install
what is missing). Each run has a time limit: past it, its process group is stopped and the run
counts as failed. Every JSON line every system printed goes to the results file (default
``bench/results/compare-<time>.jsonl``; each run's stderr next to it, ``.<system>.log``), with
one ``{"compare": ...}`` record per run saying how it went; then the table is printed.

The table: per workload, each system's throughput (wf/s) and the ratio durable ÷ peer (above 1:
durable is faster), and the median latency (p50) with the ratio peer ÷ durable (above 1: durable
answers sooner). For the timer, whose throughput is set by its one-second sleep, the latency
compared is the overhead above that second (p50 − 1000 ms). "best peer" is the best of the peers
on each row. Records of other kinds (Temporal's server start, cold start and replay) stay in the
results file but not in the table. Where a system printed a workload more than once, the records
with the most workflows in flight are used: with ``--rounds K`` the whole sequence (durable, then
each peer) runs K times and each figure is the median of the K (runs on these shared machines
move by ±30% from one to the next; alternating the systems spreads that over all of them).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ._util import ROOT, bench_env

WORKLOADS = ("three_steps", "fanout10", "signal_roundtrip", "timer")
THROUGHPUT_ROWS = ("three_steps", "fanout10", "signal_roundtrip")
TIMER_S = 1.0
#: --peers names -> the systems (labels in the peers' JSON lines) they run.
PEER_GROUPS = {
    "temporal": ("temporal",),
    "dbos": ("dbos-sqlite", "dbos-postgres"),
    "restate": ("restate",),
}
SYSTEMS = tuple(s for group in PEER_GROUPS.values() for s in group)
DEFAULT_SCRIPTS = ROOT.parent / "shared" / "peers"
DEFAULT_PEERS_DIR = ROOT.parent / "peers-work"
DEFAULT_TIMEOUT_S = 1200.0


# --- the peers: where their scripts are, whether they are installed ------------------------


@dataclass(frozen=True)
class Peer:
    """One system of the peers and how to run it."""

    system: str
    script: str
    env: dict[str, str]

    def install_hint(self, scripts: Path, peers_dir: Path) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        return f"PEERS_DIR={peers_dir} {env + ' ' if env else ''}{scripts / self.script}"


PEERS = {
    "temporal": Peer("temporal", "temporal_run.sh", {}),
    "dbos-sqlite": Peer("dbos-sqlite", "dbos_run.sh", {"BACKENDS": "sqlite"}),
    "dbos-postgres": Peer("dbos-postgres", "dbos_run.sh", {"BACKENDS": "postgres"}),
    "restate": Peer("restate", "restate_run.sh", {}),
}


def _runs(python: Path, code: str) -> bool:
    if not os.access(python, os.X_OK):
        return False
    try:
        return subprocess.run([str(python), "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def missing(system: str, peers_dir: Path) -> str | None:
    """What of `system` is not installed in `peers_dir` (None: all of it is there)."""
    if system == "temporal":
        cli = peers_dir / "temporal-venv" / "bin" / "temporal"
        return None if os.access(cli, os.X_OK) else f"no {cli}"
    if system.startswith("dbos"):
        python = peers_dir / "dbos-venv" / "bin" / "python"
        if not _runs(python, "import dbos, psycopg"):
            return f"no {python} that imports dbos and psycopg"
        if system == "dbos-postgres" and not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
            return "no PostgreSQL server (/usr/lib/postgresql/*/bin/postgres; the script installs it with apt-get)"
        return None
    if system == "restate":
        npm = peers_dir / "restate-npm" / "node_modules" / "@restatedev"
        for pattern in ("restate-server-linux-*/bin/restate-server", "restate-linux-*/bin/restate"):
            if not glob.glob(str(npm / pattern)):
                return f"no {npm / pattern}"
        python = peers_dir / "restate-venv" / "bin" / "python"
        if not _runs(python, "import restate, hypercorn, aiohttp"):
            return f"no {python} that imports restate, hypercorn and aiohttp"
        return None
    raise ValueError(system)


# --- running one system --------------------------------------------------------------------


def run_system(system: str, cmd: list[str], env: dict[str, str], cwd: Path, timeout: float,
               results: TextIO, log_path: Path, round_no: int | None = None) -> dict[str, Any]:
    """Run `cmd`, copying each JSON line it prints to `results` (with `round_no` as its "round",
    if given) and its stderr to `log_path`; stop its process group after `timeout` seconds.
    Returns the run's status record."""
    t0 = time.monotonic()
    count = 0
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)

        def read() -> None:
            nonlocal count
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace").strip()
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    rec = None
                if isinstance(rec, dict):
                    if round_no is not None:
                        rec.setdefault("round", round_no)
                    results.write(json.dumps(rec) + "\n")
                    results.flush()
                    count += 1
                elif line:
                    log.write(b"stdout: " + raw)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_group(proc)
        reader.join(30)
    status: dict[str, Any] = {"compare": "run", "system": system, "seconds": round(time.monotonic() - t0, 1),
                              "records": count, "log": str(log_path)}
    if timed_out:
        status.update(status="failed", reason=f"timed out after {timeout:g} s (stopped)")
    elif proc.returncode != 0:
        status.update(status="failed", reason=f"exit code {proc.returncode}: {_last_line(log_path)}")
    elif count == 0:
        status.update(status="failed", reason=f"printed no results: {_last_line(log_path)}")
    else:
        status["status"] = "ok"
    return status


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group `proc` leads (it was started in a session of its own, so this is
    the run and whatever servers it started): SIGTERM, so that the scripts stop their servers,
    then SIGKILL if it is still there after a grace period."""
    for sig, grace in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "nothing on stderr"


# --- the table -------------------------------------------------------------------------------


def load(path: str | Path) -> list[dict[str, Any]]:
    """The records of a results file (one JSON object per line; other lines are ignored)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def pick(records: list[dict[str, Any]]) -> tuple[list[str], dict[tuple[str, str], dict[str, Any]]]:
    """The systems in order (durable first) and, per (system, workload), the record to compare:
    of the records with the most workflows in flight, the last, with its `wf_per_s` and
    `p50_ms` the medians of them all (and `runs`, how many there were)."""
    kept: dict[tuple[str, str], list[dict[str, Any]]] = {}
    systems: list[str] = []
    for rec in records:
        system, workload = rec.get("system"), rec.get("workload")
        if workload not in WORKLOADS or not isinstance(system, str) or "compare" in rec:
            continue
        if not all(isinstance(rec.get(k), (int, float)) for k in ("wf_per_s", "p50_ms")):
            continue
        if system not in systems:
            systems.append(system)
        old = kept.get((system, workload))
        if old is None or rec.get("concurrency", 0) > old[0].get("concurrency", 0):
            kept[(system, workload)] = [rec]
        elif rec.get("concurrency", 0) == old[0].get("concurrency", 0):
            old.append(rec)
    chosen = {key: dict(recs[-1], runs=len(recs), wf_per_s=statistics.median(r["wf_per_s"] for r in recs),
                        p50_ms=statistics.median(r["p50_ms"] for r in recs))
              for key, recs in kept.items()}
    systems.sort(key=lambda s: s != "durable")
    return systems, chosen


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or num <= 0 or den <= 0:
        return ""
    return f" ({num / den:.2f}x)"


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    return lines


def table(records: list[dict[str, Any]]) -> str:
    """The comparison as text: throughput, then latency, one row per workload."""
    systems, chosen = pick(records)
    peers = [s for s in systems if s != "durable"]
    if not systems:
        return "no results of the four workloads to compare"

    def value(system: str, workload: str, key: str) -> float | None:
        rec = chosen.get((system, workload))
        if rec is None:
            return None
        if key == "overhead_ms":
            return float(rec["p50_ms"]) - TIMER_S * 1000
        return float(rec[key])

    bests: dict[str, str | None] = {}  # per row of per_round: the best peer of the table
    out = ["throughput, wf/s (x: durable / peer; above 1, durable is faster)"]
    rows = []
    for w in THROUGHPUT_ROWS:
        d = value("durable", w, "wf_per_s")
        row = [w, _fmt(d)]
        vals = {p: value(p, w, "wf_per_s") for p in peers}
        for p in peers:
            row.append(_fmt(vals[p]) + _ratio(d, vals[p]))
        best = max((p for p in peers if vals[p] is not None), key=lambda p: vals[p] or 0.0, default=None)
        row.append("-" if best is None else f"{best} {_fmt(vals[best])}{_ratio(d, vals[best])}")
        rows.append(row)
        bests[w] = best
    out += _grid(["workload", "durable", *peers, "best peer"], rows)
    out += ["", "latency p50, ms (x: peer / durable; above 1, durable answers sooner); "
                "timer: p50 - 1000 ms, its overhead above the one-second sleep"]
    rows = []
    for w in WORKLOADS:
        key = "overhead_ms" if w == "timer" else "p50_ms"
        d = value("durable", w, key)
        row = ["timer overhead" if w == "timer" else w, _fmt(d)]
        vals = {p: value(p, w, key) for p in peers}
        for p in peers:
            row.append(_fmt(vals[p]) + _ratio(vals[p], d))
        best = min((p for p in peers if vals[p] is not None), key=lambda p: vals[p] or 0.0, default=None)
        row.append("-" if best is None else f"{best} {_fmt(vals[best])}{_ratio(vals[best], d)}")
        rows.append(row)
        if w == "timer":
            bests["timer overhead"] = best
    out += _grid(["workload", "durable", *peers, "best peer"], rows)
    runs = sorted({rec["runs"] for rec in chosen.values()})
    if runs != [1]:
        out += ["", "each figure is the median of " + "/".join(map(str, runs)) + " runs"]
    out += per_round(records, chosen, bests)
    notes = []
    for (system, w), rec in chosen.items():
        base = chosen.get(("durable", w))
        if system != "durable" and base is not None:
            for k in ("n", "concurrency"):
                if rec.get(k) != base.get(k):
                    notes.append(f"{system} {w} ran {k}={rec.get(k)}, durable {k}={base.get(k)}")
    if notes:
        out += ["", "not the same sizes: " + "; ".join(notes)]
    return "\n".join(out)


def per_round(records: list[dict[str, Any]], chosen: dict[tuple[str, str], dict[str, Any]],
              bests: dict[str, str | None]) -> list[str]:
    """Durable against each row's best peer round by round (records tagged with their "round"):
    each ratio from the two runs of one round, closer in time than the medians of all rounds
    (on these machines the speed drifts within minutes). Empty without rounds."""
    rounds: dict[int, int] = {}  # id of a record -> its round
    pending: dict[Any, list[dict[str, Any]]] = {}
    for rec in records:  # untagged records (older files) belong to the next run status of their system
        if rec.get("compare") == "run" and isinstance(rec.get("round"), int):
            for done in pending.pop(rec.get("system"), []):
                rounds[id(done)] = rec["round"]
        elif "compare" not in rec:
            if isinstance(rec.get("round"), int):
                rounds[id(rec)] = rec["round"]
            else:
                pending.setdefault(rec.get("system"), []).append(rec)
    by_round: dict[tuple[str, str, int], dict[str, Any]] = {}
    for rec in records:
        key = (rec.get("system"), rec.get("workload"))
        picked = chosen.get(key)  # type: ignore[arg-type]
        if id(rec) not in rounds or picked is None:
            continue
        if rec.get("concurrency", 0) == picked.get("concurrency", 0):
            by_round[(key[0], key[1], rounds[id(rec)])] = rec  # type: ignore[index]
    rows = []
    for label, best in bests.items():
        w = "timer" if label == "timer overhead" else label
        ratios = []
        for (system, workload, rnd), d in sorted(by_round.items()):
            p = by_round.get((best, w, rnd)) if best is not None else None
            if system != "durable" or workload != w or p is None:
                continue
            if w == "timer":
                d_val, p_val = p["p50_ms"] - TIMER_S * 1000, d["p50_ms"] - TIMER_S * 1000
            else:
                d_val, p_val = d["wf_per_s"], p["wf_per_s"]
            if d_val > 0 and p_val > 0:
                ratios.append(d_val / p_val)
        if len(ratios) > 1:
            rows.append([label, f"{best}", f"{statistics.median(ratios):.2f}x",
                         f"{min(ratios):.2f}-{max(ratios):.2f}x", f"{len(ratios)} rounds"])
    if not rows:
        return []
    return ["", "round by round against the best peer (durable / peer of the same round; timer: "
                "peer's overhead / durable's)", *_grid(["workload", "peer", "median", "range", ""], rows)]


def status_lines(records: list[dict[str, Any]]) -> list[str]:
    """One line per run of a results file: ok, failed (why) or skipped (how to install)."""
    lines = []
    for rec in records:
        if rec.get("compare") != "run":
            continue
        line = f"{rec.get('system')}" + (f" (round {rec['round']})" if "round" in rec else "") + f": {rec.get('status')}"
        if rec.get("status") == "ok":
            line += f" in {rec.get('seconds')} s ({rec.get('records')} records)"
        if rec.get("reason"):
            line += f": {rec['reason']}"
        if rec.get("install"):
            line += f"; install it with: {rec['install']} (or run bench.compare with --install)"
        lines.append(line)
    return lines


def report(records: list[dict[str, Any]]) -> str:
    """What is printed at the end: how each run went, then the table."""
    config = next((r for r in records if r.get("compare") == "config"), None)
    head = []
    if config is not None:
        head.append(f"n={config.get('n')} n_timer={config.get('n_timer')} concurrency={config.get('concurrency')}"
                    f" ({config.get('started')})")
    return "\n".join([*head, *status_lines(records), "", table(records)])


# --- the command -----------------------------------------------------------------------------


def _peer_systems(text: str, parser: argparse.ArgumentParser) -> list[str]:
    systems: list[str] = []
    for name in (n.strip() for n in text.split(",")):
        if not name:
            continue
        if name in PEER_GROUPS:
            systems += PEER_GROUPS[name]
        elif name in SYSTEMS:
            systems.append(name)
        else:
            parser.error(f"unknown peer {name!r} (one of {', '.join([*PEER_GROUPS, *SYSTEMS[1:3]])})")
    return list(dict.fromkeys(systems))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0],
                                     epilog="Defaults in brackets.")
    parser.add_argument("--from", dest="from_file", metavar="FILE", default=None,
                        help="print the table of a saved results file; run nothing")
    parser.add_argument("--peers", default="temporal,dbos,restate",
                        help="peers to run: temporal, dbos (both backends), dbos-sqlite, dbos-postgres, "
                             "restate [temporal,dbos,restate]")
    parser.add_argument("--n", type=int, default=200, help="workflows per workload but timer [200]")
    parser.add_argument("--n-timer", type=int, default=50, help="workflows of the timer workload [50]")
    parser.add_argument("--concurrency", type=int, default=50, help="workflows in flight [50]")
    parser.add_argument("--peers-dir", type=Path,
                        default=Path(os.environ.get("DURABLE_PEERS_DIR") or DEFAULT_PEERS_DIR),
                        help="where the peers are installed, the scripts' PEERS_DIR "
                             "[$DURABLE_PEERS_DIR, else ../peers-work next to the repo]")
    parser.add_argument("--scripts", type=Path, default=DEFAULT_SCRIPTS,
                        help="the folder of the peers' scripts [../shared/peers next to the repo]")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file [bench/results/compare-<time>.jsonl]")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds each system may run before it is stopped and counted failed [{DEFAULT_TIMEOUT_S:g}]")
    parser.add_argument("--install", action="store_true",
                        help="run the scripts of peers that are not installed too (they install them first)")
    parser.add_argument("--no-durable", action="store_true", help="do not run durable's own benchmark")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the whole sequence this many times; each figure is the median [1]")
    args = parser.parse_args(argv)
    args.systems = _peer_systems(args.peers, parser)
    for name in ("n", "n_timer", "concurrency", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


def _log_path(out: Path, system: str) -> Path:
    """Where the stderr of `system`'s run goes: next to the results file."""
    return out.parent / f"{out.stem}.{system}.log"


def say(text: str) -> None:
    print(f"[compare] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_file is not None:
        print(report(load(args.from_file)))
        return 0
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "bench" / "results" / f"compare-{stamp}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    peers_dir = args.peers_dir.resolve()
    sizes = {"N": args.n, "N_TIMER": args.n_timer, "CONCURRENCY": args.concurrency,
             "BENCH_N": args.n, "BENCH_N_TIMER": args.n_timer, "BENCH_CONCURRENCY": args.concurrency}
    failed = False
    with open(out, "w") as results:

        def note(rec: dict[str, Any]) -> None:
            results.write(json.dumps(rec) + "\n")
            results.flush()

        note({"compare": "config", "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
              "n": args.n, "n_timer": args.n_timer, "concurrency": args.concurrency, "rounds": args.rounds,
              "peers_dir": str(peers_dir), "scripts": str(args.scripts), "systems": args.systems})
        for rnd in range(1, args.rounds + 1):
            tag = f"-{rnd}" if args.rounds > 1 else ""
            if args.rounds > 1:
                say(f"round {rnd} of {args.rounds}")
            if not args.no_durable:
                say(f"durable: running (n={args.n}, n_timer={args.n_timer}, concurrency={args.concurrency})")
                cmd = [sys.executable, "-m", "bench", "--only", "workloads", "--n", str(args.n),
                       "--n-timer", str(args.n_timer), "--concurrency", str(args.concurrency),
                       "--workloads", ",".join(WORKLOADS)]  # the peers' four only
                status = run_system("durable", cmd, bench_env(), ROOT, args.timeout, results,
                                    _log_path(out, "durable" + tag), rnd if args.rounds > 1 else None)
                note(dict(status, round=rnd) if args.rounds > 1 else status)
                failed |= status["status"] != "ok"
                say(status_lines([status])[0])
            for system in args.systems:
                peer = PEERS[system]
                script = args.scripts / peer.script
                hint = peer.install_hint(args.scripts, peers_dir)
                lack = missing(system, peers_dir)
                if lack is not None and not args.install:
                    status = {"compare": "run", "system": system, "status": "skipped",
                              "reason": f"not installed in {peers_dir} ({lack})", "install": hint}
                elif not script.is_file():
                    status = {"compare": "run", "system": system, "status": "failed",
                              "reason": f"no script {script} (see --scripts)"}
                elif system == "dbos-postgres" and hasattr(os, "geteuid") and os.geteuid() != 0:
                    status = {"compare": "run", "system": system, "status": "skipped",
                              "reason": "needs root (its script runs PostgreSQL as user postgres with setpriv)"}
                else:
                    say(f"{system}: running {script}" + (" (installing first)" if lack else ""))
                    env = dict(os.environ, PEERS_DIR=str(peers_dir), **peer.env,
                               **{k: str(v) for k, v in sizes.items()})
                    peers_dir.mkdir(parents=True, exist_ok=True)
                    status = run_system(system, ["bash", str(script)], env, args.scripts, args.timeout, results,
                                        _log_path(out, system + tag), rnd if args.rounds > 1 else None)
                note(dict(status, round=rnd) if args.rounds > 1 else status)
                failed |= status["status"] == "failed"
                say(status_lines([status])[0])
    say(f"results: {out}")
    print(report(load(out)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
