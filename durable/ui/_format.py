"""Text for the pages: escaping, times, durations, values and event details.

Everything the store holds (ids, names, payloads, error messages, reasons) is user data: it goes
into a page only through `h`, which escapes it for HTML text and attribute values alike.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from typing import Any

# The CLI's own: `durable history` and the UI say durations alike.
from durable.cli._main import readable_duration

__all__ = ["clock", "details", "h", "readable_duration", "short", "stamp", "to_json"]


def h(value: Any) -> str:
    """`value` as text escaped for HTML (quotes too: safe inside an attribute value)."""
    return html.escape(str(value), quote=True)


def stamp(when: _dt.datetime | None) -> str:
    """A time as UTC date and time to the millisecond, or "" for None."""
    if when is None:
        return ""
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def clock(when: _dt.datetime) -> str:
    """The time of day (UTC) to the millisecond, as `durable history` prints it."""
    return when.astimezone(_dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def to_json(value: Any) -> str:
    """A value as JSON text (times as ISO 8601, bytes as hex, anything else by its repr)."""
    return json.dumps(value, default=_default, ensure_ascii=False)


def _default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def short(text: str, most: int = 300) -> str:
    """`text` cut to `most` characters (an ellipsis says it was)."""
    return text if len(text) <= most else text[: most - 1] + "\u2026"


#: Fields of a readable event that the events table shows elsewhere or not at all.
_SKIP = ("index", "kind", "time", "error", "opts", "seed")


def details(event: dict[str, Any]) -> str:
    """An event's fields as `durable history` prints them: key=JSON, durations readable."""
    parts = []
    for key, value in event.items():
        if key in _SKIP:
            continue
        if key == "duration_ns" and isinstance(value, int):
            parts.append(f"duration={readable_duration(value / 1e9)}")
        else:
            parts.append(f"{key}={to_json(value)}")
    return " ".join(parts)
