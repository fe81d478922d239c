"""The main command-line flow once with real processes: a worker process, and every client
command run as ``python -m durable`` and as the installed ``durable`` script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, start_worker_process, stop_worker_process

SCRIPT = Path(sys.executable).parent / "durable"

INVOCATIONS = {
    "python -m durable": [sys.executable, "-m", "durable"],
    "durable script": [str(SCRIPT)],
}


@pytest.mark.parametrize("how", INVOCATIONS)
def test_main_flow_in_real_processes(data_dir: str, how: str) -> None:
    if how == "durable script" and not SCRIPT.exists():
        pytest.skip(f"no console script at {SCRIPT}")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DURABLE_DATA", None)

    def durable(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*INVOCATIONS[how], "--data", data_dir, *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    def ok(*args: str) -> str:
        proc = durable(*args)
        assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
        assert proc.stderr == ""
        return proc.stdout

    worker = start_worker_process(data_dir, "examples.hello")
    try:
        assert ok("start", "three_steps", "--input", "1", "--id", "wf-1", "--wait", "--timeout", "30") == "5\n"
        assert ok("result", "wf-1") == "5\n"

        assert ok("start", "Approval", "--input", '{"amount": 10}', "--id", "ap-1") == "ap-1\n"
        assert ok("query", "ap-1", "status") == '"pending"\n'
        assert ok("signal", "ap-1", "decide", '"approved"') == "signalled ap-1: decide\n"
        assert ok("result", "ap-1", "--timeout", "30") == '"approved"\n'
        assert "status: completed" in ok("describe", "ap-1").splitlines()

        # bad input: one line on stderr, the right exit code, no traceback
        bad = durable("start", "nope", "--id", "x")
        assert bad.returncode == 1 and bad.stdout == ""
        assert bad.stderr == "error: unknown workflow 'nope' on queue 'default' (registered: Approval, three_steps)\n"
        bad = durable("start", "three_steps", "--input", "{oops")
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert bad.stderr.splitlines()[-1].startswith("Error: --input 1 is not valid JSON")
        bad = durable("describe", "nope")
        assert (bad.returncode, bad.stderr) == (1, "error: no workflow with id 'nope'\n")
    finally:
        assert stop_worker_process(worker) == 0
    assert "worker stopped\n" in worker.log_lines  # type: ignore[attr-defined]


@pytest.mark.parametrize("args", [["list", "--limit", "10000"], ["list", "--json", "--limit", "10000"],
                                  ["list", "--all-runs", "--limit", "10000"]], ids=" ".join)
def test_output_into_a_pipe_closed_early_ends_quietly(data_dir: str, args: list[str]) -> None:
    """`durable list | head -1`: the reader goes away while the command still writes; the command
    ends at once, without a traceback or any message, with exit code 1 (Python's for EPIPE)."""
    import durable
    from durable import _ops
    from durable._codec import Converter

    store = durable.Client(data_dir)._store
    payload = Converter().to_payload([], "input")
    n = 3000  # about 200 KB of rows: well past a pipe's buffer (64 KiB)
    store.write_batch([(lambda t, i=i: _ops.start_workflow(t, f"workflow-{i:05}", "Gate", "default", payload, False, False))
                       for i in range(n)])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with subprocess.Popen([sys.executable, "-m", "durable", "--data", data_dir, *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # as `head -1` exits
        stderr = proc.stderr.read()
        code = proc.wait(60)
    assert first.startswith(b"ID" if "--json" not in args else b"{"), first
    assert stderr == b""
    assert code == 1
