"""Reset: start a new run of a workflow id from a prefix of one of its runs' histories.

When a deploy went wrong (a workflow took a bad step, or its history no longer replays), an
operator resets it to an event before the step: the new run's history is the old run's events
0..N, and the live code decides what follows from there. The old run is kept, readable, and
marked with the new run's id; if it was running it is closed (status "terminated", its last
event a `WorkflowTerminated` whose reason names the reset).

What event a run may be reset to: one that ends the inputs of a workflow task (the last input
event before the commands that task recorded, or the last event of the history when it is an
input). The new run's code replays the tasks before it and then runs that task live: it decides
anew what that task does. A command event cannot be a reset point: its task would be cut in
two. Every input event of the prefix stays: the results of activities that completed in it are
not run again.

What the new run has besides the prefix, all in the one transaction of the reset:

- the activities scheduled in the prefix with no final event in it are scheduled again (as new
  attempts), and the timers started in it that neither fired nor were cancelled in it are set
  again, due when they were due in the old run (at once, if that has passed): as if the commands
  had just been recorded (`_ops._apply_command`);
- with `reapply_signals`, the signals the old run received after event N (in its history, or
  still in its inbox) follow the prefix, in order: each is delivered once to the new run;
- a workflow task is queued.
"""

from __future__ import annotations

from typing import Any

from . import _crashpoint
from . import _events as ev
from . import _ops
from ._errors import DurableError, InvalidArgument
from ._backend import Txn
from ._store import u64, u64x2

#: Closing events no workflow task recorded: the task after the inputs before them never ran.
_OPERATOR_ENDS = (ev.WORKFLOW_TERMINATED, ev.WORKFLOW_TIMED_OUT)
_OPEN_ENDS = (ev.ACTIVITY_COMPLETED, ev.ACTIVITY_FAILED, ev.ACTIVITY_CANCELLED)
_CHILD_ENDS = (ev.CHILD_COMPLETED, ev.CHILD_FAILED, ev.CHILD_CANCELLED)


def reset_points(events: list[dict[str, Any]]) -> list[int]:
    """The indexes of `events` a run may be reset to: each last input event of a workflow task
    (followed by a command, or the last event), before the run's closing event."""
    points = []
    for i, event in enumerate(events):
        if event["k"] not in ev.INPUT_KINDS:
            continue
        nxt = events[i + 1]["k"] if i + 1 < len(events) else None
        if nxt is None or nxt in ev.COMMAND_KINDS or nxt in _OPERATOR_ENDS:
            points.append(i)
    return points


def _ranges(points: list[int]) -> str:
    """Points as short text: "0, 2, 4, ... 98" when there are many."""
    if len(points) <= 12:
        return ", ".join(map(str, points))
    return ", ".join(map(str, points[:10])) + f", ... {points[-1]}"


def reset(t: Txn, wid: str, num: int | None, to_event: int, reason: str, reapply_signals: bool) -> int:
    """Reset run `num` of `wid` (None: its current run) to event `to_event`; return the new
    run's number. Raises `InvalidArgument` naming the allowed events if `to_event` is not a reset
    point, and writes nothing then."""
    old = _ops.load_run(t, wid, num)
    current = _ops.load_wf(t, wid)
    events = _ops.read_history(t, old["num"])
    points = reset_points(events)
    if isinstance(to_event, bool) or not isinstance(to_event, int) or to_event not in points:
        if isinstance(to_event, int) and not isinstance(to_event, bool) and 0 <= to_event < len(events):
            why = f"it is a {events[to_event]['k']}, which does not end the inputs of a workflow task"
        else:
            why = f"run {old['num']:x} of workflow {wid!r} has no event {to_event!r} (it has {len(events)})"
        raise InvalidArgument(
            f"cannot reset to event {to_event!r}: {why}; a run may be reset to the last input event before "
            f"a workflow task's commands, here: {_ranges(points)}"
        )
    prefix, after = events[: to_event + 1], events[to_event + 1:]
    signals = [e for e in after if e["k"] == ev.SIGNAL_RECEIVED]
    num = _ops._counter(t, b"runnum")  # taken first: closing a run may start another (a schedule's)
    rec: dict[str, Any] = {
        "num": num, "id": wid, "type": old["type"], "queue": old["queue"], "status": _ops.RUNNING,
        "created": t.now, "updated": t.now, "closed": None, "hlen": 0, "ilen": 0,
        "wft": _ops.WFT_NONE, "timers": {}, "cancel": False, "n_act": 0, "n_att": 0, "n_retry": 0,
        "reset_from": old["num"], "reset_to": to_event,
    }
    for field_name in ("xdl", "rto", "grace", "prev", "first"):
        if old.get(field_name) is not None:
            rec[field_name] = old[field_name]
    children, outcomes = _children_of(t, prefix, after, current if current["num"] == old["num"] else None)
    note = f"reset to event {to_event} as run {num:x}" + (f": {reason}" if reason else "")
    # close the id's current run if it runs (the one reset, or a later one), keeping its inbox's signals
    if current["status"] == _ops.RUNNING:
        pending = _ops._drain_inbox(t, current)
        if current["num"] == old["num"]:
            signals += [e for e in pending if e["k"] == ev.SIGNAL_RECEIVED]
            kept = current.get("children")
            for seq in children:  # the new run takes them over: no parent close policy for them
                if isinstance(kept, dict):
                    kept.pop(seq, None)
        link = current.get("parent")
        if isinstance(link, dict) and not link.get("told"):  # a child: its parent waits for the new run
            _ops._continue_family(t, current, rec)
            current["parent"] = dict(link, told=True)
        _ops._append(t, current, {"k": ev.WORKFLOW_TERMINATED, "t": t.now, "reason": note})
        _ops._close(t, current, "terminated")
        _ops._save_wf(t, current, _ops.RUNNING)
    _ops._retire(t, current)
    old = t.get_rec("runs", _ops._run_key(wid, old["num"]))  # as stored now (closed, if it was running)
    old["reset"] = {"run": num, "to": to_event, "reason": reason}
    t.put_rec("runs", _ops._run_key(wid, old["num"]), old)
    if "parent" not in rec and isinstance(old.get("parent"), dict):  # its parent was told of it already
        rec["parent"] = dict(old["parent"], told=True)

    t.put("num", u64(num), wid.encode())
    old_prefix = u64(old["num"])
    for key, raw in t.scan("hist", old_prefix):
        index = int.from_bytes(key[8:16], "big")
        if index > to_event:
            break
        t.put("hist", u64x2(num, index), raw)
    rec["hlen"] = len(prefix)
    rec["cancel"] = any(e["k"] == ev.CANCEL_REQUESTED for e in prefix)
    _ops._arm_timeouts(t, rec)
    followups = _reopen(t, rec, prefix)
    for event in followups + outcomes + (signals if reapply_signals else []):
        _ops._append(t, rec, {**event, "t": t.now})
    _ops._enqueue_wft(t, rec)
    closed = []
    for seq, (cid, child) in children.items():
        rec.setdefault("children", {})[seq] = [cid, child["num"], child["policy"]]
        if child["status"] == _ops.RUNNING:  # it tells the new run when it closes
            live = _ops._wf_by_num(t, child["num"])
            if live is not None:
                live["parent"] = {"id": wid, "num": num, "seq": seq}
                _ops._save_wf(t, live)
        else:
            closed.append((seq, child))
    when = _ops._when(rec)
    t.put("idx", b"c" + when, wid.encode())
    t.put("idx", _ops._idx_key(_ops.RUNNING, when), wid.encode())
    _ops._save_wf(t, rec)
    for seq, child in closed:  # closed without telling the run reset (its close policy): told now
        _ops._tell_parent(t, child, child["status"], {"id": wid, "num": num, "seq": seq})
    t.wake = True
    if _crashpoint.ENABLED:  # fault tests only: die with the reset made but not committed
        _crashpoint.hit("reset-before-commit")
    return num


def _children_of(t: Txn, prefix: list[dict[str, Any]], after: list[dict[str, Any]],
                 reset_rec: dict[str, Any] | None) -> tuple[dict[int, tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """The children started in `prefix` with no outcome in it: (those the new run waits for, seq
    -> (child id, the child's latest run's record with its parent close policy as "policy")),
    and the outcomes the run reset recorded `after` the point for the others (to follow the
    prefix as they are: such a child is not started again). `reset_rec` is the record of the run
    reset if it is the id's current run (its "children" map names each child's latest run)."""
    started: dict[int, tuple[str, int, str]] = {}
    initiated: dict[int, dict[str, Any]] = {}
    for event in prefix:
        kind = event["k"]
        if kind == ev.CHILD_INITIATED:
            initiated[event["seq"]] = event
        elif kind == ev.CHILD_STARTED and event["seq"] in initiated:
            cmd = initiated[event["seq"]]
            policy = cmd["opts"].get("close", "terminate")
            started[event["seq"]] = (cmd["id"], event["run"], policy if isinstance(policy, str) else "terminate")
        elif kind in _CHILD_ENDS:
            started.pop(event["seq"], None)
    outcomes = [e for e in after if e["k"] in _CHILD_ENDS and e["seq"] in started]
    told = {e["seq"] for e in outcomes}
    kept = (reset_rec or {}).get("children")
    out: dict[int, tuple[str, dict[str, Any]]] = {}
    for seq, (cid, cnum, policy) in started.items():
        if seq in told:
            continue
        entry = kept.get(seq) if isinstance(kept, dict) else None
        if isinstance(entry, list) and len(entry) == 3 and isinstance(entry[1], int):
            cnum = entry[1]  # it continued as new: its latest run
        try:
            child = _ops.load_run(t, cid, _ops.chain_end(t, cid, cnum))
        except DurableError:
            continue  # not found: nothing to wait for
        out[seq] = (cid, dict(child, policy=policy))
    return out, outcomes


def _reopen(t: Txn, rec: dict[str, Any], prefix: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Make the activities and timers left open at the end of `prefix` live in run `rec`, as
    `_ops._apply_command` does for commands just recorded; return the input events that follow
    at once (an activity whose cancellation was asked for and that is not running: cancelled)."""
    scheduled: dict[int, dict[str, Any]] = {}
    cancel_asked: set[int] = set()
    timers: dict[int, dict[str, Any]] = {}
    for event in prefix:
        kind = event["k"]
        if kind == ev.ACTIVITY_SCHEDULED:
            scheduled[event["seq"]] = event
            rec["n_act"] += 1
        elif kind in _OPEN_ENDS:
            scheduled.pop(event["seq"], None)
            cancel_asked.discard(event["seq"])
        elif kind == ev.ACTIVITY_CANCEL_REQUESTED:
            cancel_asked.add(event["seq"])
        elif kind == ev.TIMER_STARTED:
            timers[event["seq"]] = event
        elif kind in (ev.TIMER_FIRED, ev.TIMER_CANCELLED):
            timers.pop(event["seq"], None)
    followups: list[dict[str, Any]] = []
    rec["n_act"] -= len(scheduled)  # `_apply_command` counts those again
    for event in scheduled.values():
        _ops._apply_command(t, rec, event, followups)
        if event["seq"] in cancel_asked:
            _ops._apply_command(t, rec, {"k": ev.ACTIVITY_CANCEL_REQUESTED, "seq": event["seq"]}, followups)
    now = t.now
    try:
        for event in timers.values():
            t.now = min(now, event["t"])  # due when it was due in the old run
            _ops._apply_command(t, rec, event, followups)
    finally:
        t.now = now
    return followups


def require_int(value: Any, what: str) -> int:
    """`value` if it is a non-negative int, else `InvalidArgument`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{what} must be a non-negative event index, not {value!r}")
    return value
