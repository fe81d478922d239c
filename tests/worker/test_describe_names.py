"""`describe` names the signals, queries and updates a workflow takes: those the workers of its
queue registered for its type (API, CLI, --json). Before any worker of the queue has registered
the type, it names none (None), rather than claim the workflow takes nothing."""

from __future__ import annotations

import json

from click.testing import CliRunner

import durable
from durable.cli import main
from tests.conftest import worker_thread
from tests.fault._util import wait_until
from tests.wfs import basic
from tests.wfs import updates as u


def test_describe_names_what_the_workers_registered(data_dir: str) -> None:
    client = durable.Client(data_dir)
    counter = client.start(u.Counter, id="counter")
    before = counter.describe()
    assert (before.signals, before.queries, before.updates) == (None, None, None)
    assert "signals:" not in CliRunner().invoke(main, ["describe", "counter", "--data", data_dir]).stdout

    with worker_thread(data_dir, [*u.ALL, basic.sleeper], u.ACTIVITIES):
        desc = wait_until(lambda: (d := counter.describe()).signals is not None and d, what="the registrations")
        assert desc.signals == ("continue_as_new", "note", "stop")
        assert desc.queries == ("value",)
        assert desc.updates is not None and {"add", "finish", "seen-signals"} <= set(desc.updates)
        assert list(desc.updates) == sorted(desc.updates)

        as_json = json.loads(CliRunner().invoke(main, ["describe", "counter", "--json", "--data", data_dir]).stdout)
        assert as_json["signals"] == ["continue_as_new", "note", "stop"] and as_json["queries"] == ["value"]
        text = CliRunner().invoke(main, ["describe", "counter", "--data", data_dir]).stdout
        assert "signals: continue_as_new, note, stop\n" in text and "queries: value\n" in text

        sleeper = client.start(basic.sleeper, 0.01, id="sleeper")
        assert sleeper.result(timeout=30) == "woke"
        done = sleeper.describe()  # a closed run too: what it took
        assert (done.signals, done.queries, done.updates) == ((), (), ())
        text = CliRunner().invoke(main, ["describe", "sleeper", "--data", data_dir]).stdout
        assert "signals: none\n" in text

        counter.signal("stop")
        counter.result(timeout=30)
    listed = client.list(workflow="Counter")
    assert listed and listed[0].signals is None  # `list` reads no registrations
