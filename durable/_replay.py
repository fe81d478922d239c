"""Replay a recorded history through workflow code, to check that new code still matches it."""

from __future__ import annotations

from typing import Any

from . import _codec
from . import _events as ev
from ._codec import Converter, PayloadCodec
from ._defs import workflow_def
from ._errors import DecodeError
from ._limits import MAX_EXPORT_BYTES, MAX_EXPORT_ITEMS, MAX_HISTORY_EVENTS
from ._runtime import Runtime


def replay(workflow: Any, history: bytes | list[dict[str, Any]], *, codec: PayloadCodec | None = None) -> int:
    """Replay `history` through `workflow`'s code; return the number of events replayed.

    `history` is what `WorkflowHandle.export_history()` returned (bytes), or its decoded list of
    events. Raises `NondeterminismError` naming the event where the code departs from the
    history, and `DecodeError` if the history is malformed. Nothing is written anywhere.
    """
    events = decode_history(history) if isinstance(history, (bytes, bytearray)) else [
        ev.check_event(e, f"event {i}") for i, e in enumerate(history)
    ]
    if not events or events[0]["k"] != ev.WORKFLOW_STARTED:
        raise DecodeError("a history must begin with WorkflowStarted")
    defn = workflow_def(workflow)
    start = events[0]
    rt = Runtime(defn, start["id"], "replay", Converter(codec))
    try:
        rt.advance(events, run_live=False)
    finally:
        rt.close()
    return rt.processed


def decode_history(data: bytes | bytearray) -> list[dict[str, Any]]:
    """Decode an exported history (a CBOR list of events), checking every event.

    An event that ends within 4 KiB is decoded from those bytes alone and its values counted;
    a longer one is walked first (`_codec.scan`) to find where it ends and to count its values,
    then decoded. Either way it is decoded as a record read from the store would be: so the
    limits of a record apply to each one, and those of an export (`MAX_EXPORT_BYTES`,
    `MAX_EXPORT_ITEMS`) to the whole.
    """
    data = bytes(data)
    if len(data) > MAX_EXPORT_BYTES:
        raise DecodeError(f"the history is {len(data)} bytes, over the limit of {MAX_EXPORT_BYTES} bytes")
    count, pos = _list_header(data)
    events: list[dict[str, Any]] = []
    budget = MAX_EXPORT_ITEMS
    must_count = len(data) > MAX_EXPORT_ITEMS  # else it cannot hold more values than that: each takes a byte
    is_event = ev.is_event
    while count < 0 or len(events) < count:
        if count < 0 and data[pos:pos + 1] == b"\xff":
            pos += 1
            break
        if len(events) > MAX_HISTORY_EVENTS + 100:
            raise DecodeError(f"the history holds more than {MAX_HISTORY_EVENTS} events")
        left = MAX_HISTORY_EVENTS + 101 - len(events) if count < 0 else count - len(events)
        run = _codec.decode_run(data, pos, left)  # the small events of the next few KiB
        if run:
            for event, _ in run:
                if must_count:
                    budget -= _codec.count_values(event)
                    if budget < 0:
                        raise DecodeError(f"the history holds more than {MAX_EXPORT_ITEMS} CBOR values (MAX_EXPORT_ITEMS)")
                if type(event) is not dict or not is_event(event):  # say what is wrong, and where
                    ev.check_event(event, f"event {len(events)}")
                events.append(event)
            pos = run[-1][1]
            continue
        where = f"event {len(events)}"
        try:
            end, items = _codec.scan(data, pos, check_keys=False)  # decode checks them as for any record
        except ValueError as exc:
            raise DecodeError(f"{where} is not valid CBOR: {exc}") from None
        budget -= items
        if budget < 0:
            raise DecodeError(f"the history holds more than {MAX_EXPORT_ITEMS} CBOR values (MAX_EXPORT_ITEMS)")
        event = _codec.decode(data[pos:end], what=where)
        if type(event) is not dict or not is_event(event):
            ev.check_event(event, where)
        events.append(event)
        pos = end
    if pos != len(data):
        raise DecodeError(f"the history is not valid CBOR: {len(data) - pos} bytes follow the list of events")
    return events


def _list_header(data: bytes) -> tuple[int, int]:
    """The number of events a history's list header announces (-1: until a break code), and
    where the first event begins."""
    if not data or data[0] >> 5 != 4:
        raise DecodeError("an exported history must be a CBOR list of events")
    ai = data[0] & 31
    if ai == 31:
        return -1, 1
    if ai < 24:
        return ai, 1
    size = {24: 1, 25: 2, 26: 4, 27: 8}.get(ai)
    if size is None or len(data) < 1 + size:
        raise DecodeError("an exported history must be a CBOR list of events")
    count = int.from_bytes(data[1:1 + size], "big")
    if count > MAX_HISTORY_EVENTS + 100:
        raise DecodeError(f"the history announces {count} events, over the limit of {MAX_HISTORY_EVENTS}")
    return count, 1 + size
