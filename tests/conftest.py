"""Shared fixtures: a fresh store directory, and workers in a thread or in real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Every record a write transaction hands out again without decoding it is checked against its
# bytes, in this process and the workers it starts (see durable._store.Txn.get_rec).
os.environ["DURABLE_MEMO_CHECK"] = "1"

import pytest  # noqa: E402
import trio  # noqa: E402

import durable  # noqa: E402
from durable import _store  # noqa: E402

#: ``DURABLE_TEST_STORE=postgresql://user@host:port/db`` runs the tests on the PostgreSQL store:
#: the `data_dir` fixture then gives a fresh schema of that database per test (dropped after it),
#: and the tests marked `lmdb_only` (about LMDB itself: files, map size, disk, permissions) are
#: deselected and listed. Unset: the embedded LMDB store, as users get by default.
TEST_STORE = os.environ.get("DURABLE_TEST_STORE", "")
ON_POSTGRES = TEST_STORE.startswith(("postgresql://", "postgres://"))
#: For a test of the PostgreSQL store itself: deselected (and counted) unless the suite runs on it.
postgres_only = pytest.mark.postgres_only
#: For a test about the LMDB store itself (its files, data.mdb, map size, disk, permissions, the
#: key-value layout read directly): deselected, and listed, when the suite runs on PostgreSQL.
lmdb_only = pytest.mark.lmdb_only

ROOT = Path(__file__).resolve().parent.parent

#: Whether the workers the tests make take their fast paths (``DURABLE_FAST_PATHS=0`` turns them
#: all off: CI runs the worker and fault tests so once more, see .ci/run).
FAST_PATHS = os.environ.get("DURABLE_FAST_PATHS", "") != "0"
#: For a test of a fast path itself (that it is taken: counters, commit counts), which has nothing
#: to test with the fast paths off.
needs_fast_paths = pytest.mark.skipif(not FAST_PATHS, reason="tests a fast path itself (DURABLE_FAST_PATHS=0)")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False, help="also run long fault/soak tests")


_deselected_other: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    other = "lmdb_only" if ON_POSTGRES else "postgres_only"
    kept = [item for item in items if other not in item.keywords]
    dropped = [item for item in items if other in item.keywords]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        _deselected_other.extend(item.nodeid for item in dropped)
        items[:] = kept
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="long mode: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _deselected_other and ON_POSTGRES:
        terminalreporter.write_line(f"on PostgreSQL: {len(_deselected_other)} tests about LMDB itself deselected "
                                    "(marked lmdb_only):")
        for nodeid in _deselected_other:
            terminalreporter.write_line(f"  {nodeid}")
    elif _deselected_other:
        terminalreporter.write_line(f"{len(_deselected_other)} PostgreSQL tests deselected (marked postgres_only; "
                                    "run with DURABLE_TEST_STORE=postgresql://...)")


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[str]:
    """A fresh store, not yet created: a directory path (LMDB), or with ``DURABLE_TEST_STORE`` a
    PostgreSQL URL whose schema is new, and dropped after the test."""
    if not ON_POSTGRES:
        yield str(tmp_path / "store")
        return
    from tests import _pg_util

    with _pg_util.fresh_schema(TEST_STORE) as url:
        yield url


def close_stores_under(directory: Path) -> None:
    """Close the LMDB stores this process opened in `directory` (itself, or any under it)."""
    root = str(directory.resolve())
    for path, store in list(_store._open_stores.items()):
        if path == root or path.startswith(root + os.sep):
            store.close()


@pytest.fixture(autouse=True)
def _close_stores_opened_by_the_test(tmp_path: Path) -> Iterator[None]:
    """A process keeps each store it opens open; the suite opens hundreds, each with its files,
    sockets and a watcher thread. Close those of this test's directory when it ends. (A fixture
    of wider scope closes its own: `close_stores_under`.)"""
    yield
    close_stores_under(tmp_path)
    if ON_POSTGRES:
        from tests import _pg_util

        _pg_util.close_stores()


@contextlib.contextmanager
def worker_thread(data: str, workflows: Any = (), activities: Any = (), **options: Any) -> Iterator[durable.Worker]:
    """Run a `Worker` in a background thread (its own trio loop) for the duration of the block."""
    worker = durable.Worker(data, workflows=workflows, activities=activities, **options)
    token: list[trio.lowlevel.TrioToken] = []
    ready = threading.Event()
    errors: list[BaseException] = []

    async def main() -> None:
        token.append(trio.lowlevel.current_trio_token())
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            ready.set()

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert ready.wait(10), "worker did not start"
    if errors:
        raise errors[0]
    try:
        yield worker
    finally:
        if token:
            try:
                trio.from_thread.run_sync(worker.shutdown, trio_token=token[0])
            except trio.RunFinishedError:
                pass
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop"
        if errors:
            raise errors[0]


def start_worker_process(data: str, *modules: str, queue: str = "default", lease: float = 2.0,
                         extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``durable worker`` as a real process; return once it serves the queue."""
    cmd = [sys.executable, "-m", "durable", "--data", data, "worker", *modules, "--queue", queue,
           "--lease", str(lease), *extra]
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                proc.stderr.close()
                raise RuntimeError(f"worker exited with {proc.returncode} before serving")
            continue
        if "serving queue" in line:
            lines: list[str] = [line]
            drain = threading.Thread(target=_drain, args=(proc.stderr, lines), daemon=True)
            drain.start()
            proc.drain_thread = drain  # type: ignore[attr-defined]
            proc.log_lines = lines  # type: ignore[attr-defined]
            return proc
    proc.kill()
    proc.wait()
    proc.stderr.close()
    raise RuntimeError("worker did not start within 20 s")


def _drain(stream: Any, lines: list[str]) -> None:
    """Keep reading a worker's stderr (so it never blocks), keeping the lines for debugging."""
    try:
        for line in stream:
            lines.append(line)
    finally:
        stream.close()


def stop_worker_process(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    """Stop a worker process with `sig` and return its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    code = proc.wait(30)
    drain = getattr(proc, "drain_thread", None)
    if drain is not None:
        drain.join(10)
    return code


@contextlib.contextmanager
def worker_process(data: str, *modules: str, **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    """A real worker process for the duration of the block."""
    proc = start_worker_process(data, *modules, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            stop_worker_process(proc)
