"""Payloads hold plain data only, and a value that is not names its culprit (issue 14, point 7);
the types the data converter knows are made plain by their own type instead (issue 18).

Accepted, and read back as they were given (types preserved): None, bool, int, float, str, bytes,
list, dict with str or int keys, and timezone-aware datetime. Anything else is refused when it is
written, with a `PayloadError` that names where the value is refused (its path inside the value:
``[1]["items"][3]``), the type found there and what to pass instead. Before, a tuple came back as a
list, a set as a set, a UUID as a UUID, and a Decimal or a date was refused as "not valid CBOR:
semantic tag 4".

The culprit is looked for only once the value is known to be refused, so the hot path pays for a
type check of the value, nothing more (see `bench.instructions` in the commit).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import fractions
import ipaddress
import json
import re
import uuid
from decimal import Decimal
from typing import Any, NamedTuple

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable
from durable._codec import Converter
from tests.conftest import worker_thread
from tests.fault._util import store_snapshot, wait_until
from tests.wfs.codecs import XorCodec


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Size(enum.StrEnum):
    LARGE = "L"


class Point(NamedTuple):
    x: int
    y: int


@dataclasses.dataclass
class Order:
    amount: int


class Name(str):
    pass


class Ratio(float):
    pass


UTC = dt.timezone.utc

#: (a refused value, words the message must hold: the type's name and the advice)
BAD: list[tuple[Any, tuple[str, ...]]] = [
    (dt.datetime(2026, 1, 2, 3, 4), ("naive datetime", "give it a tzinfo")),
    (bytearray(b"ab"), ("bytearray", "pass bytes")),
    (memoryview(b"ab"), ("memoryview", "pass bytes")),
    (fractions.Fraction(1, 3), ("Fraction", "pass")),
    (Name("x"), ("Name", "str subclass", "plain str")),
    (Ratio(0.5), ("Ratio", "float subclass", "plain float")),
    (collections.OrderedDict(a=1), ("OrderedDict", "dict subclass", "plain dict")),
    (collections.defaultdict(list), ("defaultdict", "dict subclass", "plain dict")),
    (range(3), ("range", "pass")),
    (1j, ("complex", "pass")),
    (re.compile("a+"), ("Pattern", "pass")),
    (ipaddress.ip_address("10.0.0.1"), ("IPv4Address", "pass a str")),
    (cbor2.CBORTag(4000, 1), ("CBORTag", "pass")),
    (cbor2.undefined, ("UndefinedType", "pass")),
    (object(), ("object", "pass")),
    (lambda: None, ("function", "pass")),
]

#: (a value the data converter makes plain by its own type, the plain data it becomes): read
#: back as that plain data where nothing is annotated (issue 18; before, each was refused)
CONVERTED: list[tuple[Any, Any]] = [
    (dt.date(2026, 1, 2), "2026-01-02"),
    (dt.time(12, 30), "12:30:00"),
    (dt.timedelta(seconds=90), 90),
    (dt.timedelta(seconds=1.5), 1.5),
    (Decimal("12.30"), "12.30"),
    ({3, 1}, [1, 3]),
    (frozenset({1}), [1]),
    (Color.RED, "red"),
    (Level.HIGH, 3),
    (Size.LARGE, "L"),
    ((1, 2), [1, 2]),
    ((), []),
    (Point(1, 2), {"x": 1, "y": 2}),
    (Order(5), {"amount": 5}),
    (uuid.UUID(int=7), "00000000-0000-0000-0000-000000000007"),
    ({Color.RED: (Order(1),)}, {"red": [{"amount": 1}]}),
]

#: dict keys that are refused (the path is the dict's, the message says "dict key")
BAD_KEYS: list[tuple[Any, str]] = [
    ((1, 2), "tuple"), (True, "bool"), (None, "NoneType"), (1.5, "float"), (b"k", "bytes"),
    (frozenset(), "frozenset"), (Name("k"), "Name"),
]


def path_text(steps: list[Any]) -> str:
    """The path of a value as messages write it: [3] for a list index or an int key, ["key"] for
    a str key (as JSON)."""
    return "".join(f"[{json.dumps(s)}]" if isinstance(s, str) else f"[{s}]" for s in steps)


key = st.text(max_size=6) | st.integers(-(2**40), 2**40)
leaf = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
        | st.text(max_size=8) | st.binary(max_size=8)
        | st.datetimes(timezones=st.builds(dt.timezone, st.integers(-23 * 60, 23 * 60).map(
            lambda m: dt.timedelta(minutes=m)))))
plain = st.recursive(
    leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=4), max_leaves=12,
)


@st.composite
def with_one_bad_leaf(draw: st.DrawFn, bad: Any) -> tuple[Any, list[Any]]:
    """A plain value holding `bad` at a random path, with plain siblings all the way: (value, path)."""
    steps: list[Any] = []
    value = bad
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            before = draw(st.lists(plain, max_size=3))
            after = draw(st.lists(plain, max_size=3))
            value = [*before, value, *after]
            steps.insert(0, len(before))
        else:
            k = draw(key)
            siblings = draw(st.dictionaries(key.filter(lambda x: x != k), plain, max_size=3))
            items = list(siblings.items())
            at = draw(st.integers(0, len(items)))
            value = dict([*items[:at], (k, value), *items[at:]])
            steps.insert(0, k)
    return value, steps


def refusal(value: Any, what: str = "the value") -> str:
    with pytest.raises(durable.PayloadError) as info:
        Converter().to_payload(value, what)
    return str(info.value)


@pytest.mark.parametrize("bad, words", BAD, ids=[type(b).__name__ for b, _ in BAD])
def test_a_refused_value_is_named_with_its_path_its_type_and_what_to_pass(bad: Any, words: tuple[str, ...]) -> None:
    @settings(max_examples=40, deadline=None)
    @given(with_one_bad_leaf(bad))
    def run(case: tuple[Any, list[Any]]) -> None:
        value, steps = case
        for converter in (Converter(), Converter(XorCodec())):
            with pytest.raises(durable.PayloadError) as info:
                converter.to_payload(value, "arguments of activity 'charge'")
            message = str(info.value)
            path = path_text(steps)
            head = "arguments of activity 'charge' cannot be stored: "
            assert message.startswith(head + (f"{path}: " if path else "")), (message, path)
            rest = message[len(head) + (len(path) + 2 if path else 0):]
            for word in words:
                assert word in rest, (word, message)

    run()


@pytest.mark.parametrize("bad_key, type_name", BAD_KEYS, ids=[t for _, t in BAD_KEYS])
def test_a_refused_dict_key_is_named_with_the_path_of_its_dict(bad_key: Any, type_name: str) -> None:
    @settings(max_examples=25, deadline=None)
    @given(with_one_bad_leaf({"ok": 1, bad_key: 2}))
    def run(case: tuple[Any, list[Any]]) -> None:
        value, steps = case
        message = refusal(value, "result of activity 'x'")
        path = path_text(steps)
        assert message.startswith("result of activity 'x' cannot be stored: " + (f"{path}: " if path else "")), message
        assert "dict key" in message and type_name in message and "str or int" in message, message

    run()


def test_the_examples_of_the_issue() -> None:
    assert refusal([{"when": dt.datetime(2026, 1, 2)}], "input of workflow 'x'") == (
        "input of workflow 'x' cannot be stored: [0][\"when\"]: naive datetime (give it a tzinfo, "
        "e.g. datetime.timezone.utc)")
    assert refusal(["c-1", {"items": [1, 2, 3, fractions.Fraction(1, 3)]}], "arguments of activity 'charge'") == (
        "arguments of activity 'charge' cannot be stored: [1][\"items\"][3]: Fraction: pass a str, or its "
        "numerator and denominator in a list")
    # what the converter makes plain on the way is named by the path of its plain form
    assert refusal([(1, {"at": Order(dt.datetime(2026, 1, 2))})], "signal 'add'") == (  # type: ignore[arg-type]
        "signal 'add' cannot be stored: [0][1][\"at\"][\"amount\"]: naive datetime (give it a tzinfo, "
        "e.g. datetime.timezone.utc)")


@pytest.mark.parametrize("value, plain", CONVERTED, ids=[type(v).__name__ for v, _ in CONVERTED])
def test_a_value_of_a_converted_type_is_stored_as_plain_data_by_its_own_type(value: Any, plain: Any) -> None:
    @settings(max_examples=20, deadline=None)
    @given(with_one_bad_leaf(value))
    def run(case: tuple[Any, list[Any]]) -> None:
        held, steps = case
        for converter in (Converter(), Converter(XorCodec())):
            back = converter.from_payload(converter.to_payload(held, "value"))
            for step in steps:
                back = back[step]
            assert same(back, plain), (back, plain)

    run()


def test_long_keys_and_odd_characters_stay_readable_in_the_path() -> None:
    message = refusal({"k" * 100: {"a\nb": fractions.Fraction(1)}})
    assert message.startswith('the value cannot be stored: ["' + "k" * 40 + '..."]["a\\nb"]: Fraction'), message
    assert "\n" not in message


def test_a_value_nested_past_the_depth_limit_or_holding_itself_is_refused_clearly() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(200):
        inner.append([])
        inner = inner[0]
    assert "nested" in refusal(deep)
    looped: list[Any] = [1]
    looped.append(looped)
    assert "cannot be stored" in refusal(looped)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1, 1.0 and True told apart), datetimes with
    the same offset."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) and type(k) is type(kb) for k, kb in zip(a, b))
    if isinstance(a, dt.datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


@settings(max_examples=400, deadline=None)
@given(plain)
def test_every_accepted_value_reads_back_unchanged_with_its_types(value: Any) -> None:
    for converter in (Converter(), Converter(XorCodec())):
        back = converter.from_payload(converter.to_payload(value, "value"))
        assert same(back, value), (value, back)


def test_the_edges_of_what_is_accepted() -> None:
    for value in (2**64 - 1, -(2**64), 2**200, -(2**200), float("inf"), -0.0, True, b"", "", [], {},
                  {1: "int keys", -(2**63): "are kept"}, dt.datetime(2026, 1, 2, tzinfo=UTC),
                  dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=-5)))):
        assert same(Converter().from_payload(Converter().to_payload(value, "v")), value), value
    nan = Converter().from_payload(Converter().to_payload(float("nan"), "v"))
    assert type(nan) is float and nan != nan


# --- through the public API: client, worker, workflow code -------------------------------------------


@durable.activity
def charge(customer: str, order: dict[str, Any]) -> dict[str, Any]:
    return {"customer": customer, "paid": order["total"]}


@durable.activity
def receipt(kind: str) -> Any:
    return {"lines": [{"at": dt.datetime(2026, 1, 2)}]} if kind == "date" else 1j


@durable.workflow
class Shop:
    def __init__(self) -> None:
        self.done = False

    async def run(self, kind: str) -> Any:
        if kind == "bad argument":
            return await charge("c-1", {"items": [1, 2, 3, fractions.Fraction(999, 100)], "total": 1})
        if kind in ("date", "tuple"):
            return await receipt(kind)
        if kind == "bad result":
            return {"total": fractions.Fraction(3, 2)}
        await durable.wait_condition(lambda: self.done)
        return "done"

    @durable.signal
    def finish(self) -> None:
        self.done = True

    @durable.query
    def peek(self, what: str) -> Any:
        return {"id": ipaddress.ip_address("10.0.0.1")} if what == "uuid" else what


def test_the_client_refuses_inputs_signals_and_queries_naming_the_path_and_writes_nothing(data_dir: str) -> None:
    client = durable.Client(data_dir)
    before = store_snapshot(client)
    with pytest.raises(durable.PayloadError, match=r"^input of workflow 'Shop' cannot be stored: \[0\]\[\"when\"\]: "
                                                   r"naive datetime \(give it a tzinfo"):
        client.start(Shop, {"when": dt.datetime(2026, 1, 2)}, id="s")
    assert store_snapshot(client) == before
    handle = client.start("Shop", "wait", id="s", queue="nobody")
    before = store_snapshot(client)
    with pytest.raises(durable.PayloadError, match=r"^signal 'finish' cannot be stored: \[1\]\[1\]: complex: not plain data"):
        handle.signal("finish", 1, (2, 3j))
    with pytest.raises(durable.PayloadError, match=r"^query 'peek' cannot be stored: \[0\]\[\"x\"\]\[0\]: Fraction: pass"):
        handle.query("peek", {"x": {fractions.Fraction(1)}}, timeout=0.1)
    assert store_snapshot(client) == before


def test_workflow_code_and_activities_name_the_culprit(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [Shop], [charge, receipt]):
        # workflow code that passes what cannot be stored has a bug: its task fails (and is retried)
        bad_argument = client.start(Shop, "bad argument")
        error = wait_until(lambda: bad_argument.describe().task_error, what="the task error")
        assert error.startswith("PayloadError: arguments of activity 'charge' cannot be stored: [1][\"items\"][3]: "
                                "Fraction: pass a str"), error
        bad_argument.terminate()
        with pytest.raises(durable.WorkflowFailed) as failed:
            client.start(Shop, "date").result(timeout=20)
        assert ("result of activity 'receipt' cannot be stored: [\"lines\"][0][\"at\"]: naive datetime"
                in str(failed.value)), str(failed.value)
        with pytest.raises(durable.WorkflowFailed, match="result of activity 'receipt' cannot be stored: complex: not plain data"):
            client.start(Shop, "tuple").result(timeout=20)
        handle = client.start(Shop, "bad result", id="bad-result")
        # the result is refused where it is made, so the workflow task fails (and is retried)
        error = wait_until(lambda: handle.describe().task_error, what="the task error")
        assert error.startswith(
            "PayloadError: workflow result cannot be stored: [\"total\"]: Fraction: pass a str"), error
        handle.terminate()
        waiting = client.start(Shop, "wait")
        with pytest.raises(durable.QueryFailed, match=r"answer to query 'peek' cannot be stored: \[\"id\"\]: IPv4Address: pass a str"):
            waiting.query("peek", "uuid", timeout=20)
        waiting.signal("finish")
        assert waiting.result(timeout=20) == "done"
