"""The data converter on its own (issue 18, point 1): values of typed hints round trip through
plain data and the payload encoding, the plain form is what other languages can read, errors
name the parameter and the path, and conversion is deterministic (replay builds equal values).

Through a real store and worker: tests/worker/test_converter.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import subprocess
import sys
import uuid
from decimal import Decimal
from typing import Annotated, Any, NamedTuple, Optional, TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable
from durable._codec import Converter
from durable._convert import node_of, plan_of, value_to_plain
from tests.conftest import ROOT


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Flags(enum.Flag):
    A = 1
    B = 2


class Pair(NamedTuple):
    left: int
    right: str = "r"


@dataclasses.dataclass(frozen=True)
class Leaf:
    name: str
    size: Decimal


@dataclasses.dataclass
class Tree:
    """Refers to itself: its plan is made once, with a placeholder while it is made."""

    label: str
    children: list[Tree] = dataclasses.field(default_factory=list)
    leaf: Optional[Leaf] = None


class Shape(TypedDict):
    color: Color
    at: dt.date


# --- strategies: a type hint and a strategy of its values, nested ------------------------------

zones = st.builds(dt.timezone, st.integers(-23 * 60, 23 * 60).map(lambda m: dt.timedelta(minutes=m)))
finite_decimals = st.decimals(allow_nan=False, allow_infinity=False)

BASE: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (int, st.integers()),
    (str, st.text(max_size=8)),
    (bool, st.booleans()),
    (float, st.floats(allow_nan=False)),
    (bytes, st.binary(max_size=8)),
    (type(None), st.none()),
    (Decimal, finite_decimals),
    (uuid.UUID, st.uuids()),
    (dt.date, st.dates()),
    (dt.time, st.times() | st.times(timezones=zones)),
    (dt.timedelta, st.timedeltas()),
    (dt.datetime, st.datetimes(timezones=zones)),
    (Color, st.sampled_from(Color)),
    (Level, st.sampled_from(Level)),
    (Flags, st.sampled_from([Flags.A, Flags.B, Flags.A | Flags.B])),
    (Pair, st.builds(Pair, st.integers(), st.text(max_size=4))),
    (Leaf, st.builds(Leaf, st.text(max_size=4), finite_decimals)),
    (Shape, st.fixed_dictionaries({"color": st.sampled_from(Color), "at": st.dates()})),
]
HASHABLE = [b for b in BASE if b[0] not in (Shape, float)]  # float: 0.0 and -0.0 are one member of a set

trees: st.SearchStrategy[Tree] = st.deferred(lambda: st.builds(
    Tree, st.text(max_size=3), st.lists(trees, max_size=2), st.none() | st.builds(Leaf, st.just("l"), finite_decimals)))

_made: dict[tuple[Any, ...], type] = {}


def dataclass_of(hints: tuple[Any, ...]) -> type:
    """A dataclass with one field of each hint (made once per tuple of hints)."""
    cls = _made.get(hints)
    if cls is None:
        cls = _made[hints] = dataclasses.make_dataclass(f"D{len(_made)}", [(f"f{i}", h) for i, h in enumerate(hints)])
    return cls


def extend(inner: st.SearchStrategy[tuple[Any, Any]]) -> st.SearchStrategy[tuple[Any, Any]]:
    def seq(kind: Any) -> Any:
        return inner.map(lambda p: (kind[p[0]], st.lists(p[1], max_size=3).map(kind.__origin__ if kind is not list else list)))

    return st.one_of(
        inner.map(lambda p: (list[p[0]], st.lists(p[1], max_size=3))),  # type: ignore[valid-type]
        inner.map(lambda p: (tuple[p[0], ...], st.lists(p[1], max_size=3).map(tuple))),  # type: ignore[name-defined]
        inner.map(lambda p: (Optional[p[0]], st.none() | p[1])),
        inner.map(lambda p: (dict[str, p[0]], st.dictionaries(st.text(max_size=4), p[1], max_size=3))),  # type: ignore[valid-type]
        inner.map(lambda p: (dict[Color, p[0]], st.dictionaries(st.sampled_from(Color), p[1], max_size=2))),  # type: ignore[valid-type]
        st.tuples(inner, inner).map(lambda ps: (tuple[ps[0][0], ps[1][0]], st.tuples(ps[0][1], ps[1][1]))),  # type: ignore[misc]
        st.tuples(inner, inner).map(lambda ps: (
            dataclass_of((ps[0][0], ps[1][0])),
            st.tuples(ps[0][1], ps[1][1]).map(lambda vs, h=(ps[0][0], ps[1][0]): dataclass_of(h)(*vs)))),
    )


hinted = st.recursive(st.sampled_from(BASE), extend, max_leaves=4) | st.sampled_from(HASHABLE).map(
    lambda p: (frozenset[p[0]], st.frozensets(p[1], max_size=3))) | st.just((Tree, trees))


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 and True, a list and a tuple told apart)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, frozenset | set):
        return a == b and all(any(same(x, y) for y in b) for x in a)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


def round_trip(hint: Any, value: Any, converter: Converter = Converter()) -> Any:
    """`value` through what a crossing does: to plain by `hint`, payload bytes, back by `hint`."""
    node = node_of(hint)
    plain = node.out(value) if node is not None and node.needs_out else value
    back = converter.from_payload(converter.to_payload(plain, "value"))
    return node.into(back) if node is not None and node.needs_in else back


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_values_of_nested_hints_round_trip_with_their_types(data: st.DataObject) -> None:
    hint, values = data.draw(hinted)
    value = data.draw(values)
    back = round_trip(hint, value)
    assert same(back, value), (hint, value, back)
    assert same(round_trip(hint, value), back)  # the same every time: replay builds equal values


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_the_plain_form_is_plain_data_that_reads_back_as_itself(data: st.DataObject) -> None:
    hint, values = data.draw(hinted)
    value = data.draw(values)
    node = node_of(hint)
    plain = node.out(value) if node is not None and node.needs_out else value
    converter = Converter()
    assert same(converter.from_payload(converter.to_payload(plain, "v")), plain)
    # with no annotation on the other side, the value is made plain by its own type alike
    assert same(converter.from_payload(converter.to_payload(value, "v")), value_to_plain(plain))


def test_the_plain_forms_are_readable_by_other_languages() -> None:
    tree = Tree("root", [Tree("a")], Leaf("x", Decimal("1.50")))
    assert node_of(Tree).out(tree) == {  # type: ignore[union-attr]
        "label": "root", "children": [{"label": "a", "children": [], "leaf": None}],
        "leaf": {"name": "x", "size": "1.50"}}
    assert value_to_plain(Pair(1, "b")) == {"left": 1, "right": "b"}
    assert value_to_plain({Color.RED: {3, 1, 2}}) == {"red": [1, 2, 3]}
    assert value_to_plain([dt.date(2026, 12, 6), dt.time(23, 5), dt.timedelta(days=1), uuid.UUID(int=1)]) == [
        "2026-12-06", "23:05:00", 86400, "00000000-0000-0000-0000-000000000001"]
    assert value_to_plain(dt.timedelta(microseconds=1)) == 1e-06
    huge = dt.timedelta(days=999_999_999, microseconds=1)
    assert node_of(dt.timedelta).into(value_to_plain(huge)) == huge  # type: ignore[union-attr]  # exact, as a str


def test_a_named_tuple_is_built_from_a_map_or_an_array() -> None:
    node = node_of(Pair)
    assert node is not None
    assert node.into({"left": 1}) == Pair(1, "r")
    assert node.into([2, "x"]) == Pair(2, "x")


def test_unknown_keys_are_ignored_and_defaults_fill_missing_fields() -> None:
    node = node_of(Tree)
    assert node is not None
    assert node.into({"label": "t", "added_later": 1}) == Tree("t")


# --- errors: the parameter, the path, what was expected -----------------------------------------


async def wf(tree: Tree, when: dt.datetime, *more: Color) -> Optional[Leaf]:
    return None


def test_a_value_that_does_not_fit_names_the_parameter_and_the_path() -> None:
    plan = plan_of(wf)
    bad = {"label": "r", "children": [{"label": "c", "leaf": {"name": "l", "size": "1,5"}}]}
    with pytest.raises(durable.PayloadError) as info:
        plan.args_from_plain([bad, dt.datetime.now(dt.timezone.utc)], "input of workflow 'wf'")
    assert str(info.value) == (
        "input of workflow 'wf': parameter 'tree' at .children[0].leaf.size: expected Decimal (as a str of a "
        "decimal number), got str '1,5'")
    with pytest.raises(durable.PayloadError, match=r"parameter 'tree' at \.children\[0\]: Tree needs field 'label'"):
        plan.args_from_plain([{"label": "r", "children": [{}]}], "w")
    with pytest.raises(durable.PayloadError, match=r"parameter '\*more\[1\]': cannot make Color of str 'blue'"):
        plan.args_from_plain([{"label": "r"}, dt.datetime.now(dt.timezone.utc), "red", "blue"], "w")
    with pytest.raises(durable.PayloadError, match=r"^x: parameter 'tree': expected Tree, got dict"):
        plan.args_to_plain([{"label": "r"}], "x")  # a typed sender gives the type (mypy says so too)
    with pytest.raises(durable.PayloadError, match=r"^result of workflow 'wf': the return annotation of wf: "
                                                   r"expected Leaf \(as a map of its fields\), got int 5$"):
        plan.result_from_plain(5, "result of workflow 'wf'")
    either = node_of(Optional[Leaf | Color])
    assert either is not None
    with pytest.raises(Exception, match=r"fits none of Leaf \| Color \| NoneType \(Leaf: expected Leaf .*; "
                                        r"Color: cannot make Color of str 'blue'"):
        either.into("blue")


def test_a_naive_datetime_is_refused_with_a_message_to_pass_an_aware_one() -> None:
    plan = plan_of(wf)
    with pytest.raises(durable.PayloadError, match=r"\[1\]: naive datetime \(give it a tzinfo, e.g. datetime.timezone.utc\)"):
        Converter().to_payload(plan.args_to_plain([Tree("r"), dt.datetime(2026, 1, 1)], "w"), "input of workflow 'wf'")
    with pytest.raises(durable.PayloadError, match=r"parameter 'when': naive datetime '2026-01-01T00:00:00': give it a UTC offset"):
        plan.args_from_plain([{"label": "r"}, "2026-01-01T00:00:00"], "w")  # from JSON on the command line
    assert plan.args_from_plain([{"label": "r"}, "2026-01-01T00:00:00Z"], "w")[1] == dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_plain_and_unannotated_signatures_have_the_identity_plan() -> None:
    async def plain(x: int, order: dict[str, Any], items: list[dict[str, int]], s: str | None) -> dict[str, Any]:
        return {}

    def bare(x, y):  # type: ignore[no-untyped-def]
        return x

    def hidden(x: "NotDefinedAnywhere") -> "AlsoNot":  # type: ignore[name-defined]  # noqa: F821
        return x

    for fn in (plain, bare, hidden):  # (a datetime parameter is built of an ISO str: not identity)
        assert plan_of(fn).identity, fn


@durable.activity
def takes_later(x: DefinedLater) -> list[DefinedLater]:
    return [x]


@dataclasses.dataclass
class DefinedLater:
    """Defined after the activity that names it: its plan is made on first use, not when decorated."""

    v: int


def test_hints_naming_classes_defined_further_down_are_read_on_first_use() -> None:
    assert takes_later._plan is None  # not readable when decorated
    plan = takes_later.plan
    assert plan.args_from_plain([{"v": 1}], "w") == [DefinedLater(1)]
    assert plan.result_from_plain([{"v": 2}], "w") == [DefinedLater(2)]
    assert takes_later._plan is plan


class UserId(str):
    pass


def test_a_subclass_of_a_plain_type_is_stored_plain_and_built_by_its_class() -> None:
    node = node_of(UserId)
    assert node is not None
    plain = node.out(UserId("u-1"))
    assert type(plain) is str and plain == "u-1"
    back = round_trip(dict[UserId, list[UserId]], {UserId("a"): [UserId("b")]})
    assert back == {"a": ["b"]} and all(type(k) is UserId for k in back) and type(back["a"][0]) is UserId


def test_a_protocol_or_an_abstract_hint_passes_values_as_they_are() -> None:
    import typing

    class HasName(typing.Protocol):
        name: str

    assert node_of(HasName) is None
    assert node_of(typing.SupportsInt) is None


# --- the user's own types: durable.Convert -------------------------------------------------------


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and other.cents == self.cents


MoneyT = Annotated[Money, durable.Convert(to_plain=lambda m: m.cents, from_plain=Money)]


def test_a_convert_hook_converts_a_users_own_type_wherever_it_is_nested() -> None:
    @dataclasses.dataclass
    class Invoice:
        lines: dict[str, MoneyT]
        total: Optional[MoneyT] = None

    value = Invoice({"a": Money(5)}, Money(5))
    node = node_of(Invoice)
    assert node is not None
    assert node.out(value) == {"lines": {"a": 5}, "total": 5}
    assert round_trip(Invoice, value) == value


def test_a_type_durable_cannot_build_says_how_to_convert_it() -> None:
    def takes(m: Money) -> None: ...

    with pytest.raises(durable.PayloadError, match=r"parameter 'm': durable does not know how to make a Money of plain "
                                                   r"data: annotate it Annotated\[Money, durable.Convert"):
        plan_of(takes).args_from_plain([5], "arguments of activity 'takes'")
    with pytest.raises(durable.PayloadError, match=r"cannot be stored: Money: not plain data"):
        Converter().to_payload(plan_of(takes).args_to_plain([Money(1)], "w")[0], "w")


# --- pydantic (an optional extra) ------------------------------------------------------------------


def test_pydantic_models_round_trip_when_pydantic_is_installed() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Address(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        city: str
        since: dt.date

    class Customer(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        id: uuid.UUID
        balance: Decimal
        tags: set[str]
        home: Address
        color: Color = Color.RED

    value = Customer(id=uuid.UUID(int=3), balance=Decimal("9.99"), tags={"b", "a"},
                     home=Address(city="Oslo", since=dt.date(2020, 1, 2)))
    node = node_of(Customer)
    assert node is not None
    plain = node.out(value)
    assert plain == {"id": "00000000-0000-0000-0000-000000000003", "balance": "9.99", "tags": ["a", "b"],
                     "home": {"city": "Oslo", "since": "2020-01-02"}, "color": "red"}
    assert round_trip(Customer, value) == value
    assert round_trip(list[Customer], [value]) == [value]
    def takes(c: Customer) -> None: ...

    takes.__annotations__ = {"c": Customer, "return": None}  # a local class: not found by its name
    with pytest.raises(durable.PayloadError, match=r"parameter 'c': cannot make \S*Customer: 1 validation error for Customer balance Input should be a valid decimal"):
        plan_of(takes).args_from_plain([{**plain, "balance": "lots"}], "w")


def test_durable_imports_and_converts_without_pydantic() -> None:
    code = (
        "import sys; sys.modules['pydantic'] = None\n"  # an import of pydantic now fails
        "import dataclasses, durable\n"
        "from durable._convert import node_of\n"
        "@dataclasses.dataclass\nclass P:\n    x: int\n"
        "assert node_of(P).into(node_of(P).out(P(1))) == P(1)\n"
        "assert 'pydantic' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
