"""Every `durable` command through click's test runner, against workers running in threads.

Bad input of every kind ends with one clear line on stderr and exit code 1 (2 for usage
errors), never a traceback, and leaves the store exactly as it was.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest
from click.testing import CliRunner, Result

import durable
from durable._defs import Registry
from durable.cli import main
from examples import hello, order_saga
from tests.conftest import close_stores_under, worker_thread
from tests.wfs import basic, version_a

TIMEOUT = 20


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def serving(data: str, *modules: Any, **options: Any) -> Any:
    """A worker thread serving every workflow and activity of `modules`."""
    registry = Registry.from_modules(modules)
    return worker_thread(data, [w.target for w in registry.workflows.values()],
                         list(registry.activities.values()), **options)


def cli(data: str | None, *args: str, env: dict[str, str] | None = None) -> Result:
    prefix = ["--data", data] if data is not None else []
    return CliRunner().invoke(main, [*prefix, *args], prog_name="durable", env=env)


def ok(result: Result) -> str:
    """The command succeeded; its standard output."""
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    assert result.stderr == ""
    return result.stdout


def fails(result: Result, code: int, message: str) -> str:
    """The command failed with `code` and one clear error line containing `message`, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not an escaped error
    assert "Traceback" not in result.output
    assert result.stdout == ""
    if code == 1:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    else:  # click's usage error: the usage, a hint, then one "Error: ..." line
        lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(lines) == 1, result.stderr
        assert result.stderr.rstrip().endswith(lines[0])
    assert message in lines[0], lines[0]
    return lines[0]


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


def waiting_for_decision(client: durable.Client, wid: str) -> bool:
    # The first workflow task ran: Approval waits in wait_condition (its 1 h timer is started).
    return any(e["kind"] == "TimerStarted" for e in client.get_handle(wid).history())


# --- the commands, working --------------------------------------------------------------------


def test_start_wait_result_describe_history_list(data_dir: str) -> None:
    with serving(data_dir, hello), serving(data_dir, basic, queue="basic"):
        assert ok(cli(data_dir, "start", "three_steps", "--input", "1", "--id", "wf-1", "--wait")) == "5\n"

        # without --id: a fresh UUID is printed, and `result` waits for the outcome
        wid = ok(cli(data_dir, "start", "three_steps", "-i", "10")).strip()
        assert str(uuid.UUID(wid)) == wid
        assert ok(cli(data_dir, "result", wid, "--timeout", str(TIMEOUT))) == "23\n"

        # repeated --input: one workflow argument each, in order, on another queue
        out = cli(data_dir, "start", "slow_chain", "--input", "1", "--input", "2", "--input", "0",
                  "--queue", "basic", "--id", "chain", "--wait", "--timeout", str(TIMEOUT))
        assert ok(out) == "3\n"
        started = json_lines(ok(cli(data_dir, "history", "chain", "--json")))[0]
        assert started["kind"] == "WorkflowStarted" and started["input"] == [1, 2, 0.0]

        # describe: readable and JSON
        text = ok(cli(data_dir, "describe", "wf-1"))
        assert "workflow_id: wf-1\n" in text and "workflow_type: three_steps\n" in text
        assert "status: completed\n" in text and "queue: default\n" in text
        desc = json.loads(ok(cli(data_dir, "describe", "wf-1", "--json")))
        assert desc["status"] == "completed" and desc["activities_scheduled"] == 3
        assert desc["activity_attempts"] == 3 and desc["closed_at"] is not None

        # history: a readable timeline, and one JSON object per event
        lines = ok(cli(data_dir, "history", "wf-1")).splitlines()
        events = json_lines(ok(cli(data_dir, "history", "wf-1", "--json")))
        assert len(lines) == len(events) == desc["history_length"]
        assert [e["index"] for e in events] == list(range(len(events)))
        assert [e["name"] for e in events if e["kind"] == "ActivityScheduled"] == ["add_one", "double", "add_one"]
        assert events[0]["input"] == [1] and events[-1] == {**events[-1], "kind": "WorkflowCompleted", "result": 5}
        assert lines[0].split()[0] == "0" and "WorkflowStarted" in lines[0] and "input=[1]" in lines[0]
        assert lines[3].split()[4:] == ["ActivityScheduled", "seq=2", 'name="double"', "input=[2]"]
        assert "WorkflowCompleted" in lines[-1] and "result=5" in lines[-1]

        # list: readable (a header, then a row per workflow), filtered, JSON
        assert {line.split()[0] for line in ok(cli(data_dir, "list")).splitlines()[1:]} == {"wf-1", wid, "chain"}
        rows = json_lines(ok(cli(data_dir, "list", "--workflow", "three_steps", "--json")))
        assert sorted(r["workflow_id"] for r in rows) == sorted(["wf-1", wid])
        assert all(r["status"] == "completed" for r in rows)
        assert ok(cli(data_dir, "list", "--status", "running")).splitlines()[1:] == []
        assert ok(cli(data_dir, "list", "--workflow", "Approval")).splitlines()[1:] == []
        row = ok(cli(data_dir, "list", "--status", "completed", "--workflow", "slow_chain")).splitlines()[1].split()
        assert row[:3] == ["chain", "slow_chain", "completed"] and row[-1] == "basic"


def test_signal_query_cancel_terminate(data_dir: str) -> None:
    with serving(data_dir, hello):
        assert ok(cli(data_dir, "start", "Approval", "--input", '{"amount": 10}', "--id", "ap-1")) == "ap-1\n"
        assert ok(cli(data_dir, "query", "ap-1", "status")) == '"pending"\n'
        assert ok(cli(data_dir, "signal", "ap-1", "decide", '"approved"')) == "signalled ap-1: decide\n"
        assert ok(cli(data_dir, "query", "ap-1", "status")) == '"approved"\n'
        assert ok(cli(data_dir, "result", "ap-1")) == '"approved"\n'
        assert ok(cli(data_dir, "query", "ap-1", "status", "--timeout", str(TIMEOUT))) == '"approved"\n'

        ok(cli(data_dir, "start", "Approval", "--input", "{}", "--id", "ap-2"))
        assert ok(cli(data_dir, "cancel", "ap-2", "--reason", "no longer needed")) == "cancel requested: ap-2\n"
        fails(cli(data_dir, "result", "ap-2", "--timeout", str(TIMEOUT)), 1, "workflow 'ap-2' was cancelled")
        events = json_lines(ok(cli(data_dir, "history", "ap-2", "--json")))
        assert {"kind": "CancelRequested", "reason": "no longer needed"}.items() <= next(
            e for e in events if e["kind"] == "CancelRequested").items()
        assert events[-1]["kind"] == "WorkflowCancelled"

        ok(cli(data_dir, "start", "Approval", "--input", "{}", "--id", "ap-3"))
        assert ok(cli(data_dir, "terminate", "ap-3", "--reason", "stuck")) == "terminated: ap-3\n"
        fails(cli(data_dir, "result", "ap-3"), 1, "workflow 'ap-3' was terminated: stuck")
        last = json_lines(ok(cli(data_dir, "history", "ap-3", "--json")))[-1]
        assert last["kind"] == "WorkflowTerminated" and last["reason"] == "stuck"

        statuses = {r["workflow_id"]: r["status"] for r in json_lines(ok(cli(data_dir, "list", "--json")))}
        assert statuses == {"ap-1": "completed", "ap-2": "cancelled", "ap-3": "terminated"}
        assert ok(cli(data_dir, "list", "--status", "terminated")).splitlines()[1].split()[0] == "ap-3"

        # a closed workflow can no longer be signalled, cancelled or terminated
        fails(cli(data_dir, "signal", "ap-1", "decide", '"no"'), 1, "it has completed")
        fails(cli(data_dir, "cancel", "ap-3"), 1, "it was terminated")
        fails(cli(data_dir, "terminate", "ap-2"), 1, "it was cancelled")


def test_failed_workflow_shows_its_error_tree(data_dir: str) -> None:
    with serving(data_dir, order_saga):
        out = cli(data_dir, "start", "order_saga", "--input", '{"order_id": "o-1", "fail_at": "charge"}',
                  "--id", "o-1", "--wait")
        # the outcome of a failed workflow is its error tree: several lines, and no traceback
        assert out.exit_code == 1 and out.stdout == "" and "Traceback" not in out.output
        lines = out.stderr.splitlines()
        assert lines[0] == ("error: workflow 'o-1' failed: OrderFailed: order o-1 failed at charge_payment; "
                            "compensated: release_inventory")
        assert "caused by:" in lines[1] and "activity 'charge_payment' (seq 2) failed" in lines[2]

        text = ok(cli(data_dir, "describe", "o-1"))
        assert "status: failed\n" in text
        assert "error:\n  OrderFailed: order o-1 failed at charge_payment" in text
        desc = json.loads(ok(cli(data_dir, "describe", "o-1", "--json")))
        assert desc["error"]["type"] == "OrderFailed" and desc["error"]["cause"]["type"] == "durable.ActivityError"
        history = ok(cli(data_dir, "history", "o-1"))
        assert "ActivityFailed" in history and "ApplicationError: charge failed for order o-1" in history
        lines = history.splitlines()
        at = next(i for i, line in enumerate(lines) if "WorkflowFailed" in line)
        assert lines[at + 1].strip().startswith("OrderFailed: order o-1 failed at charge_payment")


def test_replay(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir, hello), serving(data_dir, version_a, queue="v"):
        ok(cli(data_dir, "start", "three_steps", "--input", "1", "--id", "wf-1", "--wait"))
        ok(cli(data_dir, "start", "versioned", "--id", "v-1", "--queue", "v"))
        wait_for(lambda: client.get_handle("v-1").describe().history_length >= 4, "v-1 to wait")
        ok(cli(data_dir, "signal", "v-1", "proceed"))
        assert json.loads(ok(cli(data_dir, "result", "v-1"))) == ["did a", "did b"]
    n = len(client.get_handle("wf-1").history())
    assert ok(cli(data_dir, "replay", "wf-1", "examples.hello")) == (
        f"wf-1: {n} events replayed through 'three_steps': the code matches the history\n"
    )
    ok(cli(data_dir, "replay", "v-1", "tests.wfs.version_a"))
    fails(cli(data_dir, "replay", "v-1", "tests.wfs.version_b"), 1,
          "workflow 'v-1' (versioned), event 1: the history has ActivityScheduled('step'")
    fails(cli(data_dir, "replay", "wf-1", "tests.wfs.version_a"), 1,
          "workflow type 'three_steps' is not registered")
    fails(cli(data_dir, "replay", "wf-1", "no_such_module_xyz"), 1, "cannot import module 'no_such_module_xyz'")
    fails(cli(data_dir, "replay", "nope", "examples.hello"), 1, "no workflow with id 'nope'")


def test_data_directory_from_the_environment(data_dir: str) -> None:
    with serving(data_dir, hello):
        assert ok(cli(None, "start", "three_steps", "--input", "2", "--id", "e-1", "--wait",
                      env={"DURABLE_DATA": data_dir})) == "7\n"
    assert ok(cli(None, "list", env={"DURABLE_DATA": data_dir})).splitlines()[1].split()[:3] == ["e-1", "three_steps", "completed"]


def test_version_and_help() -> None:
    assert "0.1.0" in ok(cli(None, "--version"))
    text = ok(cli(None, "--help"))
    for command in ("worker", "start", "signal", "query", "update", "result", "cancel", "terminate", "list", "count",
                    "describe", "history", "replay"):
        assert f"  {command} " in text, command


# --- bad input --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A store with a worker on it: wf-1 completed, ap-1 waiting for its decision."""
    root = tmp_path_factory.mktemp("cli")
    data = str(root / "store")
    client = durable.Client(data)
    with serving(data, hello):
        assert client.start("three_steps", 1, id="wf-1").result(timeout=TIMEOUT) == 5
        client.start("Approval", {}, id="ap-1")
        wait_for(lambda: waiting_for_decision(client, "ap-1"), "ap-1 to wait for its decision")
        yield data
    close_stores_under(root)  # the worker has stopped: close what the module opened


def snapshot(data: str) -> Any:
    client = durable.Client(data)
    return [(d.to_json(), client.get_handle(d.workflow_id).history()) for d in client.list()]


BAD_INPUT = [
    (["start", "nope", "--id", "x"], 1, "unknown workflow 'nope' on queue 'default' (registered: Approval, three_steps)"),
    (["start", "three_steps", "--input", "1", "--id", "ap-1"], 1, "a workflow with id 'ap-1' is already running"),
    (["start", "three_steps", "--input", "1", "--id", "wf-1", "--id-reuse-policy", "reject_duplicate"], 1,
     "a workflow with id 'wf-1' already ran (completed, type 'three_steps') and the id reuse policy is 'reject_duplicate'"),
    (["start", "three_steps", "--id", "x", "--id-reuse-policy", "sometimes"], 2, "Invalid value for '--id-reuse-policy'"),
    (["describe", "wf-1", "--run", "nope"], 1, "a run id must be"),
    (["list", "--since", "noon"], 2, "Invalid value for '--since'"),
    (["start", "three_steps", "--input", "{oops", "--id", "x"], 2, "--input 1 is not valid JSON"),
    (["start", "three_steps", "--input", "1", "--input", "nan?", "--id", "x"], 2, "--input 2 is not valid JSON"),
    (["start", "three_steps", "--id", ""], 1, "a workflow id must be a non-empty string"),
    (["start", "three_steps", "--queue", ""], 1, "queue must be a non-empty string"),
    (["signal", "ap-1", "nope"], 1, "workflow type 'Approval' has no signal 'nope' (signals: decide)"),
    (["signal", "ap-1", "decide", "approved"], 2, "argument 1 is not valid JSON"),
    (["query", "ap-1", "nope"], 1, "workflow type 'Approval' has no query 'nope' (queries: status)"),
    (["query", "ap-1", "status", "{"], 2, "argument 1 is not valid JSON"),
    (["list", "--status", "bogus"], 2, "Invalid value for '--status'"),
    (["start"], 2, "Missing argument 'WORKFLOW'"),
    (["frobnicate"], 2, "No such command 'frobnicate'"),
    (["worker", "no_such_module_xyz"], 1, "cannot import module 'no_such_module_xyz'"),
    (["worker", "json"], 1, "no workflows or activities found in json"),
    (["result", "ap-1", "--timeout", "0.05"], 1, "workflow 'ap-1' is still running after 0.05 s"),
    (["start", "three_steps", "--input", json.dumps("a" * 3_000_000), "--id", "x"], 1,
     "input of workflow 'three_steps' is 3000006 bytes encoded, over the payload limit of 2097152 bytes"),
    (["signal", "ap-1", "decide", json.dumps("a" * 3_000_000)], 1, "over the payload limit"),
    (["--data", "", "list"], 2, "Invalid value for '--data': must name a directory, not be empty"),
] + [
    ([*command, "nope", *rest], 1, "no workflow with id 'nope'")
    for command, rest in [
        (["describe"], []), (["history"], []), (["result"], []), (["signal"], ["decide", '"x"']),
        (["query"], ["status"]), (["cancel"], []), (["terminate"], ["--reason", "r"]),
    ]
]


def _ids(value: Any) -> str | None:
    return " ".join(arg[:20] for arg in value) if isinstance(value, list) else None


@pytest.mark.parametrize(("args", "code", "message"), BAD_INPUT, ids=_ids)
def test_bad_input_is_one_clear_line_and_changes_nothing(populated: str, args: list[str], code: int, message: str) -> None:
    before = snapshot(populated)
    fails(cli(populated, *args), code, message)
    assert snapshot(populated) == before


def test_query_with_no_worker_fails_after_its_timeout(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir, hello):
        client.start("Approval", {}, id="ap-1")
        wait_for(lambda: waiting_for_decision(client, "ap-1"), "ap-1 to wait for its decision")
    before = snapshot(data_dir)
    fails(cli(data_dir, "query", "ap-1", "status", "--timeout", "0.2"), 1,
          "no worker answered query 'status' on workflow 'ap-1' within 0.2 s (is a worker running on queue 'default'?)")
    assert snapshot(data_dir) == before


def test_debug_shows_the_traceback(populated: str) -> None:
    result = cli(populated, "--debug", "describe", "nope")
    assert result.exit_code == 1 and isinstance(result.exception, durable.WorkflowNotFound)


READ_COMMANDS = [
    ["list"], ["count"], ["describe", "x"], ["history", "x"], ["result", "x"], ["signal", "x", "decide"],
    ["query", "x", "status"], ["cancel", "x"], ["terminate", "x"], ["replay", "x", "examples.hello"],
]


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"" for p in sorted(path.rglob("*"))}


@pytest.mark.parametrize("args", READ_COMMANDS + [["start", "three_steps", "--input", "1"]], ids=" ".join)
def test_a_directory_that_is_not_a_store_is_refused_untouched(tmp_path: Path, args: list[str]) -> None:
    other = tmp_path / "photos"
    other.mkdir(mode=0o700)
    (other / "notes.txt").write_text("not a store")
    before = tree(other)
    fails(cli(str(other), *args), 1, f"{other} is not a durable store: it holds other files (notes.txt)")
    assert tree(other) == before


@pytest.mark.parametrize("args", READ_COMMANDS + [["start", "three_steps", "--input", "1"]], ids=" ".join)
def test_a_file_is_refused_as_a_store(tmp_path: Path, args: list[str]) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    fails(cli(str(file), *args), 1, f"{file} is not a directory, so it cannot be a durable store")
    assert file.read_text() == "x"


@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_read_commands_never_create_a_missing_store(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "missing"
    fails(cli(str(missing), *args), 1, f"no durable store at {missing}")
    assert not missing.exists() and os.listdir(tmp_path) == []


def test_start_with_bad_input_does_not_create_a_missing_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    fails(cli(str(missing), "start", "three_steps", "--input", "{oops"), 2, "--input 1 is not valid JSON")
    assert not missing.exists()


def files(path: Path) -> dict[str, Any]:
    """Names, modes and contents of the files under `path` (LMDB's lock file: name and mode only)."""
    return {p.name: (p.stat().st_mode, None if p.name == "lock.mdb" else p.read_bytes()) for p in path.iterdir()}


@pytest.mark.parametrize("args", READ_COMMANDS + [["start", "three_steps", "--input", "1"]], ids=" ".join)
def test_another_programs_lmdb_database_is_refused_untouched(tmp_path: Path, args: list[str]) -> None:
    other = tmp_path / "other"
    env = lmdb.open(str(other), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"hello", b"world")
    env.close()
    before = files(other)
    fails(cli(str(other), *args), 1, f"{other} is not a durable store: data.mdb is another program's LMDB database")
    assert files(other) == before


@pytest.mark.parametrize("args", READ_COMMANDS + [["start", "three_steps", "--input", "1"]], ids=" ".join)
def test_a_data_file_that_is_not_lmdb_is_refused_untouched(tmp_path: Path, args: list[str]) -> None:
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    (other / "data.mdb").write_bytes(b"not an lmdb file" * 1000)
    before = files(other)
    fails(cli(str(other), *args), 1, f"{other} is not a durable store: data.mdb is not an LMDB file")
    assert files(other) == before


def test_start_creates_a_missing_store(tmp_path: Path) -> None:
    """The one command that writes a new workflow may create the store (no worker needed yet)."""
    data = tmp_path / "new"
    result = cli(str(data), "start", "three_steps", "--input", "1", "--id", "w")
    assert result.exit_code == 0 and result.stdout == "w\n"
    assert result.stderr.startswith("warning: no worker has polled queue 'default' yet")  # accepted, waits
    assert json.loads(ok(cli(str(data), "describe", "w", "--json")))["status"] == "running"


# --- shared options after the subcommand -------------------------------------------------------


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_accepts_data_after_it_and_shows_it_in_help(command: str) -> None:
    """`durable worker examples.hello --data DIR` (the README's own form) once failed with
    "No such option '--data'": each command takes the store options after its name too."""
    text = ok(CliRunner().invoke(main, [command, "--help"], prog_name="durable"))
    for option in ("--data", "--codec", "--debug"):
        assert option in text, f"durable {command} --help lacks {option}"


def test_data_after_the_command_equals_data_before_it(data_dir: str, tmp_path: Path) -> None:
    with serving(data_dir, hello):
        wid = ok(CliRunner().invoke(main, ["start", "three_steps", "--input", "2", "--data", data_dir,
                                           "--wait", "--timeout", "20"], prog_name="durable"))
        assert wid == "7\n"
    after = ok(CliRunner().invoke(main, ["list", "--data", data_dir, "--json"], prog_name="durable"))
    before = ok(cli(data_dir, "list", "--json"))
    assert after == before and "three_steps" in after
    # given in both places, the one after the command wins; the environment applies to both forms
    other = str(tmp_path / "empty")
    fails(CliRunner().invoke(main, ["--data", data_dir, "list", "--data", other], prog_name="durable"),
          1, "no durable store at")
    env_form = ok(CliRunner().invoke(main, ["list", "--json"], prog_name="durable", env={"DURABLE_DATA": data_dir}))
    assert env_form == before
    # a bad value after the command is refused like one before it
    fails(CliRunner().invoke(main, ["list", "--data", ""], prog_name="durable"), 2, "must name a directory")


def test_debug_after_the_command_shows_the_traceback(data_dir: str) -> None:
    with serving(data_dir, hello):
        pass
    quiet = CliRunner().invoke(main, ["describe", "nope", "--data", data_dir], prog_name="durable")
    assert quiet.exit_code == 1 and isinstance(quiet.exception, SystemExit)
    loud = CliRunner().invoke(main, ["describe", "nope", "--data", data_dir, "--debug"], prog_name="durable")
    assert isinstance(loud.exception, durable.WorkflowNotFound)
