"""`durable schedule ...` and `durable list --schedule`: through click's test runner against a
real store whose clock the test moves (the runner runs in this process, so it uses the store
opened here); due entries are fired by `_ops.fire_due`, the op a worker's timer loop runs."""

from __future__ import annotations

import pytest

import durable
from durable import _ops
from durable._backend import open_store
from tests.cli.test_cli import cli, fails, json_lines, ok
from tests.durable.test_schedules import NS, T0, ManualClock, at, wid


@pytest.fixture
def clock(data_dir: str) -> ManualClock:
    c = ManualClock()
    open_store(data_dir, clock=c)
    return c


def fire_at(data_dir: str, clock: ManualClock, seconds: float) -> None:
    clock.ns = T0 + int(seconds * NS)
    store = open_store(data_dir)
    while store.write(lambda t: _ops.fire_due(t, 256)):
        pass


def test_create_fire_list_describe_pause_trigger_backfill_delete(data_dir: str, clock: ManualClock) -> None:
    assert ok(cli(data_dir, "schedule", "create", "s", "three_steps", "--input", "1", "--every", "1m",
                  "--overlap", "allow_all", "--jitter", "0", "--catchup-window", "1h")) == "s\n"
    assert ok(cli(data_dir, "schedule", "create", "n", "Approval", "-i", '{"amount": 1}', "--cron", "@daily",
                  "--pause-on-failure", "--paused", "--note", "not yet")) == "n\n"
    fire_at(data_dir, clock, 120)
    rows = ok(cli(data_dir, "list", "--schedule", "s")).splitlines()
    assert rows[0].split()[:3] == ["ID", "TYPE", "STATUS"]
    assert [r.split()[0] for r in rows[1:]] == [wid("s", 120), wid("s", 60)]
    limited = cli(data_dir, "list", "--schedule", "s", "--limit", "1", "--json")
    assert limited.exit_code == 0 and "more; showing the newest 1" in limited.stderr
    [one] = json_lines(limited.stdout)
    assert one["workflow_id"] == wid("s", 120) and one["schedule_id"] == "s"
    assert "schedule_id: s\n" in ok(cli(data_dir, "describe", wid("s", 60)))

    listed = ok(cli(data_dir, "schedule", "list")).splitlines()
    assert [line.split()[:2] for line in listed] == [["ID", "SPEC"], ["n", "cron"], ["s", "every"]]
    assert " paused " in listed[1] and listed[2].split()[-1] == "2"
    text = ok(cli(data_dir, "schedule", "describe", "s"))
    assert "overlap: allow_all\n" in text and "catchup_window: 3600.0\n" in text and "actions_started: 2\n" in text
    assert f"  {at(180).isoformat()}\n" in text  # the next fire time
    desc = json_lines(ok(cli(data_dir, "schedule", "describe", "n", "--json")))[0]
    assert (desc["paused"], desc["note"], desc["cron"], desc["pause_on_failure"]) == (True, "not yet", "0 0 * * *", True)

    assert ok(cli(data_dir, "schedule", "pause", "s", "--note", "wait")) == "paused: s\n"
    fire_at(data_dir, clock, 600)
    assert ok(cli(data_dir, "schedule", "unpause", "s")) == "unpaused: s\n"
    clock.ns = T0 + 630 * NS
    assert ok(cli(data_dir, "schedule", "trigger", "s")) == "triggered: s\n"
    assert ok(cli(data_dir, "schedule", "backfill", "s", at(0).isoformat(), at(180).isoformat())) == \
        "backfilled 3 slots: s\n"  # 0 s is new, 60 s and 120 s fired already
    ids = [d.workflow_id for d in durable.Client(data_dir).list(schedule="s")]
    assert sorted(ids) == sorted([wid("s", 0), wid("s", 60), wid("s", 120), wid("s", 630)])
    assert ok(cli(data_dir, "schedule", "delete", "s")) == "deleted: s\n"
    fails(cli(data_dir, "schedule", "describe", "s"), 1, "no schedule with id 's'")


@pytest.mark.parametrize("args, code, message", [
    (["create", "x", "three_steps", "--cron", "61 * * * *"], 1, "cron expression '61 * * * *': bad minute"),
    (["create", "x", "three_steps", "--cron", "* * *"], 1, "wrong number of fields"),
    (["create", "x", "three_steps"], 1, "exactly one of cron="),
    (["create", "x", "three_steps", "--every", "1x"], 2, "'1x' is not a duration"),
    (["create", "x", "three_steps", "--every", "1h", "--overlap", "buffer_all"], 2, "'buffer_all' is not one of"),
    (["create", "x", "three_steps", "--every", "1h", "-i", "{"], 2, "--input 1 is not valid JSON"),
    (["backfill", "x", "yesterday", "2026-01-01"], 2, "'yesterday' is not an ISO 8601 date"),
    (["pause", "nope"], 1, "no schedule with id 'nope'"),
    (["trigger", "nope"], 1, "no schedule with id 'nope'"),
])
def test_mistakes_are_one_clear_line(data_dir: str, clock: ManualClock, args: list[str], code: int,
                                     message: str) -> None:
    fails(cli(data_dir, "schedule", *args), code, message)


def test_a_taken_id_and_a_bad_range(data_dir: str, clock: ManualClock) -> None:
    ok(cli(data_dir, "schedule", "create", "x", "three_steps", "-i", "1", "--every", "90s"))
    fails(cli(data_dir, "schedule", "create", "x", "three_steps", "-i", "1", "--every", "90s"), 1,
          "a schedule with id 'x' already exists")
    fails(cli(data_dir, "schedule", "backfill", "x", "2026-01-02", "2026-01-01"), 1, "must be after start")
    fails(cli(data_dir, "list", "--schedule", "nope"), 1, "no schedule with id 'nope'")
