"""A reset is one transaction: a process killed (SIGKILL) inside it, after the old run was closed
and the new run made but before the commit, leaves the store exactly as it was; the same reset
made again then works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import durable
from tests.conftest import ROOT, worker_process
from tests.durable.test_reset import failed_order
from tests.fault._util import store_snapshot

TIMEOUT = 30


def reset_process(data_dir: str, crash: bool) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DURABLE_CRASHPOINT", None)
    if crash:
        env["DURABLE_CRASHPOINT"] = "reset-before-commit"
    return subprocess.run([sys.executable, "-m", "durable", "--data", data_dir, "reset", "o-1", "--to", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_a_reset_killed_before_its_commit_leaves_nothing_behind(data_dir: str) -> None:
    client = durable.Client(data_dir)
    old_run = failed_order(client, data_dir).describe().run_id
    before = store_snapshot(client)

    killed = reset_process(data_dir, crash=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "crash point reset-before-commit reached" in killed.stderr
    assert store_snapshot(client) == before
    assert client.get_handle("o-1").describe().run_id == old_run

    done = reset_process(data_dir, crash=False)
    assert done.returncode == 0, done.stderr
    new_run = done.stdout.strip()
    with worker_process(data_dir, "tests.wfs.reset_v2"):
        assert client.get_handle("o-1").result(timeout=TIMEOUT) == ["shipped 30", ["leave at the door"]]
    assert client.get_handle("o-1", run_id=new_run).describe().status == "completed"
    assert client.get_handle("o-1", run_id=old_run).describe().reset_run_id == new_run
