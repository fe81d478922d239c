"""`python -m bench.instructions`: usage errors, the callgrind summary it reads, and a real run
at a tiny size where valgrind is installed (how many instructions is never asserted)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench._util import bench_env
from bench.instructions import total_instructions
from tests.conftest import ROOT


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.instructions", *args], cwd=ROOT, env=bench_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_bad_sizes_are_usage_errors() -> None:
    for args in (["--n1", "0"], ["--n1", "5", "--n2", "5"], ["--warmup", "-1"], ["--workload", "timer"]):
        proc = run(*args)
        assert proc.returncode == 2 and proc.stdout == "", (args, proc.stderr)
        assert "error:" in proc.stderr


def test_total_instructions_reads_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text("version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 1259280982\ntotals: 1259282432\n")
    assert total_instructions(str(out)) == 1259280982
    out.write_text("version: 1\nevents: Ir\n")  # cut short: the worker did not stop cleanly
    with pytest.raises(ValueError, match="no 'summary:' line"):
        total_instructions(str(out))


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed (an optional tool)")
def test_a_tiny_run_prints_instructions_per_workflow() -> None:
    proc = run("--n1", "2", "--n2", "4", "--warmup", "0", timeout=600)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    rec = json.loads(line)
    assert rec["workload"] == "three_steps" and (rec["n1"], rec["n2"]) == (2, 4)
    assert rec["total_n1"] > 0 and rec["total_n2"] > 0  # (at this size their difference is mostly noise)
    assert rec["instructions_per_wf"] == round((rec["total_n2"] - rec["total_n1"]) / 2)
