"""`python -m bench.converter` at a tiny size, as a real process: one JSON line per payload kind
with positive figures (how fast anything is, is never asserted), and usage errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from bench._util import bench_env
from tests.conftest import ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.converter", *args], cwd=ROOT, env=bench_env(),
                          capture_output=True, text=True, timeout=120)


def test_it_prints_the_cost_per_payload_of_a_plain_dict_and_of_a_dataclass() -> None:
    proc = run("--n", "50", "--repeats", "2")
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["payload"] for r in recs] == ["plain_dict_codec_only", "plain_dict", "dataclass"]
    for rec in recs:
        assert rec["system"] == "durable" and rec["workload"] == "converter" and rec["n"] == 50
        for key in ("us_per_payload", "convert_us", "added_us_per_wf"):
            if key in rec:
                assert isinstance(rec[key], float) and math.isfinite(rec[key]) and rec[key] >= 0, (key, rec)
    assert "convert_us" in recs[2] and "added_us_per_wf" in recs[1]


def test_bad_sizes_are_usage_errors() -> None:
    for args in (["--n", "0"], ["--repeats", "0"], ["--crossings", "-1"]):
        proc = run(*args)
        assert proc.returncode == 2 and proc.stdout == "" and "error:" in proc.stderr, (args, proc.stderr)
