"""Queries never change history, and fail clearly with no worker; bad input is refused with a
clear error and changes nothing in the store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import durable
from tests.conftest import worker_thread
from tests.fault._util import history, kinds, store_snapshot, wait_until
from tests.wfs import faults

GATE = ([faults.Gate, faults.inc_chain], [faults.slow_inc])


def dir_state(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


# --- queries ------------------------------------------------------------------------------------


def test_query_with_no_worker_fails_clearly_after_its_timeout(data_dir: str) -> None:
    client = durable.Client(data_dir)
    handle = client.start(faults.Gate, id="lonely", queue="nobody-serves-this")
    before = store_snapshot(client)
    with pytest.raises(durable.QueryFailed) as info:
        handle.query("state", timeout=0.3)
    assert str(info.value) == (
        "no worker answered query 'state' on workflow 'lonely' within 0.3 s "
        "(is a worker running on queue 'nobody-serves-this'?)"
    )
    after = store_snapshot(client)
    for db in ("hist", "wf", "idx", "tasks", "act", "inbox", "query"):
        assert after[db] == before[db], db  # the query left nothing behind
    assert len(history(client, "lonely")) == 1


def test_queries_never_change_history(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, *GATE):
        handle = client.start(faults.Gate, id="gate")
        assert handle.query("state", timeout=10) == "waiting"
        before = history(client, "gate")
        desc = handle.describe()
        for _ in range(5):
            assert handle.query("state", timeout=10) == "waiting"
        assert history(client, "gate") == before
        assert handle.describe().history_length == desc.history_length == len(before)
        handle.signal("open", 1)
        assert handle.query("state", timeout=10) == "open"  # a signal sent before is seen
        assert handle.result(timeout=10) == 1
        done = history(client, "gate")
        assert handle.query("state", timeout=10) == "open"  # a closed workflow can be queried
        assert history(client, "gate") == done
        with pytest.raises(durable.NotRegistered, match="no query 'nope'"):
            handle.query("nope", timeout=1)
        assert history(client, "gate") == done


def test_unknown_query_is_refused_and_disturbs_nothing(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, *GATE):
        handle = client.start(faults.inc_chain, 0, 3, 0.2, id="busy")
        wait_until(lambda: "ActivityScheduled" in kinds(history(client, "busy")), what="a step to start")
        with pytest.raises(durable.NotRegistered, match="'inc_chain' has no query 'state' \\(queries: none\\)"):
            handle.query("state", timeout=10)  # a function workflow has no queries
        assert handle.result(timeout=20) == 3
    desc = handle.describe()
    assert (desc.activities_scheduled, desc.activity_attempts) == (3, 3)


# --- bad input ------------------------------------------------------------------------------------


def test_duplicate_workflow_id_is_refused_or_reused(data_dir: str) -> None:
    client = durable.Client(data_dir)
    first = client.start(faults.Gate, id="dup")
    before = store_snapshot(client)
    with pytest.raises(durable.WorkflowAlreadyExists, match="'dup' is already running.*Gate"):
        client.start(faults.Gate, id="dup")
    with pytest.raises(durable.WorkflowAlreadyExists):
        client.start(faults.inc_chain, 1, 1, 0.0, id="dup")  # another type does not help
    assert store_snapshot(client) == before
    again = client.start(faults.inc_chain, 1, 1, 0.0, id="dup", id_conflict_policy="use_existing")
    assert (again.id, again.run_id) == (first.id, first.run_id) == ("dup", first.run_id)
    assert store_snapshot(client) == before  # returned the existing one, wrote nothing
    assert again.describe().workflow_type == "Gate"
    with worker_thread(data_dir, *GATE):
        first.signal("open", "first")
        assert again.result(timeout=10) == "first"


def test_signals_and_commands_refused_change_nothing(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, *GATE):  # publishes the names the queue serves
        handle = client.start(faults.Gate, id="g")
        wait_until(lambda: len(history(client, "g")) >= 2, what="the workflow to start")
        before = store_snapshot(client)
        with pytest.raises(durable.NotRegistered, match="no signal 'shut'"):
            handle.signal("shut", 1)
        with pytest.raises(durable.WorkflowNotFound):
            client.get_handle("nobody").signal("open", 1)
        with pytest.raises(durable.NotRegistered, match="unknown workflow 'Nope'"):
            client.start("Nope", id="nope")
        with pytest.raises(durable.PayloadError):
            handle.signal("open", object())
        for bad_id in ("", "a\x00b", "x" * 1000):
            with pytest.raises(durable.InvalidArgument):
                client.start(faults.Gate, id=bad_id)
        assert store_snapshot(client) == before
        handle.signal("open", 2)
        assert handle.result(timeout=10) == 2
        closed = store_snapshot(client)
        with pytest.raises(durable.WorkflowClosed):
            handle.signal("open", 3)
        with pytest.raises(durable.WorkflowClosed):
            handle.cancel()
        with pytest.raises(durable.WorkflowClosed):
            handle.terminate("late")
        assert store_snapshot(client) == closed


def test_directory_with_other_files_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "project"
    path.mkdir()
    (path / "notes.txt").write_text("my notes")
    before = dir_state(path)
    with pytest.raises(durable.NotAStore, match="is not a durable store: it holds other files \\(notes.txt\\)"):
        durable.Client(path)
    assert dir_state(path) == before and sorted(os.listdir(path)) == ["notes.txt"]


def test_garbage_data_file_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.mkdir(mode=0o700)
    (path / "data.mdb").write_bytes(b"this is not an LMDB file" * 200)
    before = (path / "data.mdb").read_bytes()
    with pytest.raises(durable.NotAStore, match="not an LMDB file"):
        durable.Client(path)
    assert (path / "data.mdb").read_bytes() == before
    assert sorted(os.listdir(path)) == ["data.mdb"]  # not even a lock file was left


def test_missing_store_and_file_paths(tmp_path: Path) -> None:
    with pytest.raises(durable.NotAStore, match="no durable store"):
        durable.Client(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()
    file = tmp_path / "a-file"
    file.write_text("x")
    with pytest.raises(durable.NotAStore, match="is not a directory"):
        durable.Client(file)
    assert file.read_text() == "x"
