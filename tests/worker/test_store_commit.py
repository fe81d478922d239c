"""The LMDB store's transactions: group commit, a full map, permissions and format versions.

A real LMDB environment in a temporary directory, no mocks. The domain operations of `_ops` run
through `Store.write_batch` exactly as the worker's group-commit writer runs them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import durable
from durable import _ops, _store
from durable._codec import Converter
from durable._backend import open_store
from durable._store import Store
from tests.conftest import ROOT, lmdb_only, worker_thread
from tests.fault._util import store_snapshot
from tests.wfs import faults

PLAIN = Converter()


def start_op(client: durable.Client, wid: str, value: object = None):  # type: ignore[no-untyped-def]
    payload = PLAIN.to_payload([value], "input")
    return lambda t: _ops.start_workflow(t, wid, "Gate", "default", payload, False, False)


def test_a_refused_op_in_a_batch_leaves_the_others_committed(data_dir: str) -> None:
    client = durable.Client(data_dir)
    client.start(faults.Gate, id="taken")
    before = store_snapshot(client)
    results = client._store.write_batch(
        [start_op(client, "a"), start_op(client, "taken"), start_op(client, "b")]
    )
    assert isinstance(results[1], durable.WorkflowAlreadyExists)
    assert results[0][1] is True and results[2][1] is True
    assert sorted(d.workflow_id for d in client.list()) == ["a", "b", "taken"]
    assert sorted(d.workflow_id for d in client.list(status="running")) == ["a", "b", "taken"]
    # the refused op wrote nothing: 'taken' is exactly as before
    after = store_snapshot(client)
    assert [kv for kv in after["wf"] if kv[0] == b"taken"] == [kv for kv in before["wf"] if kv[0] == b"taken"]


@lmdb_only
def test_a_batch_that_fills_the_map_is_retried_whole_after_growing_it(data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_store, "INITIAL_MAP_BYTES", 1 << 20)  # 1 MiB: the batch below needs ~6
    client = durable.Client(data_dir)
    store = client._store
    small = store.env.info()["map_size"]
    assert small == 1 << 20
    big = os.urandom(200_000)
    results = store.write_batch([start_op(client, f"big-{i}", big) for i in range(30)])
    assert all(r[1] is True for r in results), results
    assert store.env.info()["map_size"] > small
    assert len(client.list(limit=100)) == 30
    for i in (0, 29):  # every payload is readable and intact
        [first] = client.get_handle(f"big-{i}").history()
        assert first["input"] == [big]
    # another process opens the grown store and sees everything
    out = subprocess.run(
        [sys.executable, "-c", "import durable, sys; print(len(durable.Client(sys.argv[1]).list(limit=100)))", data_dir],
        cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "30"


def test_many_threads_commit_through_one_store(data_dir: str) -> None:
    client = durable.Client(data_dir)
    errors: list[BaseException] = []

    def starter(n: int) -> None:
        try:
            for i in range(40):
                client.start(faults.Gate, id=f"t{n}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=starter, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(client.list(status="running", limit=10_000)) == 12 * 40
    with worker_thread(data_dir, [faults.Gate], []):
        for n in range(12):
            client.get_handle(f"t{n}-0").signal("open", n)
        assert [client.get_handle(f"t{n}-0").result(timeout=10) for n in range(12)] == list(range(12))


@lmdb_only
def test_store_files_are_private(data_dir: str) -> None:
    durable.Client(data_dir)
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    for name in ("data.mdb", "lock.mdb"):
        assert stat.S_IMODE(os.stat(os.path.join(data_dir, name)).st_mode) == 0o600


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "shared"
    path.mkdir()
    os.chmod(path, 0o777)
    with pytest.raises(durable.StorePermissionError, match="writable by other users.*chmod 700"):
        durable.Client(path)
    assert os.listdir(path) == []


def test_a_store_written_by_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future"
    bump = (
        "import sys, lmdb\n"
        "env = lmdb.open(sys.argv[1], max_dbs=20)\n"
        "meta = env.open_db(b'meta')\n"
        "with env.begin(write=True) as txn:\n"
        "    txn.put(b'format', (99).to_bytes(8, 'big'), db=meta)\n"
    )
    for code in ("import sys, durable; durable.Client(sys.argv[1])", bump):  # each in a fresh process
        subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                       check=True, timeout=60)
    before = (path / "data.mdb").read_bytes()
    with pytest.raises(durable.StoreFormatError, match="newer durable \\(format 99"):
        Store.open(path)
    assert (path / "data.mdb").read_bytes() == before


def test_a_record_kept_decoded_is_handed_out_only_while_its_bytes_are_stored(tmp_path: Path) -> None:
    """Txn.get_rec hands out the record put_rec wrote without decoding it again, but never one whose
    write was undone: an op that failed after writing leaves the earlier record readable."""
    store = Store.open(tmp_path / "s")
    key = b"memo-test"

    def first(t: _store.Txn) -> None:
        t.put_rec("wf", key, {"v": 1})

    def changed_then_failed(t: _store.Txn) -> None:
        rec = t.get_rec("wf", key)
        rec["v"] = 2
        t.put_rec("wf", key, rec)  # kept, then undone with this op's nested transaction
        raise ValueError("refused")

    got: list[object] = []
    results = store.write_batch([first, changed_then_failed, lambda t: got.append(t.get_rec("wf", key))])
    assert isinstance(results[1], ValueError)
    assert got == [{"v": 1}]
    assert store.write(lambda t: t.get_rec("wf", key)) == {"v": 1}


def _bump(key: bytes):  # type: ignore[no-untyped-def]
    """An op that adds one to a counter under `key` (so running it twice would show)."""

    def op(t: _store.Txn) -> int:
        raw = t.get("meta", key)
        n = (0 if raw is None else int(raw)) + 1
        t.put("meta", key, str(n).encode())
        return n

    return op


def _write_then_fail(key: bytes):  # type: ignore[no-untyped-def]
    def op(t: _store.Txn) -> None:
        t.put("meta", key, b"written")
        raise ValueError("refused after writing")

    return op


def test_a_batch_whose_op_fails_keeps_the_others_writes_once_and_none_of_its_own(tmp_path: Path) -> None:
    """A batch runs its ops in one transaction without nesting them; one that raises makes it run
    again with each op nested. The first run must be dropped, not committed: the ops before the
    failed one are applied once, the failed one's writes not at all, the ones after it too."""
    store = Store.open(tmp_path / "s")
    results = store.write_batch([_bump(b"t-a"), _write_then_fail(b"t-x"), _bump(b"t-b")])
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], ValueError)
    values = store.read(lambda t: [t.get("meta", k) for k in (b"t-a", b"t-x", b"t-b")])
    assert values == [b"1", None, b"1"]
    # a batch of one failing op writes nothing, and the next batch sees the store as it was
    [alone] = store.write_batch([_write_then_fail(b"t-y")])
    assert isinstance(alone, ValueError)
    assert store.read(lambda t: t.get("meta", b"t-y")) is None
    assert store.write_batch([_bump(b"t-a"), _bump(b"t-a")]) == [2, 3]


def test_starts_and_signals_check_the_registrations_stored_now_not_ones_seen_before(data_dir: str) -> None:
    """Decoded registrations are reused only while their bytes are the ones stored (`_ops._types`):
    a worker publishing more names, or anyone rewriting the record, is seen by the next call."""
    store = open_store(data_dir)
    payload = PLAIN.to_payload([], "input")

    def start(wid: str, wtype: str) -> object:
        return store.write(lambda t: _ops.start_workflow(t, wid, wtype, "default", payload, False, True))

    def desc(signals: list[str]) -> dict[str, object]:
        return {"workflows": {"A": {"signals": signals, "queries": []}}, "activities": []}

    store.write(lambda t: _ops.publish_registry(t, "default", desc(["s"])))
    start("a1", "A")
    with pytest.raises(durable.NotRegistered, match="unknown workflow 'B'"):
        start("b1", "B")
    store.write(lambda t: _ops.signal(t, "a1", "s", payload))
    with pytest.raises(durable.NotRegistered, match="no signal 't'"):
        store.write(lambda t: _ops.signal(t, "a1", "t", payload))
    store.write(lambda t: _ops.publish_registry(
        t, "default", {"workflows": {"B": {"signals": [], "queries": []}}, "activities": []}))
    start("b2", "B")
    # rewritten under the same key by someone else (bytes only): A now has signal "t" and B is gone
    store.write(lambda t: t.put("types", b"default", _store._codec.encode(desc(["s", "t"]))))
    store.write(lambda t: _ops.signal(t, "a1", "t", payload))
    with pytest.raises(durable.NotRegistered, match="unknown workflow 'B'"):
        start("b3", "B")
