"""The codec's short cuts must agree exactly with its careful paths.

- `decode` takes short plain bytes through `cbor2.loads` when they round-trip; for any bytes it
  must return what `decode_carefully` returns, or refuse what it refuses.
- `Converter.to_payload` skips its decode check for short plain encodings: any value it accepts
  must decode, and any it refuses must be one the check refuses.
- `decode_run` and `count_values` (used to decode exported histories a few KiB at a time) must
  give the values and counts that `decode` and `scan` give.
"""

from __future__ import annotations

import datetime
from typing import Any

import cbor2
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from durable import _codec
from durable._errors import DecodeError, PayloadError

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8) | st.binary(max_size=8)
    | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3) | st.integers(-5, 5), inner, max_size=4),
    max_leaves=8,
)


tagged = st.recursive(
    st.none() | st.integers(-(2**80), 2**80) | st.text(max_size=4) | st.floats(allow_nan=False)
    | st.datetimes(timezones=st.just(datetime.timezone.utc)) | st.uuids()
    | st.frozensets(st.integers(0, 9), max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    | st.builds(cbor2.CBORTag, st.integers(2000, 3000), inner),
    max_leaves=8,
)


def outcome(fn: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(data)
    except DecodeError:
        return "refused", None


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types (so that 1, 1.0 and True are told apart), NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (a != a and b != b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, cbor2.CBORTag):  # a tag may hold a NaN too: b'\xc6\xf9|\x01' is tag 6 of NaN
        return a.tag == b.tag and same(a.value, b.value)
    return bool(a == b)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=70))
@example(b"\xc6\xf9|\x01")  # a tag holding a NaN: equal decodes, once reported as different
def test_decode_of_any_short_bytes_agrees_with_the_careful_decoder(data: bytes) -> None:
    quick, careful = outcome(_codec.decode, data), outcome(_codec.decode_carefully, data)
    assert quick[0] == careful[0] and same(quick[1], careful[1]), (data, quick, careful)


@settings(max_examples=1500, deadline=None)
@given(plain, st.binary(max_size=3))
def test_decode_of_written_values_agrees_with_the_careful_decoder(value: Any, tail: bytes) -> None:
    data = cbor2.dumps(value) + tail  # with a tail: bytes after the value are refused both ways
    quick, careful = outcome(_codec.decode, data), outcome(_codec.decode_carefully, data)
    assert quick[0] == careful[0] and same(quick[1], careful[1]), (data, quick, careful)


@settings(max_examples=1000, deadline=None)
@given(plain)
def test_what_to_payload_accepts_decodes_and_what_it_refuses_the_check_refuses(value: Any) -> None:
    converter = _codec.Converter()
    try:
        data = converter.to_payload(value, "value")
    except PayloadError:
        encoded = cbor2.dumps(value)
        assert outcome(_codec.decode_carefully, encoded)[0] == "refused"
        return
    assert outcome(_codec.decode_carefully, data)[0] == "ok"


@settings(max_examples=500, deadline=None)
@given(st.lists(tagged, min_size=1, max_size=30))
def test_decode_run_and_count_values_agree_with_decode_and_scan(values: list[Any]) -> None:
    blobs = [cbor2.dumps(v) for v in values]
    data = b"".join(blobs)
    got = _codec.decode_run(data, 0, len(values))
    pos = 0
    for (value, end), blob in zip(got, blobs):
        assert end == pos + len(blob)
        assert value == _codec.decode_carefully(blob)
        assert _codec.count_values(value) == _codec.scan(blob, check_keys=False)[1]
        pos = end
    assert len(got) == len(values) or pos + len(blobs[len(got)]) - 0 > _codec._SCAN_ABOVE


def _history(events: list[dict[str, Any]]) -> bytes:
    return cbor2.dumps(events)


def test_an_export_with_too_many_values_is_refused_however_small_its_events(monkeypatch: Any) -> None:
    from durable import _replay

    monkeypatch.setattr(_replay, "MAX_EXPORT_ITEMS", 10_000)
    start = {"k": "WorkflowStarted", "t": 1, "type": "w", "in": cbor2.dumps([]), "seed": 1, "id": "x", "queue": "q"}
    crowded = [start] + [{"k": "TaskCompleted", "t": 2, "pad": [0] * 100} for _ in range(200)]  # ~20,000 values
    with pytest.raises(DecodeError, match="MAX_EXPORT_ITEMS"):
        _replay.decode_history(_history(crowded))
    roomy = [start] + [{"k": "TaskCompleted", "t": 2, "pad": b"\x00" * 100} for _ in range(200)]  # as long, few values
    assert len(_history(roomy)) > 10_000 and len(_replay.decode_history(_history(roomy))) == 201


# --- read_history: the events of a few KiB through one decoder --------------------------------

_EVENT = {"k": "ActivityCompleted", "t": 5, "seq": 1, "out": b"\x01", "attempt": 1}
_good = st.builds(lambda seq, out: cbor2.dumps(dict(_EVENT, seq=seq, out=out)), st.integers(0, 2**40),
                  st.binary(max_size=3000))
_bad = st.sampled_from([
    b"\xff", b"\x81", cbor2.dumps(_EVENT)[:-1], cbor2.dumps(_EVENT) + b"\x00",
    cbor2.dumps(_EVENT) + cbor2.dumps(_EVENT), cbor2.dumps(dict(_EVENT, seq="one")),
    cbor2.dumps([1, 2]), cbor2.dumps(cbor2.CBORTag(28, _EVENT)),
]) | st.binary(max_size=40)


def _read_history_alone(raws: list[bytes]) -> list[Any]:
    """What read_history gives, decoding each event on its own (as it did before batching)."""
    from durable import _events as ev

    return [ev.check_event(_codec.decode(raw, what="event"), f"run 1 event {i}") for i, raw in enumerate(raws)]


@settings(max_examples=300, deadline=None)
@given(st.lists(_good, max_size=12), st.lists(st.tuples(st.integers(0, 12), _bad), max_size=2))
def test_read_history_gives_what_decoding_each_event_alone_gives(tmp_path_factory: Any, good: list[bytes],
                                                                  bad: list[tuple[int, bytes]]) -> None:
    from durable import _ops
    from durable._store import Store, u64x2

    raws = list(good)
    for at, raw in bad:
        raws.insert(min(at, len(raws)), raw)
    store = Store.open(tmp_path_factory.mktemp("s"))
    store.write(lambda t: [t.put("hist", u64x2(1, i), raw) for i, raw in enumerate(raws)])
    try:
        want: Any = _read_history_alone(raws)
    except DecodeError as exc:
        want = ("refused", str(exc))
    try:
        got: Any = store.read(lambda t: _ops.read_history(t, 1))
    except DecodeError as exc:
        got = ("refused", str(exc))
    assert got == want
    store.close()
