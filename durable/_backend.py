"""The seam between the engine and a store backend, and the choice of a backend by path or URL.

The domain operations (`_ops`) are written once, over the transaction described by `Txn`: ordered
key-value tables by name. A backend gives such transactions (`Backend.read`, `Backend.write`,
`Backend.write_batch`) and wake-ups between the processes that share the store
(`Backend.listener`, `Backend.notify`). Two backends implement it:

- `_store.Store`: LMDB in a local directory (``./dir``, ``lmdb:///abs/dir``); wake-ups are Unix
  datagram sockets in ``<dir>/wake/`` (`_wake`).
- `_pg.PgStore`: PostgreSQL (``postgresql://user@host/db``); one table per named table, each
  transaction SERIALIZABLE; wake-ups by LISTEN/NOTIFY.

What every backend promises (the domain operations count on it, and the same tests run on both):

- Isolation: every op runs as if it were alone, serializably. An op may be run more than once (a
  backend re-runs it after a conflict, or after growing its map): it must change nothing outside
  its transaction (it writes only through `t`, and anything it collects for its caller it makes
  afresh on each run).
- Atomicity and durability: `write_batch` commits all the ops that did not raise, or nothing;
  once it returns, what it committed survives a crash of the process (and, for PostgreSQL, of the
  server, as far as the server's own durability settings go: see docs/postgres.md).
- Ordering: `scan` yields keys in increasing byte order, `scan_back` in decreasing order; a scan
  sees the transaction's own writes.
- Time: `Txn.now` is the store's clock (`Clock`) read once per transaction, on the host that runs
  it: leases compare times written by different hosts, whose clocks must agree to well within a
  lease.

Nothing outside `_ops`, the backends and their tests uses the key-value API directly.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from ._errors import StoreError

if TYPE_CHECKING:
    from ._store import Clock

T = TypeVar("T")

#: The environment variable that names the store (a directory or a URL) when none is given.
STORE_ENV = "DURABLE_STORE"

#: URL schemes of the PostgreSQL backend.
POSTGRES_SCHEMES = ("postgresql", "postgres")


class Txn(Protocol):
    """A transaction as the domain operations see it: ordered tables of bytes keys and values."""

    #: the store's clock when the transaction began (ns since the epoch)
    now: int
    #: set by an op when processes waiting on the store should look at it again
    wake: bool
    #: set when an attempt some worker runs was asked to cancel, or lost its lease or workflow
    wake_acts: bool
    #: the earliest time a worker should look again at what this transaction queued, or None
    ready_at: int | None

    def ready(self, when: int) -> None:
        """Note that at time `when` a worker should look at the store again (and wake others)."""

    def note(self, entry: tuple[Any, ...], first: bool = False) -> None:
        """Tell the writer's observers of `entry` once this op's writes are committed
        (`Backend.write_batch`'s `notes`); dropped with them if the op is undone or run again.
        With `first`, before the op's other notes."""

    def get(self, db: str, key: bytes) -> bytes | None:
        """The value under `key` in table `db`, or None."""

    def get_rec(self, db: str, key: bytes) -> Any:
        """The decoded (CBOR) record under `key`, or None. The caller owns what it gets."""

    def put(self, db: str, key: bytes, value: bytes) -> None:
        """Store `value` under `key`."""

    def put_rec(self, db: str, key: bytes, rec: Any) -> None:
        """Store a record (CBOR) under `key`; the caller must not change `rec` afterwards."""

    def delete(self, db: str, key: bytes) -> None:
        """Remove `key` (nothing if it is absent). It does not say whether the key existed, so
        that a backend can delete without reading first (PostgreSQL: one round trip less)."""

    def scan(self, db: str, prefix: bytes, start: bytes | None = None, *,
             skip_locked: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with `prefix`, in key order, from `start` (default: `prefix`).

        `skip_locked` marks a claim's scan of a task queue: a backend with concurrent writers
        (PostgreSQL) skips the items another transaction is taking meanwhile, so that two
        claimers take different tasks; LMDB, with one writer at a time, ignores it."""

    def scan_back(self, db: str, prefix: bytes, before: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with `prefix`, in reverse key order: from the last one, or from
        the last one below `before` (exclusive)."""

    def count_prefix(self, db: str, prefix: bytes) -> int:
        """Number of keys that start with `prefix`."""

    def first(self, db: str, prefix: bytes) -> tuple[bytes, bytes] | None:
        """The first item whose key starts with `prefix`, or None."""

    def count(self, db: str) -> int:
        """Number of entries in table `db`."""

    def next_id(self, name: bytes) -> int:
        """A new number of the counter `name`, unequal to any it gave before. Numbers may be
        skipped (PostgreSQL takes them from a sequence, outside the transaction, so that
        concurrent writers do not conflict on one counter) and, for lease tokens and task
        tie-breakers, may come in blocks per process (so they increase within a process only):
        callers need them unique, never dense."""


class Listener(Protocol):
    """Receives a store's wake-ups. `sock` becomes readable when one is pending."""

    #: this listener's name, for `Backend.write_batch(quiet=...)`
    path: str

    @property
    def sock(self) -> Any:
        """A socket object readable while wake-ups are pending (for `trio.lowlevel.wait_readable`)."""

    def drain(self) -> bytes:
        """Consume pending wake-ups; return what they said (`_wake.ANY`, `_wake.RUNNING_ACTIVITIES`)."""

    def wait(self, timeout: float) -> None:
        """Block until a wake-up arrives or `timeout` seconds pass."""

    def readable(self, timeout: float) -> bool:
        """Whether a wake-up is waiting, after blocking up to `timeout` seconds for one."""

    def poke(self) -> None:
        """Wake this listener (from another thread of this process)."""

    def close(self) -> None:
        """Stop listening."""


class Backend(Protocol):
    """An open store, shared by everything in a process that opens the same path or URL."""

    #: where the store is: its directory, or its URL without a password
    path: str
    clock: Clock
    #: helpers of higher layers kept once per store and process (the client's close watcher)
    shared: dict[str, Any]
    shared_lock: threading.Lock
    #: called with the seconds each commit took (a worker's metrics), by the committing thread
    commit_observers: list[Callable[[float], None]]

    def read(self, fn: Callable[[Any], T]) -> T:
        """Run `fn` in a read-only transaction (a consistent snapshot)."""

    def write(self, fn: Callable[[Any], T]) -> T:
        """Run one op in a write transaction and commit it; return its result (or raise its error).
        Ops asked for by several threads at once may be committed together (group commit)."""

    def write_batch(self, ops: list[Callable[[Any], Any]], *, quiet: str | None = None,
                    woke: list[tuple[int | None, bool]] | None = None,
                    notes: list[tuple[Any, ...]] | None = None, serial: bool = False) -> list[Any]:
        """Run `ops` in one write transaction; commit once. One entry per op: its result, or the
        exception it raised (that op's writes are undone, the others' stand). After the commit,
        listeners are woken if an op asked for it, except `quiet` (the caller's own listener),
        which learns through `woke` instead; what the committed ops noted (`Txn.note`) is
        appended to `notes`, if given. Batches given `serial` (the workers') run one at a time,
        whichever process runs them; LMDB runs every write so."""

    def listener(self) -> Listener:
        """A new listener of this store's wake-ups (bound before the caller's first look)."""

    def on_close(self, fn: Callable[[], None]) -> None:
        """Have `fn` called when the store is closed."""

    def close(self) -> None:
        """Close the store (tests and tools; a process normally keeps it open)."""


def is_url(target: str) -> bool:
    """Whether `target` names a store by URL (``scheme://...``) rather than by directory."""
    return "://" in target


def open_store(target: str | os.PathLike[str], *, create: bool = True, clock: Clock | None = None) -> Any:
    """Open the store named by `target`: a directory (LMDB), ``lmdb:///abs/dir``, or
    ``postgresql://user@host:port/db``. Raises `StoreError` (with a message for a person) for an
    unknown scheme, a server that cannot be reached, or a missing driver."""
    raw = os.fspath(target)
    text = raw if isinstance(raw, str) else os.fsdecode(raw)
    if not is_url(text):
        from ._store import Store

        return Store.open(raw, create=create, clock=clock)
    scheme = text.split("://", 1)[0].lower()
    if scheme == "lmdb":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"an lmdb URL names a local directory (lmdb:///abs/dir), not a host: {text!r}")
        if not parts.path:
            raise StoreError(f"the lmdb URL {text!r} names no directory (lmdb:///abs/dir)")
        from ._store import Store

        return Store.open(parts.path, create=create, clock=clock)
    if scheme in POSTGRES_SCHEMES:
        from . import _pg

        return _pg.PgStore.open(text, create=create, clock=clock)
    raise StoreError(
        f"unknown store URL scheme {scheme!r} in {redact(text)!r}: use a directory, lmdb:///abs/dir "
        "or postgresql://user@host/db"
    )


def redact(url: str) -> str:
    """`url` without its password (to show it in messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
