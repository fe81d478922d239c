"""`durable reset`, `durable replay --inspect` and `durable history --diff`, on a real store with
histories made by real workers (in threads)."""

from __future__ import annotations

import json

import durable
from tests.cli.test_cli import cli, fails, ok
from tests.conftest import worker_thread
from tests.durable.test_reset import ACTIVITIES, failed_order
from tests.fault._util import store_snapshot
from tests.wfs import basic
from tests.wfs.reset_v2 import OrderV2

TIMEOUT = 20


def test_reset_from_the_command_line_and_the_old_run_stays_readable(data_dir: str) -> None:
    client = durable.Client(data_dir)
    old_run = failed_order(client, data_dir).describe().run_id
    before = store_snapshot(client)
    line = fails(cli(data_dir, "reset", "o-1", "--to", "3"), 1, "cannot reset to event 3: it is a TaskCompleted, which does not end the inputs")
    assert line.endswith("here: 0, 2, 4, 6")
    fails(cli(data_dir, "reset", "o-1", "--to", "9"), 1, f"run {old_run} of workflow 'o-1' has no event 9")
    fails(cli(data_dir, "reset", "nope", "--to", "0"), 1, "no workflow with id 'nope'")
    assert store_snapshot(client) == before

    new_run = ok(cli(data_dir, "reset", "o-1", "--to", "2", "--reason", "ship fixed")).strip()
    assert new_run and new_run != old_run
    with worker_thread(data_dir, [OrderV2], ACTIVITIES):
        assert json.loads(ok(cli(data_dir, "result", "o-1", "--timeout", str(TIMEOUT)))) == [
            "shipped 30", ["leave at the door"]]
    old = ok(cli(data_dir, "describe", "o-1", "--run", old_run))
    assert "status: failed" in old and f"reset as run: {new_run} (durable describe o-1 --run {new_run})" in old
    assert "ActivityFailed" in ok(cli(data_dir, "history", "o-1", "--run", old_run))
    new = ok(cli(data_dir, "describe", "o-1"))
    assert f"reset from run: {old_run}, event 2 (durable history o-1 --run {old_run})" in new
    assert "None" not in new and "reset_from_event" not in new

    # an earlier run, from the command line: the current one is closed already, no signal reapplied
    third = ok(cli(data_dir, "reset", "o-1", "--run", old_run, "--to", "4", "--no-reapply-signals")).strip()
    assert [e["kind"] for e in client.get_handle("o-1", run_id=third).history()][-1] == "SignalReceived"
    assert len(client.get_handle("o-1", run_id=third).history()) == 5
    assert client.get_handle("o-1", run_id=old_run).describe().reset_run_id == third
    assert client.get_handle("o-1", run_id=new_run).describe().status == "completed"
    ok(cli(data_dir, "terminate", "o-1", "--reason", "done with it"))

    # where the two runs part: the reapplied signal comes where the old run recorded its task
    result = cli(data_dir, "history", "o-1", "--run", new_run, "--diff-run", old_run)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == ["common prefix: 3 events (0..2)", "they part at event 3:"]
    assert lines[2].split() == ["o-1", f"(run", f"{new_run})", "SignalReceived", 'name="note"', 'input=["leave', 'at', 'the', 'door"]']
    assert lines[3].split() == ["o-1", "(run", f"{old_run})", "TaskCompleted"]
    data = json.loads(cli(data_dir, "history", "o-1", "--run", new_run, "--diff", "o-1", "--diff-run", old_run,
                          "--json").stdout)
    assert data["common"] == 3 and not data["same"] and data["left"]["kind"] == "SignalReceived"
    assert ok(cli(data_dir, "history", "o-1", "--run", new_run, "--diff-run", new_run)) == (
        "the histories are the same: 7 events (times aside)\n")


def test_replay_inspect_shows_a_class_workflows_attributes_and_locals_at_an_event(data_dir: str) -> None:
    client = durable.Client(data_dir)
    failed_order(client, data_dir)
    before = store_snapshot(client)

    # at a task's command: the state after that task
    out = ok(cli(data_dir, "replay", "o-1", "tests.wfs.reset_v1", "--until", "3", "--inspect"))
    assert "replayed events 0..3: the code matches the history" in out
    assert "  notes = []" in out and "  x = 3" in out and "  paid = 30" in out
    assert "next commands" not in out
    # at an input: the code runs it (nothing recorded) and says what it would do
    out = ok(cli(data_dir, "replay", "o-1", "tests.wfs.reset_v1", "--until", "4", "--inspect"))
    assert "  notes = ['leave at the door']" in out
    assert "waiting for: activity 'ship_bad' (seq 2)" in out
    assert "next commands (run live, not recorded): ActivityScheduled('ship_bad', seq=2)" in out
    data = json.loads(ok(cli(data_dir, "replay", "o-1", "tests.wfs.reset_v1", "--inspect", "--json")))
    assert data["ok"] and data["until"] == 7 and data["done"] and data["attributes"] == {"notes": "['leave at the door']"}

    # the fixed code does not match the old history past the fix: said as `durable check` says it
    line = fails(cli(data_dir, "replay", "o-1", "tests.wfs.reset_v2"), 1, "would break: NondeterminismError: ")
    assert line.startswith("error: o-1 (run ") and "event 5" in line
    assert ok(cli(data_dir, "replay", "o-1", "tests.wfs.reset_v2", "--until", "4")).endswith("matches the history\n")
    fails(cli(data_dir, "replay", "o-1", "tests.wfs.reset_v1", "--until", "8"), 1, "the history has no event 8")
    assert store_snapshot(client) == before


def test_replay_inspect_shows_a_function_workflows_locals(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [basic.three_steps], [basic.add_one, basic.double]):
        assert client.start(basic.three_steps, 4, id="f-1").result(timeout=TIMEOUT) == 11
    out = ok(cli(data_dir, "replay", "f-1", "tests.wfs.basic", "--until", "3", "--inspect"))
    assert "locals of three_steps (suspended at line" in out and "  x = 5" in out
    assert "waiting for: activity 'double' (seq 2)" in out
    assert "attributes" not in out


def test_history_diff_of_two_workflows_ignores_times_ids_and_seeds(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [basic.three_steps], [basic.add_one, basic.double]):
        for wid, x in (("d-1", 1), ("d-2", 1), ("d-3", 2)):
            client.start(basic.three_steps, x, id=wid).result(timeout=TIMEOUT)
    assert ok(cli(data_dir, "history", "d-1", "--diff", "d-2")) == "the histories are the same: 8 events (times aside)\n"
    result = cli(data_dir, "history", "d-1", "--diff", "d-3")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "common prefix: 0 events", "they part at event 0:",
        "  d-1 (run 1)  WorkflowStarted input=[1]", "  d-3 (run 3)  WorkflowStarted input=[2]"]
    # one history a prefix of the other: the shorter ends where they part
    first = client.get_handle("d-1")
    new = first.reset(0)
    result = cli(data_dir, "history", "d-1", "--run", new.run_id, "--diff", "d-2")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[2:] == [
        "  d-1 (run 4)  (ends here)", "  d-2 (run 2)  ActivityScheduled seq=1 name=\"add_one\" input=[1]"]
    fails(cli(data_dir, "history", "d-1", "--diff", "nope"), 1, "no workflow with id 'nope'")
    fails(cli(data_dir, "history", "d-1", "--diff-run", "zz"), 1, "a run id must be")
