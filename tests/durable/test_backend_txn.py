"""The transaction API every backend gives the domain operations (`durable._backend.Txn`), on
the store the suite runs on (LMDB, or PostgreSQL with DURABLE_TEST_STORE): a transaction reads
its own writes, in scans too; an op that fails in a batch leaves none of its writes; counters
grow within a process and are unique across processes."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from durable._backend import open_store


@pytest.fixture
def store(data_dir: str) -> Any:
    s = open_store(data_dir)
    s.write(lambda t: [t.put("hist", k, b"stored") for k in (b"a1", b"a3", b"a5", b"b1")])
    return s


def test_reads_and_scans_see_the_transactions_own_writes(store: Any) -> None:
    def op(t: Any) -> Any:
        t.put("hist", b"a2", b"new")
        t.delete("hist", b"a3")
        t.delete("hist", b"a4")  # absent: nothing happens
        t.put("hist", b"a5", b"changed")
        t.put("hist", b"a6", b"new")
        return (list(t.scan("hist", b"a")), list(t.scan_back("hist", b"a")), list(t.scan("hist", b"a", b"a3")),
                list(t.scan_back("hist", b"a", b"a5")), t.count("hist"), t.count_prefix("hist", b"a"),
                t.first("hist", b"a"), t.get("hist", b"a3"), t.get("hist", b"a5"))

    forward, back, from_a3, below_a5, count, in_a, first, a3, a5 = store.write(op)
    expected = [(b"a1", b"stored"), (b"a2", b"new"), (b"a5", b"changed"), (b"a6", b"new")]
    assert forward == expected
    assert back == expected[::-1]
    assert from_a3 == expected[2:]
    assert below_a5 == expected[1::-1]
    assert (count, in_a, first, a3, a5) == (5, 4, (b"a1", b"stored"), None, b"changed")
    assert store.read(lambda t: list(t.scan("hist", b""))) == [*expected, (b"b1", b"stored")]


def test_a_failed_op_of_a_batch_leaves_nothing_and_the_others_stand(store: Any) -> None:
    def bad(t: Any) -> None:
        t.put("hist", b"c1", b"never")
        t.delete("hist", b"a1")
        raise ValueError("refused")

    results = store.write_batch([lambda t: t.put("hist", b"c0", b"kept"), bad,
                                 lambda t: (t.get("hist", b"c0"), t.get("hist", b"c1"), t.get("hist", b"a1"))])
    assert results[0] is None and isinstance(results[1], ValueError)
    assert results[2] == (b"kept", None, b"stored")
    assert store.read(lambda t: (t.get("hist", b"c1"), t.get("hist", b"a1"), t.get("hist", b"c0"))) == (
        None, b"stored", b"kept")


def test_counters_grow_within_a_process(store: Any) -> None:
    taken = [store.write(lambda t: (t.next_id(b"token"), t.next_id(b"token"))) for _ in range(3)]
    flat = [n for pair in taken for n in pair]
    assert flat == sorted(flat) and len(set(flat)) == len(flat)


@pytest.mark.postgres_only
def test_counters_taken_in_blocks_are_unique_across_processes(data_dir: str) -> None:
    """Each process takes lease tokens and task tie-breakers from the sequence in blocks: two
    stores of one URL (as two processes have) never hand out the same number."""
    from durable._pg import SEQUENCE_BLOCK, PgStore
    from durable._store import Clock

    first = open_store(data_dir)
    second = PgStore(data_dir, Clock())  # a second process's store object, with its own blocks
    second._setup(create=False)
    try:
        taken = []
        for _ in range(SEQUENCE_BLOCK + 3):  # past the end of a block, interleaved
            taken.append(first.write(lambda t: t.next_id(b"token")))
            taken.append(second.write(lambda t: t.next_id(b"token")))
            taken.append(second.write(lambda t: t.next_id(b"taskseq")))
        tokens = [n for i, n in enumerate(taken) if i % 3 != 2]
        assert len(set(tokens)) == len(tokens)
    finally:
        second.close()


def _waiting_for_the_writer_lock(url: str) -> bool:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                           "WHERE c.relname = 'durable_writers' AND NOT l.granted").fetchone()
    return bool(row and row[0])


@pytest.mark.postgres_only
@pytest.mark.parametrize("serial", [True, False], ids=["serial", "side-by-side"])
def test_workers_batches_run_one_at_a_time_and_each_sees_the_last(data_dir: str, serial: bool) -> None:
    """Two processes' serial batches (the workers'): the second waits for the first's commit, and
    its snapshot is taken after that (it reads the first's write, and is not run again as a
    serializable check would make a stale one). Without `serial`, the second runs beside the
    first and reads what was committed before it."""
    from durable._pg import PgStore
    from durable._store import Clock
    from tests.fault._util import wait_until

    first = open_store(data_dir)
    second = PgStore(data_dir, Clock())  # another process's store object, with its own connections
    second._setup(create=False)
    inside, release = threading.Event(), threading.Event()
    runs: list[bytes | None] = []

    def holder(t: Any) -> None:
        t.put("meta", b"probe", b"first")
        inside.set()
        assert release.wait(30)

    def follower(t: Any) -> bytes | None:
        runs.append(t.get("meta", b"probe"))
        t.put("meta", b"probe2", b"second")
        return runs[-1]

    held = threading.Thread(target=lambda: first.write_batch([holder], serial=True))
    held.start()
    try:
        assert inside.wait(30)
        results: list[Any] = []
        follows = threading.Thread(target=lambda: results.extend(second.write_batch([follower], serial=serial)))
        follows.start()
        if serial:
            wait_until(lambda: _waiting_for_the_writer_lock(data_dir), what="the second batch to wait for the lock")
            assert runs == []
        else:
            wait_until(lambda: runs, what="the second batch to run beside the first")
        release.set()
        follows.join(30)
        held.join(30)
    finally:
        release.set()
        second.close()
    assert results == ([b"first"] if serial else [None])
    assert runs == results  # one run each: no serialization failure made it run again
    assert first.read(lambda t: (t.get("meta", b"probe"), t.get("meta", b"probe2"))) == (b"first", b"second")


@pytest.mark.postgres_only
def test_threads_share_at_most_pool_size_connections(data_dir: str) -> None:
    """Many threads reading at once (a client's threads waiting for results) wait for one of the
    process's `POOL_SIZE` connections rather than each opening one (a server process each)."""
    from durable._pg import POOL_SIZE

    store = open_store(data_dir)
    lock = threading.Lock()
    running, peak = 0, 0

    def body(t: Any) -> bytes | None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)  # long enough for the other threads to pile up
        with lock:
            running -= 1
        return t.get("meta", b"format")

    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(store.read(body))) for _ in range(3 * POOL_SIZE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 3 * POOL_SIZE and len(set(results)) == 1 and results[0]
    assert 1 < peak <= POOL_SIZE
    assert len(store._idle) <= POOL_SIZE


@pytest.mark.postgres_only
def test_a_transaction_opened_inside_another_does_not_wait_for_its_own_connection(
        data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from durable import _pg

    monkeypatch.setattr(_pg, "POOL_SIZE", 1)
    store = open_store(data_dir)
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(
        store.read(lambda t: (t.get("meta", b"format"), store.read(lambda inner: inner.get("meta", b"format"))))))
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the inner transaction waited for the outer one's connection"
    [(outer, inner)] = results
    assert outer == inner and outer


@pytest.mark.postgres_only
def test_a_session_silent_in_a_transaction_loses_its_lock_to_the_others(
        data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker cut off from the server in the middle of a batch (here: silent past the server's
    idle-in-transaction limit) does not hold the workers' lock for ever: the server ends its
    session, another worker's batch goes on, and the silent one's batch is run again."""
    from durable import _pg
    from durable._store import Clock

    monkeypatch.setattr(_pg, "IDLE_TXN_SECONDS", 1)
    first = open_store(data_dir)
    second = _pg.PgStore(data_dir, Clock())  # another worker process's store object
    second._setup(create=False)
    inside, woke = threading.Event(), threading.Event()
    seen: list[bool] = []

    def silent(t: Any) -> int:
        t.put("meta", b"probe", b"first")
        seen.append(True)
        if len(seen) == 1:
            inside.set()
            time.sleep(6)  # as silent as a host cut off
            woke.set()
        t.get("meta", b"other")  # the server ended the session meanwhile: this fails, all is run again
        return len(seen)

    def other(t: Any) -> bool:
        t.put("meta", b"probe2", b"second")
        return woke.is_set()

    results: list[Any] = []
    held = threading.Thread(target=lambda: results.extend(first.write_batch([silent], serial=True)))
    held.start()
    try:
        assert inside.wait(30)
        assert second.write_batch([other], serial=True) == [False]  # it ran while the first slept
        held.join(60)
    finally:
        second.close()
    assert results == [2]
    assert first.read(lambda t: (t.get("meta", b"probe"), t.get("meta", b"probe2"))) == (b"first", b"second")
