"""Security of the store (issue 4, point 7): private files, refused shared directories, refused
newer formats, no code-executing deserialization, and nothing read from the store is imported.

A store is a directory only its owner may enter: created 0700 with files 0600 whatever the
umask; a directory that others can write to (or that belongs to someone else) is refused with a
message that names it and the fix, and is left as it was. A store written by a newer format is
refused before anything in it changes. Names in the store (workflow types, activities) are looked
up in the worker's registry and nowhere else: ``os.system`` or ``examples.hello:three_steps`` is
just a name, refused or left waiting, never imported.
"""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest
from click.testing import CliRunner

import durable
from durable._store import FORMAT_VERSION, Store
from durable.cli import main
from tests.conftest import ROOT, worker_thread
from tests.fault._util import history, kinds, store_snapshot, wait_until
from tests.test_exports import SOURCES
from tests.wfs import hostile


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


# --- files and directories -------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o002, 0o022, 0o077], indirect=True, ids=oct)
def test_a_new_store_is_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "store"
    client = durable.Client(path)
    with worker_thread(str(path), [hostile.harmless]):  # a worker's wake-up socket lives in wake/
        assert client.start(hostile.harmless, 1).result(timeout=20) == 2
        assert os.listdir(path / "wake")
    assert mode(path) == 0o700
    assert mode(path / "wake") == 0o700
    assert mode(path / "data.mdb") == 0o600
    assert mode(path / "lock.mdb") == 0o600
    assert sorted(os.listdir(path)) == ["data.mdb", "lock.mdb", "wake"]


def test_store_files_loosened_by_hand_are_made_private_again(tmp_path: Path) -> None:
    path = tmp_path / "store"
    Store.open(path).close()
    for name in ("data.mdb", "lock.mdb"):
        os.chmod(path / name, 0o666)
    Store.open(path).close()  # the directory is private, so nobody else could reach them meanwhile
    assert (mode(path / "data.mdb"), mode(path / "lock.mdb")) == (0o600, 0o600)


SHARED_MODES = [0o720, 0o702, 0o770, 0o707, 0o777, 0o1777, 0o2770, 0o730]


@pytest.mark.parametrize("dir_mode", SHARED_MODES, ids=oct)
def test_a_directory_others_can_write_to_is_refused_and_left_alone(tmp_path: Path, dir_mode: int) -> None:
    path = tmp_path / "shared"
    path.mkdir()
    os.chmod(path, dir_mode)
    expected = f"{path} is writable by other users \\(mode {dir_mode:o}\\); run 'chmod 700 {path}'"
    for attempt in (lambda: durable.Client(path), lambda: durable.Worker(path, workflows=[hostile.harmless]),
                    lambda: Store.open(path, create=False)):
        with pytest.raises(durable.StorePermissionError, match=expected):
            attempt()
    assert os.listdir(path) == [] and mode(path) == dir_mode


def test_an_existing_store_made_shared_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "store"
    client = durable.Client(path)
    client.start("anything", 1, id="w", queue="nobody-serves-this")
    client._store.close()
    before = {name: (path / name).read_bytes() for name in ("data.mdb",)}
    os.chmod(path, 0o770)
    result = CliRunner().invoke(main, ["--data", str(path), "list"], prog_name="durable")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == f"error: {path} is writable by other users (mode 770); run 'chmod 700 {path}' to use it as a store\n"
    assert {name: (path / name).read_bytes() for name in before} == before
    assert mode(path) == 0o770
    os.chmod(path, 0o700)  # the fix the message gives works
    assert [d.workflow_id for d in durable.Client(path, create=False).list()] == ["w"]


def test_a_symlink_to_a_shared_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    link = tmp_path / "link"
    link.symlink_to(shared)
    with pytest.raises(durable.StorePermissionError, match=f"{shared} is writable by other users"):
        durable.Client(link)
    assert os.listdir(shared) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "theirs"
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)
    with pytest.raises(durable.StorePermissionError, match=f"{path} belongs to another user \\(uid 65534\\)"):
        durable.Client(path)
    assert os.listdir(path) == []


# --- format versions -----------------------------------------------------------------------------


def _lmdb_store(path: Path, format_marker: bytes, dbs: tuple[bytes, ...] = (b"meta",)) -> None:
    """An LMDB environment as some other version of durable might have written it."""
    path.mkdir(mode=0o700)
    env = lmdb.open(str(path), max_dbs=20, mode=0o600)
    try:
        handles = {name: env.open_db(name) for name in dbs}
        with env.begin(write=True) as txn:
            txn.put(b"format", format_marker, db=handles[b"meta"])
            for name, db in handles.items():
                if name != b"meta":
                    txn.put(b"key", b"value of a future layout", db=db)
    finally:
        env.close()


def _databases(path: Path) -> list[bytes]:
    env = lmdb.open(str(path), max_dbs=20, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return sorted(key for key, _ in txn.cursor())
    finally:
        env.close()


def test_a_newer_store_is_refused_before_anything_in_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "future"
    _lmdb_store(path, (FORMAT_VERSION + 1).to_bytes(8, "big"), (b"meta", b"events-v2", b"runs-v2"))
    before = ((path / "data.mdb").read_bytes(), _databases(path))
    message = f"{path} was written by a newer durable \\(format {FORMAT_VERSION + 1}; this version reads format {FORMAT_VERSION}\\)"
    for _ in range(2):  # refused each time (nothing is left half-open in between)
        with pytest.raises(durable.StoreFormatError, match=message):
            Store.open(path)
    with pytest.raises(durable.StoreFormatError, match=message):
        durable.Worker(path, workflows=[hostile.harmless])
    result = CliRunner().invoke(main, ["--data", str(path), "list"], prog_name="durable")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "newer durable" in result.stderr
    # none of this version's databases was created in it, nothing was written
    assert ((path / "data.mdb").read_bytes(), _databases(path)) == before
    assert before[1] == [b"events-v2", b"meta", b"runs-v2"]


@pytest.mark.parametrize("marker", [b"", b"\x00" * 7, b"\x00" * 9, b"v2"])
def test_a_corrupt_format_marker_is_refused(tmp_path: Path, marker: bytes) -> None:
    path = tmp_path / "odd"
    _lmdb_store(path, marker)
    with pytest.raises(durable.StoreFormatError, match="format marker is corrupt"):
        Store.open(path)


# --- no code from data -----------------------------------------------------------------------------

#: Besides tests/test_exports.py's scan (pickle, marshal, shelve, eval, exec, __import__): other
#: ways of turning data into code or objects.
MORE_BANNED_MODULES = {"runpy", "yaml", "copyreg", "pickletools", "xmlrpc", "code", "codeop"}
MORE_BANNED_CALLS = {"exec_module", "load_module", "spec_from_file_location", "spec_from_loader",
                     "find_spec", "run_path", "run_module", "literal_eval"}


def test_no_other_way_of_running_code_from_data_in_the_library() -> None:
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                found += [f"{where}: imports {a.name}" for a in node.names if a.name.split(".")[0] in MORE_BANNED_MODULES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in MORE_BANNED_MODULES:
                found.append(f"{where}: imports {node.module}")
            elif isinstance(node, ast.Call):
                fn = node.func
                if isinstance(fn, ast.Name) and fn.id == "compile":  # the builtin (re.compile is fine)
                    found.append(f"{where}: calls compile()")
                name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
                if name in MORE_BANNED_CALLS:
                    found.append(f"{where}: calls {name}()")
    assert found == []


def test_the_decoder_never_builds_objects_from_tags() -> None:
    """Tags that build objects (regex, MIME, Decimal, Fraction, shared references) are refused on
    reading; unknown tags stay inert `CBORTag` values, whatever class name they might carry."""
    import cbor2

    from durable._codec import decode

    for tag in (4, 5, 25, 28, 29, 30, 35, 36, 256, 260, 261, 262, 263, 270, 1004):
        with pytest.raises(durable.DecodeError):
            decode(cbor2.dumps(cbor2.CBORTag(tag, ["os.system", "touch /tmp/x"])))
    inert = decode(cbor2.dumps(cbor2.CBORTag(27, ["os.system", ["touch /tmp/x"]])))  # "generic object"
    assert isinstance(inert, cbor2.CBORTag) and inert.value == ("os.system", ("touch /tmp/x",))


HOSTILE_TYPES = ["os.system", "builtins.eval", "examples.hello:three_steps", "examples.hello.three_steps",
                 "tests.wfs.import_sentinel", "tests.wfs.import_sentinel:main", "tests.wfs.import_sentinel.main",
                 "__import__", "subprocess:run"]
SENTINEL_MODULE = "tests.wfs.import_sentinel"


@pytest.fixture
def import_sentinel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A file that appears if `tests.wfs.import_sentinel` is imported by anyone in this process."""
    sentinel = tmp_path / "imported"
    monkeypatch.setenv("DURABLE_TEST_IMPORT_SENTINEL", str(sentinel))
    assert SENTINEL_MODULE not in sys.modules
    yield sentinel
    assert not sentinel.exists(), sentinel.read_text()
    assert SENTINEL_MODULE not in sys.modules


def test_the_import_sentinel_works(tmp_path: Path) -> None:
    sentinel = tmp_path / "imported"
    subprocess.run([sys.executable, "-c", f"import {SENTINEL_MODULE}"], cwd=ROOT, check=True, timeout=60,
                   env=dict(os.environ, PYTHONPATH=str(ROOT), DURABLE_TEST_IMPORT_SENTINEL=str(sentinel)))
    assert sentinel.read_text().startswith("imported")


@pytest.mark.usefixtures("import_sentinel")
def test_a_code_path_as_workflow_type_is_just_a_name(data_dir: str) -> None:
    client = durable.Client(data_dir)
    modules_before = set(sys.modules)
    with worker_thread(data_dir, [hostile.harmless], queue="served"):
        before = store_snapshot(client)
        for name in HOSTILE_TYPES:  # on a queue whose workers are known: refused, nothing written
            with pytest.raises(durable.NotRegistered, match="unknown workflow"):
                client.start(name, "touch /tmp/pwned", queue="served")
        assert store_snapshot(client) == before
        # on a queue no worker has served yet: accepted, as a name, and waits
        handles = [client.start(name, "touch /tmp/pwned", id=f"h{i}", queue="later")
                   for i, name in enumerate(HOSTILE_TYPES)]
    assert all(h.describe().status == "running" for h in handles)
    with worker_thread(data_dir, [hostile.harmless], queue="later"):  # a worker for that queue comes
        for h in handles:
            desc = wait_until(lambda h=h: (d := h.describe()).task_error and d, what="the task to be refused")
            assert "is not registered on this worker" in desc.task_error and desc.status == "running"
            assert kinds(history(client, h.id)) == ["WorkflowStarted"]
        assert client.start(hostile.harmless, 1, queue="later").result(timeout=20) == 2  # it works otherwise
    # describe, list, history and replay read those names; none of it imports anything
    client.list()
    for h in handles:
        h.history()
        result = CliRunner().invoke(main, ["--data", data_dir, "replay", h.id, "tests.wfs.hostile"], prog_name="durable")
        assert result.exit_code == 1 and "is not registered" in result.stderr, result.output
    assert {m for m in set(sys.modules) - modules_before if not m.startswith(("tests.", "_pytest", "hypothesis"))} == set()


@pytest.mark.usefixtures("import_sentinel")
def test_a_code_path_as_activity_name_runs_nothing(data_dir: str, tmp_path: Path) -> None:
    client = durable.Client(data_dir)
    touched = tmp_path / "touched"
    with worker_thread(data_dir, [hostile.calls_by_name, hostile.harmless]):
        handles = [client.start(hostile.calls_by_name, name, arg, id=f"a{i}") for i, (name, arg) in enumerate([
            ("touch_sentinel", str(touched)), ("tests.wfs.hostile:touch_sentinel", str(touched)),
            ("tests.wfs.hostile.touch_sentinel", str(touched)), ("os.system", f"touch {touched}"),
            ("tests.wfs.import_sentinel:main", str(touched)), ("builtins.exec", f"open('{touched}', 'w')"),
        ])]
        for h in handles:
            wait_until(lambda h=h: (h.describe().task_failures or 0) >= 2, what="the activity to be refused twice")
            desc = h.describe()
            assert desc.status == "running" and "not registered" in (desc.task_error or "")
            assert desc.activity_attempts == 0
            assert "ActivityCompleted" not in kinds(history(client, h.id))
    assert not touched.exists()
