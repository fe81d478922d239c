"""Look into a recorded history: the workflow object's state at an event (``durable replay
--inspect``), and where two histories part (``durable history --diff``). Nothing is written and
no activity runs: only workflow code, replayed.
"""

from __future__ import annotations

import os
import reprlib
from dataclasses import dataclass, field
from typing import Any

from . import _events as ev
from ._codec import Converter, PayloadCodec
from ._defs import WorkflowDef
from ._errors import InvalidArgument
from ._runtime import Runtime

_OWN_DIR = os.path.dirname(os.path.abspath(__file__))

_repr = reprlib.Repr()
_repr.maxstring = 200
_repr.maxother = 200
_repr.maxlist = _repr.maxdict = _repr.maxset = _repr.maxtuple = 20
_repr.maxlevel = 4


def safe_repr(value: Any) -> str:
    """`repr` of `value`, trimmed (long strings and containers cut), never raising."""
    try:
        text = _repr.repr(value)
    except Exception as exc:  # noqa: BLE001 - user objects' __repr__ may do anything
        return f"<repr failed: {type(exc).__name__}: {exc}>"
    return text if len(text) <= 400 else text[:397] + "..."


@dataclass
class Inspection:
    """The state of a workflow's code after replaying its history up to an event."""

    #: the last event replayed (inclusive), and how many events were replayed
    until: int
    replayed: int
    #: whether the code ran the inputs after the last recorded task live (nothing written):
    #: then `next_commands` are the commands it made of them
    ran_live: bool
    #: a class workflow's attributes (`vars` of the instance), as trimmed reprs
    attributes: dict[str, str] | None
    #: the local variables of each suspended frame of the workflow's own code, outermost first:
    #: (function name, line, {name: trimmed repr})
    frames: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    #: what the code waits for: "activity 'name' (seq n)", "timer (seq n)"
    waiting: list[str] = field(default_factory=list)
    next_commands: list[str] = field(default_factory=list)
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {"until": self.until, "replayed": self.replayed, "ran_live": self.ran_live,
                "attributes": self.attributes,
                "frames": [{"function": f, "line": line, "locals": loc} for f, line, loc in self.frames],
                "waiting": self.waiting, "next_commands": self.next_commands, "done": self.done}


def _end_of_task(events: list[dict[str, Any]], n: int) -> int:
    """The last event to replay to show the state at event `n`: the end of the commands of the
    task that recorded `n` if it is a command, else `n`."""
    if events[n]["k"] in ev.COMMAND_KINDS:
        while n + 1 < len(events) and events[n + 1]["k"] in ev.COMMAND_KINDS:
            n += 1
    return n


def inspect_history(defn: WorkflowDef, events: list[dict[str, Any]], until: int | None,
                    codec: PayloadCodec | None = None, run_live: bool = True) -> Inspection:
    """Replay `events` through `defn` up to event `until` (default: the last) and describe the
    state of its code. A command event stands for the workflow task that recorded it (replayed
    to its end); with `run_live`, the input events that no recorded task follows within the
    range are run, and the commands made of them are reported (not written). Raises what the replay raises
    (`NondeterminismError` naming the event where the code departs from the history...)."""
    if not events:
        raise InvalidArgument("the history is empty")
    if until is None:
        until = len(events) - 1
    if not 0 <= until < len(events):
        raise InvalidArgument(f"the history has no event {until} (it has {len(events)}: 0 to {len(events) - 1})")
    last = _end_of_task(events, until)
    start = events[0]
    rt = Runtime(defn, start["id"], "replay", Converter(codec))
    try:
        commands = rt.advance(events[: last + 1], run_live=run_live)
        ran_live = run_live and events[last]["k"] in ev.INPUT_KINDS and bool(commands)
        return Inspection(
            until=last, replayed=rt.processed, ran_live=ran_live,
            attributes=None if rt.instance is None else {k: safe_repr(v) for k, v in vars(rt.instance).items()},
            frames=_frames(rt),
            waiting=[f"activity {entry[1]!r} (seq {seq})" for seq, entry in sorted(rt._activities.items())]
            + [f"timer (seq {seq})" for seq in sorted(rt._timers)] + _others(rt),
            next_commands=[ev.describe_command(c) for c in commands] if ran_live else [],
            done=rt.done,
        )
    finally:
        rt.close()


def _others(rt: Runtime) -> list[str]:
    """What else the code waits for: child workflows, and requests to other workflows."""
    out = []
    for seq, callback in sorted(getattr(rt, "_callbacks", {}).items()):
        owner = getattr(callback, "__self__", None)
        wid = getattr(owner, "wid", None)
        if isinstance(wid, str) and hasattr(owner, "wtype"):
            out.append(f"child workflow {wid!r} (seq {seq})")
        else:
            out.append(f"request to another workflow (seq {seq})")
    return out


def _frames(rt: Runtime) -> list[tuple[str, int, dict[str, str]]]:
    """The suspended frames of the workflow's own code in its main task (outside durable)."""
    main = rt._main
    out: list[tuple[str, int, dict[str, str]]] = []
    coro: Any = None if main is None else main.coro
    seen = 0
    while coro is not None and seen < 50:
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_OWN_DIR + os.sep):
            local = {k: safe_repr(v) for k, v in frame.f_locals.items() if k != "self"}
            out.append((frame.f_code.co_name, frame.f_lineno, local))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return out


def _comparable(event: dict[str, Any]) -> dict[str, Any]:
    """An event's fields that say what happened: not its time, nor (when it starts a run) the
    workflow id and random seed, which differ from run to run."""
    skip = ("t", "id", "seed") if event["k"] == ev.WORKFLOW_STARTED else ("t",)
    return {k: v for k, v in event.items() if k not in skip}


def diff_histories(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[int, bool]:
    """(How many events the histories share from the start, whether they are the same),
    comparing events by `_comparable`."""
    n = 0
    while n < len(a) and n < len(b) and _comparable(a[n]) == _comparable(b[n]):
        n += 1
    return n, n == len(a) == len(b)


def differing_fields(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The fields in which two events differ (by `_comparable`), sorted."""
    ca, cb = _comparable(a), _comparable(b)
    return sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
