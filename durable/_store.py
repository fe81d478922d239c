"""The LMDB store: one environment per data directory, every change one write transaction.

One of the two backends of `_backend` (the other is PostgreSQL, `_pg`). This module knows LMDB;
the domain operations in `_ops` see only the small `Txn` wrapper (`_backend.Txn`). A
group of operations runs in one write transaction (group commit); if one of them is refused (a
fencing check, a closed workflow), the group runs again with each operation inside a nested
transaction, so that the refused one does not undo the others. If the map fills up, the whole
batch is retried after growing the map, before anyone is told it was written. After a commit,
processes waiting on the data directory are woken (`_wake`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import lmdb

from . import _codec, _crashpoint, _wake
from ._errors import (
    NotAStore,
    StoreError,
    StoreFormatError,
    StoreFullError,
    StorePermissionError,
)
from ._limits import INITIAL_MAP_BYTES, MAX_MAP_BYTES

T = TypeVar("T")

#: On-disk format written by this version. A store with a larger number is refused; one with a
#: smaller number is migrated when it is opened (`_migrate`). 2: the list index is keyed by start
#: time (format 1 keyed it by status and id); closed runs of a reused id are kept in "runs".
#: 3: schedules ("sched", and due entries of kind "S" that an older version would drop).
FORMAT_VERSION = 3

#: Free space under which a write LMDB reports as an I/O error is taken for a full disk.
_FULL_DISK_BYTES = 1 << 20

_DBS = ("meta", "wf", "num", "hist", "inbox", "act", "tasks", "due", "idx", "types", "query", "runs",
        "workers", "sched")
_U64 = struct.Struct(">Q")
_U64X2 = struct.Struct(">QQ")


def u64(n: int) -> bytes:
    """Big-endian u64, so that integer keys sort as bytes."""
    return _U64.pack(n)


def u64x2(a: int, b: int) -> bytes:
    """Two big-endian u64s."""
    return _U64X2.pack(a, b)


def unpack_u64(b: bytes, offset: int = 0) -> int:
    """Read a big-endian u64 at `offset`."""
    return _U64.unpack_from(b, offset)[0]  # type: ignore[no-any-return]


class Clock:
    """Where time enters the store and the worker: wall-clock nanoseconds."""

    def now_ns(self) -> int:
        """The current time in nanoseconds since the epoch."""
        return time.time_ns()


#: Databases whose records a write transaction keeps decoded after writing them (see `Txn.get_rec`).
_MEMO_DBS = frozenset({"wf", "act"})
#: At most this many records are kept so (the memo is emptied when it passes this size).
_MEMO_MAX = 4096
#: Set (by the test suite) to check every record taken from the memo against its bytes.
_MEMO_CHECK = os.environ.get("DURABLE_MEMO_CHECK") == "1"


class OpState:
    """What an op tells its writer besides its writes, the same on every backend: whether to
    wake others, when a worker should look again, and notes for the writer's observers."""

    __slots__ = ("now", "wake", "wake_acts", "ready_at", "store", "notes")

    def _init_state(self, store: Any, now: int) -> None:
        self.store = store
        self.now = now
        #: set by an operation when waiting processes should look at the store again
        self.wake = False
        #: set when an attempt some worker runs was asked to cancel or lost its lease or workflow
        self.wake_acts = False
        #: the earliest time (ns) at which something this transaction queued or scheduled (a
        #: task, a timer, a deadline) wants a worker's attention, or None (see `ready`)
        self.ready_at: int | None = None
        #: what this transaction did that observers of the writer may want to hear of once it is
        #: committed (a workflow closed...), or None: see `note`
        self.notes: list[tuple[Any, ...]] | None = None

    def note(self, entry: tuple[Any, ...], first: bool = False) -> None:
        """Tell the writer's observers of `entry` once this op's writes are committed (see
        `write_batch`'s `notes`); dropped with the op's writes if it is undone or run again.
        With `first`, before the op's other notes."""
        if self.notes is None:
            self.notes = [entry]
        elif first:
            self.notes.insert(0, entry)
        else:
            self.notes.append(entry)

    def ready(self, when: int) -> None:
        """Note that at time `when` a worker should look at the store again (and wake others)."""
        self.wake = True
        if self.ready_at is None or when < self.ready_at:
            self.ready_at = when


class Txn(OpState):
    """A write (or read) transaction as the domain operations see it."""

    __slots__ = ("_txn", "_dbs", "_memo")
    store: Store

    def __init__(self, store: Store, txn: lmdb.Transaction[bytes], now: int,
                 memo: dict[tuple[str, bytes], tuple[bytes, Any]] | None = None) -> None:
        self._init_state(store, now)
        self._txn = txn
        self._dbs = store._dbs
        self._memo = memo

    def get(self, db: str, key: bytes) -> bytes | None:
        """The value under `key`, or None."""
        return self._txn.get(key, db=self._dbs[db])

    def get_rec(self, db: str, key: bytes) -> Any:
        """The decoded record under `key`, or None.

        In a write transaction, a workflow or activity record that this process wrote last
        (`put_rec`) is not decoded again: the record it wrote is handed out, once, if the bytes
        stored are still exactly the bytes it wrote (whoever wrote since, an aborted nested
        transaction, another process). The caller owns what it gets, as it owns a decoded one."""
        raw = self._txn.get(key, db=self._dbs[db])
        if raw is None:
            return None
        memo = self._memo
        if memo is not None:
            kept = memo.pop((db, key), None)
            if kept is not None and kept[0] == raw:
                if _MEMO_CHECK:
                    _check_memo(db, key, raw, kept[1])
                return kept[1]
        return _codec.decode(raw, what=f"{db} record")

    def put(self, db: str, key: bytes, value: bytes) -> None:
        """Store `value` under `key`."""
        self._txn.put(key, value, db=self._dbs[db])

    def put_rec(self, db: str, key: bytes, rec: Any) -> None:
        """Store a record (CBOR) under `key`. A workflow or activity record written in a write
        transaction is kept for the next `get_rec` of it: the caller must not change `rec` after
        this (but may write it again)."""
        raw = _codec.encode(rec)
        self._txn.put(key, raw, db=self._dbs[db])
        memo = self._memo
        if memo is not None and db in _MEMO_DBS:
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[(db, key)] = (raw, rec)

    def delete(self, db: str, key: bytes) -> None:
        """Remove `key` (nothing if it is absent)."""
        self._txn.delete(key, db=self._dbs[db])

    def scan(self, db: str, prefix: bytes, start: bytes | None = None, *,
             skip_locked: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with `prefix`, in key order, from `start` (default: `prefix`).
        (`skip_locked` is for backends with concurrent writers: one writer at a time here.)"""
        cur = self._txn.cursor(db=self._dbs[db])
        if not cur.set_range(start if start is not None else prefix):
            return
        for key, value in cur:
            if not key.startswith(prefix):
                return
            yield key, value

    def scan_back(self, db: str, prefix: bytes, before: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with `prefix`, in reverse key order: from the last one, or
        from the last one below `before` (exclusive)."""
        cur = self._txn.cursor(db=self._dbs[db])
        end = _past(prefix)
        if before is not None and (end is None or before < end):
            end = before
        if end is None or not cur.set_range(end):
            found = cur.last()
        else:
            found = cur.prev()
        if not found:
            return
        for key, value in cur.iterprev():
            if not key.startswith(prefix):
                return
            yield key, value

    def count_prefix(self, db: str, prefix: bytes) -> int:
        """Number of keys that start with `prefix` (the keys alone are read)."""
        cur = self._txn.cursor(db=self._dbs[db])
        if not cur.set_range(prefix):
            return 0
        n = 0
        for key in cur.iternext(keys=True, values=False):
            if not key.startswith(prefix):
                break
            n += 1
        return n

    def first(self, db: str, prefix: bytes) -> tuple[bytes, bytes] | None:
        """The first item whose key starts with `prefix`, or None."""
        for item in self.scan(db, prefix):
            return item
        return None

    def count(self, db: str) -> int:
        """Number of entries in a database."""
        return int(self._txn.stat(self._dbs[db])["entries"])

    def next_id(self, name: bytes) -> int:
        """The next number of the counter `name` (kept in "meta"; dense here, one writer at a time)."""
        raw = self._txn.get(name, db=self._dbs["meta"])
        n = (unpack_u64(raw) if raw else 0) + 1
        self._txn.put(name, u64(n), db=self._dbs["meta"])
        return n


def _past(prefix: bytes) -> bytes | None:
    """The smallest key above every key that starts with `prefix` (None: there is none)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class _Outcome:
    """What the ops of a batch gave: their results, and what their transactions ask of others;
    or, for a batch dropped at its first failure, that failure (`failed`, the only result)."""

    __slots__ = ("results", "wake", "wake_acts", "ready_at", "failed", "notes")

    def __init__(self, failed: Exception | None = None) -> None:
        self.results: list[Any] = [] if failed is None else [failed]
        self.wake = self.wake_acts = False
        self.ready_at: int | None = None
        self.failed = failed is not None
        self.notes: list[tuple[Any, ...]] | None = None

    def add(self, result: Any, t: Txn) -> None:
        self.results.append(result)
        if t.notes is not None:
            if self.notes is None:
                self.notes = t.notes
            else:
                self.notes.extend(t.notes)
        self.wake = self.wake or t.wake
        self.wake_acts = self.wake_acts or t.wake_acts
        if t.ready_at is not None and (self.ready_at is None or t.ready_at < self.ready_at):
            self.ready_at = t.ready_at


class _Slot:
    """One op queued for group commit, and where its result goes."""

    __slots__ = ("fn", "event", "result", "lead")

    def __init__(self, fn: Callable[[Txn], Any]) -> None:
        self.fn = fn
        self.event = threading.Event()
        self.result: Any = None
        self.lead = False  # set when the previous leader hands the next batch to this thread

    def outcome(self) -> Any:
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


class GroupCommit:
    """Group commit of single ops, shared by the stores: `write(fn)` from several threads at
    once commits their ops together. The first thread to arrive leads: it commits what the
    others queued meanwhile, in order, with the store's `write_batch`, then hands the next batch
    to the first thread still waiting. One op's error is raised to its caller only, and undoes
    its writes only (as `write_batch` promises)."""

    _gc_lock: threading.Lock
    _gc_pending: list[_Slot]
    _gc_leading: bool
    write_batch: Callable[[list[Callable[[Any], Any]]], list[Any]]

    def _init_group_commit(self) -> None:
        self._gc_lock = threading.Lock()
        self._gc_pending = []
        self._gc_leading = False

    def write(self, fn: Callable[[Any], T]) -> T:
        """Run one operation in a write transaction and commit it (synced); return its result.

        Operations asked for by several threads at once are committed together (group commit):
        the first thread to arrive commits what the others queued meanwhile, in order; one op's
        error is raised to its caller only, and undoes its writes only.
        """
        slot = _Slot(fn)
        with self._gc_lock:
            self._gc_pending.append(slot)
            lead = not self._gc_leading
            if lead:
                self._gc_leading = True
        if not lead:
            slot.event.wait()
            if not slot.lead:
                return slot.outcome()  # type: ignore[no-any-return]
        self._lead_group_commit()
        return slot.outcome()  # type: ignore[no-any-return]

    def _lead_group_commit(self) -> None:
        """Commit the queued ops in batches until none is left; then step down."""
        while True:
            with self._gc_lock:
                batch, self._gc_pending = self._gc_pending, []
                if not batch:
                    self._gc_leading = False
                    return
            try:
                results: list[Any] = self.write_batch([s.fn for s in batch])
            except BaseException as exc:  # the whole batch failed: each caller gets the error
                results = [exc] * len(batch)
            for s, result in zip(batch, results):
                s.result = result
                s.event.set()
            with self._gc_lock:
                if self._gc_pending:  # hand over to a waiting thread: it commits the rest
                    nxt = self._gc_pending[0]
                    nxt.lead = True
                    nxt.event.set()
                    return
                self._gc_leading = False
                return


# One Environment per data directory per process (LMDB forbids a second open in one process).
_open_stores: dict[str, Store] = {}
_open_lock = threading.Lock()


class Store(GroupCommit):
    """An open data directory. Use `Store.open`; one instance per directory per process."""

    def __init__(self, path: str, env: lmdb.Environment, clock: Clock) -> None:
        self.path = path
        self.env = env
        self.clock = clock
        self._dbs = {name: env.open_db(name.encode()) for name in _DBS}
        self._write_lock = threading.Lock()
        # group commit across threads: writers queue their op; one of them (the leader) commits
        # everything queued in one transaction while the others wait for their result
        self._init_group_commit()
        # records written last by this process's write transactions (see Txn.get_rec); only used
        # under the write lock, so by one transaction at a time
        self._memo: dict[tuple[str, bytes], tuple[bytes, Any]] = {}
        #: write transactions committed by this process (to see group commit at work)
        self.commits = 0
        self.notifier = _wake.Notifier(os.path.join(path, "wake"))
        self.pid = os.getpid()
        #: helpers of higher layers kept once per store and process (the client's close watcher)
        self.shared: dict[str, Any] = {}
        self.shared_lock = threading.Lock()
        self._on_close: list[Callable[[], None]] = []
        #: called with the seconds each commit of this process took (LMDB's commit: the write
        #: and fsync), by the committing thread; empty unless a worker's metrics are on
        self.commit_observers: list[Callable[[float], None]] = []

    def on_close(self, fn: Callable[[], None]) -> None:
        """Have `fn` called when the store is closed, before its environment is."""
        self._on_close.append(fn)

    def listener(self) -> _wake.Listener:
        """A new listener of the wake-ups of this data directory (a socket in ``<dir>/wake/``)."""
        return _wake.Listener(os.path.join(self.path, "wake"), self.notifier)

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True, clock: Clock | None = None) -> Store:
        """Open (and with `create`, make) the store in directory `path`.

        The store carries no payload codec: it is shared by everything in the process that opens
        the directory, and each client and worker keeps its own (`Converter`)."""
        raw = os.fspath(path)
        if ("\x00" if isinstance(raw, str) else b"\x00") in raw:
            raise NotAStore(f"{raw!r} is not a valid directory name: it holds a NUL character")
        real = os.path.realpath(raw)
        with _open_lock:
            store = _open_stores.get(real)
            if store is not None and store.pid == os.getpid():
                return store
            store = cls._open_new(real, create, clock or Clock())
            _open_stores[real] = store
            return store

    @classmethod
    def _open_new(cls, path: str, create: bool, clock: Clock) -> Store:
        data_file = os.path.join(path, "data.mdb")
        if os.path.lexists(path) and not os.path.isdir(path):
            raise NotAStore(f"{path} is not a directory, so it cannot be a durable store")
        if not os.path.exists(path):
            if not create:
                raise NotAStore(f"no durable store at {path} (start a worker or a workflow to create one)")
            try:
                os.makedirs(path, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store directory {path}: {exc.strerror}") from None
        _check_permissions(path)
        if not os.path.exists(data_file):
            entries = [e for e in os.listdir(path) if e not in ("wake", "lock.mdb")]
            if entries:
                raise NotAStore(
                    f"{path} is not a durable store: it holds other files ({', '.join(sorted(entries)[:3])})"
                )
            if not create:
                raise NotAStore(f"no durable store at {path} (start a worker or a workflow to create one)")
        lock_file = os.path.join(path, "lock.mdb")
        had_data, had_lock = os.path.exists(data_file), os.path.exists(lock_file)
        try:
            env = lmdb.open(  # as bytes: a path may hold undecodable bytes (lone surrogates here)
                os.fsencode(path), map_size=INITIAL_MAP_BYTES, max_dbs=len(_DBS) + 2, subdir=True, sync=True,
                metasync=True, mode=0o600, lock=True, max_readers=512, lib_version=0,
            )
        except lmdb.InvalidError:
            _forget_lock(lock_file, had_lock)
            raise NotAStore(f"{path} is not a durable store: data.mdb is not an LMDB file") from None
        except lmdb.Error as exc:
            raise StoreError(f"cannot open the store at {path}: {exc}") from None
        if had_data and _foreign(env):  # refuse before anything is written to it
            env.close()
            _forget_lock(lock_file, had_lock)
            raise NotAStore(f"{path} is not a durable store: data.mdb is another program's LMDB database")
        for name in ("data.mdb", "lock.mdb"):
            file = os.path.join(path, name)
            if os.path.exists(file):
                try:
                    os.chmod(file, 0o600)
                except PermissionError:
                    pass
        env.reader_check()  # readers left behind by killed processes pin old pages
        store = None
        try:
            version = _check_format(env, path)  # before this version's databases are created in it
            store = cls(path, env, clock)
            if version < FORMAT_VERSION:
                _migrate(store)
        except BaseException:  # a store we refuse must not keep its environment open
            if store is not None:
                store.notifier.close()
            env.close()
            raise
        os.makedirs(os.path.join(path, "wake"), mode=0o700, exist_ok=True)
        return store

    # --- transactions ----------------------------------------------------------------------

    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run `fn` in a read-only transaction."""
        with self._begin(write=False) as txn:
            return fn(Txn(self, txn, self.clock.now_ns()))

    def write_batch(self, ops: list[Callable[[Txn], Any]], *, quiet: str | None = None,
                    woke: list[tuple[int | None, bool]] | None = None,
                    notes: list[tuple[Any, ...]] | None = None, serial: bool = False) -> list[Any]:
        """Run `ops` in one write transaction (see `_run_batch`); commit once.

        Returns one entry per op: its result, or the exception it raised (that op's writes are
        undone; the others stand). LMDB errors abort the whole batch: a full map is grown and
        the batch retried; a full disk raises `StoreFullError` and nothing is written.

        After the commit every listener of the data directory is woken if an op asked for it,
        except `quiet` (the caller's own listener): the caller learns through `woke` instead,
        where (the earliest `Txn.ready_at` of the ops, whether attempts some worker runs
        changed) is appended when the batch woke the others. What the committed ops noted
        (`Txn.note`) is appended to `notes`, if given. `serial` changes nothing here: every
        write transaction of LMDB runs alone.
        """
        while True:
            try:
                with self._write_lock:
                    outcome = self._run_batch(ops)
                break
            except lmdb.MapFullError:
                self._grow_map()
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)
            except lmdb.Error as exc:
                if _is_disk_full(exc) or self._short_write_on_full_disk(exc):
                    raise StoreFullError(
                        f"the disk holding {self.path} is full: nothing of this change was written; "
                        "free some space and the store carries on"
                    ) from None
                limit = self._file_size_limit_reached(exc)
                if limit is not None:
                    raise StoreFullError(
                        f"the store at {self.path} reached this process's file size limit (RLIMIT_FSIZE, "
                        f"{limit} bytes): nothing of this change was written; raise the limit and the "
                        "store carries on"
                    ) from None
                raise StoreError(f"store {self.path}: {exc}") from None
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StoreFullError(f"the disk holding {self.path} is full: nothing was written") from None
                raise
        if outcome.wake:
            self.notifier.notify(_wake.RUNNING_ACTIVITIES if outcome.wake_acts else _wake.ANY, skip=quiet)
            if woke is not None:
                woke.append((outcome.ready_at, outcome.wake_acts))
        if notes is not None and outcome.notes:
            notes.extend(outcome.notes)
        return outcome.results

    def _run_batch(self, ops: list[Callable[[Txn], Any]]) -> _Outcome:
        """Run `ops` in one write transaction and commit it: first all in the transaction itself
        (cheaper: LMDB copies every page a nested transaction touches, and each nested one is two
        more calls); if one raises, that transaction is dropped and the batch run again, each op
        in a nested transaction of its own, so that its writes alone are undone. An op may thus
        run twice (as in a batch retried after growing the map): it writes only through `t`."""
        outcome = self._try_batch(ops, nested=False)
        if outcome.failed and len(ops) > 1:
            outcome = self._try_batch(ops, nested=True)
        return outcome

    def _try_batch(self, ops: list[Callable[[Txn], Any]], nested: bool) -> _Outcome:
        """One run of `_run_batch`. Not `nested`, the first op that raises drops the transaction:
        the outcome then holds only its error (`failed`)."""
        outcome = _Outcome()
        txn = self.env.begin(write=True)
        try:
            now = self.clock.now_ns()
            for op in ops:
                child = self.env.begin(write=True, parent=txn) if nested else txn
                t = Txn(self, child, now, self._memo)
                try:
                    result = op(t)
                except Exception as exc:  # noqa: BLE001 - one op's failure must not undo the others
                    if isinstance(exc, lmdb.Error):
                        raise  # map full, disk full: the whole batch is retried or refused
                    if not nested:
                        txn.abort()
                        return _Outcome(failed=exc)
                    child.abort()
                    outcome.results.append(exc)
                    continue
                if nested:
                    child.commit()
                outcome.add(result, t)
            self._commit(txn)
        except BaseException:
            txn.abort()  # with its nested transactions
            raise
        return outcome

    def _commit(self, txn: lmdb.Transaction) -> None:
        if _crashpoint.ENABLED:  # fault tests only: die with the batch run but not committed
            _crashpoint.hit("batch-before-commit")
        if self.commit_observers:
            t0 = time.perf_counter()
            txn.commit()
            took = time.perf_counter() - t0
            for observe in self.commit_observers:
                observe(took)
        else:
            txn.commit()
        self.commits += 1

    def _short_write_on_full_disk(self, exc: lmdb.Error) -> bool:
        """LMDB reports a write cut short (the disk filled up in the middle of it) as EIO, not
        ENOSPC: it is a full disk if the filesystem has (almost) no space left now."""
        if "Input/output error" not in str(exc):
            return False
        try:
            st = os.statvfs(self.path)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < _FULL_DISK_BYTES

    def _file_size_limit_reached(self, exc: lmdb.Error) -> int | None:
        """The process's file size limit if a write failed because data.mdb reached it (LMDB
        reports EFBIG, or EIO for a write cut short at the limit), else None."""
        text = str(exc)
        if "Input/output error" not in text and "File too large" not in text:
            return None
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
            size = os.path.getsize(os.path.join(self.path, "data.mdb"))
        except (ImportError, OSError, ValueError):
            return None
        if soft == resource.RLIM_INFINITY or soft < 0 or size + _FULL_DISK_BYTES < soft:
            return None
        return int(soft)

    def _begin(self, write: bool) -> lmdb.Transaction[bytes]:
        while True:
            try:
                return self.env.begin(write=write)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)

    def _grow_map(self) -> None:
        size = self.env.info()["map_size"]
        if size >= MAX_MAP_BYTES:
            raise StoreFullError(f"the store at {self.path} reached its largest map size ({size} bytes)")
        self.env.set_mapsize(min(size * 2, MAX_MAP_BYTES))

    def close(self) -> None:
        """Close the environment (tests and tools; a process normally keeps it open)."""
        with _open_lock:
            if _open_stores.get(self.path) is self:
                del _open_stores[self.path]
        for fn in self._on_close:
            fn()
        self.notifier.close()
        self.env.close()


def _check_memo(db: str, key: bytes, raw: bytes, rec: Any) -> None:
    """Test suite only: end the process, loudly, if a record kept by `put_rec` was changed after
    it was written (an exception could be taken for one op's failure and go unnoticed)."""
    fresh = _codec.decode(raw, what=f"{db} record")
    if fresh != rec:
        os.write(2, f"durable: {db} record {key!r} was changed after put_rec: {rec!r} != {fresh!r}\n".encode())
        os._exit(70)


def _check_format(env: lmdb.Environment, path: str) -> int:
    """Mark a new store with this version's format; refuse one of a newer (or unknown) format.
    Return the store's format (this version's for a new store).

    Only the "meta" database is opened: a newer store is refused before anything is created in it.
    """
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        raw = txn.get(b"format", db=meta)
        if raw is None:
            txn.put(b"format", u64(FORMAT_VERSION), db=meta)
            return FORMAT_VERSION
    if len(raw) != 8:
        raise StoreFormatError(f"{path}: the store's format marker is corrupt")
    version = unpack_u64(raw)
    if version > FORMAT_VERSION:
        raise StoreFormatError(
            f"{path} was written by a newer durable (format {version}; this version reads "
            f"format {FORMAT_VERSION}): upgrade durable to use it"
        )
    return version


def _migrate(store: Store) -> None:
    """Bring a store of an older format to this version's layout, in one write transaction (a
    crash leaves it as it was; a process that opens it meanwhile finds it migrated or not at all).
    The layout is the domain's: `_ops.migrate` rewrites the keys."""
    from . import _ops  # here: _ops is built on this module

    def op(t: Txn) -> None:
        version = unpack_u64(t.get("meta", b"format") or u64(FORMAT_VERSION))
        if version < FORMAT_VERSION:  # not done by another process since we looked
            _ops.migrate(t, version)
            t.put("meta", b"format", u64(FORMAT_VERSION))

    [result] = store.write_batch([op])
    if isinstance(result, BaseException):
        raise result


def _foreign(env: lmdb.Environment) -> bool:
    """Whether an existing environment holds data but no "meta" database: another program's.

    (An empty one is a store whose creation was interrupted; a newer store has "meta" and is
    refused by its format marker instead.)"""
    main = env.open_db()
    with env.begin() as txn:  # both looks in one snapshot: a store being created elsewhere is not foreign
        return txn.stat(main)["entries"] > 0 and txn.get(b"meta") is None


def _forget_lock(lock_file: str, existed: bool) -> None:
    """Remove the lock file that opening a directory we then refused has left behind."""
    if not existed:
        with contextlib.suppress(OSError):
            os.remove(lock_file)


def _check_permissions(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise StorePermissionError(f"cannot access {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StorePermissionError(
            f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run 'chmod 700 {path}' to use it as a store"
        )
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise StorePermissionError(f"{path} belongs to another user (uid {st.st_uid})")


def _is_disk_full(exc: lmdb.Error) -> bool:
    text = str(exc)
    return "No space left" in text or "ENOSPC" in text or "Disk quota" in text
