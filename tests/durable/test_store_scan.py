"""`Txn.scan` and `Txn.scan_back` on a real LMDB store: the items under a prefix in key order and
in reverse, from a bound, at the edges of the key space (prefixes ending in 0xff bytes, the empty
prefix, keys equal to the prefix, bounds outside the prefix)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable._store import Store

KEYS = [b"a", b"a\x00", b"a\x00\xff", b"a\x01", b"a\xff", b"a\xff\x00", b"a\xff\xff", b"a\xff\xff\xff",
        b"b", b"b\x00", b"\xff", b"\xff\xff", b"\xff\xff\x01"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store.open(tmp_path_factory.mktemp("scan") / "s")
    store.write(lambda t: [t.put("types", k, k) for k in KEYS] and None)
    yield store
    store.close()  # kept for the whole module: the per-test cleanup does not see it


def expected(prefix: bytes, before: bytes | None) -> list[bytes]:
    return [k for k in sorted(KEYS, reverse=True) if k.startswith(prefix) and (before is None or k < before)]


@pytest.mark.parametrize("prefix", [b"", b"a", b"a\x00", b"a\xff", b"a\xff\xff", b"b", b"\xff", b"\xff\xff", b"c", b"\x00"])
def test_scan_back_gives_the_prefix_newest_first(store: Store, prefix: bytes) -> None:
    got = store.read(lambda t: [k for k, _ in t.scan_back("types", prefix)])
    assert got == expected(prefix, None)
    assert store.read(lambda t: [k for k, _ in t.scan("types", prefix)]) == expected(prefix, None)[::-1]


@given(prefix=st.sampled_from([b"", b"a", b"a\xff", b"\xff", b"b"]),
       before=st.sampled_from(KEYS) | st.binary(max_size=4))
@settings(max_examples=300, deadline=None)
def test_scan_back_from_a_bound(store: Store, prefix: bytes, before: bytes) -> None:
    got = store.read(lambda t: [k for k, _ in t.scan_back("types", prefix, before)])
    assert got == expected(prefix, before)


def test_scan_back_values_and_an_empty_database(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    assert store.read(lambda t: list(t.scan_back("types", b""))) == []
    store.write(lambda t: t.put("types", b"k1", b"v1"))
    store.write(lambda t: t.put("types", b"k2", b"v2"))
    assert store.read(lambda t: list(t.scan_back("types", b"k"))) == [(b"k2", b"v2"), (b"k1", b"v1")]
    assert store.read(lambda t: t.count_prefix("types", b"k")) == 2
    assert store.read(lambda t: t.count_prefix("types", b"k2")) == 1
    assert store.read(lambda t: t.count_prefix("types", b"x")) == 0
