"""The PostgreSQL store sends a transaction's writes in one global order (tables by name, keys in
order), so that two transactions writing the same rows never deadlock: PostgreSQL detects a
deadlock only after `deadlock_timeout` (one second by default), and a worker whose write
transaction was caught in one stalled that long (measured with the bench's signal_roundtrip:
all 50 workflows in flight waited ~1 s in most runs)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from durable._backend import open_store

pytestmark = pytest.mark.postgres_only


class Recording:
    """A real cursor that also notes the statements sent through it: (verb, table, keys)."""

    def __init__(self, cur: Any) -> None:
        self.cur = cur
        self.sent: list[tuple[str, str, list[bytes]]] = []

    def execute(self, sql: str, params: Any = None) -> Any:
        verb, table = re.search(r"(DELETE FROM|INSERT INTO) durable_(\w+)", sql).groups()  # type: ignore[union-attr]
        self.sent.append((verb.split()[0], table, [bytes(k) for k in params[0]]))
        return self.cur.execute(sql, params)


def test_writes_are_sent_tables_by_name_and_keys_in_order(data_dir: str) -> None:
    from durable._pg import PgStore, _Batch

    store = open_store(data_dir)
    assert isinstance(store, PgStore)
    store.write(lambda t: [t.put("wf", k, b"old") for k in (b"w3", b"w4")])
    conn = store._take()
    try:
        batch = _Batch()
        # written in this order by the ops of one batch: "wf" first, keys out of order
        batch.writes = {
            "wf": {b"w2": b"new", b"w4": None, b"w1": b"new", b"w3": None},
            "hist": {b"h9": b"new", b"h1": b"new"},
            "due": {b"d5": None, b"d2": b"new"},
        }
        rec = Recording(conn.cursor())
        batch.flush(rec)
        conn.commit()
    finally:
        store._give_back(conn)
    assert rec.sent == [
        ("DELETE", "due", [b"d5"]), ("INSERT", "due", [b"d2"]),
        ("INSERT", "hist", [b"h1", b"h9"]),
        ("DELETE", "wf", [b"w3", b"w4"]), ("INSERT", "wf", [b"w1", b"w2"]),
    ]
    assert store.read(lambda t: (list(t.scan("wf", b"")), list(t.scan("hist", b"")), list(t.scan("due", b"")))) == (
        [(b"w1", b"new"), (b"w2", b"new")], [(b"h1", b"new"), (b"h9", b"new")], [(b"d2", b"new")])
