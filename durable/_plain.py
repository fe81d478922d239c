"""What a payload may hold, checked on the path of every payload written, and what to say about
a value that holds something else (once the data converter, `_convert`, has made plain what it
can).

A payload holds plain data only: None, bool, int, float, str, bytes, list, dict with str or int
keys, and timezone-aware datetime, each exactly of its type (an IntEnum, a NamedTuple or an
OrderedDict is not), so that what is read back is what was written. `is_plain` is the check (cheap:
see its docstring); `refusal` makes the error for a value that fails it, naming the path of the
first part refused, its type and what to pass instead.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from ._errors import PayloadError
from ._limits import MAX_CBOR_DEPTH

_PLAIN_DATA = ("pass None, bool, int, float, str, bytes, a list, a dict with str or int keys, or a "
               "timezone-aware datetime")

# What a payload may hold: these types exactly, lists, dicts with keys of
# `_KEY_TYPES`, and timezone-aware datetimes.
_SCALARS = frozenset({str, int, float, bool, type(None), bytes})
_KEY_TYPES = frozenset({str, int})
_DATETIME = _dt.datetime


def is_plain(value: Any) -> bool:
    """Whether `value` holds only what a payload may hold (see the module docstring).

    On the path of every payload written: the types of a list's items, and of a dict's keys and
    values, are checked in C (`issuperset`), so a flat list or dict costs about one call; only
    nested containers and datetimes are visited one by one. Which part is refused, and why, is
    found only when something is (`refusal`)."""
    kind = type(value)
    if kind is list:
        if _SCALARS.issuperset(map(type, value)):
            return True
        items: Any = value
    elif kind is dict:
        if not _KEY_TYPES.issuperset(map(type, value)):
            return False
        items = value.values()
        if _SCALARS.issuperset(map(type, items)):
            return True
    elif kind in _SCALARS:
        return True
    else:
        return kind is _DATETIME and value.tzinfo is not None
    for item in items:
        if type(item) not in _SCALARS and not is_plain(item):
            return False
    return True


def refusal(value: Any, what: str, why: str) -> PayloadError:
    """The error for a `value` that cannot be stored: what is refused where inside it, if a part
    of it is (`_culprit`), else `why` (a limit: too many values, a key too large to hash...)."""
    found = _culprit(value)
    if found is None:
        return PayloadError(f"{what} cannot be stored: {why} ({_PLAIN_DATA})")
    path, reason = found
    return PayloadError(f"{what} cannot be stored: {path}: {reason}" if path else f"{what} cannot be stored: {reason}")


def _culprit(value: Any) -> tuple[str, str] | None:
    """The first part of `value` a payload may not hold, in the order it is written: (its path,
    as ``[1]["items"][3]``, and what is wrong with it and what to pass instead), or None.

    A walk for error messages only (never on the path of a payload that is accepted); it goes no
    deeper than the decoder would read, so a value that holds itself ends it too."""
    too_deep: tuple[str, str] | None = None
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        kind = type(item)
        if kind is list or kind is dict:
            if depth > MAX_CBOR_DEPTH:
                if too_deep is None:
                    too_deep = (path, f"it is nested more than {MAX_CBOR_DEPTH} levels deep (MAX_CBOR_DEPTH), "
                                      "or it holds itself")
                continue
            if kind is list:
                children = [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item)]
            else:
                for key in item:
                    if type(key) not in _KEY_TYPES:
                        return path, f"dict key {_short_repr(key)} is {_kind_of(key)}: keys must be str or int"
                children = [(v, path + _key_text(k), depth + 1) for k, v in item.items()]
            stack.extend(reversed(children))
        elif kind in _SCALARS:
            continue
        elif kind is _DATETIME and item.tzinfo is not None:
            continue
        else:
            return path, _advice(item)
    return too_deep


def _advice(value: Any) -> str:
    """What `value` is (its type's name first) and what to pass instead."""
    import dataclasses
    import decimal
    import enum
    import fractions
    import ipaddress
    import uuid

    kind = type(value)
    name = kind.__qualname__
    if kind is _DATETIME:
        return "naive datetime (give it a tzinfo, e.g. datetime.timezone.utc)"
    if isinstance(value, enum.Enum):
        return f"Enum member {name}.{value.name}: pass its value ({_short_repr(value.value)}) or its name"
    if isinstance(value, tuple):  # (made plain by the converter; here only past its depth limit)
        if kind is tuple:
            return "tuple: pass a list"
        if hasattr(kind, "_fields"):
            return f"{name}: a NamedTuple is a tuple: pass a list, or a dict (value._asdict())"
        return f"{name} (a tuple subclass): pass a list"
    if isinstance(value, (set, frozenset)):
        return f"{name}: pass a sorted list"
    if isinstance(value, decimal.Decimal):
        return f"{name}: pass a str or an int of cents"
    if isinstance(value, _dt.datetime):
        return f"{name} (a datetime subclass): pass a plain timezone-aware datetime"
    if isinstance(value, _dt.date):
        return f"{name}: pass a str (value.isoformat()) or a timezone-aware datetime"
    if isinstance(value, _dt.time):
        return f"{name}: pass a str (value.isoformat())"
    if isinstance(value, _dt.timedelta):
        return f"{name}: pass a number of seconds (value.total_seconds())"
    if isinstance(value, uuid.UUID):
        return f"{name}: pass a str (str(value))"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return f"dataclass {name}: pass a dict (dataclasses.asdict(value))"
    if isinstance(value, (bytearray, memoryview)):
        return f"{name}: pass bytes (bytes(value))"
    if isinstance(value, fractions.Fraction):
        return f"{name}: pass a str, or its numerator and denominator in a list"
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
                          ipaddress.IPv6Network, ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return f"{name}: pass a str (str(value))"
    for base in (bool, int, float, str, bytes, list, dict):
        if isinstance(value, base):
            plain = base.__name__
            return f"{name} (a {plain} subclass): pass a plain {plain} ({plain}(value))"
    return f"{name}: not plain data ({_PLAIN_DATA})"


def _kind_of(value: Any) -> str:
    name = type(value).__qualname__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _key_text(key: Any) -> str:
    """A dict key as a path step: ["key"] (JSON, cut at 40 characters) or [12]."""
    if type(key) is str:
        return f"[{json.dumps(key if len(key) <= 40 else key[:40] + '...')}]"
    if -(10**40) < key < 10**40:
        return f"[{key}]"
    return f"[<an int of {key.bit_length()} bits>]"


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - any object's repr: the message must still be made
        text = f"<{type(value).__qualname__}>"
    return text if len(text) <= 40 else text[:37] + "..."
