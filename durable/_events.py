"""History events: their kinds, their fields, and a check that a decoded event is well formed.

A history is a totally ordered list of events. Events of the *input* kinds drive the workflow's
code (a result arrived, a timer fired, a signal came); events of the *command* kinds record what
the code did in answer. One activation of a workflow consumes a maximal run of input events and
is followed by the command events it produced (or a single `TaskCompleted` when it produced none),
which is how replay finds the activation boundaries again.

An event is a plain dict: ``{"k": kind, "t": time_ns, ...fields}``.
"""

from __future__ import annotations

from typing import Any

from ._errors import DecodeError

# input kinds
WORKFLOW_STARTED = "WorkflowStarted"
ACTIVITY_COMPLETED = "ActivityCompleted"
ACTIVITY_FAILED = "ActivityFailed"
ACTIVITY_CANCELLED = "ActivityCancelled"
TIMER_FIRED = "TimerFired"
SIGNAL_RECEIVED = "SignalReceived"
CANCEL_REQUESTED = "CancelRequested"
# child workflows and requests to other workflows (see durable/_children.py)
CHILD_STARTED = "ChildWorkflowStarted"
CHILD_START_FAILED = "ChildWorkflowStartFailed"
CHILD_COMPLETED = "ChildWorkflowCompleted"
CHILD_FAILED = "ChildWorkflowFailed"
CHILD_CANCELLED = "ChildWorkflowCancelled"
EXTERNAL_DONE = "ExternalRequestCompleted"
EXTERNAL_FAILED = "ExternalRequestFailed"
#: an update request its validator accepted (see durable/_updates.py): "uid" is the update's id
UPDATE_ACCEPTED = "UpdateAccepted"

# command kinds
ACTIVITY_SCHEDULED = "ActivityScheduled"
ACTIVITY_CANCEL_REQUESTED = "ActivityCancelRequested"
TIMER_STARTED = "TimerStarted"
TIMER_CANCELLED = "TimerCancelled"
TASK_COMPLETED = "TaskCompleted"
WORKFLOW_COMPLETED = "WorkflowCompleted"
WORKFLOW_FAILED = "WorkflowFailed"
WORKFLOW_CANCELLED = "WorkflowCancelled"
#: a patch marker (`durable.patched`, `durable.deprecate_patch`): it takes no seq
MARKER_RECORDED = "MarkerRecorded"
CHILD_INITIATED = "ChildWorkflowInitiated"
CHILD_CANCEL_REQUESTED = "ChildWorkflowCancelRequested"
EXTERNAL_SIGNAL = "ExternalSignalRequested"
EXTERNAL_CANCEL = "ExternalCancelRequested"
#: the run ends and a new run of the same id starts (`durable.continue_as_new`): its input,
#: type and queue; the new run's number is in the run's record ("next"), not in the event
WORKFLOW_CONTINUED_AS_NEW = "WorkflowContinuedAsNew"
#: an update's handler returned ("out") or failed ("err")
UPDATE_COMPLETED = "UpdateCompleted"

# written by an operator, never by workflow code
WORKFLOW_TERMINATED = "WorkflowTerminated"
#: written by the store's clock when a workflow-level timeout (execution or run) passes
WORKFLOW_TIMED_OUT = "WorkflowTimedOut"

_B, _I, _S, _D, _F = bytes, int, str, dict, bool

#: kind -> required fields and their types (besides "k" and "t").
SCHEMA: dict[str, dict[str, type]] = {
    WORKFLOW_STARTED: {"type": _S, "in": _B, "seed": _I, "id": _S, "queue": _S},
    ACTIVITY_COMPLETED: {"seq": _I, "out": _B, "attempt": _I},
    ACTIVITY_FAILED: {"seq": _I, "err": _D, "attempt": _I, "why": _S},
    ACTIVITY_CANCELLED: {"seq": _I},
    TIMER_FIRED: {"seq": _I},
    SIGNAL_RECEIVED: {"name": _S, "in": _B},
    CANCEL_REQUESTED: {"reason": _S},
    ACTIVITY_SCHEDULED: {"seq": _I, "name": _S, "in": _B, "opts": _D},
    ACTIVITY_CANCEL_REQUESTED: {"seq": _I},
    TIMER_STARTED: {"seq": _I, "dur": _I},
    TIMER_CANCELLED: {"seq": _I},
    TASK_COMPLETED: {},
    WORKFLOW_COMPLETED: {"out": _B},
    WORKFLOW_FAILED: {"err": _D},
    WORKFLOW_CANCELLED: {},
    MARKER_RECORDED: {"patch": _S, "dep": _F},
    WORKFLOW_TERMINATED: {"reason": _S},
    # "run" is the child's run number; "why" of a failure: "failed", "terminated" (or how else
    # the child closed); "opts" of a start: queue, parent close policy, id reuse policy
    CHILD_INITIATED: {"seq": _I, "name": _S, "id": _S, "in": _B, "opts": _D},
    CHILD_STARTED: {"seq": _I, "run": _I},
    CHILD_START_FAILED: {"seq": _I, "err": _D},
    CHILD_COMPLETED: {"seq": _I, "out": _B},
    CHILD_FAILED: {"seq": _I, "err": _D, "why": _S},
    CHILD_CANCELLED: {"seq": _I},
    CHILD_CANCEL_REQUESTED: {"seq": _I},
    # "run" 0 names the target's current run
    EXTERNAL_SIGNAL: {"seq": _I, "id": _S, "run": _I, "name": _S, "in": _B},
    EXTERNAL_CANCEL: {"seq": _I, "id": _S, "run": _I},
    EXTERNAL_DONE: {"seq": _I},
    EXTERNAL_FAILED: {"seq": _I, "err": _D},
    WORKFLOW_CONTINUED_AS_NEW: {"in": _B, "type": _S, "queue": _S},
    WORKFLOW_TIMED_OUT: {"timeout": _S},
    # "at": the time the workflow saw when it accepted the update ("t" is when it was recorded)
    UPDATE_ACCEPTED: {"uid": _S, "name": _S, "in": _B, "at": _I},
    UPDATE_COMPLETED: {"uid": _S, "name": _S},
}

INPUT_KINDS = frozenset(
    {
        WORKFLOW_STARTED,
        ACTIVITY_COMPLETED,
        ACTIVITY_FAILED,
        ACTIVITY_CANCELLED,
        TIMER_FIRED,
        SIGNAL_RECEIVED,
        CANCEL_REQUESTED,
        CHILD_STARTED,
        CHILD_START_FAILED,
        CHILD_COMPLETED,
        CHILD_FAILED,
        CHILD_CANCELLED,
        EXTERNAL_DONE,
        EXTERNAL_FAILED,
        UPDATE_ACCEPTED,
    }
)
#: Input kinds about one command (by its seq) of child workflows and requests to other
#: workflows: the runtime hands them to the callback registered for their seq.
CHILD_INPUT_KINDS = frozenset(
    {CHILD_STARTED, CHILD_START_FAILED, CHILD_COMPLETED, CHILD_FAILED, CHILD_CANCELLED, EXTERNAL_DONE, EXTERNAL_FAILED}
)
#: Command kinds of child workflows and requests to other workflows (applied by `_ops`).
CHILD_COMMAND_KINDS = frozenset({CHILD_INITIATED, CHILD_CANCEL_REQUESTED, EXTERNAL_SIGNAL, EXTERNAL_CANCEL})
COMMAND_KINDS = frozenset(
    {
        ACTIVITY_SCHEDULED,
        ACTIVITY_CANCEL_REQUESTED,
        TIMER_STARTED,
        TIMER_CANCELLED,
        TASK_COMPLETED,
        WORKFLOW_COMPLETED,
        WORKFLOW_FAILED,
        WORKFLOW_CANCELLED,
        MARKER_RECORDED,
        CHILD_INITIATED,
        CHILD_CANCEL_REQUESTED,
        EXTERNAL_SIGNAL,
        EXTERNAL_CANCEL,
        WORKFLOW_CONTINUED_AS_NEW,
        UPDATE_COMPLETED,
    }
)
CLOSING_KINDS = frozenset(
    {WORKFLOW_COMPLETED, WORKFLOW_FAILED, WORKFLOW_CANCELLED, WORKFLOW_TERMINATED, WORKFLOW_CONTINUED_AS_NEW,
     WORKFLOW_TIMED_OUT}
)
#: Event kind that closes a workflow -> the workflow's final status.
CLOSING_STATUS = {
    WORKFLOW_COMPLETED: "completed",
    WORKFLOW_FAILED: "failed",
    WORKFLOW_CANCELLED: "cancelled",
    WORKFLOW_TERMINATED: "terminated",
    WORKFLOW_CONTINUED_AS_NEW: "continued_as_new",
    WORKFLOW_TIMED_OUT: "timed_out",
}


def check_event(ev: Any, where: str) -> dict[str, Any]:
    """Return `ev` if it is a well-formed event; raise `DecodeError` naming `where` otherwise."""
    if not isinstance(ev, dict):
        raise DecodeError(f"{where}: an event must be a map, not {type(ev).__name__}")
    kind = ev.get("k")
    fields = SCHEMA.get(kind) if isinstance(kind, str) else None
    if fields is None:
        shown = repr(kind[:100]) if isinstance(kind, str) else f"of type {type(kind).__name__}"
        raise DecodeError(f"{where}: unknown event kind {shown}")
    if not isinstance(ev.get("t"), int):
        raise DecodeError(f"{where}: {kind} has no integer time")
    for name, typ in fields.items():
        if not isinstance(ev.get(name), typ):
            raise DecodeError(f"{where}: {kind} field {name!r} must be {typ.__name__}")
    return ev


def is_event(ev: dict[str, Any]) -> bool:
    """Whether `check_event` would accept the map `ev` (fast: no message is made)."""
    kind = ev.get("k")
    fields = SCHEMA.get(kind) if type(kind) is str else None
    if fields is None or type(ev.get("t")) is not int:
        return False
    for name, typ in fields.items():
        if not isinstance(ev.get(name), typ):
            return False
    return True


def describe_command(ev: dict[str, Any]) -> str:
    """A short human description of a command event, for non-determinism messages."""
    kind = ev["k"]
    if kind == ACTIVITY_SCHEDULED:
        return f"ActivityScheduled({ev['name']!r}, seq={ev['seq']})"
    if kind in (TIMER_STARTED,):
        return f"TimerStarted({ev['dur'] / 1e9:g} s, seq={ev['seq']})"
    if kind == CHILD_INITIATED:
        return f"ChildWorkflowInitiated({ev['name']!r}, id {ev['id']!r}, seq={ev['seq']})"
    if kind == EXTERNAL_SIGNAL:
        return f"ExternalSignalRequested({ev['name']!r} to {ev['id']!r}, seq={ev['seq']})"
    if kind == UPDATE_COMPLETED:
        return f"UpdateCompleted({ev['name']!r}, update id {ev['uid']!r})"
    if kind == MARKER_RECORDED:
        return f"MarkerRecorded(patch {ev['patch']!r}{', deprecated' if ev['dep'] else ''})"
    if "seq" in ev:
        return f"{kind}(seq={ev['seq']})"
    return str(kind)
