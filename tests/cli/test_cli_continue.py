"""`durable start --execution-timeout/--run-timeout/--timeout-grace`, and `describe` and
`history` of a continue-as-new chain and of a timed-out workflow."""

from __future__ import annotations

import json

import durable

from examples import account
from tests.cli.test_cli import cli, fails, ok, serving
from tests.durable.test_workflow_timeouts import forever
from tests.conftest import worker_thread
from tests.fault._util import wait_until

TIMEOUT = 20


def test_describe_and_history_show_the_chain(data_dir: str) -> None:
    with serving(data_dir, account):
        assert ok(cli(data_dir, "start", "Account", "--input", "0", "--input", "1", "--id", "a")) == "a\n"
        ok(cli(data_dir, "signal", "a", "deposit", "5"))  # every deposit: a new run
        client = durable.Client(data_dir)
        wait_until(lambda: client.count(all_runs=True) == 2, what="the first continue-as-new")
        ok(cli(data_dir, "signal", "a", "deposit", "6"))
        wait_until(lambda: client.count(all_runs=True) == 3, what="the second continue-as-new")
        ok(cli(data_dir, "signal", "a", "close_account"))
        assert json.loads(ok(cli(data_dir, "result", "a", "--timeout", str(TIMEOUT)))) == 11
    runs = ok(cli(data_dir, "list", "--all-runs")).splitlines()[1:]
    assert [line.split()[3] for line in runs] == ["completed", "continued_as_new", "continued_as_new"]
    first = runs[1].split()[1]
    latest = ok(cli(data_dir, "describe", "a"))
    assert f"continues run: {first} (durable describe a --run {first})" in latest
    old = ok(cli(data_dir, "describe", "a", "--run", first))
    assert "status: continued_as_new" in old and "continued as new in run: " in old
    history = ok(cli(data_dir, "history", "a", "--run", first)).splitlines()
    assert "WorkflowContinuedAsNew" in history[-1] and "input=[11, 1]" in history[-1]
    assert f'prev="{first}"' in ok(cli(data_dir, "history", "a")).splitlines()[0]


def test_start_with_a_run_timeout(data_dir: str) -> None:
    with worker_thread(data_dir, [forever], []):
        ok(cli(data_dir, "start", "forever", "--id", "f", "--run-timeout", "0.2"))
        assert "run_deadline: " in ok(cli(data_dir, "describe", "f"))
        fails(cli(data_dir, "result", "f", "--timeout", str(TIMEOUT)), 1, "workflow 'f' timed out (its run timeout passed)")
    assert "WorkflowTimedOut" in ok(cli(data_dir, "history", "f")).splitlines()[-1]
    assert "status: timed_out" in ok(cli(data_dir, "describe", "f"))
    assert ok(cli(data_dir, "list", "--status", "timed_out")).count("\n") == 2


def test_with_a_grace_the_workflow_is_cancelled_first(data_dir: str) -> None:
    with worker_thread(data_dir, [forever], []):
        ok(cli(data_dir, "start", "forever", "--id", "g", "--execution-timeout", "0.2", "--timeout-grace", "30"))
        fails(cli(data_dir, "result", "g", "--timeout", str(TIMEOUT)), 1, "cancelled in its grace period")
    lines = ok(cli(data_dir, "history", "g")).splitlines()
    assert "CancelRequested" in lines[-3] and 'reason="the execution timeout passed"' in lines[-3]
    assert "WorkflowCancelled" in lines[-1]


def test_a_grace_without_a_timeout_is_refused(data_dir: str) -> None:
    fails(cli(data_dir, "start", "forever", "--timeout-grace", "3"), 1, "timeout_grace needs")
