"""`durable list` and `durable count`, and the commands that know about runs: `start` with its id
reuse and conflict policies, `describe` and `history` of a given run, `list --all-runs`.

Through click's test runner against a real store; where start times matter, the store's clock is
one the test moves (the runner runs in this process, so it uses the store opened here).
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

import durable
from durable._backend import open_store
from examples import hello
from tests.cli.test_cli import TIMEOUT, cli, fails, json_lines, ok, serving
from tests.durable.test_list import NS, T0, UTC, ManualClock  # 2027-01-15T08:00:00Z


@pytest.fixture
def clocked(data_dir: str) -> tuple[durable.Client, ManualClock]:
    clock = ManualClock()
    open_store(data_dir, clock=clock)
    return durable.Client(data_dir), clock


def stamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp((T0 + int(seconds * NS)) / NS, tz=UTC).isoformat(timespec="seconds")


def cells(line: str) -> list[tuple[int, str]]:
    """Where each cell of a table line starts, and its text (cells hold no spaces here)."""
    return [(m.start(), m.group()) for m in re.finditer(r"\S+", line)]


def table(text: str) -> list[list[str]]:
    """The rows of a table printed by `list`, header first; checks that columns line up."""
    lines = text.splitlines()
    assert lines, "no header"
    starts = [pos for pos, _ in cells(lines[0])]
    for line in lines:
        assert line == line.rstrip()
        assert [pos for pos, _ in cells(line)] == starts, (line, lines[0])
    return [[cell for _, cell in cells(line)] for line in lines]


def populate(client: durable.Client, clock: ManualClock) -> None:
    """Six workflows started at 1..6 s, ids of several lengths; two terminated."""
    for i, (wid, wtype) in enumerate([("a", "three_steps"), ("order-00017", "Approval"), ("bb", "three_steps"),
                                      ("a-much-longer-workflow-id", "Approval"), ("c", "Approval"),
                                      ("d4", "three_steps")], start=1):
        clock.ns = T0 + i * NS
        client.start(wtype, 1, id=wid)
    clock.ns = T0 + 60 * NS
    client.get_handle("bb").terminate()
    client.get_handle("c").terminate()


def test_list_prints_a_header_and_aligned_columns_newest_first(clocked: tuple[durable.Client, ManualClock], data_dir: str) -> None:
    client, clock = clocked
    populate(client, clock)
    rows = table(ok(cli(data_dir, "list")))
    assert rows[0] == ["ID", "TYPE", "STATUS", "STARTED", "QUEUE"]
    assert rows[1:] == [
        ["d4", "three_steps", "running", stamp(6), "default"],
        ["c", "Approval", "terminated", stamp(5), "default"],
        ["a-much-longer-workflow-id", "Approval", "running", stamp(4), "default"],
        ["bb", "three_steps", "terminated", stamp(3), "default"],
        ["order-00017", "Approval", "running", stamp(2), "default"],
        ["a", "three_steps", "running", stamp(1), "default"],
    ]
    # widths come from the rows printed: the long id is not among these
    text = ok(cli(data_dir, "list", "--status", "terminated"))
    assert text.splitlines()[0].startswith("ID  TYPE ")
    assert table(text)[1:] == [["c", "Approval", "terminated", stamp(5), "default"],
                               ["bb", "three_steps", "terminated", stamp(3), "default"]]
    # nothing to show: the header alone
    assert table(ok(cli(data_dir, "list", "--status", "completed"))) == [["ID", "TYPE", "STATUS", "STARTED", "QUEUE"]]


def test_list_says_when_it_truncates(clocked: tuple[durable.Client, ManualClock], data_dir: str) -> None:
    client, clock = clocked
    populate(client, clock)
    result = cli(data_dir, "list", "--limit", "2")
    assert result.exit_code == 0
    assert [row[0] for row in table(result.stdout)[1:]] == ["d4", "c"]
    assert result.stderr == "... more; showing the newest 2, use --limit\n"
    result = cli(data_dir, "list", "--limit", "2", "--json")
    assert [r["workflow_id"] for r in json_lines(result.stdout)] == ["d4", "c"]
    assert result.stderr == "... more; showing the newest 2, use --limit\n"
    # exactly as many as the limit: nothing more to say
    assert len(table(ok(cli(data_dir, "list", "--limit", "6")))) == 7
    assert len(table(ok(cli(data_dir, "list", "--status", "terminated", "--limit", "2")))) == 3


def test_list_and_count_by_time_and_type(clocked: tuple[durable.Client, ManualClock], data_dir: str) -> None:
    client, clock = clocked
    populate(client, clock)

    def listed(*args: str) -> list[str]:
        return [row[0] for row in table(ok(cli(data_dir, "list", *args)))[1:]]

    t2, t4 = stamp(2), stamp(4)
    assert listed("--since", t2, "--until", t4) == ["bb", "order-00017"]
    assert listed("--since", t4) == ["d4", "c", "a-much-longer-workflow-id"]
    assert listed("--until", t2) == ["a"]
    # a naive time is UTC; an offset is honoured; a date is its midnight (UTC)
    assert listed("--since", t4.replace("+00:00", "")) == listed("--since", t4)
    assert listed("--since", t4.replace("+00:00", "Z")) == listed("--since", t4)
    in_paris = dt.datetime.fromisoformat(t4).astimezone(dt.timezone(dt.timedelta(hours=1))).isoformat()
    assert listed("--since", in_paris) == listed("--since", t4)
    assert listed("--since", "2027-01-15", "--until", "2027-01-16") == listed()
    assert listed("--until", "2027-01-15") == [] and listed("--since", "2027-01-16") == []
    # --type is --workflow
    assert listed("--type", "Approval") == listed("--workflow", "Approval") == ["c", "a-much-longer-workflow-id", "order-00017"]
    assert listed("--type", "Approval", "--status", "running", "--since", t4) == ["a-much-longer-workflow-id"]

    assert ok(cli(data_dir, "count")) == "6\n"
    assert ok(cli(data_dir, "count", "--status", "terminated")) == "2\n"
    assert ok(cli(data_dir, "count", "--workflow", "Approval")) == "3\n"
    assert ok(cli(data_dir, "count", "--type", "three_steps", "--status", "running")) == "2\n"
    assert ok(cli(data_dir, "count", "--since", t2, "--until", t4)) == "2\n"
    assert ok(cli(data_dir, "count", "--status", "completed")) == "0\n"

    fails(cli(data_dir, "list", "--since", "yesterday"), 2,
          "Invalid value for '--since': 'yesterday' is not an ISO 8601 date or datetime")
    fails(cli(data_dir, "count", "--until", "2027-13-01"), 2, "Invalid value for '--until'")
    fails(cli(data_dir, "count", "--status", "bogus"), 2, "Invalid value for '--status'")
    help_text = ok(cli(data_dir, "list", "--help"))
    assert "newest first" in help_text and "UTC" in help_text and "--type" in help_text


def test_runs_from_the_command_line(data_dir: str) -> None:
    with serving(data_dir, hello):
        assert ok(cli(data_dir, "start", "three_steps", "--input", "1", "--id", "w", "--wait")) == "5\n"
        first = json.loads(ok(cli(data_dir, "describe", "w", "--json")))["run_id"]
        assert ok(cli(data_dir, "start", "three_steps", "--input", "2", "--id", "w", "--wait",
                      "--timeout", str(TIMEOUT))) == "7\n"
        fails(cli(data_dir, "start", "three_steps", "--input", "3", "--id", "w", "--id-reuse-policy", "reject_duplicate"),
              1, "a workflow with id 'w' already ran (completed, type 'three_steps') and the id reuse policy is "
                 "'reject_duplicate'")
        fails(cli(data_dir, "start", "three_steps", "--input", "3", "--id", "w",
                  "--id-reuse-policy", "allow_duplicate_failed_only"), 1, "id reuse policy is 'allow_duplicate_failed_only'")
        fails(cli(data_dir, "start", "three_steps", "--id", "w", "--id-reuse-policy", "never"), 2,
              "Invalid value for '--id-reuse-policy'")
        fails(cli(data_dir, "start", "three_steps", "--id", "w", "--id-conflict-policy", "x"), 2,
              "Invalid value for '--id-conflict-policy'")

        assert ok(cli(data_dir, "start", "Approval", "--input", "{}", "--id", "ap")) == "ap\n"
        fails(cli(data_dir, "start", "Approval", "--input", "{}", "--id", "ap"), 1,
              "a workflow with id 'ap' is already running")
        assert ok(cli(data_dir, "start", "Approval", "--input", "{}", "--id", "ap",
                      "--id-conflict-policy", "use_existing")) == "ap\n"

    second = json.loads(ok(cli(data_dir, "describe", "w", "--json")))["run_id"]
    assert first != second
    old = json.loads(ok(cli(data_dir, "describe", "w", "--run", first, "--json")))
    assert (old["run_id"], old["status"]) == (first, "completed")
    assert f"run_id: {first}\n" in ok(cli(data_dir, "describe", "w", "--run", first))
    assert json_lines(ok(cli(data_dir, "history", "w", "--run", first, "--json")))[0]["input"] == [1]
    assert json_lines(ok(cli(data_dir, "history", "w", "--json")))[0]["input"] == [2]
    assert json_lines(ok(cli(data_dir, "history", "w", "--run", second, "--json")))[0]["input"] == [2]
    assert "input=[1]" in ok(cli(data_dir, "history", "w", "--run", first)).splitlines()[0]

    rows = table(ok(cli(data_dir, "list", "--all-runs")))
    assert rows[0] == ["ID", "RUN", "TYPE", "STATUS", "STARTED", "QUEUE"]
    assert [(r[0], r[1]) for r in rows[1:]] == [("ap", rows[1][1]), ("w", second), ("w", first)]
    assert [r[0] for r in table(ok(cli(data_dir, "list")))[1:]] == ["ap", "w"]
    runs = json_lines(ok(cli(data_dir, "list", "--all-runs", "--json", "--workflow", "three_steps")))
    assert [r["run_id"] for r in runs] == [second, first]
    assert ok(cli(data_dir, "count", "--all-runs")) == "3\n" and ok(cli(data_dir, "count")) == "2\n"

    fails(cli(data_dir, "describe", "w", "--run", "zz"), 1, "a run id must be")
    missing = format(int(second, 16) + 100, "x")
    fails(cli(data_dir, "describe", "w", "--run", missing), 1, f"workflow 'w' has no run '{missing}'")
    fails(cli(data_dir, "history", "w", "--run", missing), 1, f"workflow 'w' has no run '{missing}'")
