"""Replay a recorded history through workflow code, to check that new code still matches it."""

from __future__ import annotations

from typing import Any

from . import _codec
from . import _events as ev
from ._codec import Converter, PayloadCodec
from ._defs import workflow_def
from ._errors import DecodeError
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
    """Decode an exported history (CBOR list of events), checking every event."""
    from ._limits import MAX_HISTORY_EVENTS, MAX_RECORD_BYTES

    events = _codec.decode(bytes(data), limit=MAX_RECORD_BYTES * 64, what="history")
    if not isinstance(events, list) or len(events) > MAX_HISTORY_EVENTS + 100:
        raise DecodeError("an exported history must be a list of at most "
                          f"{MAX_HISTORY_EVENTS} events")
    return [ev.check_event(e, f"event {i}") for i, e in enumerate(events)]
