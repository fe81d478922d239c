"""A delayed start (Temporal's start_delay): the workflow is recorded at once, running and
taking signals, and its code starts once the delay has passed, on the store's clock."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

import durable
from durable.cli import main
from examples import hello
from tests.conftest import worker_thread
from tests.fault._util import wait_until


def test_the_code_starts_after_the_delay_and_signals_wait_for_it(data_dir: str) -> None:
    with worker_thread(data_dir, [hello.Approval, hello.three_steps], [hello.add_one, hello.double]):
        client = durable.Client(data_dir)
        handle = client.start(hello.Approval, {"amount": 3}, id="later", start_delay=dt.timedelta(seconds=1.5))
        desc = handle.describe()
        assert desc.status == "running" and desc.start_at is not None
        assert 1.4 <= (desc.start_at - desc.created_at).total_seconds() <= 1.6
        handle.signal("decide", "early")  # recorded now, seen once the code runs
        assert [e["kind"] for e in handle.history()] == ["WorkflowStarted", "SignalReceived"]
        assert handle.result(timeout=30) == "early"
        started = handle.history()[-1]["time"]  # the code ran, and ended, after the delay
        assert (started - desc.created_at).total_seconds() >= 1.5
        # no delay: at once, as before
        assert client.start(hello.three_steps, 1, id="now", start_delay=0).result(timeout=30) == 5


def test_the_cli_takes_a_start_delay_and_describe_shows_when(data_dir: str) -> None:
    out = CliRunner().invoke(main, ["start", "three_steps", "--input", "1", "--id", "d", "--start-delay", "3600",
                                    "--data", data_dir], prog_name="durable")
    assert out.exit_code == 0 and out.stdout == "d\n"
    text = CliRunner().invoke(main, ["describe", "d", "--data", data_dir]).stdout
    assert "start_at: " in text
    with pytest.raises(durable.InvalidArgument, match="start_delay must be between 0 and"):
        durable.Client(data_dir).start(hello.three_steps, 1, start_delay=-1)
