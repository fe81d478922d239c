"""`durable.logger` in workflow and activity code: the context on every record, nothing logged
while workflow code replays; the worker's `--log-format json`."""

from __future__ import annotations

import json
import logging

import pytest

import durable
from tests.conftest import start_worker_process, stop_worker_process, worker_thread
from tests.wfs import logs


def test_records_carry_their_context_and_replay_logs_nothing(data_dir: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="durable"), worker_thread(data_dir, [logs.chatty], [logs.shout]):
        handle = durable.Client(data_dir).start(logs.chatty, ["a", "b", "c"], id="chat")
        assert handle.result(timeout=30) == ["A", "B", "C"]
    flows = [r for r in caplog.records if r.name == "durable.workflow"]
    acts = [r for r in caplog.records if r.name == "durable.activity"]
    # once each, though the worker may have run the code again through recorded events
    assert [r.getMessage() for r in flows] == [
        f"step {i} done (workflow_id='chat', run_id='{handle.run_id}', workflow_type='chatty')" for i in range(3)]
    assert all((r.workflow_id, r.workflow_type) == ("chat", "chatty") for r in flows)  # type: ignore[attr-defined]
    assert [(r.getMessage().split(" (")[0], r.activity, r.attempt) for r in acts] == [  # type: ignore[attr-defined]
        ("shouting a", "shout", 1), ("shouting b", "shout", 1), ("shouting c", "shout", 1)]
    assert all(r.filename == "logs.py" for r in flows + acts)  # the caller's line, not ours

    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="durable"):
        assert durable.replay(logs.chatty, handle.export_history()) > 0  # every activation replayed
    assert [r for r in caplog.records if r.name == "durable.workflow"] == []


def test_outside_workflows_and_activities_it_is_a_plain_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="durable"):
        durable.logger.info("hello %s", "there")
    [record] = caplog.records
    assert (record.name, record.getMessage()) == ("durable", "hello there")


def test_the_worker_logs_json_lines_with_the_context(data_dir: str) -> None:
    worker = start_worker_process(data_dir, "tests.wfs.logs", extra=("--log-format", "json"))
    try:
        assert durable.Client(data_dir).start("chatty", ["x"], id="j").result(timeout=30) == ["X"]
    finally:
        assert stop_worker_process(worker) == 0
    records = [json.loads(line) for line in worker.log_lines if line.startswith("{")]  # type: ignore[attr-defined]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    [step] = [r for r in records if r["logger"] == "durable.workflow"]
    assert (step["workflow_id"], step["workflow_type"], step["level"]) == ("j", "chatty", "INFO")
    [shout] = [r for r in records if r["logger"] == "durable.activity"]
    assert (shout["activity"], shout["attempt"]) == ("shout", 1)
