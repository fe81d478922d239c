"""Starting into nowhere: a start on a queue that no worker has ever served, or whose workers are
all gone, is accepted (the workflow waits for a worker, as in Temporal) but warns: a flag on the
handle, a logged warning, a line on the CLI's stderr; and `describe` says since when nobody
has polled the queue."""

from __future__ import annotations

import logging
import signal

import pytest
from click.testing import CliRunner

import durable
from durable.cli import main
from examples import hello
from tests.conftest import start_worker_process, stop_worker_process, worker_thread
from tests.fault._util import wait_until


def test_a_start_on_a_queue_never_served_warns_and_waits(data_dir: str, caplog: pytest.LogCaptureFixture) -> None:
    client = durable.Client(data_dir)
    with caplog.at_level(logging.WARNING, logger="durable.client"):
        handle = client.start(hello.three_steps, 1, id="early", queue="orders")
    expected = "no worker has polled queue 'orders' yet: the workflow waits until one does"
    assert handle.warning == expected
    assert [r.getMessage() for r in caplog.records] == [f"workflow 'early' started, but {expected}"]
    assert handle.describe().queue_warning == expected
    # the workflow was accepted: a worker that comes later runs it
    with worker_thread(data_dir, [hello.three_steps], [hello.add_one, hello.double], queue="orders"):
        assert handle.result(timeout=30) == 5
        assert client.start(hello.three_steps, 2, id="served", queue="orders").warning is None
    assert handle.describe().queue_warning is None  # closed: nothing to wait for


def test_a_stopped_worker_leaves_its_queue_unserved_since_it_stopped(data_dir: str) -> None:
    with worker_thread(data_dir, [hello.Approval], []):
        client = durable.Client(data_dir)
        handle = client.start(hello.Approval, {"amount": 1}, id="ap")
        assert handle.warning is None and handle.describe().queue_warning is None
    desc = handle.describe()
    assert desc.status == "running"
    assert desc.queue_warning is not None
    assert desc.queue_warning.startswith("no worker has polled queue 'default' since 20")
    later = durable.Client(data_dir).start(hello.three_steps, 1, id="later")
    assert later.warning == desc.queue_warning


def test_a_killed_worker_counts_as_gone_once_its_presence_runs_out(data_dir: str) -> None:
    worker = start_worker_process(data_dir, "examples.hello", lease=0.3)
    client = durable.Client(data_dir)
    try:
        handle = client.start("Approval", {"amount": 2}, id="ap-k")
        assert handle.warning is None
        worker.send_signal(signal.SIGKILL)
    finally:
        stop_worker_process(worker)
    warning = wait_until(lambda: handle.describe().queue_warning, timeout=30,
                         what="the killed worker's presence to run out")
    assert warning.startswith("no worker has polled queue 'default' since ")


def test_the_cli_warns_on_stderr_and_still_starts(data_dir: str) -> None:
    result = CliRunner().invoke(main, ["start", "three_steps", "--input", "1", "--id", "cli-early",
                                       "--data", data_dir], prog_name="durable")
    assert result.exit_code == 0 and result.stdout == "cli-early\n"
    assert result.stderr == (
        "warning: no worker has polled queue 'default' yet: the workflow waits until one does\n"
    )
    text = CliRunner().invoke(main, ["describe", "cli-early", "--data", data_dir]).stdout
    assert "warning: no worker has polled queue 'default' yet" in text


def test_records_of_workers_gone_long_ago_are_pruned_keeping_the_latest(data_dir: str) -> None:
    from durable import _ops
    from durable._limits import PRESENCE_KEEP_NS

    store = durable.Client(data_dir)._store
    now = store.clock.now_ns()
    old = now - PRESENCE_KEEP_NS - 10**9
    store.write(lambda t: [_ops.record_presence(t, "q", f"w{i}", old + i, {}) for i in range(3)])
    store.write(lambda t: _ops.record_presence(t, "other", "x", old, {}))
    store.write(lambda t: _ops.prune_presence(t, "q", now - PRESENCE_KEEP_NS))
    assert [w["identity"] for w in store.read(lambda t: _ops.workers(t, "q"))] == ["w2"]  # the latest stays
    store.write(lambda t: _ops.record_presence(t, "q", "w3", now + 10**9, {}))
    store.write(lambda t: _ops.prune_presence(t, "q", now - PRESENCE_KEEP_NS))
    assert [w["identity"] for w in store.read(lambda t: _ops.workers(t, "q"))] == ["w3"]
    assert [w["identity"] for w in store.read(lambda t: _ops.workers(t, "other"))] == ["x"]  # its own queue only
    until, seen = store.read(lambda t: _ops.queue_presence(t, "q"))
    assert until == now + 10**9 and seen is not None
