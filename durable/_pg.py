"""The PostgreSQL store: the same tables as the LMDB store, each a PostgreSQL table.

Each named table of the transaction API (`_backend.Txn`) is a table ``durable_<name>`` with
``key bytea primary key, value bytea``: histories, tasks, timers and the visibility indexes are
each a table with its primary-key index, and an ordered scan is an index range scan. The domain
operations (`_ops`) are the same as on LMDB.

- Every transaction is SERIALIZABLE, the guarantee LMDB's single writer gives; a batch that fails
  with a serialization failure or a deadlock is run again (bounded, with jittered backoff), so
  ops must tolerate a re-run (they do on LMDB too: see `_backend`).
- Fencing is the op's own read-compare-write of the lease token, inside that transaction: a
  serializable transaction that read the token and writes the result commits only if no other
  transaction changed what it read meanwhile, which is what "compare and write in one statement"
  gives, for any number of rows.
- A claim scans its queue with ``FOR UPDATE SKIP LOCKED``: two workers claiming at once pass over
  the rows the other is taking (a conflict that remains is resolved by the re-run).
- Counters that need only be unique (tokens, run numbers, task tie-breakers) are sequences, so that
  concurrent writers do not all conflict on one row; a re-run skips numbers, which is harmless
  (`_ops._counter`). Tokens and tie-breakers are taken 64 at a time per process (`blocked_id`).
- Round trips are what costs here (each op reads its rows one statement at a time), so the store
  saves the ones it can prove needless: deletes are blind (`delete` does not read the row), a
  run's workflow id, written once and never changed, is read once per process (`remember_run`),
  and sequence numbers come in blocks. ``DURABLE_FAST_PATHS=0`` turns the last two off.
- Writer lock: every write transaction first locks the empty table ``durable_writers``, before
  its snapshot is taken (LOCK TABLE takes none; BEGIN and LOCK go in one round trip):
  - a worker's batch (``serial=True``) in SHARE ROW EXCLUSIVE mode, which conflicts with itself:
    the batches of all the workers run one at a time, as LMDB's single writer does. Two workers'
    batches touch neighbouring rows of the same tables, and PostgreSQL's serializable check locks
    index pages, not keys: run side by side they failed each other's check (0.19 re-runs per
    workflow with two workers, three_steps), and each re-run is a whole batch. It is the worker's
    fast path ``serial_batches`` (`durable.worker._fast`; off with ``DURABLE_FAST_PATHS=0``):
    off, its batches run side by side like any other write, and the check alone keeps them right.
  - any other write (a client's start, signal, cancel) in ROW SHARE mode: beside the workers'
    batches and each other, under the serializable check;
  - fairness: a batch that failed `ALONE_AFTER_CONFLICTS` times in a row takes it in EXCLUSIVE
    mode, and so runs with no other writer, instead of being starved by a stream of short ones.
  A session that stops talking mid-transaction (a worker cut off from the server) would hold its
  lock until the server noticed; ``idle_in_transaction_session_timeout`` (`IDLE_TXN_SECONDS`) in
  the write transactions bounds that (the transaction is then run again, as after any lost
  connection; `_is_disconnect`).
- Group commit: `write_batch` runs its ops in one transaction. Writes are buffered (`PgTxn`,
  whose reads see them) and sent at commit, one statement per table and kind for the whole batch;
  an op that fails has its own writes dropped, so that it alone is undone (LMDB uses nested
  transactions for that).
- Wake-ups: a commit that asks for one sends ``NOTIFY`` on the store's channel, in the
  transaction (so it is delivered only if the change is committed). One connection per process
  and store LISTENs and passes them on to the local listeners through socket pairs.
- Connections: a small pool of our own (a list of idle connections under a lock), at most
  `POOL_SIZE` per process and store: one per transaction running at once, and threads past that
  wait for one to be given back (a thread that opens a transaction inside its own never waits).
  Unbounded, a client with 50 threads waiting for results opened 50 connections, each a server
  process forked (and a server's slots are few: `max_connections` is 100 by default).
  psycopg_pool would add a dependency and background threads for no gain at these numbers.
- The schema is versioned: ``durable_migrations`` lists the migrations applied, in order
  (`_MIGRATIONS`); opening a store applies the missing ones under an advisory lock.
- ``now`` is this host's clock (`Clock`), not the server's: see docs/postgres.md.

The schema is the connection's current schema (``options=-csearch_path=NAME`` in the URL picks
another): several stores can share a database, each in its own schema.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from . import _codec, _crashpoint, _wake
from ._backend import redact
from ._errors import NotAStore, StoreError, StoreFormatError
from ._store import _DBS, FORMAT_VERSION, Clock, GroupCommit, OpState, _Outcome, _past, u64, unpack_u64

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError:  # pragma: no cover - the message below says what to install
    psycopg = None  # type: ignore[assignment]
    pg_errors = None  # type: ignore[assignment]

log = logging.getLogger("durable.store")
T = TypeVar("T")

#: Counters taken from sequences (see `next_id`); any other counter is a row of "meta".
_SEQUENCES = {b"token": "durable_seq_token", b"taskseq": "durable_seq_taskseq", b"runnum": "durable_seq_runnum",
              b"querynum": "durable_seq_querynum"}
#: Counters whose numbers need only be unique (lease tokens: fencing compares them for equality;
#: task tie-breakers: the order of tasks visible at the same nanosecond does not matter). A process
#: takes them from their sequence `SEQUENCE_BLOCK` at a time, one round trip for many numbers, so
#: they increase within a process but not across processes. Run numbers stay one per `nextval`:
#: they order the runs of one id started at the same nanosecond.
_BLOCKED = frozenset({b"token", b"taskseq"})
SEQUENCE_BLOCK = 64
#: How many run ids `PgStore.remember_run` keeps (then it starts again from none).
_RUN_IDS_MAX = 100_000

#: The schema's migrations, in order: (version, statements). Never change one that shipped: add one.
_MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [f"CREATE TABLE IF NOT EXISTS durable_{name} (key bytea PRIMARY KEY, value bytea NOT NULL)" for name in _DBS]
        + [f"CREATE SEQUENCE IF NOT EXISTS {seq}" for seq in _SEQUENCES.values()]),
    (2, ["CREATE TABLE IF NOT EXISTS durable_writers ()"]),  # only ever locked: see `_begin`
]
SCHEMA_VERSION = _MIGRATIONS[-1][0]

#: How long a transaction is tried again while the server cannot be reached (seconds).
RECONNECT_SECONDS = 60.0
#: The server ends a session of ours idle in a write transaction this long (its client is gone,
#: cut off or frozen), so that the workers' lock it holds stops holding up the other workers'
#: writes: short enough that their heartbeats still come within the default 10 s lease. Our
#: writes never wait between statements but for our own code (an op's work on what it read).
#: Reads hold no locks, and a caller may read a long scan slowly: they have no limit.
IDLE_TXN_SECONDS = 5
#: After this many serialization failures in a row, a batch runs alone: it waits for the write
#: transactions running (each holds the writer lock, ``durable_writers``, in a mode that lets
#: others in) and holds it in EXCLUSIVE mode, so that a long batch (a worker's) is not starved by
#: a stream of short ones (signals to one workflow).
ALONE_AFTER_CONFLICTS = 3
#: How many times a batch is run again after serialization failures before giving up.
MAX_CONFLICT_RETRIES = 100
#: Connections a process keeps to one store at most, besides the wake-up listener's (`_take`).
POOL_SIZE = 8
#: Rows a scan fetches at first (then more, up to `_SCAN_MAX`, as the caller goes on).
_SCAN_FIRST, _SCAN_MAX = 16, 1024


def _need_driver() -> None:
    if psycopg is None:
        raise StoreError(
            "the PostgreSQL store needs psycopg 3: pip install 'durable-workflows[postgres]'"
        )


def _is_conflict(exc: BaseException) -> bool:
    """A serialization failure or a deadlock: the transaction may simply be run again."""
    return getattr(exc, "sqlstate", None) in ("40001", "40P01")


#: Errors of a session the server ended: shut down, terminated by an administrator, idle in a
#: transaction too long (`IDLE_TXN_SECONDS`). psycopg may not yet have seen the socket close.
_IDLE_TXN_ENDED = "25P03"
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03", _IDLE_TXN_ENDED})


def _is_disconnect(exc: BaseException, conn: Any) -> bool:
    """The connection is gone (or going): the transaction may be run again on another one."""
    state = getattr(exc, "sqlstate", None) or ""
    if state in _SESSION_ENDED or state.startswith("08"):  # 25P03 is an InternalError, not an OperationalError
        return True
    return isinstance(exc, psycopg.OperationalError) and (conn is None or conn.closed or conn.broken)


class _Statements:
    """The SQL of each table, made once."""

    def __init__(self) -> None:
        self.get: dict[str, str] = {}
        self.put: dict[str, str] = {}
        self.delete: dict[str, str] = {}
        self.count: dict[str, str] = {}
        for name in _DBS:
            tbl = f"durable_{name}"
            self.get[name] = f"SELECT value FROM {tbl} WHERE key = %s"
            self.put[name] = (f"INSERT INTO {tbl} (key, value) VALUES (%s, %s) "
                              "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")
            self.delete[name] = f"DELETE FROM {tbl} WHERE key = %s"
            self.count[name] = f"SELECT count(*) FROM {tbl}"

    @staticmethod
    def scan(name: str, upper: bool, back: bool, lock: bool) -> str:
        sql = f"SELECT key, value FROM durable_{name} WHERE key >= %s"
        if upper:
            sql += " AND key < %s"
        sql += " ORDER BY key DESC" if back else " ORDER BY key"
        sql += " LIMIT %s"
        if lock:
            sql += " FOR UPDATE SKIP LOCKED"
        return sql


_SQL = _Statements()


class _Batch:
    """What the ops of one transaction share: the writes of the ops that succeeded (sent at
    commit, `flush`), and the values read from the server (valid for the whole transaction: its
    snapshot changes only by its own writes, which are in `writes`)."""

    __slots__ = ("writes", "known")

    def __init__(self) -> None:
        self.writes: dict[str, dict[bytes, bytes | None]] = {}
        self.known: dict[tuple[str, bytes], bytes | None] = {}

    def flush(self, cur: Any) -> None:
        """Send the writes: per table, one DELETE and one INSERT ... ON CONFLICT for all its keys.

        Tables in the order of their names, keys in order: every transaction locks the rows it
        writes in one global order, so two that write the same rows wait for each other instead of
        deadlocking (PostgreSQL finds a deadlock only after `deadlock_timeout`, one second by
        default: both waited that long, then one was run again; a worker stalled meanwhile)."""
        for db in sorted(self.writes):
            items = self.writes[db]
            gone = sorted(k for k, v in items.items() if v is None)
            kept = sorted((k, v) for k, v in items.items() if v is not None)
            if gone:
                cur.execute(f"DELETE FROM durable_{db} WHERE key = ANY(%s)", (gone,))
            if kept:
                cur.execute(
                    f"INSERT INTO durable_{db} (key, value) SELECT * FROM unnest(%s::bytea[], %s::bytea[]) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    ([k for k, _ in kept], [v for _, v in kept]))
        self.writes = {}


class PgTxn(OpState):
    """An op's view of a transaction of the PostgreSQL store (`_backend.Txn`).

    Writes are kept here (the op's own) and, once the op succeeds, in its batch's `_Batch`; they
    are sent at commit, one statement per table and kind. Every read sees them: a key's read
    looks at the op's writes, the batch's, the values read before, then the server; a scan merges
    the server's rows with the writes in its range. An op that fails leaves nothing behind: its
    writes are dropped (no savepoint needed)."""

    __slots__ = ("_cur", "_batch", "_mine")
    store: PgStore

    def __init__(self, store: PgStore, cur: Any, now: int, batch: _Batch | None = None) -> None:
        self._init_state(store, now)
        self._cur = cur
        self._batch = batch if batch is not None else _Batch()
        self._mine: dict[str, dict[bytes, bytes | None]] = {}

    def _keep(self) -> None:
        """The op succeeded: its writes join the batch's."""
        writes = self._batch.writes
        for db, items in self._mine.items():
            writes.setdefault(db, {}).update(items)
        self._mine = {}

    def get(self, db: str, key: bytes) -> bytes | None:
        """The value under `key`, or None."""
        mine = self._mine.get(db)
        if mine is not None and key in mine:
            return mine[key]
        batch = self._batch.writes.get(db)
        if batch is not None and key in batch:
            return batch[key]
        ck = (db, key)
        known = self._batch.known
        if ck in known:
            return known[ck]
        if db == "num":
            value = self.store.run_ids.get(key)
            if value is not None:
                return value
        row = self._cur.execute(_SQL.get[db], (key,)).fetchone()
        value = None if row is None else bytes(row[0])
        known[ck] = value
        if db == "num" and value is not None:
            self.store.remember_run(key, value)
        return value

    def get_rec(self, db: str, key: bytes) -> Any:
        """The decoded record under `key`, or None."""
        raw = self.get(db, key)
        return None if raw is None else _codec.decode(raw, what=f"{db} record")

    def put(self, db: str, key: bytes, value: bytes) -> None:
        """Store `value` under `key` (sent at commit)."""
        mine = self._mine.get(db)
        if mine is None:
            mine = self._mine[db] = {}
        mine[bytes(key)] = bytes(value)

    def put_rec(self, db: str, key: bytes, rec: Any) -> None:
        """Store a record (CBOR) under `key`."""
        self.put(db, key, _codec.encode(rec))

    def delete(self, db: str, key: bytes) -> None:
        """Remove `key` (nothing if it is absent). A blind write: no read of the server."""
        mine = self._mine.get(db)
        if mine is None:
            mine = self._mine[db] = {}
        mine[bytes(key)] = None

    def _pending(self, db: str, low: bytes, high: bytes | None) -> list[tuple[bytes, bytes | None]]:
        """This transaction's writes to `db` with keys in [low, high), in key order."""
        merged: dict[bytes, bytes | None] = {}
        for items in (self._batch.writes.get(db), self._mine.get(db)):
            if items:
                merged.update((k, v) for k, v in items.items() if k >= low and (high is None or k < high))
        return sorted(merged.items())

    def _rows(self, db: str, low: bytes, high: bytes | None, back: bool, lock: bool) -> Iterator[tuple[bytes, bytes]]:
        """The server's rows with keys in [low, high), in key order (reversed with `back`),
        fetched in growing chunks as the caller goes on."""
        n = _SCAN_FIRST
        while True:
            sql = _SQL.scan(db, high is not None, back, lock)
            args = (low, high, n) if high is not None else (low, n)
            rows = self._cur.execute(sql, args).fetchall()
            for key, value in rows:
                yield bytes(key), bytes(value)
            if len(rows) < n:
                return
            if back:
                high = bytes(rows[-1][0])
            else:
                low = bytes(rows[-1][0]) + b"\x00"  # the smallest key after the last one
            n = min(n * 4, _SCAN_MAX)

    def _merged(self, db: str, low: bytes, high: bytes | None, back: bool, lock: bool) -> Iterator[tuple[bytes, bytes]]:
        pending = self._pending(db, low, high)
        if back:
            pending.reverse()
        i = 0
        for key, value in self._rows(db, low, high, back, lock):
            while i < len(pending) and (pending[i][0] > key if back else pending[i][0] < key):
                pk, pv = pending[i]
                i += 1
                if pv is not None:
                    yield pk, pv
            if i < len(pending) and pending[i][0] == key:
                pk, pv = pending[i]
                i += 1
                if pv is not None:
                    yield pk, pv
                continue
            yield key, value
        for pk, pv in pending[i:]:
            if pv is not None:
                yield pk, pv

    def scan(self, db: str, prefix: bytes, start: bytes | None = None, *,
             skip_locked: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with `prefix`, in key order, from `start` (default: `prefix`);
        with `skip_locked`, not those another transaction holds (``FOR UPDATE SKIP LOCKED``)."""
        low = start if start is not None and start > prefix else prefix
        return self._merged(db, low, _past(prefix), False, skip_locked)

    def scan_back(self, db: str, prefix: bytes, before: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with `prefix`, in reverse key order, below `before` if given."""
        high = _past(prefix)
        if before is not None and (high is None or before < high):
            high = before
        return self._merged(db, prefix, high, True, False)

    def _count(self, db: str, low: bytes, high: bytes | None) -> int:
        if high is None:
            row = self._cur.execute(f"SELECT count(*) FROM durable_{db} WHERE key >= %s", (low,)).fetchone()
        else:
            row = self._cur.execute(f"SELECT count(*) FROM durable_{db} WHERE key >= %s AND key < %s",
                                    (low, high)).fetchone()
        n = int(row[0])
        pending = self._pending(db, low, high)
        if pending:
            keys = [k for k, _ in pending]
            stored = {bytes(r[0]) for r in self._cur.execute(
                f"SELECT key FROM durable_{db} WHERE key = ANY(%s)", (keys,)).fetchall()}
            for key, value in pending:
                n += (value is not None) - (key in stored)
        return n

    def count_prefix(self, db: str, prefix: bytes) -> int:
        """Number of keys that start with `prefix`."""
        return self._count(db, prefix, _past(prefix))

    def first(self, db: str, prefix: bytes) -> tuple[bytes, bytes] | None:
        """The first item whose key starts with `prefix`, or None."""
        for item in self.scan(db, prefix):
            return item
        return None

    def count(self, db: str) -> int:
        """Number of entries in a table."""
        return self._count(db, b"", None)

    def next_id(self, name: bytes) -> int:
        """A new number of counter `name`: from a sequence (numbers are skipped when a transaction
        is rolled back or run again), or, for a counter without one, a row of "meta"."""
        seq = _SEQUENCES.get(name)
        if seq is not None:
            if name in _BLOCKED and self.store.fast_paths:
                return self.store.blocked_id(name, seq, self._cur)
            return int(self._cur.execute(f"SELECT nextval('{seq}')").fetchone()[0])
        raw = self.get("meta", name)
        n = (unpack_u64(raw) if raw else 0) + 1
        self.put("meta", name, u64(n))
        return n


class _Hub:
    """One LISTEN connection per store and process, passing wake-ups to the local listeners."""

    def __init__(self, store: PgStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._listeners: dict[str, socket.socket] = {}  # listener name -> the socket that wakes it
        self._stop = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="durable-pg-listen", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def add(self, name: str, peer: socket.socket) -> None:
        with self._lock:
            self._listeners[name] = peer

    def remove(self, name: str) -> None:
        with self._lock:
            self._listeners.pop(name, None)

    def _send_all(self, what: bytes, skip: str | None) -> None:
        with self._lock:
            targets = [(n, s) for n, s in self._listeners.items() if n != skip]
        for _, peer in targets:
            with contextlib.suppress(OSError):
                peer.send(what)

    def _run(self) -> None:
        delay = 0.05
        first = True
        while not self._stop:
            conn = None
            try:
                conn = psycopg.connect(self._store.url, autocommit=True, connect_timeout=10)
                conn.execute(f"LISTEN {self._store.channel}")
                self._ready.set()
                if not first:  # wake-ups may have been missed while we were away
                    self._send_all(_wake.RUNNING_ACTIVITIES, None)
                first = False
                delay = 0.05
                # libpq itself, not psycopg's notifies(): a notification that arrives as the
                # latter's timeout ends can be dropped, and a wake-up lost costs a poll interval
                pgconn = conn.pgconn
                poller = select.poll()  # not select: it fails on descriptors past 1023
                poller.register(conn.fileno(), select.POLLIN)
                while not self._stop:
                    if not poller.poll(500):
                        continue
                    pgconn.consume_input()
                    if pgconn.status != psycopg.pq.ConnStatus.OK:
                        raise psycopg.OperationalError("the wake-up connection was closed")
                    while (note := pgconn.notifies()) is not None:
                        what, _, skip = note.extra.decode().partition(" ")
                        self._send_all(what.encode() or _wake.ANY, skip or None)
            except Exception as exc:  # noqa: BLE001 - the server went away: listen again when it is back
                self._ready.set()
                if not self._stop:
                    log.debug("wake-up connection lost (%s); reconnecting", exc)
                    time.sleep(delay + random.random() * delay)
                    delay = min(delay * 2, 2.0)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)


class PgListener(_wake.SocketWaits):
    """A listener of a PostgreSQL store's wake-ups: a socket pair fed by the store's `_Hub`."""

    def __init__(self, hub: _Hub) -> None:
        self.path = f"pg-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        #: readable while wake-ups are pending (the hub writes into its peer)
        self.sock, self._peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self._peer.setblocking(False)
        self._hub = hub
        hub.add(self.path, self._peer)

    def poke(self) -> None:
        """Wake this listener."""
        with contextlib.suppress(OSError):
            self._peer.send(_wake.ANY)

    def close(self) -> None:
        """Stop listening."""
        self._hub.remove(self.path)
        self.sock.close()
        self._peer.close()


_open_stores: dict[str, PgStore] = {}
_open_lock = threading.Lock()


class PgStore(GroupCommit):
    """An open PostgreSQL store. Use `PgStore.open` (or `_backend.open_store`); one instance per
    URL per process."""

    def __init__(self, url: str, clock: Clock) -> None:
        self.url = url
        self.path = redact(url)
        self.clock = clock
        self.pid = os.getpid()
        self.shared: dict[str, Any] = {}
        self.shared_lock = threading.Lock()
        self._on_close: list[Callable[[], None]] = []
        self._idle: list[Any] = []
        self._pool_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(POOL_SIZE)  # connections not in use, or not made yet
        self._held = threading.local()  # .n: connections the thread holds
        self._init_group_commit()
        self._hub: _Hub | None = None
        self._hub_lock = threading.Lock()
        self._closed = False
        self.schema = ""
        self.channel = ""
        #: write transactions committed by this process, and those run again after a conflict
        self.commits = 0
        self.conflicts = 0
        #: called with the seconds each write's COMMIT took, by the committing thread; empty
        #: unless a worker's metrics are on
        self.commit_observers: list[Callable[[float], None]] = []
        #: the store's short cuts (`blocked_id`, `run_ids`) are on; ``DURABLE_FAST_PATHS=0`` in
        #: the environment when the store is opened turns them off, as it turns off the worker's
        self.fast_paths = os.environ.get("DURABLE_FAST_PATHS", "") != "0"
        #: run number (its "num" key) -> workflow id, as read from the server: see `remember_run`
        self.run_ids: dict[bytes, bytes] = {}
        self._blocks: dict[bytes, list[int]] = {}
        self._blocks_lock = threading.Lock()

    # --- the store's short cuts ------------------------------------------------------------

    def remember_run(self, key: bytes, wid: bytes) -> None:
        """Keep what the server said run `key` belongs to, for the next reads of it.

        Invariant: a row of "num" is written once, when its run starts (its number comes from a
        sequence, never reused), and is never changed or deleted; so a value read from the server
        (committed) stays true, and reading it again adds nothing a serializable transaction
        needs (no one writes it, so no conflict can go through it). Values of this transaction's
        own writes are not kept: they may be rolled back."""
        if not self.fast_paths:
            return
        ids = self.run_ids
        if len(ids) >= _RUN_IDS_MAX:
            ids.clear()
        ids[key] = wid

    def blocked_id(self, name: bytes, seq: str, cur: Any) -> int:
        """A number of counter `name` from this process's block of its sequence `seq`, taking
        `SEQUENCE_BLOCK` numbers in one statement when the block is used up.

        Invariant: each number a sequence gives is given once, whichever process takes it, and a
        block's numbers are handed out once (under a lock); so numbers stay unique, which is all
        a counter of `_BLOCKED` needs. A transaction rolled back or run again skips the numbers
        it took, as with `nextval`."""
        with self._blocks_lock:
            block = self._blocks.get(name)
            if not block:
                rows = cur.execute(f"SELECT nextval('{seq}') FROM generate_series(1, %s)",
                                   (SEQUENCE_BLOCK,)).fetchall()
                block = self._blocks[name] = sorted((int(r[0]) for r in rows), reverse=True)
            return block.pop()

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, create: bool = True, clock: Clock | None = None) -> PgStore:
        """Open the store at `url` (and with `create`, make its tables if it has none)."""
        _need_driver()
        with _open_lock:
            store = _open_stores.get(url)
            if store is not None and store.pid == os.getpid() and not store._closed:
                return store
            store = cls(url, clock or Clock())
            store._setup(create)
            _open_stores[url] = store
            return store

    def _connect(self) -> Any:
        """A connection for `_run`: in autocommit mode, since `_run` sends BEGIN itself (with the
        writer lock, in one round trip)."""
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot connect to the PostgreSQL store {self.path}: {msg}") from None

    def _setup(self, create: bool) -> None:
        conn = self._connect()
        try:
            conn.autocommit = True
            self.schema = conn.execute("SELECT current_schema()").fetchone()[0] or ""
            if not self.schema:
                raise StoreError(f"{self.path}: the connection has no current schema to keep the store in "
                                 "(set search_path to an existing schema)")
            digest = hashlib.sha1(self.schema.encode()).hexdigest()[:16]
            self.channel = f"durable_{digest}"
            version = self._schema_version(conn)
            if version is None and not create:
                raise NotAStore(f"no durable store at {self.path} (start a worker or a workflow to create one)")
            if version is not None and version > SCHEMA_VERSION:
                raise StoreFormatError(
                    f"{self.path} was written by a newer durable (schema {version}; this version reads "
                    f"schema {SCHEMA_VERSION}): upgrade durable to use it")
            if version is None or version < SCHEMA_VERSION:
                self._migrate(conn)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the PostgreSQL store {self.path}: {str(exc).strip()}") from None
        finally:
            conn.close()

    @staticmethod
    def _schema_version(conn: Any) -> int | None:
        row = conn.execute("SELECT to_regclass('durable_migrations') IS NOT NULL").fetchone()
        if not row[0]:
            return None
        row = conn.execute("SELECT max(version) FROM durable_migrations").fetchone()
        return None if row[0] is None else int(row[0])

    def _migrate(self, conn: Any) -> None:
        """Apply the migrations this schema lacks, in order, in one transaction, under an advisory
        lock (two processes opening a new store at once: the second finds it done)."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"durable-migrate:{self.schema}",))
            conn.execute("CREATE TABLE IF NOT EXISTS durable_migrations "
                         "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            done = {int(r[0]) for r in conn.execute("SELECT version FROM durable_migrations").fetchall()}
            for version, statements in _MIGRATIONS:
                if version in done:
                    continue
                for sql in statements:
                    conn.execute(sql)
                conn.execute("INSERT INTO durable_migrations (version) VALUES (%s)", (version,))
            conn.execute(_SQL.put["meta"], (b"format", u64(FORMAT_VERSION)))

    # --- connections -----------------------------------------------------------------------

    def _take(self) -> Any:
        """A connection for one transaction: an idle one, or a new one; past `POOL_SIZE` in use,
        wait for one (unless this thread holds one already: it would wait for itself)."""
        held = getattr(self._held, "n", 0)
        if not held:
            self._slots.acquire()
        try:
            with self._pool_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
        except BaseException:
            if not held:
                self._slots.release()
            raise
        self._held.n = held + 1
        return conn

    def _give_back(self, conn: Any) -> None:
        self._held.n -= 1
        try:
            if conn.closed or conn.broken or self._closed:
                with contextlib.suppress(Exception):
                    conn.close()
                return
            with self._pool_lock:
                self._idle.append(conn)
        finally:
            if not self._held.n:
                self._slots.release()

    # --- transactions ----------------------------------------------------------------------

    @staticmethod
    def _begin(write: bool, mode: str) -> str:
        """The statements that open a transaction: a write's lock of ``durable_writers`` in `mode`
        comes before its first read, so its snapshot is taken once it holds the lock."""
        if not write:
            return "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        return (f"BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE; "
                f"SET LOCAL idle_in_transaction_session_timeout = '{IDLE_TXN_SECONDS}s'; "
                f"LOCK TABLE durable_writers IN {mode} MODE")

    def _run(self, body: Callable[[Any], tuple[T, str]], *, write: bool, serial: bool = False) -> T:
        """Run `body(conn)` in a transaction, again after a conflict (bounded) or while the server
        cannot be reached (for `RECONNECT_SECONDS`), unless the connection was lost while
        committing: then whether it was written is unknown, and `StoreError` says so. `body`
        returns its result and the statements that end the transaction (at least ``COMMIT``),
        sent in one round trip. With `serial`, a write runs alone among serial writes (the
        module's docstring: "Writer lock")."""
        deadline = time.monotonic() + RECONNECT_SECONDS
        conflicts = 0
        delay = 0.002
        while True:
            if self._closed:
                raise StoreError(f"the store {self.path} is closed")
            conn = None
            committing = False
            if write and conflicts >= ALONE_AFTER_CONFLICTS:
                mode = "EXCLUSIVE"
            elif serial:
                mode = "SHARE ROW EXCLUSIVE"
            else:
                mode = "ROW SHARE"
            try:
                conn = self._take()
                conn.execute(self._begin(write, mode))
                result, end = body(conn)
                committing = write  # a read's outcome is known whatever happens to its commit
                t0 = time.perf_counter()
                conn.execute(end)
                if write:
                    for observe in self.commit_observers:
                        observe(time.perf_counter() - t0)
                return result
            except psycopg.Error as exc:
                if _is_conflict(exc):
                    conflicts += 1
                    self.conflicts += 1
                    if conflicts > MAX_CONFLICT_RETRIES:
                        raise StoreError(f"store {self.path}: gave up after {conflicts} serialization "
                                         "conflicts in a row") from None
                    time.sleep(random.random() * min(0.001 * conflicts, 0.05))
                    continue
                if _is_disconnect(exc, conn):
                    if conn is not None:  # not back to the pool: the server ended its session
                        with contextlib.suppress(Exception):
                            conn.close()
                    # ended for idling in the transaction: the server had not read our COMMIT
                    if committing and getattr(exc, "sqlstate", None) != _IDLE_TXN_ENDED:
                        raise StoreError(
                            f"the connection to {self.path} was lost while committing: the change may or "
                            "may not have been written") from None
                    if time.monotonic() < deadline:
                        log.warning("store %s unreachable (%s); trying again", self.path, str(exc).strip())
                        time.sleep(delay + random.random() * delay)
                        delay = min(delay * 2, 1.0)
                        continue
                    raise StoreError(f"cannot reach the PostgreSQL store {self.path}: {str(exc).strip()}") from None
                raise StoreError(f"store {self.path}: {str(exc).strip()}") from None
            except StoreError:
                if conn is None and time.monotonic() < deadline:  # could not connect: the server restarts?
                    time.sleep(delay + random.random() * delay)
                    delay = min(delay * 2, 1.0)
                    continue
                raise
            finally:
                if conn is not None:
                    if not conn.closed and not conn.broken and \
                            conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                        with contextlib.suppress(Exception):
                            conn.rollback()
                    self._give_back(conn)

    def read(self, fn: Callable[[PgTxn], T]) -> T:
        """Run `fn` in a read-only transaction (a consistent snapshot)."""
        return self._run(lambda conn: (fn(PgTxn(self, conn.cursor(), self.clock.now_ns())), "COMMIT"), write=False)

    def write_batch(self, ops: list[Callable[[Any], Any]], *, quiet: str | None = None,
                    woke: list[tuple[int | None, bool]] | None = None,
                    notes: list[tuple[Any, ...]] | None = None, serial: bool = False) -> list[Any]:
        """Run `ops` in one SERIALIZABLE transaction; commit once (see `_backend.Backend`).

        Each op's writes are kept until it returns (an op that raises leaves none: no savepoint
        needed), then sent for the whole batch at the end, one statement per table and kind.
        The wake-up (NOTIFY) is sent in the transaction, with the COMMIT: listeners hear of
        committed changes only. With `serial`, the batch runs alone among serial batches.
        """
        def body(conn: Any) -> tuple[_Outcome, str]:
            outcome = _Outcome()
            now = self.clock.now_ns()
            cur = conn.cursor()
            batch = _Batch()
            for op in ops:
                t = PgTxn(self, cur, now, batch)
                try:
                    result = op(t)
                except psycopg.Error:
                    raise  # a conflict or a lost connection: the whole batch is run again or refused
                except Exception as exc:  # noqa: BLE001 - one op's failure must not undo the others
                    outcome.results.append(exc)  # its writes, kept in `t`, are dropped with it
                    continue
                t._keep()
                outcome.add(result, t)  # type: ignore[arg-type]
            batch.flush(cur)
            end = "COMMIT"
            if outcome.wake:
                what = _wake.RUNNING_ACTIVITIES if outcome.wake_acts else _wake.ANY
                payload = f"{what.decode()} {quiet or ''}".replace("'", "''")
                end = f"NOTIFY {self.channel}, '{payload}'; COMMIT"
            if _crashpoint.ENABLED:
                _crashpoint.hit("batch-before-commit")
            return outcome, end

        outcome = self._run(body, write=True, serial=serial)
        with self._pool_lock:  # writers of several threads: no increment lost
            self.commits += 1
        if outcome.wake and woke is not None:
            woke.append((outcome.ready_at, outcome.wake_acts))
        if notes is not None and outcome.notes:
            notes.extend(outcome.notes)
        return outcome.results

    # --- wake-ups --------------------------------------------------------------------------

    def listener(self) -> PgListener:
        """A new listener of this store's wake-ups (LISTEN/NOTIFY, through one connection per process)."""
        with self._hub_lock:
            if self._hub is None:
                self._hub = _Hub(self)
            hub = self._hub
        return PgListener(hub)

    def on_close(self, fn: Callable[[], None]) -> None:
        """Have `fn` called when the store is closed."""
        self._on_close.append(fn)

    def close(self) -> None:
        """Close the store's connections (tests and tools; a process normally keeps it open)."""
        with _open_lock:
            if _open_stores.get(self.url) is self:
                del _open_stores[self.url]
        for fn in self._on_close:
            fn()
        self._closed = True
        if self._hub is not None:
            self._hub.close()
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()
