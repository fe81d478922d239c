"""Instructions per workflow of the worker process, counted by valgrind: a figure to compare two
versions by, where CPU time and throughput move by 10-30% from run to run on a shared machine.

    python -m bench.instructions [--workload three_steps] [--n1 100] [--n2 400] [--warmup 20] [--log-workflows]

Runs the worker under ``valgrind --tool=callgrind`` (which counts every instruction it executes,
whatever else the machine is doing) twice, on a fresh store each time: a warm-up, then `n1`
workflows of the workload, 50 in flight; then the same with `n2`. The difference of the two
totals over ``n2 - n1`` is the worker's instructions per workflow, its start-up and shut-down
cancelled out. Valgrind runs the worker's threads one at a time, about 50 times slower, so how
the worker batches differs from a real run: fanout10 moves by ~10% between runs, three_steps by
~3%. Prints one JSON line: workload, n1, n2, instructions_per_wf (and the two totals).

Needs valgrind on the PATH (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

import durable

from .__main__ import run_workload
from ._util import start_worker, stop_worker

WORKLOADS = ("three_steps", "fanout10", "signal_roundtrip")


def total_instructions(callgrind_out: str) -> int:
    """The total instruction count in a callgrind output file (its ``summary:`` line)."""
    with open(callgrind_out) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise ValueError(f"{callgrind_out} has no 'summary:' line: not a finished callgrind output")


def count(workload: str, n: int, warmup: int, concurrency: int = 50, log_workflows: bool = False) -> int:
    """Instructions the worker executes to start, serve `warmup` and then `n` workflows, and stop."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        prefix = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, "--dump-instr=no"]
        worker = start_worker(os.path.join(tmp, "store"), concurrency=max(concurrency * 10, 100), prefix=prefix,
                              log_workflows=log_workflows)
        try:
            client = durable.Client(os.path.join(tmp, "store"))
            if warmup:
                run_workload(client, workload, warmup, min(warmup, concurrency), "warm")
            run_workload(client, workload, n, concurrency, "c")
        finally:
            stop_worker(worker, timeout=300)
        return total_instructions(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="three_steps", choices=WORKLOADS)
    parser.add_argument("--n1", type=int, default=100, help="workflows of the first run [100]")
    parser.add_argument("--n2", type=int, default=400, help="workflows of the second run [400]")
    parser.add_argument("--warmup", type=int, default=20, help="workflows before each measured run [20]")
    parser.add_argument("--log-workflows", action="store_true",
                        help="with the worker's INFO line per workflow started and closed (off by default: "
                             "the engine's own cost; the lines cost two log records per workflow)")
    args = parser.parse_args(argv)
    if not 1 <= args.n1 < args.n2:
        parser.error(f"need 1 <= --n1 < --n2, not {args.n1} and {args.n2}")
    if args.warmup < 0:
        parser.error(f"--warmup must be 0 or more, not {args.warmup}")
    if shutil.which("valgrind") is None:
        print("error: valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    first = count(args.workload, args.n1, args.warmup, log_workflows=args.log_workflows)
    second = count(args.workload, args.n2, args.warmup, log_workflows=args.log_workflows)
    print(json.dumps({
        "system": "durable", "workload": args.workload, "measure": "instructions", "n1": args.n1, "n2": args.n2,
        "instructions_per_wf": round((second - first) / (args.n2 - args.n1)), "total_n1": first, "total_n2": second,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
