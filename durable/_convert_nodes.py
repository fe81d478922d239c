"""The nodes of the data converter (`_convert`): how the values of one type hint become plain
data (`_Node.out`) and are built again from it (`_Node.into`), made once per hint (`node_of`);
and `value_to_plain`, a value made plain by its own type where nothing is annotated.

See `_convert`'s docstring for the table of types and their plain forms.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as _dt
import decimal
import enum
import math
import sys
import threading
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any

from ._limits import MAX_CBOR_DEPTH

__all__ = ["Convert", "node_of", "value_to_plain"]


class Convert:
    """How values of one of your own types cross as plain data: put it in the type's annotation,
    ``Annotated[Money, durable.Convert(to_plain=str, from_plain=Money.parse)]``.

    `to_plain` turns a value into plain data (None, bool, int, float, str, bytes, lists, dicts,
    aware datetimes; dataclasses and the other types durable converts are made plain after it);
    `from_plain` builds the value again from that plain data. Both must be deterministic: a
    workflow's replay builds its values again from the recorded plain data. A name for the
    annotation (``Money = Annotated[...]``) keeps signatures short; nothing is registered
    anywhere, so two workers in one process never share conversions (F14).
    """

    __slots__ = ("to_plain", "from_plain")

    def __init__(self, *, to_plain: Callable[[Any], Any], from_plain: Callable[[Any], Any]) -> None:
        if not callable(to_plain) or not callable(from_plain):
            raise TypeError("durable.Convert needs to_plain and from_plain functions")
        self.to_plain = to_plain
        self.from_plain = from_plain

    def __repr__(self) -> str:
        return f"durable.Convert(to_plain={self.to_plain!r}, from_plain={self.from_plain!r})"


class _Mismatch(Exception):
    """A value that does not fit; `path` grows as it leaves nested nodes (innermost first)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


def _path_text(steps: list[str]) -> str:
    return "".join(reversed(steps))


def _key_step(key: Any) -> str:
    return f"[{key!r}]" if isinstance(key, (str, int)) else f"[{type(key).__qualname__}]"


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__qualname__
    return str(hint).replace("typing.", "")


def _what_is(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - any object's repr: the message must still be made
        text = "<?>"
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__qualname__} {text}"


# --- nodes: how one type hint converts ------------------------------------------------------


class _Node:
    """How values of one type hint become plain (`out`) and are built again (`into`).

    `needs_out` / `needs_in` say whether either does anything: a node that needs neither is
    never made (a plain type is `None` in a plan)."""

    needs_out = True
    needs_in = True

    def out(self, value: Any) -> Any:
        raise NotImplementedError

    def into(self, plain: Any) -> Any:
        raise NotImplementedError

    def matches(self, value: Any) -> bool:
        """Whether `value` (a Python value, before `out`) is of this node's type (for unions)."""
        return False


class _Lazy(_Node):
    """A node being made (a type that refers to itself): filled in once made."""

    def __init__(self) -> None:
        self.target: _Node | None = None

    def out(self, value: Any) -> Any:
        return value_to_plain(value) if self.target is None else self.target.out(value)

    def into(self, plain: Any) -> Any:
        return plain if self.target is None else self.target.into(plain)

    def matches(self, value: Any) -> bool:
        return self.target is not None and self.target.matches(value)


class _Class(_Node):
    """A class converted by functions: Enum, date, time, timedelta, Decimal, UUID..."""

    def __init__(self, cls: type, out: Callable[[Any], Any], into: Callable[[Any], Any], accepts: tuple[type, ...],
                 needs_out: bool = True) -> None:
        self.cls, self._out, self._into, self._accepts = cls, out, into, accepts
        self.needs_out = needs_out

    def matches(self, value: Any) -> bool:
        return isinstance(value, self.cls) and not (self.cls is _dt.date and isinstance(value, _dt.datetime))

    def out(self, value: Any) -> Any:
        if not self.matches(value):
            raise _Mismatch(f"expected {self.cls.__qualname__}, got {_what_is(value)}")
        return self._out(value)

    def into(self, plain: Any) -> Any:
        if isinstance(plain, self.cls) and self.cls is not _dt.date:  # already built (a datetime)
            return plain
        if not isinstance(plain, self._accepts):
            raise _Mismatch(f"expected {self.cls.__qualname__} (as {' or '.join(t.__name__ for t in self._accepts)}), "
                            f"got {_what_is(plain)}")
        try:
            return self._into(plain)
        except _Mismatch:
            raise
        except Exception as exc:  # noqa: BLE001 - the class refused it: say why
            raise _Mismatch(f"cannot make {self.cls.__qualname__} of {_what_is(plain)}: {exc}") from None


class _Fields(_Node):
    """A dataclass or a NamedTuple: a map of its fields."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.named_tuple = issubclass(cls, tuple)
        self.fields: list[tuple[str, _Node | None, bool, bool]] = []  # name, node, in __init__, required

    def fill(self) -> None:
        cls = self.cls
        hints = _hints(cls)
        if self.named_tuple:
            defaults = getattr(cls, "_field_defaults", {})
            for name in cls._fields:  # type: ignore[attr-defined]
                self.fields.append((name, node_of(hints.get(name, Any)), True, name not in defaults))
        else:
            for f in dataclasses.fields(cls):
                required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                self.fields.append((f.name, node_of(hints.get(f.name, Any)), f.init, required and f.init))

    def matches(self, value: Any) -> bool:
        return isinstance(value, self.cls)

    def out(self, value: Any) -> Any:
        if not isinstance(value, self.cls):
            raise _Mismatch(f"expected {self.cls.__qualname__}, got {_what_is(value)}")
        if type(value) is not self.cls:  # a subclass: its own fields, by its own type
            return value_to_plain(value)
        out: dict[str, Any] = {}
        for name, node, _, _ in self.fields:
            item = getattr(value, name)
            if node is not None and node.needs_out:
                try:
                    item = node.out(item)
                except _Mismatch as exc:
                    exc.path.append(f".{name}")
                    raise
            else:
                item = value_to_plain(item)
            out[name] = item
        return out

    def into(self, plain: Any) -> Any:
        if isinstance(plain, self.cls):
            return plain
        if self.named_tuple and type(plain) is list:
            if len(plain) > len(self.fields):
                raise _Mismatch(f"{self.cls.__qualname__} has {len(self.fields)} fields, got {len(plain)} values")
            plain = {self.fields[i][0]: v for i, v in enumerate(plain)}
        if type(plain) is not dict:
            raise _Mismatch(f"expected {self.cls.__qualname__} (as a map of its fields), got {_what_is(plain)}")
        kwargs: dict[str, Any] = {}
        later: list[tuple[str, Any]] = []
        for name, node, init, required in self.fields:
            if name not in plain:
                if required:
                    raise _Mismatch(f"{self.cls.__qualname__} needs field {name!r}, which is missing")
                continue
            item = plain[name]
            if node is not None and node.needs_in:
                try:
                    item = node.into(item)
                except _Mismatch as exc:
                    exc.path.append(f".{name}")
                    raise
            if init:
                kwargs[name] = item
            else:
                later.append((name, item))
        try:
            value = self.cls(**kwargs)
        except Exception as exc:  # noqa: BLE001 - its __init__ or __post_init__ refused the values
            raise _Mismatch(f"cannot make {self.cls.__qualname__}: {type(exc).__name__}: {exc}") from None
        for name, item in later:
            object.__setattr__(value, name, item)
        return value


class _Pydantic(_Node):
    """A pydantic (v2) model: `model_dump` made plain, `model_validate` (lax) to build it."""

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def matches(self, value: Any) -> bool:
        return isinstance(value, self.cls)

    def out(self, value: Any) -> Any:
        if not isinstance(value, self.cls):
            raise _Mismatch(f"expected {self.cls.__qualname__}, got {_what_is(value)}")
        return value_to_plain(value)

    def into(self, plain: Any) -> Any:
        if isinstance(plain, self.cls):
            return plain
        try:
            return self.cls.model_validate(plain, strict=False)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError says what is wrong
            text = " ".join(str(exc).split(" For further information")[0].split())  # one line
            raise _Mismatch(f"cannot make {self.cls.__qualname__}: {text[:500]}") from None


class _Hook(_Node):
    """``Annotated[T, Convert(...)]``: the user's functions."""

    def __init__(self, hook: Convert, inner: Any) -> None:
        self.hook = hook
        self.inner = inner

    def matches(self, value: Any) -> bool:
        return isinstance(self.inner, type) and isinstance(value, self.inner)

    def out(self, value: Any) -> Any:
        try:
            return value_to_plain(self.hook.to_plain(value))
        except _Mismatch:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's function refused it
            raise _Mismatch(f"to_plain of {_type_name(self.inner)} raised {type(exc).__name__}: {exc}") from None

    def into(self, plain: Any) -> Any:
        try:
            return self.hook.from_plain(plain)
        except Exception as exc:  # noqa: BLE001 - the user's function refused it
            raise _Mismatch(f"from_plain of {_type_name(self.inner)} raised {type(exc).__name__}: {exc}") from None


class _Seq(_Node):
    """list[X], tuple[X, ...], set[X], frozenset[X]: an array."""

    def __init__(self, kind: type, item: _Node | None) -> None:
        self.kind, self.item = kind, item
        self.needs_out = kind is not list or (item is not None and item.needs_out)
        self.needs_in = kind is not list or (item is not None and item.needs_in)

    def matches(self, value: Any) -> bool:
        return isinstance(value, self.kind) or (self.kind is list and isinstance(value, (list, tuple)))

    def out(self, value: Any) -> Any:
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise _Mismatch(f"expected {self.kind.__name__}, got {_what_is(value)}")
        items = _sorted_if_set(value)
        node = self.item
        if node is None or not node.needs_out:
            return [value_to_plain(v) for v in items]
        out = []
        for i, v in enumerate(items):
            try:
                out.append(node.out(v))
            except _Mismatch as exc:
                exc.path.append(f"[{i}]")
                raise
        return out

    def into(self, plain: Any) -> Any:
        if type(plain) is not list:
            if isinstance(plain, self.kind):
                return plain
            raise _Mismatch(f"expected {self.kind.__name__} (as an array), got {_what_is(plain)}")
        node = self.item
        if node is not None and node.needs_in:
            items = []
            for i, v in enumerate(plain):
                try:
                    items.append(node.into(v))
                except _Mismatch as exc:
                    exc.path.append(f"[{i}]")
                    raise
        else:
            items = plain
        if self.kind is list:
            return items
        try:
            return self.kind(items)
        except TypeError as exc:  # unhashable items for a set
            raise _Mismatch(f"cannot make a {self.kind.__name__}: {exc}") from None


class _Tuple(_Node):
    """tuple[X, Y, Z]: an array of that many items."""

    def __init__(self, items: list[_Node | None]) -> None:
        self.items = items

    def matches(self, value: Any) -> bool:
        return isinstance(value, tuple) and len(value) == len(self.items)

    def out(self, value: Any) -> Any:
        if not isinstance(value, (tuple, list)) or len(value) != len(self.items):
            raise _Mismatch(f"expected a tuple of {len(self.items)} items, got {_what_is(value)}")
        out = []
        for i, (node, v) in enumerate(zip(self.items, value)):
            try:
                out.append(node.out(v) if node is not None and node.needs_out else value_to_plain(v))
            except _Mismatch as exc:
                exc.path.append(f"[{i}]")
                raise
        return out

    def into(self, plain: Any) -> Any:
        if type(plain) is not list or len(plain) != len(self.items):
            raise _Mismatch(f"expected a tuple of {len(self.items)} items (as an array), got {_what_is(plain)}")
        out = []
        for i, (node, v) in enumerate(zip(self.items, plain)):
            try:
                out.append(node.into(v) if node is not None and node.needs_in else v)
            except _Mismatch as exc:
                exc.path.append(f"[{i}]")
                raise
        return tuple(out)


class _Map(_Node):
    """dict[K, V] (and Mapping): a map; keys of converted types become str or int."""

    def __init__(self, key: _Node | None, value: _Node | None) -> None:
        self.key, self.value = key, value
        self.needs_out = any(n is not None and n.needs_out for n in (key, value))
        self.needs_in = any(n is not None and n.needs_in for n in (key, value))

    def matches(self, value: Any) -> bool:
        return isinstance(value, dict)

    def out(self, value: Any) -> Any:
        if not isinstance(value, cabc.Mapping):
            raise _Mismatch(f"expected a dict, got {_what_is(value)}")
        kn, vn = self.key, self.value
        out = {}
        for k, v in value.items():
            try:
                pk = kn.out(k) if kn is not None and kn.needs_out else _key_to_plain(k)
                out[pk] = vn.out(v) if vn is not None and vn.needs_out else value_to_plain(v)
            except _Mismatch as exc:
                exc.path.append(_key_step(k))
                raise
        return out

    def into(self, plain: Any) -> Any:
        if type(plain) is not dict:
            raise _Mismatch(f"expected a dict (as a map), got {_what_is(plain)}")
        kn, vn = self.key, self.value
        out = {}
        for k, v in plain.items():
            try:
                key = kn.into(k) if kn is not None and kn.needs_in else k
                out[key] = vn.into(v) if vn is not None and vn.needs_in else v
            except TypeError as exc:  # a key built unhashable
                raise _Mismatch(f"cannot make a dict key of {_what_is(k)}: {exc}") from None
            except _Mismatch as exc:
                exc.path.append(_key_step(k))
                raise
        return out


class _TypedDict(_Node):
    """A TypedDict whose values need conversion: a map, each key by its own hint."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.nodes: dict[str, _Node] = {}

    def fill(self) -> None:
        for key, hint in _hints(self.cls).items():
            node = node_of(hint)
            if node is not None:
                self.nodes[key] = node
        self.needs_out = any(n.needs_out for n in self.nodes.values())
        self.needs_in = any(n.needs_in for n in self.nodes.values())

    def matches(self, value: Any) -> bool:
        return isinstance(value, dict)

    def out(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise _Mismatch(f"expected {self.cls.__qualname__} (a dict), got {_what_is(value)}")
        return self._each(value, "out")

    def into(self, plain: Any) -> Any:
        if type(plain) is not dict:
            raise _Mismatch(f"expected {self.cls.__qualname__} (as a map), got {_what_is(plain)}")
        return self._each(plain, "into")

    def _each(self, value: dict[Any, Any], way: str) -> dict[Any, Any]:
        out = {}
        for k, v in value.items():
            node = self.nodes.get(k) if isinstance(k, str) else None
            try:
                if node is not None:
                    out[k] = node.out(v) if way == "out" else node.into(v)
                else:
                    out[k] = value_to_plain(v) if way == "out" else v
            except _Mismatch as exc:
                exc.path.append(_key_step(k))
                raise
        return out


class _Union(_Node):
    """X | Y | None: out by the first member whose type the value is; in by the first member
    that builds it (plain members first, when the plain value is of their type)."""

    def __init__(self, members: list[tuple[Any, _Node | None]]) -> None:
        self.members = members
        self.takes_none = any(h is None or h is type(None) for h, _ in members)
        self.needs_out = any(n is not None and n.needs_out for _, n in members)
        self.needs_in = any(n is not None and n.needs_in for _, n in members)

    def matches(self, value: Any) -> bool:
        return any(n.matches(value) if n is not None else _plain_fits(h, value) for h, n in self.members)

    def out(self, value: Any) -> Any:
        for hint, node in self.members:
            if node is None:
                if _plain_fits(hint, value):
                    return value_to_plain(value)
            elif node.matches(value):
                return node.out(value)
        return value_to_plain(value)  # fits none: as its own type (the receiver says if it is wrong)

    def into(self, plain: Any) -> Any:
        errors: list[str] = []
        tried: list[_Mismatch] = []
        for hint, node in self.members:  # the first member that fits, in the order written
            if node is None or not node.needs_in:
                if _plain_fits(hint, plain):
                    return plain
                continue
            if plain is None and self.takes_none:
                continue  # X | None: None is None (no X is built of it)
            try:
                return node.into(plain)
            except _Mismatch as exc:
                tried.append(exc)
                errors.append(f"{_type_name(hint)}: {_path_text(exc.path)}{': ' if exc.path else ''}{exc.message}")
        if len(tried) == 1 and (plain is not None or not self.takes_none):
            raise tried[0]  # X | None (or X | a plain type), and not X: X's error, with its path
        raise _Mismatch(f"fits none of {' | '.join(_type_name(h) for h, _ in self.members)} ({'; '.join(errors)})")


def _plain_fits(hint: Any, value: Any) -> bool:
    """Whether a value fits a hint that needs no conversion (for unions: cheap, by its outer type)."""
    if hint is Any or hint is object or isinstance(hint, typing.TypeVar):
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is not None:
        hint = origin
    if hint is float:
        return type(value) in (float, int)
    if isinstance(hint, type):
        if hint is int:
            return type(value) is int
        return isinstance(value, hint)
    return True


def _sorted_if_set(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:  # mixed types: in iteration order
            return list(value)
    return value


# --- making nodes -----------------------------------------------------------------------------

#: hints that need no conversion either way (a datetime is built of an ISO str, see `_SIMPLE`)
_PLAIN_TYPES = frozenset({int, float, str, bool, bytes, type(None), list, dict, object})
#: hint -> its node, made once. A cache of what the code's own hints say (like `_PLANS`), never
#: a registry: nothing is registered in it, and two workers in one process read the same.
_NODES: dict[Any, _Node | None] = {}
#: nodes and plans are made under it: a half-made node (`_Lazy`) is seen by its own maker only
_LOCK = threading.RLock()


def _hints(obj: Any) -> dict[str, Any]:
    """The type hints of a function or class; one that does not evaluate (a name imported only
    for type checkers) is taken as Any: it is not converted, as before the converter."""
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception:  # noqa: BLE001 - each hint on its own below
        pass
    if isinstance(obj, type):
        raw: dict[str, Any] = {}
        for klass in reversed(obj.__mro__):
            raw.update(getattr(klass, "__annotations__", {}))
        module = sys.modules.get(obj.__module__)
        namespace = dict(vars(module)) if module is not None else {}
        namespace.update(vars(obj))
    else:
        raw = dict(getattr(obj, "__annotations__", {}))
        namespace = getattr(obj, "__globals__", {})
    out: dict[str, Any] = {}
    for name, hint in raw.items():
        try:  # one at a time, as typing evaluates them
            hint = typing.get_type_hints(types.SimpleNamespace(__annotations__={name: hint}),
                                         globalns=namespace, include_extras=True)[name]
        except Exception:  # noqa: BLE001 - not convertible: passed as it is
            hint = Any
        out[name] = hint
    return out


def node_of(hint: Any) -> _Node | None:
    """The node of a type hint (None for one that needs no conversion); made once per hint."""
    try:
        node = _NODES[hint]
    except KeyError:
        pass
    except TypeError:  # unhashable (an Annotated with unhashable metadata): made each time
        with _LOCK:
            return _make(hint)
    else:
        if type(node) is not _Lazy or node.target is not None:
            return node  # else another thread is making it: wait for it below
    with _LOCK:
        return _node_locked(hint)


def _node_locked(hint: Any) -> _Node | None:
    if hint in _NODES:
        return _NODES[hint]
    lazy = _Lazy()
    _NODES[hint] = lazy  # a type that refers to itself finds this while it is made
    try:
        node = _make(hint)
    except BaseException:
        del _NODES[hint]
        raise
    lazy.target = node
    _NODES[hint] = node
    return node


def _pydantic_model(cls: type) -> bool:
    pydantic = sys.modules.get("pydantic")  # a model's class imported it already, if it is one
    base = getattr(pydantic, "BaseModel", None) if pydantic is not None else None
    return base is not None and isinstance(cls, type) and issubclass(cls, base)


def _make(hint: Any) -> _Node | None:
    if hint is Any or hint is None or hint in _PLAIN_TYPES or isinstance(hint, typing.TypeVar):
        return None
    if isinstance(hint, str):  # a forward reference left unresolved: not converted
        return None
    if isinstance(hint, typing.NewType):
        return node_of(hint.__supertype__)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        for meta in hint.__metadata__:
            if isinstance(meta, Convert):
                return _Hook(meta, args[0])
        return node_of(args[0])
    if origin is typing.Union or origin is types.UnionType:
        members = [(a, node_of(a)) for a in args]
        if all(n is None for _, n in members):
            return None
        # plain members first when building (an int stays an int), else in the order written
        return _Union(members)
    if origin is typing.Literal or origin is typing.ClassVar or origin is typing.Final:
        return None if origin is typing.Literal else node_of(args[0]) if args else None
    if origin is not None:
        return _generic(origin, args)
    if isinstance(hint, type):
        return _class(hint)
    return None


def _generic(origin: Any, args: tuple[Any, ...]) -> _Node | None:
    if origin in (list, cabc.Sequence, cabc.MutableSequence, cabc.Iterable, cabc.Collection):
        node = node_of(args[0]) if args else None
        seq = _Seq(list, node)
        return seq if seq.needs_out or seq.needs_in else None
    if origin in (set, cabc.Set, cabc.MutableSet):
        return _Seq(set, node_of(args[0]) if args else None)
    if origin is frozenset:
        return _Seq(frozenset, node_of(args[0]) if args else None)
    if origin is tuple:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return _Seq(tuple, node_of(args[0]) if args else None)
        if args == ((),):
            return _Tuple([])
        return _Tuple([node_of(a) for a in args])
    if origin in (dict, cabc.Mapping, cabc.MutableMapping):
        m = _Map(node_of(args[0]) if args else None, node_of(args[1]) if len(args) > 1 else None)
        return m if m.needs_out or m.needs_in else None
    if isinstance(origin, type):
        if dataclasses.is_dataclass(origin) or _pydantic_model(origin):
            return node_of(origin)  # a generic dataclass or model: its type variables are Any
        return _class(origin)
    return None


def _class(cls: type) -> _Node | None:
    if cls in _PLAIN_TYPES:
        return None
    if issubclass(cls, enum.Enum):
        return _Class(cls, lambda v: value_to_plain(v.value), cls, (object,))
    if dataclasses.is_dataclass(cls):
        node = _Fields(cls)
        node.fill()
        return node
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        node = _Fields(cls)
        node.fill()
        return node
    if _pydantic_model(cls):
        return _Pydantic(cls)
    if typing.is_typeddict(cls):
        td = _TypedDict(cls)
        td.fill()
        return td if td.needs_out or td.needs_in else None
    if cls is tuple:
        return _Seq(tuple, None)
    if cls is set:
        return _Seq(set, None)
    if cls is frozenset:
        return _Seq(frozenset, None)
    simple = _SIMPLE.get(cls)
    if simple is not None:
        out, into, accepts = simple
        return _Class(cls, out, into, accepts, needs_out=cls is not _dt.datetime)
    if getattr(cls, "_is_protocol", False):
        return None  # a Protocol: no class to build, and isinstance may not work on it
    for base in (str, int, float, bytes):
        if issubclass(cls, base):  # class UserId(str): stored as a plain str, built by UserId(s)
            return _Class(cls, base, cls, (base,) if base is not float else (float, int))
    return _Class(cls, _unconvertible_out(cls), _unconvertible_in(cls), (object,))


def _unconvertible_out(cls: type) -> Callable[[Any], Any]:
    def out(value: Any) -> Any:
        return value_to_plain(value)  # plain or convertible by its own type, else refused later

    return out


def _unconvertible_in(cls: type) -> Callable[[Any], Any]:
    def into(plain: Any) -> Any:
        raise _Mismatch(
            f"durable does not know how to make a {cls.__qualname__} of plain data: annotate it "
            f"Annotated[{cls.__qualname__}, durable.Convert(to_plain=..., from_plain=...)], or use a dataclass"
        )

    return into


# --- the simple classes -----------------------------------------------------------------------


def _timedelta_out(value: _dt.timedelta) -> Any:
    whole = value.days * 86400 + value.seconds
    if value.microseconds == 0:
        return whole
    seconds = value.total_seconds()
    if _dt.timedelta(seconds=seconds) == value:
        return seconds
    return str(decimal.Decimal(whole) + decimal.Decimal(value.microseconds).scaleb(-6))


def _timedelta_in(plain: Any) -> _dt.timedelta:
    if isinstance(plain, bool):
        raise _Mismatch("expected timedelta (as seconds), got a bool")
    if isinstance(plain, int):
        return _dt.timedelta(seconds=plain)
    if isinstance(plain, float):
        if not math.isfinite(plain):
            raise _Mismatch(f"expected timedelta (as seconds), got {plain!r}")
        return _dt.timedelta(seconds=plain)
    try:
        exact = decimal.Decimal(plain)
    except decimal.InvalidOperation:
        raise _Mismatch(f"expected timedelta (as seconds), got {_what_is(plain)}") from None
    if not exact.is_finite():
        raise _Mismatch(f"expected timedelta (as seconds), got {plain!r}")
    micros = int(exact * 1000000)
    return _dt.timedelta(microseconds=micros)


def _datetime_in(plain: Any) -> _dt.datetime:
    value = _dt.datetime.fromisoformat(plain)
    if value.tzinfo is None:
        raise _Mismatch(f"naive datetime {plain!r}: give it a UTC offset (e.g. {plain}+00:00)")
    return value


def _decimal_in(plain: Any) -> decimal.Decimal:
    if isinstance(plain, bool):
        raise _Mismatch("expected Decimal (as a str), got a bool")
    try:
        return decimal.Decimal(plain if not isinstance(plain, float) else repr(plain))
    except decimal.InvalidOperation:
        raise _Mismatch(f"expected Decimal (as a str of a decimal number), got {_what_is(plain)}") from None


_SIMPLE: dict[type, tuple[Callable[[Any], Any], Callable[[Any], Any], tuple[type, ...]]] = {
    _dt.date: (lambda v: v.isoformat(), _dt.date.fromisoformat, (str,)),
    _dt.time: (lambda v: v.isoformat(), _dt.time.fromisoformat, (str,)),
    _dt.timedelta: (_timedelta_out, _timedelta_in, (int, float, str)),
    _dt.datetime: (lambda v: v, _datetime_in, (str,)),
    decimal.Decimal: (str, _decimal_in, (str, int, float)),
    uuid.UUID: (str, uuid.UUID, (str,)),
}


# --- by the value's own type --------------------------------------------------------------------

_SCALARS = (str, int, float, bool, type(None), bytes)


def value_to_plain(value: Any, _depth: int = 0) -> Any:
    """`value` made plain by its own type (see the module docstring): dataclasses, NamedTuples
    and pydantic models to maps, tuples and sets to arrays, Enum members to their values, dates,
    times, timedeltas, Decimals and UUIDs to their plain forms. What it cannot convert is left as
    it is (a naive datetime, an object of another class): the payload's check refuses it, and
    says what to pass instead."""
    kind = type(value)
    if kind in _SCALARS or kind is _dt.datetime:
        return value
    if _depth > MAX_CBOR_DEPTH:
        return value  # holds itself, or too deep: refused by the payload's check
    d = _depth + 1
    if kind is list:
        return [value_to_plain(v, d) for v in value]
    if kind is dict:
        return {_key_to_plain(k): value_to_plain(v, d) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value_to_plain(value.value, d)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: value_to_plain(getattr(value, f.name), d) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        if hasattr(kind, "_fields"):
            return {name: value_to_plain(v, d) for name, v in zip(kind._fields, value)}
        return [value_to_plain(v, d) for v in value]
    if isinstance(value, (set, frozenset)):
        return [value_to_plain(v, d) for v in _sorted_if_set(value)]
    if isinstance(value, _dt.datetime):
        return value  # a subclass, or naive: the payload's check says what to pass
    simple = _SIMPLE.get(kind)
    if simple is not None:
        return simple[0](value)
    if _pydantic_model(kind):
        return value_to_plain(value.model_dump(mode="python"), d)
    for base in (bool, int, float, str, bytes):  # IntEnum is handled above; these are subclasses
        if isinstance(value, base):
            return value  # refused by the payload's check, which names the plain type to pass
    if isinstance(value, (list, dict)):
        return value
    return value


def _key_to_plain(key: Any) -> Any:
    """A dict key made plain by its own type; one that would become an array or a map (a tuple)
    stays as it is, and the payload's check refuses it (keys are str or int)."""
    if type(key) is str or type(key) is int:
        return key
    plain = value_to_plain(key)
    return key if type(plain) in (list, dict) else plain
