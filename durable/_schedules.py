"""Schedules in the store: a workflow started at each slot of a cron expression or an interval.

A schedule needs no worker of its own. Its next fire time is an entry of the "due" table (kind
"S"), fired by the timer loop of whichever worker of the store runs `_ops.fire_due` (any queue:
starting a workflow is a store transaction). Firing a slot is one transaction: the workflow is
started (or the slot skipped or buffered, by the overlap policy), the action recorded in the
schedule, the next due entry set. A crash before the commit leaves the slot due; after it, the
slot is done. So each slot fires exactly once, whoever fires it, and its workflow id
(`<schedule id>-<slot time, ISO 8601 UTC>`) is deterministic: a slot whose workflow exists is
never started again (backfills over fired slots included).

Times are UTC nanoseconds. Cron expressions are evaluated in UTC by cronsim (no daylight saving
time: "0 2 * * *" fires once every day, 24 hours apart). Intervals are aligned to the Unix epoch
(every hour fires on the hour), as in Temporal.

Layout of the "sched" table: "s" + schedule id -> schedule record; "r" + schedule id + NUL +
start time + run number (u64 each) -> workflow id of a run the schedule started (for
`list(schedule=...)`, newest last). A workflow record started by a schedule carries "sched"
(the schedule id), "sgen" (the schedule's creation time) and "slot" (its slot time); when it closes, `_ops._close` calls `on_close`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Any

from . import _crashpoint, _ops
from ._codec import decode
from ._errors import DecodeError, InvalidArgument, ScheduleAlreadyExists, ScheduleNotFound, WorkflowAlreadyExists, WorkflowNotFound
from ._limits import SCHEDULE_FIRE_BATCH, SCHEDULE_RECENT_ACTIONS
from ._backend import Txn
from ._store import u64x2, unpack_u64

#: What a slot does while the workflow the schedule started last still runs (Temporal's names):
#: nothing; start once that one closes (one start kept: the first); start anyway; cancel the
#: running one and start once it has closed.
OVERLAP_POLICIES = ("skip", "buffer_one", "allow_all", "cancel_other")

#: The cron macros cronsim does not read, as the five fields they stand for.
CRON_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


# --- times and slots -------------------------------------------------------------------------


def to_datetime(ns: int) -> _dt.datetime:
    """UTC datetime of `ns` nanoseconds since the epoch (to the microsecond)."""
    return _EPOCH + _dt.timedelta(microseconds=ns // 1000)


def to_ns(when: _dt.datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def slot_workflow_id(sid: str, slot: int) -> str:
    """The id of the workflow a schedule starts for `slot`: the schedule id, then the slot's
    time in ISO 8601 UTC (with microseconds only if it has some)."""
    return f"{sid}-{to_datetime(slot).isoformat().replace('+00:00', 'Z')}"


def check_cron(expr: str) -> str:
    """`expr` in the form cronsim reads (macros expanded); `InvalidArgument` naming the field
    that is wrong if it is not a cron expression."""
    from cronsim import CronSim, CronSimError

    text = CRON_MACROS.get(expr.strip().lower(), expr.strip())
    try:
        CronSim(text, _EPOCH)
    except CronSimError as exc:
        reason = str(exc).replace("Bad ", "bad ").replace("Wrong", "wrong") or "not understood"
        raise InvalidArgument(
            f"cron expression {expr!r}: {reason} (fields: minute hour day-of-month month day-of-week, "
            "evaluated in UTC; or @hourly, @daily, @weekly, @monthly, @yearly)"
        ) from None
    return text


def next_slot(spec: dict[str, Any], after: int) -> int | None:
    """The first slot of `spec` strictly after `after` (ns), or None if there is none."""
    every = spec.get("every")
    if every is not None:
        return (after // int(every) + 1) * int(every)
    from cronsim import CronSim

    try:
        # cronsim works to the second: start from the whole second at or before `after`
        start = to_datetime(after - after % 1_000_000_000)
        for when in CronSim(spec["cron"], start):
            ns = to_ns(when)
            if ns > after:
                return ns
    except StopIteration:  # pragma: no cover - a cron that never matches again (e.g. 30 Feb)
        return None
    return None  # pragma: no cover


def _jitter(rec: dict[str, Any], slot: int) -> int:
    """The slot's delay (ns): the same for the same schedule and slot in every process, so that
    a slot fired again after a crash falls due at the same time."""
    if not rec["jitter"]:
        return 0
    digest = hashlib.blake2b(f"{rec['id']}\x00{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % int(rec["jitter"])


# --- records ----------------------------------------------------------------------------------


def _key(sid: str) -> bytes:
    return b"s" + sid.encode()


def _runs_prefix(sid: str) -> bytes:
    return b"r" + sid.encode() + b"\x00"


def load(t: Txn, sid: str) -> dict[str, Any]:
    """The record of schedule `sid`; `ScheduleNotFound` if there is none."""
    rec = t.get_rec("sched", _key(sid))
    if rec is None:
        raise ScheduleNotFound(f"no schedule with id {sid!r}")
    return rec  # type: ignore[no-any-return]


def _save(t: Txn, rec: dict[str, Any]) -> None:
    rec["updated"] = t.now
    t.put_rec("sched", _key(rec["id"]), rec)


def _arm(t: Txn, rec: dict[str, Any], after: int) -> None:
    """Set the schedule's next slot to the first one after `after`, with its due entry."""
    _disarm(t, rec)
    slot = next_slot(rec["spec"], after)
    rec["next"] = slot
    if slot is not None and not rec["paused"]:
        rec["due"] = _ops._set_due(t, slot + _jitter(rec, slot), b"S" + rec["id"].encode())


def _disarm(t: Txn, rec: dict[str, Any]) -> None:
    if rec.get("due"):
        t.delete("due", rec["due"])
    rec["due"] = None


def create(t: Txn, sid: str, wtype: str, queue: str, payload: bytes, spec: dict[str, Any], *, jitter: int,
           overlap: str, catchup: int, pause_on_failure: bool, paused: bool, note: str, check_type: bool) -> None:
    """Create schedule `sid`; its first slot is the first one after now."""
    if t.get("sched", _key(sid)) is not None:
        raise ScheduleAlreadyExists(f"a schedule with id {sid!r} already exists (delete it first to replace it)")
    if check_type:
        _ops._check_registered(t, queue, wtype)
    rec: dict[str, Any] = {
        "id": sid, "type": wtype, "queue": queue, "in": payload, "spec": spec, "jitter": jitter,
        "overlap": overlap, "catchup": catchup, "pof": pause_on_failure, "paused": paused, "note": note,
        "created": t.now, "updated": t.now, "next": None, "due": None, "last": None, "buffered": None,
        "recent": [], "n_started": 0, "n_skipped": 0, "n_missed": 0,
    }
    _arm(t, rec, t.now)
    _save(t, rec)


def delete(t: Txn, sid: str) -> None:
    """Delete schedule `sid` (the workflows it started go on; they keep its id in `describe`)."""
    rec = load(t, sid)
    _disarm(t, rec)
    t.delete("sched", _key(sid))
    for key in [key for key, _ in t.scan("sched", _runs_prefix(sid))]:
        t.delete("sched", key)


def pause(t: Txn, sid: str, note: str) -> None:
    """Take no scheduled action until `unpause` (slots meanwhile are not caught up)."""
    rec = load(t, sid)
    rec["paused"] = True
    rec["note"] = note
    _disarm(t, rec)
    _save(t, rec)


def unpause(t: Txn, sid: str, note: str) -> None:
    """Take scheduled actions again, from the first slot after now; a start buffered meanwhile
    starts now if the workflow it waited for has closed."""
    rec = load(t, sid)
    if not rec["paused"]:
        return
    rec["paused"] = False
    rec["note"] = note
    _arm(t, rec, t.now)
    if rec["buffered"] is not None and _running(t, rec) is None:
        slot, rec["buffered"] = rec["buffered"], None
        _start(t, rec, slot, "scheduled")
    _save(t, rec)


def trigger(t: Txn, sid: str) -> None:
    """Take one action now, as a slot at the current time would (with the overlap policy),
    whether paused or not."""
    rec = load(t, sid)
    _act(t, rec, t.now, "trigger", rec["overlap"])
    _save(t, rec)


def backfill(t: Txn, sid: str, start: int, end: int, overlap: str, limit: int) -> int:
    """Take the actions of the slots in [start, end) (at most `limit`), with `overlap`; a slot
    whose workflow exists already (fired, or backfilled before) is not started again. Return
    how many slots there were."""
    rec = load(t, sid)
    n = 0
    slot = next_slot(rec["spec"], start - 1)
    while slot is not None and slot < end:
        n += 1
        if n > limit:
            raise InvalidArgument(f"backfill of schedule {sid!r}: more than {limit} slots in the range; "
                                  "backfill a shorter range at a time")
        _act(t, rec, slot, "backfill", overlap)
        slot = next_slot(rec["spec"], slot)
    _save(t, rec)
    return n


def fire(t: Txn, sid: str, due_key: bytes) -> None:
    """The due entry `due_key` of schedule `sid` fell due: take the actions of the slots that
    are due (those older than the catch-up window are missed), then set the next due entry."""
    try:
        rec = t.get_rec("sched", _key(sid))
    except DecodeError:  # a damaged record must not stop the timers of everything else
        return  # (describe reports its error)
    if not isinstance(rec, dict) or rec.get("due") != due_key:
        return  # deleted, paused or re-armed since: a stale entry
    rec["due"] = None
    slot = rec["next"]
    taken = 0
    while slot is not None and slot + _jitter(rec, slot) <= t.now and taken < SCHEDULE_FIRE_BATCH:
        oldest = t.now - rec["catchup"]
        if slot < oldest:  # the store's workers were down longer than the catch-up window
            first = next_slot(rec["spec"], oldest - 1)
            rec["n_missed"] += _count_slots(rec["spec"], slot, first)
            slot = first
            continue
        _act(t, rec, slot, "scheduled", rec["overlap"])
        if _crashpoint.ENABLED:  # fault tests only: die with the slot taken but not committed
            _crashpoint.hit("schedule-before-commit")
        taken += 1
        slot = next_slot(rec["spec"], slot)
    rec["next"] = slot
    if slot is not None:
        # past slots left (a long catch-up) fall due again at once, in the next transaction
        rec["due"] = _ops._set_due(t, slot + _jitter(rec, slot), b"S" + sid.encode())
    _save(t, rec)


def _count_slots(spec: dict[str, Any], first: int, end: int | None) -> int:
    """How many slots from `first` up to `end` (exclusive); for cron, counted up to 10,000."""
    if end is None:
        return 1
    every = spec.get("every")
    if every is not None:
        return max((end - first + int(every) - 1) // int(every), 1)
    n = 0
    nxt: int | None = first
    while nxt is not None and nxt < end and n < 10_000:
        n += 1
        nxt = next_slot(spec, nxt)
    return n


# --- actions ------------------------------------------------------------------------------------


def _running(t: Txn, rec: dict[str, Any]) -> dict[str, Any] | None:
    """The workflow record of the run this schedule started last, if it is still running."""
    last = rec.get("last")
    if last is None:
        return None
    wf = t.get_rec("wf", last[0].encode())
    if wf is None or wf["num"] != last[1] or wf["status"] != _ops.RUNNING:
        return None
    return wf  # type: ignore[no-any-return]


def _act(t: Txn, rec: dict[str, Any], slot: int, kind: str, overlap: str) -> None:
    """What slot `slot` does under `overlap`: start its workflow, or skip or buffer it."""
    running = None if overlap == "allow_all" else _running(t, rec)
    if running is None:
        _start(t, rec, slot, kind)
    elif overlap == "skip":
        rec["n_skipped"] += 1
    elif overlap == "buffer_one":
        if rec["buffered"] is None:
            rec["buffered"] = slot
        else:  # one start is buffered already: Temporal keeps the first
            rec["n_skipped"] += 1
    else:  # cancel_other: the newest slot waits for the running one to close
        if rec["buffered"] is not None:
            rec["n_skipped"] += 1
        rec["buffered"] = slot
        if not running["cancel"]:
            _ops.request_cancel(t, running["id"], f"schedule {rec['id']!r}: overlap policy cancel_other")


def _start(t: Txn, rec: dict[str, Any], slot: int, kind: str) -> None:
    wid = slot_workflow_id(rec["id"], slot)
    try:
        num, _ = _ops.start_workflow(t, wid, rec["type"], rec["queue"], rec["in"], False, False,
                                     "reject_duplicate")
    except WorkflowAlreadyExists:
        return  # this slot's workflow exists: it was started before (a backfill over fired slots)
    wf = _ops.load_wf(t, wid)
    wf["sched"] = rec["id"]
    wf["sgen"] = rec["created"]  # a schedule deleted and made again under its id is another one
    wf["slot"] = slot
    _ops._save_wf(t, wf)
    t.put("sched", _runs_prefix(rec["id"]) + u64x2(wf["created"], num), wid.encode())
    rec["last"] = [wid, num]
    rec["n_started"] += 1
    rec["recent"] = [*rec["recent"], {"slot": slot, "at": t.now, "id": wid, "num": num, "kind": kind}][
        -SCHEDULE_RECENT_ACTIONS:]


def on_close(t: Txn, wf: dict[str, Any], status: str) -> None:
    """A workflow that schedule `wf["sched"]` started closed with `status` (called by
    `_ops._close`, before `wf` is saved): pause the schedule if it failed and the schedule
    pauses on failure; start the buffered slot if this was the run it waited for."""
    if status == "continued_as_new":
        return  # not an end: the next run goes on for the schedule (`on_continue`)
    rec = t.get_rec("sched", _key(wf["sched"]))
    if rec is None or rec["created"] != wf.get("sgen"):
        return  # the schedule was deleted (and maybe made again)
    changed = False
    if status == "failed" and rec["pof"] and not rec["paused"]:
        rec["paused"] = True
        rec["note"] = f"paused because workflow {wf['id']!r} failed (pause_on_failure)"
        _disarm(t, rec)
        changed = True
    last = rec.get("last")
    if rec["buffered"] is not None and not rec["paused"] and last == [wf["id"], wf["num"]]:
        slot, rec["buffered"] = rec["buffered"], None
        _start(t, rec, slot, "scheduled")
        changed = True
    if changed:
        _save(t, rec)


def on_continue(t: Txn, wf: dict[str, Any], num: int) -> None:
    """A workflow that schedule `wf["sched"]` started continued as new into run `num` (called
    by `_ops.continue_run`, which carries the schedule's fields over): the schedule now waits
    for that run, so overlap policies and pause_on_failure see the chain, not its first run."""
    rec = t.get_rec("sched", _key(wf["sched"]))
    if rec is None or rec["created"] != wf.get("sgen") or rec.get("last") != [wf["id"], wf["num"]]:
        return
    rec["last"] = [wf["id"], num]
    _save(t, rec)


# --- reading ------------------------------------------------------------------------------------


def describe(t: Txn, sid: str, upcoming: int) -> dict[str, Any]:
    """The record of schedule `sid`, with "upcoming": its next `upcoming` slot times (none
    while paused) and "running": the id of the workflow it started last if that one runs."""
    rec = dict(load(t, sid))
    return _described(t, rec, upcoming)


def _described(t: Txn, rec: dict[str, Any], upcoming: int) -> dict[str, Any]:
    times: list[int] = []
    slot = rec["next"]
    while slot is not None and len(times) < upcoming and not rec["paused"]:
        times.append(slot)
        slot = next_slot(rec["spec"], slot)
    rec["upcoming"] = times
    running = _running(t, rec)
    rec["running"] = None if running is None else running["id"]
    return rec


def list_schedules(t: Txn, upcoming: int) -> list[dict[str, Any]]:
    """Every schedule, by id, described as `describe` does."""
    out = []
    for _, raw in t.scan("sched", b"s"):
        rec = decode(raw, what="schedule record")
        if isinstance(rec, dict):
            out.append(_described(t, rec, upcoming))
    return out


def started(t: Txn, sid: str, limit: int) -> list[dict[str, Any]]:
    """Records of the runs schedule `sid` started, newest first (at most `limit`)."""
    load(t, sid)
    out: list[dict[str, Any]] = []
    prefix = _runs_prefix(sid)
    for key, wid in t.scan_back("sched", prefix):
        try:
            out.append(_ops.load_run(t, wid.decode(), unpack_u64(key, len(prefix) + 8)))
        except WorkflowNotFound:
            continue
        if len(out) >= limit:
            break
    return out
