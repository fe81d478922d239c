"""PostgreSQL helpers of the test suite: a fresh schema per test (see `tests.conftest.data_dir`)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import psycopg

from durable import _pg


def with_schema(url: str, schema: str) -> str:
    """`url` with its connections' search_path set to `schema` (libpq's ``options``)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return parts._replace(query=urlencode(query)).geturl()


@contextlib.contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    """A URL of a new, empty schema of the database at `base`; the schema is dropped after."""
    schema = f"durable_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = with_schema(base, schema)
    try:
        yield url
    finally:
        for key, store in list(_pg._open_stores.items()):
            if key == url:
                store.close()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            with contextlib.suppress(psycopg.Error):
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


def close_stores() -> None:
    """Close every PostgreSQL store this process opened (its connections and listener thread)."""
    for store in list(_pg._open_stores.values()):
        store.close()


def counter_value(store: object, name: bytes) -> int:
    """The last number counter `name` gave (0 if none): a row of "meta" on LMDB, a sequence on
    PostgreSQL (where numbers skipped by re-run transactions count too, and, for a counter taken
    in blocks, those this process took but has not given yet do not)."""
    if isinstance(store, _pg.PgStore):
        seq = _pg._SEQUENCES[name]
        with psycopg.connect(store.url) as conn:
            last, called = conn.execute(f"SELECT last_value, is_called FROM {seq}").fetchone()  # type: ignore[misc]
        unused = len(store._blocks.get(name) or []) if name in _pg._BLOCKED else 0
        return (int(last) if called else 0) - unused
    from durable._store import unpack_u64

    raw = store.read(lambda t: t.get("meta", name))  # type: ignore[attr-defined]
    return 0 if raw is None else unpack_u64(raw)
