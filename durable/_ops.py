"""Domain operations on the store, each run inside one write (or read) transaction.

Every state change of the system is one of these functions applied to a `Txn`: appending events,
enqueueing what follows, updating the list/describe index and releasing a lease happen together
or not at all (F01). Results are accepted only from the holder of the current lease, checked in
the same transaction that records them (fencing: F06, F09, F11).

Layout (keys sort as bytes; integers are big-endian u64):

- ``wf``     workflow id -> record of its current (latest) run (status, counters, workflow-task state)
- ``runs``   workflow id + NUL + run number -> record of an earlier run of that id (closed; moved
  here from ``wf`` when the id started a new run: see `start_workflow`)
- ``num``    run number -> workflow id (the record is the id's in ``wf`` only while the numbers match)
- ``hist``   run number + event index -> event
- ``inbox``  run number + n -> input event that arrived while a workflow task was running
- ``act``    run number + seq -> state of a scheduled activity
- ``tasks``  kind + queue + NUL + visible_at + seq -> reference to the task
- ``due``    when + reference -> timers, activity deadlines, workflow-task lease expiries
- ``idx``    the list index, newest last, every key ending in start time + run number (u64 each)
  and holding the workflow id: "c" + when -> id (current runs), "s" + status + NUL + when -> id
  (current runs by status); "C" and "S" the same for earlier runs (format 1: "s" + status + NUL +
  workflow id -> empty; see `migrate`)
- ``types``  queue -> names registered by the workers of that queue
- ``query``  "r"/"a" + query number -> query request / answer; "u"/"P" + run number ->
  updates and the pending ones (see `_updates`)
- ``workers`` queue + NUL + worker identity -> when the worker last showed it serves the queue,
  and until when that holds (see `record_presence`)
- ``sched``  schedules, and the runs each started (see `_schedules`)
- ``meta``   format version, counters, and the close log: "C" + close number -> workflow id for
  the most recent closes (`CLOSE_LOG_KEEP`), so that a waiting client learns which workflows
  ended from one small read per wake-up (kept here: the counters' page is written anyway)
"""

from __future__ import annotations

import datetime as _dt
import heapq
import os
from collections.abc import Container, Iterator
from enum import StrEnum
from typing import Any

from . import _crashpoint
from . import _events as ev
from ._defs import arity_from_record, check_arity
from ._codec import _SCAN_ABOVE, decode, decode_run, encode, error_to_record
from ._errors import (
    HistoryLimitError,
    InvalidArgument,
    NotRegistered,
    WorkflowAlreadyExists,
    WorkflowClosed,
    WorkflowNotFound,
)
from ._limits import CLOSE_LOG_KEEP, MAX_HISTORY_EVENTS, MAX_TASK_ERROR_CHARS, MAX_WORKFLOW_TASK_RETRY_SECONDS
from ._retry import RetryPolicy
from ._backend import Txn
from ._store import u64, u64x2, unpack_u64

# workflow-task states
WFT_NONE, WFT_QUEUED, WFT_RUNNING = 0, 1, 2

RUNNING = "running"
STATUSES = ("running", "completed", "failed", "cancelled", "terminated", "continued_as_new", "timed_out")

#: What starting the id of a closed workflow does (Temporal's names): start a new run; start one
#: only if the last run did not complete; refuse.
ID_REUSE_POLICIES = ("allow_duplicate", "allow_duplicate_failed_only", "reject_duplicate")
#: What starting the id of a running workflow does: refuse (`WorkflowAlreadyExists`); hand back
#: the running one.
ID_CONFLICT_POLICIES = ("fail", "use_existing")

_NS = 1_000_000_000


class TaskStatus(StrEnum):
    """How recording a workflow task's outcome (or results with the task they make) went.

    Members are strings ("ok" == TaskStatus.OK), so callers may compare with either."""

    OK = "ok"  #: recorded
    LOST = "lost"  #: the task's lease is gone (another worker may hold it): nothing written
    RETRY = "retry"  #: signals came in as the task closed the workflow: they are recorded, the task runs again
    PLAIN = "plain"  #: the results alone are recorded (the history moved on): a task is queued for them
    REFUSED = "refused"  #: no result held its lease: nothing written


class LeaseStatus(StrEnum):
    """What a worker learns of a task it holds from a heartbeat (`heartbeat`, `activity_status`)."""

    OK = "ok"  #: still held
    CANCEL = "cancel"  #: still held, and the workflow asks the activity to stop
    LOST = "lost"  #: no longer held (expired, handed to another worker, or the step ended)


# --- small helpers -----------------------------------------------------------------------


def _counter(t: Txn, name: bytes) -> int:
    """A new number of counter `name`: unique, but not dense, and increasing only within a
    process (see `Txn.next_id`). Run numbers, query numbers, lease tokens and the tie-breaker of
    task keys only need to be unique (tokens: unequal to any earlier one, for fencing)."""
    return t.next_id(name)


def _dense_counter(t: Txn, name: bytes) -> int:
    """The next number of counter `name`, with no gaps: the close log (`closes_since`) reads a
    gap as closes dropped from the log."""
    raw = t.get("meta", name)
    n = (unpack_u64(raw) if raw else 0) + 1
    t.put("meta", name, u64(n))
    return n


def _task_prefix(kind: bytes, queue: str) -> bytes:
    return kind + queue.encode() + b"\x00"


def _enqueue(t: Txn, kind: bytes, queue: str, visible: int, ref: bytes) -> bytes:
    key = _task_prefix(kind, queue) + u64x2(visible, _counter(t, b"taskseq"))
    t.put("tasks", key, ref)
    t.ready(visible)
    return key


def _set_due(t: Txn, when: int, ref: bytes) -> bytes:
    key = u64(max(when, 0)) + ref
    t.put("due", key, b"")
    t.ready(when)
    return key


def _idx_key(status: str, when: bytes, earlier: bool = False) -> bytes:
    """The list index's key of a run with `status` started `when` (see `_when`)."""
    return (b"S" if earlier else b"s") + status.encode() + b"\x00" + when


def _when(rec: dict[str, Any]) -> bytes:
    """What ends a run's index keys: its start time, then its number (for runs started together)."""
    return u64x2(rec["created"], rec["num"])


def load_wf(t: Txn, wid: str) -> dict[str, Any]:
    """The record of workflow `wid`; `WorkflowNotFound` if there is none."""
    rec = t.get_rec("wf", wid.encode())
    if rec is None:
        raise WorkflowNotFound(f"no workflow with id {wid!r}")
    return rec  # type: ignore[no-any-return]


def load_run(t: Txn, wid: str, num: int | None) -> dict[str, Any]:
    """The record of run `num` of workflow `wid` (its current run if `num` is None);
    `WorkflowNotFound` if there is none."""
    rec = load_wf(t, wid)
    if num is None or rec["num"] == num:
        return rec
    earlier = t.get_rec("runs", _run_key(wid, num))
    if earlier is None:
        raise WorkflowNotFound(f"workflow {wid!r} has no run {f'{num:x}'!r} (its current run is {rec['num']:x})")
    return earlier  # type: ignore[no-any-return]


def _run_key(wid: str, num: int) -> bytes:
    return wid.encode() + b"\x00" + u64(num)


def _wf_by_num(t: Txn, num: int) -> dict[str, Any] | None:
    raw = t.get("num", u64(num))
    if raw is None:
        return None
    rec = t.get_rec("wf", raw)
    if rec is None or rec["num"] != num:
        return None
    return rec  # type: ignore[no-any-return]


def _save_wf(t: Txn, rec: dict[str, Any], old_status: str | None = None) -> None:
    rec["updated"] = t.now
    wid = rec["id"].encode()
    if old_status is not None and old_status != rec["status"]:
        when = _when(rec)
        t.delete("idx", _idx_key(old_status, when))
        t.put("idx", _idx_key(rec["status"], when), wid)
    t.put_rec("wf", wid, rec)


def _append(t: Txn, rec: dict[str, Any], event: dict[str, Any]) -> None:
    if rec["hlen"] >= MAX_HISTORY_EVENTS + 100:
        raise HistoryLimitError(
            f"workflow {rec['id']!r}: its history reached the limit of {MAX_HISTORY_EVENTS} events"
        )
    t.put("hist", u64x2(rec["num"], rec["hlen"]), encode(event))
    rec["hlen"] += 1


def _enqueue_wft(t: Txn, rec: dict[str, Any], visible: int | None = None) -> None:
    rec["wft"] = WFT_QUEUED
    rec["wtkey"] = _enqueue(t, b"w", rec["queue"], t.now if visible is None else visible, u64(rec["num"]))


def _deliver(t: Txn, rec: dict[str, Any], event: dict[str, Any]) -> None:
    """Add an input event: to the history, or to the inbox while a workflow task runs."""
    event["t"] = t.now
    if rec["wft"] == WFT_RUNNING:
        t.put("inbox", u64x2(rec["num"], rec["ilen"]), encode(event))
        rec["ilen"] += 1
        return
    _append(t, rec, event)
    if rec["wft"] == WFT_NONE:
        _enqueue_wft(t, rec)


def _drain_inbox(t: Txn, rec: dict[str, Any]) -> list[dict[str, Any]]:
    if not rec["ilen"]:  # `_deliver` counts what it puts there (and names the keys by it)
        return []
    events = []
    prefix = u64(rec["num"])
    keys = []
    for key, raw in t.scan("inbox", prefix):
        keys.append(key)
        events.append(decode(raw, what="inbox event"))
    for key in keys:
        t.delete("inbox", key)
    rec["ilen"] = 0
    return events


def _ref_act(num: int, seq: int) -> bytes:
    return b"A" + u64x2(num, seq)


# --- starting and reading workflows --------------------------------------------------------


def start_workflow(
    t: Txn, wid: str, wtype: str, queue: str, payload: bytes, use_existing: bool, check_type: bool,
    reuse: str = "allow_duplicate", delay_ns: int = 0, extra: dict[str, Any] | None = None,
    started_extra: dict[str, Any] | None = None,
) -> tuple[int, bool]:
    """Create a workflow, its first event and its first task. Return (run number, created).

    With `delay_ns`, the first task becomes visible that much later (a delayed start): the
    workflow is running from now on (signals are recorded), its code runs from then on.

    If `wid` is running, hand back its run with `use_existing` (id conflict policy "use_existing"),
    else refuse. If it is closed, start a new run as the id reuse policy `reuse` allows (see
    `ID_REUSE_POLICIES`): the closed run's record moves to "runs", its history stays.

    `extra` fields go into the new run's record (workflow timeouts, continue-as-new links: see
    `_arm_timeouts`, `continue_run`), `started_extra` into its `WorkflowStarted` event."""
    existing = t.get_rec("wf", wid.encode())
    if existing is not None:
        if existing["status"] == RUNNING:
            if use_existing:
                return existing["num"], False
            raise WorkflowAlreadyExists(
                f"a workflow with id {wid!r} is already running (type {existing['type']!r}, run {existing['num']:x})"
            )
        if reuse == "reject_duplicate" or (reuse == "allow_duplicate_failed_only" and existing["status"] == "completed"):
            raise WorkflowAlreadyExists(
                f"a workflow with id {wid!r} already ran ({existing['status']}, type {existing['type']!r}) "
                f"and the id reuse policy is {reuse!r}"
            )
    if check_type:
        _check_registered(t, queue, wtype)
    if existing is not None:
        _retire(t, existing)
    num = _counter(t, b"runnum")
    rec: dict[str, Any] = {
        "num": num, "id": wid, "type": wtype, "queue": queue, "status": RUNNING,
        "created": t.now, "updated": t.now, "closed": None, "hlen": 0, "ilen": 0,
        "wft": WFT_NONE, "timers": {}, "cancel": False, "n_act": 0, "n_att": 0, "n_retry": 0,
    }
    t.put("num", u64(num), wid.encode())
    seed = int.from_bytes(os.urandom(8), "big") >> 1
    started = {"k": ev.WORKFLOW_STARTED, "type": wtype, "in": payload, "seed": seed, "id": wid, "queue": queue}
    if started_extra:
        started.update(started_extra)
    if extra:
        rec.update(extra)
        _arm_timeouts(t, rec)
    if delay_ns > 0:
        rec["start_at"] = t.now + delay_ns
        started["t"] = t.now
        _append(t, rec, started)
        _enqueue_wft(t, rec, rec["start_at"])
    else:
        _deliver(t, rec, started)
    when = _when(rec)
    t.put("idx", b"c" + when, wid.encode())
    t.put("idx", _idx_key(RUNNING, when), wid.encode())
    _save_wf(t, rec)
    return num, True


def _retire(t: Txn, rec: dict[str, Any]) -> None:
    """Keep the closed run `rec` as an earlier run of its id (its history stays where it is)."""
    when, wid = _when(rec), rec["id"].encode()
    t.delete("idx", b"c" + when)
    t.put("idx", b"C" + when, wid)
    t.delete("idx", _idx_key(rec["status"], when))
    t.put("idx", _idx_key(rec["status"], when, earlier=True), wid)
    t.put_rec("runs", _run_key(rec["id"], rec["num"]), rec)


#: The registrations of a queue as last decoded, by their bytes: starts, signals and queries check
#: them on every call, and decoding them again would be a quarter of a start's time in the write
#: transaction. Shared and read-only: `_types` hands out the same object while the bytes are the same.
_types_seen: dict[bytes, Any] = {}


def _types(t: Txn, queue: str) -> Any:
    """The registrations of `queue` (see `publish_registry`), or None; not to be changed."""
    raw = t.get("types", queue.encode())
    if raw is None:
        return None
    rec = _types_seen.get(raw)
    if rec is None:
        rec = decode(raw, what="types record")
        if len(_types_seen) >= 64:
            _types_seen.clear()
        _types_seen[raw] = rec
    return rec


def _check_registered(t: Txn, queue: str, wtype: str) -> None:
    types = _types(t, queue)
    if not types:
        return  # no worker has served this queue yet: the workflow waits for one (as in Temporal)
    if wtype not in types.get("workflows", {}):
        known = ", ".join(sorted(types.get("workflows", {}))) or "none"
        raise NotRegistered(f"unknown workflow {wtype!r} on queue {queue!r} (registered: {known})")


def registered_workflow(t: Txn, queue: str, wtype: str) -> dict[str, Any] | None:
    """What the workers of `queue` published about workflow type `wtype`, or None."""
    types = _types(t, queue)
    return None if not types else types.get("workflows", {}).get(wtype)


def read_history(t: Txn, num: int, start: int = 0, end: int | None = None) -> list[dict[str, Any]]:
    """Events of run `num` from index `start` (to `end`), checked as they are decoded."""
    raws: list[bytes] = []
    prefix = u64(num)
    for key, raw in t.scan("hist", prefix, prefix + u64(start)):
        if end is not None and unpack_u64(key, 8) >= end:
            break
        raws.append(raw)
    events: list[dict[str, Any]] = []
    i = 0
    while i < len(raws):
        # the small events of the next few KiB go through one decoder (`decode_run`), each held to
        # exactly its own bytes; anything else (a long event, one that does not decode so) alone
        j, size = i, 0
        while j < len(raws) and size + len(raws[j]) <= _SCAN_ABOVE:
            size += len(raws[j])
            j += 1
        run = decode_run(b"".join(raws[i:j]), 0, j - i) if j - i > 1 else []
        taken = pos = 0
        for (_, stop), raw in zip(run, raws[i:j]):
            pos += len(raw)
            if stop != pos:
                break
            taken += 1
        if taken == 0:
            taken, run = 1, [(decode(raws[i], what="event"), 0)]
        for event, _ in run[:taken]:
            if type(event) is not dict or not ev.is_event(event):
                ev.check_event(event, f"run {num} event {start + len(events)}")
            events.append(event)
        i += taken
    return events


def raw_history(t: Txn, num: int) -> bytes:
    """Run `num`'s history as an exported history (a CBOR list of its events), made from the
    stored bytes of each event without decoding them (`durable check` hands it to processes
    that replay it, where it is decoded and checked as any exported history is)."""
    prefix = u64(num)
    raws = [raw for _, raw in t.scan("hist", prefix)]
    n = len(raws)
    if n < 24:
        head = bytes([0x80 | n])
    elif n < 1 << 8:
        head = bytes([0x98, n])
    elif n < 1 << 16:
        head = b"\x99" + n.to_bytes(2, "big")
    else:
        head = b"\x9a" + n.to_bytes(4, "big")
    return head + b"".join(raws)


def runs_to_check(t: Txn, queue: str | None, closed: int) -> list[dict[str, Any]]:
    """The records of every running workflow (of `queue`, if given), then of the `closed` closed
    runs started last (earlier runs of reused ids too), newest first in each part."""
    out = [rec for rec in _listed(t, RUNNING, None, None, None, False) if queue is None or rec["queue"] == queue]
    if closed > 0:
        taken = 0
        for rec in _listed(t, None, None, None, None, True):
            if rec["status"] != RUNNING and (queue is None or rec["queue"] == queue):
                out.append(rec)
                taken += 1
                if taken >= closed:
                    break
    return out


def list_workflows(t: Txn, status: str | None, wtype: str | None, limit: int, *, since: int | None = None,
                   until: int | None = None, all_runs: bool = False) -> list[dict[str, Any]]:
    """Records of current runs (with `all_runs`, of every run), newest first by start time,
    optionally only those with `status`, of type `wtype`, started at or after `since` and
    before `until` (ns). Read from the index, from the newest entry on, until `limit` are found."""
    out: list[dict[str, Any]] = []
    for rec in _listed(t, status, wtype, since, until, all_runs):
        out.append(rec)
        if len(out) >= limit:
            break
    return out


def count_workflows(t: Txn, status: str | None, wtype: str | None, *, since: int | None = None,
                    until: int | None = None, all_runs: bool = False) -> int:
    """How many runs `list_workflows` would list with no limit (from the index alone unless by type)."""
    if wtype is None and since is None and until is None:
        _check_status(status)
        prefixes = [_index_prefix(status, False)] + ([_index_prefix(status, True)] if all_runs else [])
        return sum(t.count_prefix("idx", prefix) for prefix in prefixes)
    if wtype is None:
        return sum(1 for _ in _indexed(t, status, since, until, all_runs))
    return sum(1 for _ in _listed(t, status, wtype, since, until, all_runs))


def _listed(t: Txn, status: str | None, wtype: str | None, since: int | None, until: int | None,
            all_runs: bool) -> Iterator[dict[str, Any]]:
    for when, wid, earlier in _indexed(t, status, since, until, all_runs):
        rec = t.get_rec("runs", wid + b"\x00" + when[8:]) if earlier else t.get_rec("wf", wid)
        if rec is not None and (wtype is None or rec["type"] == wtype):
            yield rec


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise InvalidArgument(f"unknown status {status!r} (one of: {', '.join(STATUSES)})")


def _index_prefix(status: str | None, earlier: bool) -> bytes:
    if status is None:
        return b"C" if earlier else b"c"
    return _idx_key(status, b"", earlier)


def _indexed(t: Txn, status: str | None, since: int | None, until: int | None,
             all_runs: bool) -> Iterator[tuple[bytes, bytes, bool]]:
    """(start time + run number, workflow id, whether an earlier run) of the index's entries,
    newest first; with `all_runs`, the current and earlier runs' entries merged."""
    _check_status(status)
    since = max(since or 0, 0)
    if until is not None and until <= since:
        return iter(())
    scans = [_scan_index(t, _index_prefix(status, False), since, until, False)]
    if all_runs:
        scans.append(_scan_index(t, _index_prefix(status, True), since, until, True))
        return heapq.merge(*scans, key=lambda entry: entry[0], reverse=True)
    return scans[0]


def _scan_index(t: Txn, prefix: bytes, since: int, until: int | None, earlier: bool) -> Iterator[tuple[bytes, bytes, bool]]:
    before = prefix + u64(until) if until is not None and until < 1 << 64 else None
    n = len(prefix)
    for key, wid in t.scan_back("idx", prefix, before):
        if since and unpack_u64(key, n) < since:
            return
        yield key[n:], wid, earlier


def migrate(t: Txn, version: int) -> None:
    """Rewrite a store of format `version` in this version's layout (`_store` calls it when it
    opens an older store, in one transaction with the new format marker)."""
    if version < 2:
        # format 1 indexed the status by workflow id alone, and nothing by start time
        for key in [key for key, _ in t.scan("idx", b"")]:
            t.delete("idx", key)
        for wid, raw in t.scan("wf", b""):
            try:
                rec = decode(raw, what="workflow record")
                when, status = _when(rec), rec["status"]
            except Exception:  # noqa: BLE001 - a record that does not decode stays out of the index
                continue  # (describe reports its error, as before)
            t.put("idx", b"c" + when, wid)
            t.put("idx", _idx_key(status, when), wid)
    # format 3 added the "sched" table, which opening the store creates: nothing to rewrite


def publish_registry(t: Txn, queue: str, desc: dict[str, Any]) -> None:
    """Record the names a worker serves on `queue`, so clients can check names."""
    old = t.get_rec("types", queue.encode()) or {"workflows": {}, "activities": []}
    old["workflows"].update(desc["workflows"])
    old["activities"] = sorted(set(old["activities"]) | set(desc["activities"]))
    t.put_rec("types", queue.encode(), old)


# --- which workers serve a queue ---------------------------------------------------------------


def record_presence(t: Txn, queue: str, identity: str, until: int, info: dict[str, Any]) -> None:
    """Worker `identity` serves `queue` now and will show it again before `until` (ns); `info`
    says what it is (pid, host, start time). A worker stopping writes `until` = now."""
    t.put_rec("workers", _task_prefix(b"", queue) + identity.encode(), {**info, "seen": t.now, "until": until})


def prune_presence(t: Txn, queue: str, before: int) -> None:
    """Forget the workers of `queue` gone since before `before` (ns), keeping the latest one."""
    recs = sorted(workers(t, queue), key=lambda r: r.get("until", 0) if isinstance(r.get("until"), int) else 0)
    for rec in recs[:-1]:
        if not isinstance(rec.get("until"), int) or rec["until"] < before:
            t.delete("workers", _task_prefix(b"", queue) + rec["identity"].encode(errors="surrogateescape"))


def queue_presence(t: Txn, queue: str) -> tuple[int, int | None]:
    """(Until when a worker is known to serve `queue`, in ns, 0 if none; when one was last seen
    there, or None if no worker ever served it). A worker serves it now if the first is past now."""
    recs = workers(t, queue)
    until = max((r["until"] for r in recs if isinstance(r.get("until"), int)), default=0)
    seen = [r["seen"] for r in recs if isinstance(r.get("seen"), int)]
    return until, max(seen) if seen else None


def nobody_serves(queue: str, now: int, presence: tuple[int, int | None]) -> str | None:
    """The warning for a queue no worker serves now (see `queue_presence`), or None."""
    until, last = presence
    if until > now:
        return None
    if last is None:
        return f"no worker has polled queue {queue!r} yet: the workflow waits until one does"
    when = _dt.datetime.fromtimestamp(last / 1e9, tz=_dt.timezone.utc).isoformat(timespec="seconds")
    return f"no worker has polled queue {queue!r} since {when}: the workflow waits until one does"


def workers(t: Txn, queue: str | None = None) -> list[dict[str, Any]]:
    """The worker records of `queue` (or of every queue), with their queue and identity."""
    out = []
    for key, raw in t.scan("workers", b"" if queue is None else _task_prefix(b"", queue)):
        rec = decode(raw, what="worker record")
        if isinstance(rec, dict):
            q, _, ident = key.partition(b"\x00")
            out.append({**rec, "queue": q.decode(errors="replace"), "identity": ident.decode(errors="surrogateescape")})
    return out


def describe_workers(t: Txn, queue: str | None) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, list[str]]]:
    """For `Client.workers`: the worker records (of `queue` or all), the registrations of their
    queues, and the names of the activities each worker identity holds a running attempt of."""
    recs = workers(t, queue)
    names = {q: _types(t, q) for q in {r["queue"] for r in recs}}
    running: dict[str, list[str]] = {}
    for _, raw in t.scan("act", b""):
        st = decode(raw, what="activity record")
        if isinstance(st, dict) and st.get("st") == "r" and isinstance(st.get("owner"), str):
            running.setdefault(st["owner"], []).append(str(st.get("name")))
    return recs, names, running


# --- signals, cancellation, termination ------------------------------------------------------


def _running(t: Txn, wid: str, action: str, num: int | None = None) -> dict[str, Any]:
    """The record of `wid`'s current run, if it is run `num` (when given) and running."""
    rec = load_run(t, wid, num)
    if rec["status"] != RUNNING:
        if num is None:
            raise WorkflowClosed(f"cannot {action} workflow {wid!r}: it {_was(rec['status'])}")
        current = load_wf(t, wid)["num"]
        raise WorkflowClosed(
            f"cannot {action} run {num:x} of workflow {wid!r}: it {_was(rec['status'])}"
            + ("" if current == num else f" (the current run is {current:x})")
        )
    return rec


def _was(status: str) -> str:
    """How a closed workflow's status reads after "it": "has completed", "was cancelled"..."""
    return f"has {status}" if status in ("completed", "failed") else f"was {status}"


def signal(t: Txn, wid: str, name: str, payload: bytes, num: int | None = None, nargs: int | None = None) -> None:
    """Append a signal to the workflow's history (or inbox) and schedule its task (only if its
    current run is run `num`, when given).

    With `nargs`, the count of its arguments is checked against the handler's signature, when
    the queue's workers have published it: a caller's mistake is refused before it is recorded.
    """
    rec = _running(t, wid, f"signal {name!r} to", num)
    if rec.get("closing"):
        raise WorkflowClosed(
            f"cannot signal {name!r} to workflow {wid!r}: its code has returned and it is closing "
            "(the signals it already accepted are being delivered)"
        )
    types = _types(t, rec["queue"]) or {}
    known = types.get("workflows", {}).get(rec["type"])
    if known is not None and name not in known.get("signals", []):
        names = ", ".join(known.get("signals", [])) or "none"
        raise NotRegistered(f"workflow type {rec['type']!r} has no signal {name!r} (signals: {names})")
    if known is not None and nargs is not None:
        fits = arity_from_record(known.get("signal_params", {}).get(name))
        if fits is not None:
            check_arity(f"signal {name!r} of workflow type {rec['type']!r}", fits, nargs)
    _deliver(t, rec, {"k": ev.SIGNAL_RECEIVED, "name": name, "in": payload})
    _save_wf(t, rec)


def request_cancel(t: Txn, wid: str, reason: str, num: int | None = None) -> None:
    """Ask the workflow to cancel: it sees `Cancelled` at its await points (idempotent)."""
    rec = _running(t, wid, "cancel", num)
    if rec["cancel"]:
        return
    rec["cancel"] = True
    _deliver(t, rec, {"k": ev.CANCEL_REQUESTED, "reason": reason})
    _save_wf(t, rec)


def terminate(t: Txn, wid: str, reason: str, num: int | None = None) -> None:
    """End the workflow at once: no more of its code runs; its activities lose their leases."""
    rec = _running(t, wid, "terminate", num)
    event = {"k": ev.WORKFLOW_TERMINATED, "t": t.now, "reason": reason}
    _append(t, rec, event)
    _close(t, rec, "terminated")
    _save_wf(t, rec, RUNNING)


def _close(t: Txn, rec: dict[str, Any], status: str) -> None:
    rec["status"] = status
    rec["closed"] = t.now
    # for the worker's log and metrics, once committed (its closing event is the history's last)
    t.note(("closed", rec["num"], rec["id"], rec["type"], status, rec["hlen"]))
    if "parent" in rec or rec.get("children"):
        _close_family(t, rec, status)
    n = _dense_counter(t, b"closeseq")
    t.put("meta", b"C" + u64(n), rec["id"].encode())
    if n > CLOSE_LOG_KEEP:
        t.delete("meta", b"C" + u64(n - CLOSE_LOG_KEEP))
    if rec["wft"] == WFT_QUEUED and rec.get("wtkey"):
        t.delete("tasks", rec["wtkey"])
    if rec.get("wdue"):
        t.delete("due", rec["wdue"])
    rec["wft"] = WFT_NONE
    for field_name in ("wtkey", "wdue", "wtok"):
        rec.pop(field_name, None)
    for due_key in rec["timers"].values():
        t.delete("due", due_key)
    rec["timers"] = {}
    if rec.get("xdue"):  # a workflow timeout (`_arm_timeouts`)
        t.delete("due", rec.pop("xdue"))
    _drain_inbox(t, rec)
    prefix = u64(rec["num"])
    for key, raw in list(t.scan("act", prefix)):
        state = decode(raw, what="activity state")
        if state.get("tkey"):
            t.delete("tasks", state["tkey"])
        if state.get("due"):
            t.delete("due", state["due"])
        t.delete("act", key)  # a running attempt learns at its next heartbeat that it is gone
        if not isinstance(state, dict) or state.get("st") != "q":  # an attempt may run: tell its worker now
            t.wake_acts = True
    t.wake = True
    if rec.get("uany"):  # updates in flight fail (durable/_updates.py)
        from . import _updates

        _updates.on_close(t, rec, status)
    if "sched" in rec:  # started by a schedule: it may pause, or start the slot it buffered
        from . import _schedules

        _schedules.on_close(t, rec, status)


# --- task claims ---------------------------------------------------------------------------


def claim(
    t: Txn, queue: str, owner: str, lease_ns: int, max_wft: int, max_act: int, max_query: int,
    skip_wft: frozenset[int] | set[int] = frozenset(),
) -> list[dict[str, Any]]:
    """Claim up to the given numbers of visible tasks of `queue` under a lease for `owner`
    (not the workflow tasks of the runs in `skip_wft`: the caller runs them before claiming).
    Each item says how long its task waited in the queue, visible, in ns ("waited")."""
    out: list[dict[str, Any]] = []
    for kind, limit in ((b"w", max_wft), (b"a", max_act), (b"q", max_query)):
        if limit <= 0:
            continue
        prefix = _task_prefix(kind, queue)
        taken: list[tuple[bytes, bytes]] = []
        for key, ref in t.scan("tasks", prefix, skip_locked=True):
            if unpack_u64(key, len(prefix)) > t.now or len(taken) >= limit:
                break
            if kind == b"q" and not _query_ready(t, unpack_u64(ref)):
                continue
            if kind == b"w" and skip_wft and unpack_u64(ref) in skip_wft:
                continue
            taken.append((key, ref))
        for key, ref in taken:
            t.delete("tasks", key)
            if kind == b"w":
                item = _claim_wft(t, unpack_u64(ref), owner, lease_ns)
            elif kind == b"a":
                item = _claim_activity(t, unpack_u64(ref), unpack_u64(ref, 8), owner, lease_ns)
            else:
                item = _claim_query(t, unpack_u64(ref))
            if item is not None:
                item["waited"] = t.now - unpack_u64(key, len(prefix))  # since it became visible (ns)
                out.append(item)
    return out


def peek_workflow_tasks(t: Txn, queue: str, limit: int, max_events: int,
                        skip: frozenset[int] | set[int] = frozenset()) -> tuple[list[dict[str, Any]], bool]:
    """Read-only: the visible workflow tasks of `queue` (not of the runs in `skip`) that a worker
    may run before it claims them, when there are at most `limit` and each history holds at most
    `max_events` events; and whether other visible tasks are left to claim the usual way.
    Each item is what `_claim_wft` gives, with `token` None and the task's key as `tkey`."""
    prefix = _task_prefix(b"w", queue)
    items: list[dict[str, Any]] = []
    rest = False
    for key, ref in t.scan("tasks", prefix):
        if unpack_u64(key, len(prefix)) > t.now:
            break
        num = unpack_u64(ref)
        if num in skip:
            continue
        if len(items) >= limit:  # busy: claim them all in batches instead
            return [], True
        rec = _wf_by_num(t, num)
        if (rec is None or rec["status"] != RUNNING or rec["wft"] != WFT_QUEUED or rec.get("wtkey") != key
                or rec["hlen"] > max_events):
            rest = True  # the usual claim deals with it, and with what comes after it
            break
        items.append(dict(_wft_item(rec, None), tkey=key))
    for kind in (b"a", b"q"):
        prefix = _task_prefix(kind, queue)
        first = t.first("tasks", prefix)
        rest = rest or first is not None and unpack_u64(first[0], len(prefix)) <= t.now
    return items, rest


def claim_peeked_wft(t: Txn, item: dict[str, Any], owner: str, lease_ns: int) -> int | None:
    """Claim the workflow task `item` from `peek_workflow_tasks` if it is still the same queued
    task over the same history; return its token, or None (another worker took it, or events
    came in since: the caller's activation is stale and must be dropped)."""
    rec = _wf_by_num(t, item["num"])
    if rec is None or rec.get("wtkey") != item["tkey"] or rec["hlen"] != item["hlen"]:
        return None  # a task's key is kept only while it is queued (_claim_wft, _close drop it)
    t.delete("tasks", item["tkey"])
    claimed = _claim_wft(t, item["num"], owner, lease_ns)
    return None if claimed is None else claimed["token"]


def _claim_wft(t: Txn, num: int, owner: str, lease_ns: int) -> dict[str, Any] | None:
    rec = _wf_by_num(t, num)
    if rec is None or rec["status"] != RUNNING or rec["wft"] != WFT_QUEUED:
        return None
    token = _counter(t, b"token")
    rec.update(wft=WFT_RUNNING, wtok=token, wowner=owner)
    rec.pop("wtkey", None)
    rec["wdue"] = _set_due(t, t.now + lease_ns, b"W" + u64(num))
    _save_wf(t, rec)
    return _wft_item(rec, token)


def _wft_item(rec: dict[str, Any], token: int | None) -> dict[str, Any]:
    """What a worker is handed to run a workflow task of `rec`. "upd": how many update requests
    were pending then (those that come later are for the task its end queues: `_record_commands`)."""
    return {"kind": "wft", "num": rec["num"], "id": rec["id"], "type": rec["type"], "queue": rec["queue"],
            "hlen": rec["hlen"], "token": token, "upd": rec.get("upd", 0)}


def _bad_activity_state(st: Any) -> str | None:
    """Why a stored activity state is malformed (written by something other than this code), or
    None. Checked before a worker is handed the task, so bad bytes fail one step, not workers."""
    if not isinstance(st, dict):
        return "the activity record is not a map"
    for field, typ in (("name", str), ("in", bytes), ("opts", dict), ("queue", str), ("attempt", int),
                       ("st", str), ("sched", int)):
        if not isinstance(st.get(field), typ):
            return f"the activity record's {field!r} is not {typ.__name__}"
    opts = st["opts"]
    for field in ("s2c", "sched2c", "hb"):
        value = opts.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= 10 * 365 * 86_400):
            return f"the activity option {field!r} is not a valid duration"
    if not isinstance(opts.get("retry"), dict) or opts.get("cancel", "wait") not in ("wait", "try", "abandon"):
        return "the activity's retry policy or cancellation mode is malformed"
    try:
        RetryPolicy.from_record(opts["retry"])
    except Exception as exc:  # noqa: BLE001 - any malformed policy
        return f"the activity's retry policy is malformed: {exc}"
    return None


def _claim_activity(t: Txn, num: int, seq: int, owner: str, lease_ns: int) -> dict[str, Any] | None:
    key = u64x2(num, seq)
    st = t.get_rec("act", key)
    if st is None:
        return None
    rec = _wf_by_num(t, num)
    if rec is None:
        return None
    bad = _bad_activity_state(st)
    if bad is not None:  # fail the step, clearly; never hand a worker a record it cannot read
        t.delete("act", key)
        if isinstance(st, dict) and isinstance(st.get("due"), bytes):
            t.delete("due", st["due"])
        err = {"type": "durable.DecodeError", "msg": f"activity seq {seq}: {bad}", "nr": True}
        _deliver(t, rec, {"k": ev.ACTIVITY_FAILED, "seq": seq, "err": err, "attempt": 0, "why": "failed"})
        _save_wf(t, rec)
        return None
    if st["st"] != "q":
        return None
    item = _start_attempt(t, rec, num, seq, st, owner, lease_ns)
    _save_wf(t, rec)
    return item


def _start_attempt(t: Txn, rec: dict[str, Any], num: int, seq: int, st: dict[str, Any], owner: str,
                   lease_ns: int) -> dict[str, Any]:
    """Give a queued activity's next attempt to `owner` under a lease (the caller saves `rec`)."""
    token = _counter(t, b"token")
    st.update(st="r", tok=token, owner=owner, exp=t.now + lease_ns, start=t.now, hbt=None)
    st["attempt"] += 1
    st.pop("tkey", None)
    _reset_act_due(t, st, num, seq)
    t.put_rec("act", u64x2(num, seq), st)
    rec["n_att"] += 1
    if st["attempt"] > 1:
        rec["n_retry"] += 1
    return {
        "kind": "act", "num": num, "seq": seq, "token": token, "name": st["name"], "in": st["in"],
        "attempt": st["attempt"], "opts": st["opts"], "hb": st.get("hb"), "wid": rec["id"],
        "wtype": rec["type"], "queue": st["queue"], "start": t.now, "sched": st["sched"],
    }


def _query_ready(t: Txn, qnum: int) -> bool:
    """A query waits while its workflow has a workflow task to run, so that it sees every event
    recorded before it was asked (a signal sent before a query is visible to the query)."""
    req = t.get_rec("query", b"r" + u64(qnum))
    if req is None:
        return True  # claimed and dropped below
    rec = _wf_by_num(t, req["num"])
    return rec is None or rec["status"] != RUNNING or rec["wft"] == WFT_NONE or "tfail" in rec


def claim_workflow_task(t: Txn, num: int, queue: str, owner: str, lease_ns: int) -> dict[str, Any] | None:
    """Claim run `num`'s queued workflow task (sticky dispatch to the worker that caches it)."""
    rec = _wf_by_num(t, num)
    if rec is None or rec["status"] != RUNNING or rec["wft"] != WFT_QUEUED or rec["queue"] != queue:
        return None
    key = rec.get("wtkey")
    if not key or unpack_u64(key, len(_task_prefix(b"w", queue))) > t.now:
        return None
    t.delete("tasks", key)
    return _claim_wft(t, num, owner, lease_ns)


def _claim_query(t: Txn, qnum: int) -> dict[str, Any] | None:
    req = t.get_rec("query", b"r" + u64(qnum))
    if req is None:
        return None
    req.pop("tkey", None)
    return {"kind": "query", "qnum": qnum, **req}


def _act_deadline(st: dict[str, Any]) -> int:
    opts = st["opts"]
    if st["st"] == "q":
        return st["sched"] + int(opts["sched2c"] * _NS) if "sched2c" in opts else 0
    deadline: int = st["exp"]
    if "s2c" in opts:
        deadline = min(deadline, st["start"] + int(opts["s2c"] * _NS))
    if "hb" in opts:
        deadline = min(deadline, (st["hbt"] or st["start"]) + int(opts["hb"] * _NS))
    if "sched2c" in opts:
        deadline = min(deadline, st["sched"] + int(opts["sched2c"] * _NS))
    return deadline


def _reset_act_due(t: Txn, st: dict[str, Any], num: int, seq: int) -> None:
    if st.get("due"):
        t.delete("due", st["due"])
        st["due"] = None
    deadline = _act_deadline(st)
    if deadline:
        st["due"] = _set_due(t, deadline, _ref_act(num, seq))


# --- workflow tasks ------------------------------------------------------------------------


def _fenced_wft(t: Txn, num: int, token: int) -> dict[str, Any] | None:
    rec = _wf_by_num(t, num)
    if rec is None or rec["status"] != RUNNING or rec["wft"] != WFT_RUNNING or rec.get("wtok") != token:
        return None
    return rec


#: Activities to claim as they are scheduled (eager dispatch): (their seqs, the claiming worker's
#: queue, its identity, its lease in ns, and the list the claimed tasks are added to). The worker
#: that scheduled them runs them without a round trip through the queue.
Eager = tuple[Container[int], str, str, int, list[dict[str, Any]]]


def complete_workflow_task(t: Txn, num: int, token: int, commands: list[dict[str, Any]],
                           eager: Eager | None = None) -> TaskStatus:
    """Record an activation's commands; return "ok", "lost" (lease gone) or "retry".

    "retry" means signals arrived while the code decided to close the workflow: they are put in
    the history and the task runs again, so that no signal is lost (F13). Until that task ends,
    new signals are refused (`WorkflowClosed`): otherwise a steady stream of signals could keep
    the workflow from ever closing, every retry finding new ones.
    """
    rec = _ending_wft(t, num, token)
    if rec is None:
        return TaskStatus.LOST
    return _record_commands(t, rec, commands, eager)


def _ending_wft(t: Txn, num: int, token: int) -> dict[str, Any] | None:
    """The record of run `num` if `token` holds its running workflow task, which the caller ends
    in this transaction: waiting clients, and workers with queries waiting for it, look again."""
    rec = _fenced_wft(t, num, token)
    if rec is None:
        return None
    t.wake = True  # a waiting client may look again
    if t.first("tasks", _task_prefix(b"q", rec["queue"])) is not None:
        t.ready(t.now)  # queries wait for the workflow's task to end: a worker may claim them now
    return rec


def _results_then(t: Txn, rec: dict[str, Any], events: list[dict[str, Any]], hlen: int,
                  commands: list[dict[str, Any]], eager: Eager | None, plain: bool = False) -> TaskStatus:
    """Record activities' results (ActivityCompleted events as given to the live instance) and
    the commands of the workflow task they made, if the history is still the one the instance
    had seen (`hlen` events, no task queued or running, nothing in the inbox) and not `plain`:
    the task's status. Else the results alone, delivered as inputs (a task is queued): "plain"."""
    if plain or rec["wft"] != WFT_NONE or rec["hlen"] != hlen or rec["ilen"]:
        for event in events:
            _deliver(t, rec, {k: v for k, v in event.items() if k != "t"})
        _save_wf(t, rec)
        return TaskStatus.PLAIN
    for event in events:
        _append(t, rec, event)
    t.wake = True
    return _record_commands(t, rec, commands, eager)


def complete_activities_and_continue(
    t: Txn, num: int, results: list[tuple[int, int, dict[str, Any]]], hlen: int, commands: list[dict[str, Any]],
    eager: Eager | None = None,
) -> tuple[list[bool], TaskStatus]:
    """Record attempts' results together with the workflow task they make, already run by the
    worker that holds the workflow's live instance: one transaction instead of two per result.

    `results` are (seq, token, ActivityCompleted event as given to the instance, with its time);
    `hlen` is the history length the instance had seen. Returns whether each result was accepted
    (its attempt still held the lease) and "ok" if the events and the commands were recorded as
    the workflow task's. If a result was refused or anything else happened to the workflow
    meanwhile (an event appended, a task queued or running), the accepted results alone are
    recorded, as by `complete_activity`, and "plain" is returned: the worker drops its instance.
    """
    states = [_fenced_act(t, num, seq, token) for seq, token, _ in results]
    accepted = [st is not None for st in states]
    if not any(accepted):
        return accepted, TaskStatus.REFUSED
    rec = _wf_by_num(t, num)
    assert rec is not None and rec["status"] == RUNNING
    for (seq, _, _), st in zip(results, states):
        if st is not None:
            _drop_activity(t, u64x2(num, seq), st)
    events = [event for (_, _, event), st in zip(results, states) if st is not None]
    return accepted, _results_then(t, rec, events, hlen, commands, eager, plain=not all(accepted))


def complete_task_run_ahead(
    t: Txn, num: int, token: int, started: int, commands: list[dict[str, Any]], results: list[dict[str, Any]],
    hlen: int, commands2: list[dict[str, Any]], eager: Eager | None = None,
) -> tuple[TaskStatus, TaskStatus | None]:
    """Record a workflow task whose activities the worker ran before recording it (and which all
    finished), their results, and the workflow task those made, already run: one transaction
    for what would otherwise be the task, then the results with the next task.

    `commands` are the first task's (dated `started`, when its activities began to run, so that
    the history's times keep their order): each activity they schedule is counted as scheduled
    and attempted once, with no attempt record, since `results` (ActivityCompleted events, as
    given to the instance) end them here. `hlen` is the history length the instance had seen
    before the results; `commands2` the commands they made. Returns the first task's status
    ("ok", "lost"; see `complete_workflow_task`) and, if it is "ok", the second's: "ok" if the
    results and `commands2` were recorded as the next task, "plain" if something else came in
    meanwhile (signals in the inbox): then the results alone are recorded and a task queued, as
    `complete_activities_and_continue` does, and the worker drops its instance.
    """
    rec = _ending_wft(t, num, token)
    if rec is None:
        return TaskStatus.LOST, None
    now, t.now = t.now, min(t.now, started)
    try:
        status = _record_commands(t, rec, commands, None, frozenset(e["seq"] for e in results))
    finally:
        t.now = now
    if status != TaskStatus.OK:
        return status, None
    return status, _results_then(t, rec, results, hlen, commands2, eager)


def _record_commands(t: Txn, rec: dict[str, Any], commands: list[dict[str, Any]], eager: Eager | None,
                     ran: Container[int] = ()) -> TaskStatus:
    """Append a workflow task's commands and apply them (see `complete_workflow_task`); the
    activities `ran` are already over (`complete_task_run_ahead`): no attempt record for them."""
    closing = commands[-1]["k"] if commands and commands[-1]["k"] in ev.CLOSING_KINDS else None
    carried: list[dict[str, Any]] = []
    if closing == ev.WORKFLOW_CONTINUED_AS_NEW:
        carried = _drain_inbox(t, rec)  # the next run takes them in (`continue_run`)
    elif closing is not None and rec["ilen"]:
        pending = _drain_inbox(t, rec)
        if any(e["k"] == ev.SIGNAL_RECEIVED for e in pending):
            for event in pending:
                _append(t, rec, event)
            _release_wft(t, rec)
            _enqueue_wft(t, rec)
            rec["closing"] = True
            _save_wf(t, rec)
            return TaskStatus.RETRY
        rec["ilen"] = 0
    rec.pop("closing", None)
    if rec["hlen"] + len(commands) > MAX_HISTORY_EVENTS + (_CONTINUE_ROOM if closing == ev.WORKFLOW_CONTINUED_AS_NEW else 0):
        carried = []
        err = HistoryLimitError(
            f"workflow {rec['id']!r}: its history would pass the limit of {MAX_HISTORY_EVENTS} events"
        )
        commands = [{"k": ev.WORKFLOW_FAILED, "err": error_to_record(err)}]
        closing = ev.WORKFLOW_FAILED
    followups: list[dict[str, Any]] = []
    for command in commands:
        event = dict(command)
        event["t"] = t.now
        _append(t, rec, event)
        _apply_command(t, rec, event, followups, eager, ran)
    _release_wft(t, rec)
    rec.pop("tfail", None)
    if closing is not None:
        _close(t, rec, "timed_out" if closing == ev.WORKFLOW_CANCELLED and rec.get("tmo") else ev.CLOSING_STATUS[closing])
        _save_wf(t, rec, RUNNING)
        if closing == ev.WORKFLOW_CONTINUED_AS_NEW:
            continue_run(t, rec, commands[-1], carried)
        return TaskStatus.OK
    pending = _drain_inbox(t, rec) + followups
    for event in pending:
        event.setdefault("t", t.now)
        _append(t, rec, event)
    if pending or rec.get("upd"):  # update requests came in while it ran (durable/_updates.py)
        _enqueue_wft(t, rec)
    _save_wf(t, rec)
    return TaskStatus.OK


def _release_wft(t: Txn, rec: dict[str, Any]) -> None:
    if rec.get("wdue"):
        t.delete("due", rec["wdue"])
    for key in ("wdue", "wtok", "wowner"):
        rec.pop(key, None)
    rec["wft"] = WFT_NONE


def _apply_command(t: Txn, rec: dict[str, Any], event: dict[str, Any], followups: list[dict[str, Any]],
                   eager: Eager | None = None, ran: Container[int] = ()) -> None:
    kind = event["k"]
    num = rec["num"]
    if kind == ev.ACTIVITY_SCHEDULED:
        seq = event["seq"]
        if seq in ran:  # run ahead and over: its result follows in this transaction
            rec["n_act"] += 1
            rec["n_att"] += 1
            return
        opts = event["opts"]
        queue = opts.get("queue") or rec["queue"]
        st: dict[str, Any] = {
            "name": event["name"], "in": event["in"], "opts": opts, "queue": queue, "attempt": 0,
            "st": "q", "sched": t.now, "cancel": False, "due": None, "hb": None,
        }
        rec["n_act"] += 1
        if eager is not None and seq in eager[0] and queue == eager[1]:
            eager[4].append(_start_attempt(t, rec, num, seq, st, eager[2], eager[3]))
            return
        st["tkey"] = _enqueue(t, b"a", queue, t.now, u64x2(num, seq))
        _reset_act_due(t, st, num, seq)
        t.put_rec("act", u64x2(num, seq), st)
    elif kind == ev.ACTIVITY_CANCEL_REQUESTED:
        key = u64x2(num, event["seq"])
        st = t.get_rec("act", key)
        if st is None:
            return  # it already ended; its final event is in the inbox or history
        if st["st"] == "q":  # not running anywhere: cancelled at once
            _drop_activity(t, key, st)
            followups.append({"k": ev.ACTIVITY_CANCELLED, "seq": event["seq"], "t": t.now})
        else:
            st["cancel"] = True  # its worker learns at once (wake_acts), or at its next heartbeat
            t.put_rec("act", key, st)
            t.wake = True
            t.wake_acts = True
    elif kind == ev.TIMER_STARTED:
        rec["timers"][event["seq"]] = _set_due(t, t.now + event["dur"], b"T" + u64x2(num, event["seq"]))
    elif kind == ev.TIMER_CANCELLED:
        due_key = rec["timers"].pop(event["seq"], None)
        if due_key is not None:
            t.delete("due", due_key)
    elif kind in ev.CHILD_COMMAND_KINDS:
        _apply_child_command(t, rec, event, followups)
    elif kind in (ev.UPDATE_ACCEPTED, ev.UPDATE_COMPLETED):
        from . import _updates

        _updates.on_command(t, rec, event)


def _drop_activity(t: Txn, key: bytes, st: dict[str, Any]) -> None:
    if st.get("tkey"):
        t.delete("tasks", st["tkey"])
    if st.get("due"):
        t.delete("due", st["due"])
    t.delete("act", key)


def fail_workflow_task(t: Txn, num: int, token: int, error: str | bytes) -> bool:
    """The workflow's code could not run (a bug, non-determinism, an unknown type).

    The history is left as it is; the task is tried again with a growing delay, so the workflow
    resumes by itself once fixed code is deployed. The error is kept for `describe` and `list`
    (as text, or as the bytes the worker's codec made of it: `Converter.encode_text`).
    """
    rec = _fenced_wft(t, num, token)
    if rec is None:
        return False
    rec.pop("closing", None)
    failures = rec.get("tfail", {}).get("n", 0) + 1
    rec["tfail"] = {"err": error[:MAX_TASK_ERROR_CHARS] if isinstance(error, str) else error, "n": failures, "t": t.now}
    for event in _drain_inbox(t, rec):
        _append(t, rec, event)
    _release_wft(t, rec)
    delay = min(0.1 * 2 ** min(failures - 1, 20), MAX_WORKFLOW_TASK_RETRY_SECONDS)
    _enqueue_wft(t, rec, t.now + int(delay * _NS))
    _save_wf(t, rec)
    return True


# --- activities ----------------------------------------------------------------------------


def _fenced_act(t: Txn, num: int, seq: int, token: int) -> dict[str, Any] | None:
    """The attempt's state if `token` holds its lease *now*: a lease or timeout that has passed
    fences the attempt even before the clock task has processed it (F06, F09)."""
    st = t.get_rec("act", u64x2(num, seq))
    if st is None or st["st"] != "r" or st.get("tok") != token:
        return None
    if t.now >= _act_deadline(st):
        return None
    return st  # type: ignore[no-any-return]


def complete_activity(t: Txn, num: int, seq: int, token: int, payload: bytes) -> bool:
    """Record an attempt's result if it still holds the lease; return whether it was accepted."""
    st = _fenced_act(t, num, seq, token)
    if st is None:
        return False
    rec = _wf_by_num(t, num)
    assert rec is not None and rec["status"] == RUNNING
    _drop_activity(t, u64x2(num, seq), st)
    _deliver(t, rec, {"k": ev.ACTIVITY_COMPLETED, "seq": seq, "out": payload, "attempt": st["attempt"]})
    _save_wf(t, rec)
    return True


def fail_activity(t: Txn, num: int, seq: int, token: int, err: dict[str, Any], retryable: bool, cancelled: bool,
                  details: bytes | None = None) -> bool:
    """Record a failed (or, after a cancel request, cancelled) attempt if it holds the lease.

    `details` are heartbeat details the attempt gave after its last heartbeat was sent: kept,
    like those of a heartbeat, for the next attempt.
    """
    st = _fenced_act(t, num, seq, token)
    if st is None:
        return False
    if details is not None:
        st["hb"] = details
        st["hbt"] = t.now
    rec = _wf_by_num(t, num)
    assert rec is not None
    key = u64x2(num, seq)
    if cancelled and st["cancel"]:
        _drop_activity(t, key, st)
        _deliver(t, rec, {"k": ev.ACTIVITY_CANCELLED, "seq": seq})
    else:
        _retry_or_fail(t, rec, key, st, err, "failed", retryable)
    _save_wf(t, rec)
    return True


def _retry_or_fail(t: Txn, rec: dict[str, Any], key: bytes, st: dict[str, Any], err: dict[str, Any], why: str, retryable: bool) -> None:
    policy = RetryPolicy.from_record(st["opts"]["retry"])
    attempt = st["attempt"]
    err_type = str(err.get("type", ""))
    non_retryable = (
        not retryable
        or bool(err.get("nr"))
        or any(err_type == n or err_type.endswith("." + n) for n in policy.non_retryable)
    )
    if not non_retryable and attempt < policy.max_attempts and not st["cancel"]:
        visible = t.now + int(policy.delay(attempt) * _NS)
        sched2c = st["opts"].get("sched2c")
        if sched2c is None or visible < st["sched"] + int(sched2c * _NS):
            if st.get("due"):
                t.delete("due", st["due"])
            st.update(st="q", lerr=err, tok=None, owner=None, due=None)
            st["tkey"] = _enqueue(t, b"a", st["queue"], visible, key[:16])
            _reset_act_due(t, st, unpack_u64(key), unpack_u64(key, 8))
            t.put_rec("act", key, st)
            return
        # the next attempt would start after the deadline: the step timed out, the last error its cause
        err = {"type": "ScheduleToCloseTimeout", "cause": err,
               "msg": f"schedule_to_close timeout of {sched2c:g} s: no time left for attempt {attempt + 1}"}
        why = "timed_out"
    _drop_activity(t, key, st)
    seq = unpack_u64(key, 8)
    if st["cancel"]:
        _deliver(t, rec, {"k": ev.ACTIVITY_CANCELLED, "seq": seq})
    else:
        _deliver(t, rec, {"k": ev.ACTIVITY_FAILED, "seq": seq, "err": err, "attempt": attempt, "why": why})


def heartbeat(t: Txn, owner: str, lease_ns: int, items: list[tuple[Any, ...]]) -> list[LeaseStatus]:
    """Renew the leases `owner` holds; return per item "ok", "cancel" or "lost".

    Items are ("act", num, seq, token, details-or-None) or ("wft", num, token).
    """
    out = []
    for item in items:
        if item[0] == "wft":
            rec = _fenced_wft(t, item[1], item[2])
            if rec is None:
                out.append(LeaseStatus.LOST)
                continue
            t.delete("due", rec["wdue"])
            rec["wdue"] = _set_due(t, t.now + lease_ns, b"W" + u64(rec["num"]))
            _save_wf(t, rec)
            out.append(LeaseStatus.OK)
            continue
        _, num, seq, token, details = item
        st = _fenced_act(t, num, seq, token)
        if st is None:
            out.append(LeaseStatus.LOST)
            continue
        st["exp"] = t.now + lease_ns
        if details is not None:
            st["hb"] = details
            st["hbt"] = t.now
        _reset_act_due(t, st, num, seq)
        t.put_rec("act", u64x2(num, seq), st)
        out.append(LeaseStatus.CANCEL if st["cancel"] else LeaseStatus.OK)
    return out


def activity_status(t: Txn, items: list[tuple[int, int, int]]) -> list[LeaseStatus]:
    """Read-only: for each (num, seq, token) this worker runs, "ok", "cancel" or "lost".

    Lets a worker learn of a cancel request as soon as it is committed, between heartbeats.
    """
    out = []
    for num, seq, token in items:
        st = t.get_rec("act", u64x2(num, seq))
        if st is None or st["st"] != "r" or st.get("tok") != token:
            out.append(LeaseStatus.LOST)
        else:
            out.append(LeaseStatus.CANCEL if st["cancel"] else LeaseStatus.OK)
    return out


def pending_activities(t: Txn, num: int) -> list[dict[str, Any]]:
    """The activities of run `num` that have no final event yet, in the order they were
    scheduled: name, state, attempt, last failure, when the next attempt may start, the worker
    running the current one, and when it last sent a heartbeat."""
    out = []
    for key, raw in t.scan("act", u64(num)):
        st = decode(raw, what="activity record")
        if not isinstance(st, dict) or "st" not in st:
            continue
        running = st["st"] == "r"
        tkey = st.get("tkey")
        out.append({
            "seq": unpack_u64(key, 8), "name": st.get("name"), "attempt": st.get("attempt", 0),
            "state": "running" if running else ("backing_off" if st.get("lerr") else "scheduled"),
            "last_failure": st.get("lerr"), "worker": st.get("owner") if running else None,
            "next_attempt": unpack_u64(tkey, len(tkey) - 16) if isinstance(tkey, bytes) and not running else None,
            "started": st.get("start") if running else None, "heartbeat": st.get("hbt"),
            "cancel_requested": bool(st.get("cancel")), "scheduled": st.get("sched"),
        })
    return out


def release_activity(t: Txn, num: int, seq: int, token: int) -> bool:
    """Hand a claimed attempt back (worker shutting down): queued again, attempt not counted."""
    st = _fenced_act(t, num, seq, token)
    if st is None:
        return False
    _requeue_uncounted(t, num, seq, st, t.now)
    return True


def refuse_activity(t: Txn, num: int, seq: int, token: int, error: str) -> bool:
    """The claiming worker does not have the activity's code, so nothing ran (F15).

    The task is queued again with a growing delay and the attempt is not counted, so that the
    activity runs once a worker with the code serves the queue (a deploy must not burn its
    retries). Until the workflow's next task succeeds, `describe` shows the error.
    """
    st = _fenced_act(t, num, seq, token)
    if st is None:
        return False
    st["refused"] = refusals = st.get("refused", 0) + 1
    delay = min(0.1 * 2 ** min(refusals - 1, 20), MAX_WORKFLOW_TASK_RETRY_SECONDS)
    rec = _requeue_uncounted(t, num, seq, st, t.now + int(delay * _NS))
    if rec is not None:
        failures = (rec.get("tfail") or {}).get("n", 0) + 1
        rec["tfail"] = {"err": error[:MAX_TASK_ERROR_CHARS], "n": failures, "t": t.now}
        _save_wf(t, rec)
    return True


def _requeue_uncounted(t: Txn, num: int, seq: int, st: dict[str, Any], visible: int) -> dict[str, Any] | None:
    key = u64x2(num, seq)
    if st.get("due"):
        t.delete("due", st["due"])
    st.update(st="q", tok=None, owner=None, due=None)
    rec = _wf_by_num(t, num)
    if rec is not None:  # the claim counted it: so must describe() stop counting it
        rec["n_att"] -= 1
        if st["attempt"] > 1:
            rec["n_retry"] -= 1
        _save_wf(t, rec)
    st["attempt"] -= 1
    st["tkey"] = _enqueue(t, b"a", st["queue"], visible, key)
    _reset_act_due(t, st, num, seq)
    t.put_rec("act", key, st)
    return rec


# --- the clock: timers and expired leases -------------------------------------------------


def next_due(t: Txn) -> int | None:
    """When the earliest timer, deadline or lease expiry falls due (ns), or None."""
    item = t.first("due", b"")
    return None if item is None else unpack_u64(item[0])


def idle_until(t: Txn, queue: str) -> tuple[bool, int | None]:
    """For a test environment that skips time (`durable.testing`): whether nothing can happen now
    but by time passing (no task of `queue` claimable, nothing due, and no lease held: no workflow
    task or activity attempt runs anywhere), and when the next thing falls due or a task of `queue`
    becomes claimable (ns), or None. Every pending piece of work is claimable, leased or scheduled
    for later, each in the transaction that made it: so idle here means idle everywhere.

    The retry of a workflow task that failed (a bug in the code: it fails again), or of an
    activity refused for want of its code, is not a next thing: time jumping to it would only
    make the same failure, again and again.

    Reads every due entry: for the small stores of tests, not for a worker's hot path."""
    nxt: int | None = None
    for kind in (b"w", b"a", b"q"):
        prefix = _task_prefix(kind, queue)
        for key, ref in t.scan("tasks", prefix):
            when = unpack_u64(key, len(prefix))
            if when <= t.now:
                return False, when
            if kind == b"w":
                rec = _wf_by_num(t, unpack_u64(ref))
                if rec is not None and "tfail" in rec:
                    continue
            elif kind == b"a":
                st = t.get_rec("act", ref[:16])
                if isinstance(st, dict) and st.get("refused"):  # no worker has its code: refused again
                    continue
            if nxt is None or when < nxt:
                nxt = when
            break
    for key, _ in t.scan("due", b""):
        when = unpack_u64(key)
        ref = key[8:]
        if when <= t.now or ref[:1] == b"W":  # due now, or a workflow task's lease: it runs
            return False, when
        if ref[:1] == b"A":
            st = t.get_rec("act", ref[1:17])
            if isinstance(st, dict) and st.get("st") == "r":  # an attempt runs under a lease
                return False, when
        if nxt is None or when < nxt:
            nxt = when
    return True, nxt


def fire_due(t: Txn, limit: int, fired: list[int] | None = None) -> int:
    """Process up to `limit` due items (timers fire, expired leases end); return how many.

    The run numbers of the workflows whose timers fired are added to `fired`, if given."""
    items: list[bytes] = []
    for key, _ in t.scan("due", b"", skip_locked=True):  # two clocks at once fire different items
        if unpack_u64(key) > t.now or len(items) >= limit:
            break
        items.append(key)
    for key in items:
        t.delete("due", key)
        ref = key[8:]
        kind = ref[:1]
        if kind == b"T":
            _fire_timer(t, unpack_u64(ref, 1), unpack_u64(ref, 9), key)
            if fired is not None:
                fired.append(unpack_u64(ref, 1))
            if _crashpoint.ENABLED:  # fault tests only: die with the timer fired but not committed
                _crashpoint.hit("timer-before-commit")
        elif kind == b"A":
            _check_activity(t, unpack_u64(ref, 1), unpack_u64(ref, 9), key)
        elif kind == b"W":
            _expire_wft(t, unpack_u64(ref, 1), key)
        elif kind == b"S":
            from . import _schedules

            _schedules.fire(t, ref[1:].decode(), key)
        elif kind == b"X":
            _fire_workflow_timeout(t, unpack_u64(ref, 1), key)
    return len(items)


def _fire_timer(t: Txn, num: int, seq: int, due_key: bytes) -> None:
    rec = _wf_by_num(t, num)
    if rec is None or rec["status"] != RUNNING or rec["timers"].get(seq) != due_key:
        return
    del rec["timers"][seq]
    _deliver(t, rec, {"k": ev.TIMER_FIRED, "seq": seq})
    _save_wf(t, rec)


def _check_activity(t: Txn, num: int, seq: int, due_key: bytes) -> None:
    key = u64x2(num, seq)
    st = t.get_rec("act", key)
    if st is None or st.get("due") != due_key:
        return
    st["due"] = None
    rec = _wf_by_num(t, num)
    if rec is None or rec["status"] != RUNNING:
        _drop_activity(t, key, st)
        return
    opts = st["opts"]
    if "sched2c" in opts and t.now >= st["sched"] + int(opts["sched2c"] * _NS):
        err = {"type": "ScheduleToCloseTimeout", "msg": f"schedule_to_close timeout of {opts['sched2c']:g} s passed"}
        _drop_activity(t, key, st)
        if st["cancel"]:
            _deliver(t, rec, {"k": ev.ACTIVITY_CANCELLED, "seq": seq})
        else:
            _deliver(t, rec, {"k": ev.ACTIVITY_FAILED, "seq": seq, "err": err, "attempt": st["attempt"], "why": "timed_out"})
    elif st["st"] == "r":
        if "s2c" in opts and t.now >= st["start"] + int(opts["s2c"] * _NS):
            err = {"type": "StartToCloseTimeout", "msg": f"attempt {st['attempt']} passed its start_to_close timeout of {opts['s2c']:g} s"}
            why = "timed_out"
        elif "hb" in opts and t.now >= (st["hbt"] or st["start"]) + int(opts["hb"] * _NS):
            err = {"type": "HeartbeatTimeout", "msg": f"attempt {st['attempt']} sent no heartbeat for {opts['hb']:g} s"}
            why = "timed_out"
        elif t.now >= st["exp"]:
            err = {"type": "WorkerLost", "msg": f"the worker running attempt {st['attempt']} stopped renewing its lease"}
            why = "failed"
        else:
            _reset_act_due(t, st, num, seq)
            t.put_rec("act", key, st)
            return
        # the late worker's result will be refused: the token changes with the next claim
        _retry_or_fail(t, rec, key, st, err, why, True)
        t.wake_acts = True
    else:
        _reset_act_due(t, st, num, seq)
        t.put_rec("act", key, st)
        return
    _save_wf(t, rec)


def _expire_wft(t: Txn, num: int, due_key: bytes) -> None:
    rec = _wf_by_num(t, num)
    if rec is None or rec["status"] != RUNNING or rec.get("wdue") != due_key:
        return
    for event in _drain_inbox(t, rec):
        _append(t, rec, event)
    _release_wft(t, rec)
    _enqueue_wft(t, rec)
    _save_wf(t, rec)


# --- queries -------------------------------------------------------------------------------


def put_query(t: Txn, wid: str, name: str, payload: bytes, num: int | None = None) -> int:
    """Ask the workers of the workflow's queue to run a query (on run `num`, default the current
    one); return the query number."""
    rec = load_run(t, wid, num)
    types = _types(t, rec["queue"]) or {}
    known = types.get("workflows", {}).get(rec["type"])
    if known is not None and name not in known.get("queries", []):
        names = ", ".join(known.get("queries", [])) or "none"
        raise NotRegistered(f"workflow type {rec['type']!r} has no query {name!r} (queries: {names})")
    qnum = _counter(t, b"querynum")
    tkey = _enqueue(t, b"q", rec["queue"], t.now, u64(qnum))
    t.put_rec("query", b"r" + u64(qnum), {"num": rec["num"], "id": wid, "type": rec["type"], "name": name, "in": payload, "tkey": tkey})
    return qnum


def answer_query(t: Txn, qnum: int, answer: dict[str, Any]) -> None:
    """Store the answer to query `qnum` (if its asker still waits)."""
    if t.get("query", b"r" + u64(qnum)) is not None:
        t.put_rec("query", b"a" + u64(qnum), answer)
        t.wake = True


def peek_query_answer(t: Txn, qnum: int) -> dict[str, Any] | None:
    """The answer to query `qnum` if there is one yet (read only)."""
    return t.get_rec("query", b"a" + u64(qnum))  # type: ignore[no-any-return]


def take_query_answer(t: Txn, qnum: int, give_up: bool) -> dict[str, Any] | None:
    """The answer to query `qnum` if there is one (removing the query), else None.

    With `give_up`, the query is removed whether answered or not.
    """
    answer = t.get_rec("query", b"a" + u64(qnum))
    if answer is None and not give_up:
        return None
    req = t.get_rec("query", b"r" + u64(qnum))
    if req is not None and req.get("tkey"):
        t.delete("tasks", req["tkey"])
    t.delete("query", b"r" + u64(qnum))
    t.delete("query", b"a" + u64(qnum))
    return answer  # type: ignore[no-any-return]


def has_claimable(t: Txn, queue: str) -> int | None:
    """The earliest time (ns) a task of `queue` becomes claimable, or None if there is none."""
    earliest = None
    for kind in (b"w", b"a", b"q"):
        prefix = _task_prefix(kind, queue)
        item = t.first("tasks", prefix)
        if item is not None:
            when = unpack_u64(item[0], len(prefix))
            earliest = when if earliest is None else min(earliest, when)
    return earliest


#: The kinds of queued tasks by their key's first byte, as `queue_backlog` names them.
TASK_KINDS = {b"w": "workflow", b"a": "activity", b"q": "query"}


def queue_backlog(t: Txn) -> dict[tuple[str, str], tuple[int, int | None]]:
    """Read-only: for each (queue, kind) with tasks queued, the number of those visible now (ready
    to be claimed) and the time (ns) the oldest of them became visible (None if none is yet).
    Reads every queued task's key (not the values): the cost grows with the backlog."""
    out: dict[tuple[str, str], tuple[int, int | None]] = {}
    for kind, name in TASK_KINDS.items():
        cur_queue: bytes | None = None
        n, oldest = 0, None
        for key, _ in t.scan("tasks", kind):
            end = key.index(b"\x00", 1)
            queue = key[1:end]
            if queue != cur_queue:
                if cur_queue is not None:
                    out[(cur_queue.decode(errors="replace"), name)] = (n, oldest)
                cur_queue, n, oldest = queue, 0, None
            visible = unpack_u64(key, end + 1)
            if visible <= t.now:
                n += 1
                if oldest is None:
                    oldest = visible
        if cur_queue is not None:
            out[(cur_queue.decode(errors="replace"), name)] = (n, oldest)
    return out


def last_close(t: Txn) -> int:
    """The number of the latest workflow close (0 if none yet)."""
    raw = t.get("meta", b"closeseq")
    return unpack_u64(raw) if raw else 0


def closes_since(t: Txn, after: int) -> tuple[int, list[str], bool]:
    """Workflows closed after close number `after`: (newest number, their ids, whether some
    were already dropped from the log, so that the caller must look at everything it waits for)."""
    newest = last_close(t)
    if newest <= after:
        return newest, [], False
    ids: list[str] = []
    first = None
    for key, value in t.scan("meta", b"C", b"C" + u64(after + 1)):
        if first is None:
            first = unpack_u64(key, 1)
        ids.append(value.decode("utf-8", "replace"))
    return newest, ids, first != after + 1


# --- child workflows and requests to other workflows (see durable/_children.py) -------------
#
# A parent's record keeps its children still running: "children" = seq -> [child id, child run
# number, parent close policy]; a child's record names its parent: "parent" = {"id", "num",
# "seq"}. Both are absent from records written before child workflows existed (no migration).


def _apply_child_command(t: Txn, rec: dict[str, Any], event: dict[str, Any], followups: list[dict[str, Any]]) -> None:
    """Apply a command of `ev.CHILD_COMMAND_KINDS` in the transaction that records it: start
    the child, ask it to cancel, or deliver a signal or cancel request to another workflow.
    What the workflow learns of it follows in `followups` (the same transaction)."""
    kind, seq = event["k"], event["seq"]
    if kind == ev.CHILD_INITIATED:
        opts = event["opts"]
        queue = opts.get("queue") or rec["queue"]
        reuse = opts.get("reuse", "allow_duplicate")
        try:
            if event["id"] == rec["id"]:
                raise WorkflowAlreadyExists(f"a child workflow cannot take its parent's id {rec['id']!r}")
            if reuse not in ID_REUSE_POLICIES:
                raise InvalidArgument(f"unknown id reuse policy {reuse!r}")
            xto, rto = opts.get("xto"), opts.get("rto")
            timeouts = workflow_timeouts(xto if isinstance(xto, (int, float)) else None,
                                         rto if isinstance(rto, (int, float)) else None, None, t.now)
            cnum, _ = start_workflow(t, event["id"], event["name"], queue, event["in"], False, True, reuse,
                                     extra={"parent": {"id": rec["id"], "num": rec["num"], "seq": seq}, **(timeouts or {})})
        except (WorkflowAlreadyExists, NotRegistered, InvalidArgument) as exc:
            followups.append({"k": ev.CHILD_START_FAILED, "seq": seq, "err": error_to_record(exc), "t": t.now})
            return
        rec.setdefault("children", {})[seq] = [event["id"], cnum, opts.get("close", "terminate")]
        followups.append({"k": ev.CHILD_STARTED, "seq": seq, "run": cnum, "t": t.now})
    elif kind == ev.CHILD_CANCEL_REQUESTED:
        entry = (rec.get("children") or {}).get(seq)
        if entry is None:
            return  # it could not start, or it has closed: its final event is on its way
        child = _wf_by_num(t, entry[1])
        if child is not None and child["status"] == RUNNING and not child["cancel"]:
            request_cancel(t, entry[0], f"cancelled by its parent {rec['id']!r}", entry[1])
    else:
        try:
            if event["id"] == rec["id"]:
                raise InvalidArgument(
                    f"workflow {rec['id']!r} cannot signal or cancel itself through an external handle"
                )
            num = event["run"] or None
            if kind == ev.EXTERNAL_SIGNAL:
                nargs = event.get("n")
                signal(t, event["id"], event["name"], event["in"], num, nargs if isinstance(nargs, int) else None)
            else:
                request_cancel(t, event["id"], f"cancelled by workflow {rec['id']!r}", num)
        except (WorkflowNotFound, WorkflowClosed, NotRegistered, InvalidArgument) as exc:
            followups.append({"k": ev.EXTERNAL_FAILED, "seq": seq, "err": error_to_record(exc), "t": t.now})
            return
        followups.append({"k": ev.EXTERNAL_DONE, "seq": seq, "t": t.now})


def _close_family(t: Txn, rec: dict[str, Any], status: str) -> None:
    """Run `rec` closes with `status`: apply its children's parent close policies, and tell
    its parent (in this transaction, the one that closes it)."""
    children = rec.pop("children", None) or {}
    for entry in children.values() if isinstance(children, dict) else ():
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[1], int)):
            continue  # not written by this code: nothing to apply a policy to
        cid, cnum, policy = entry
        child = _wf_by_num(t, cnum)
        if child is None or child["status"] != RUNNING or policy == "abandon":
            continue
        reason = f"its parent {rec['id']!r} {_was(status)}"
        if policy == "request_cancel":
            if not child["cancel"]:
                request_cancel(t, cid, reason, cnum)
            continue
        # terminated here: its parent, closing in this transaction, is not to be told
        child["parent"] = dict(child.get("parent") or {}, told=True)
        _append(t, child, {"k": ev.WORKFLOW_TERMINATED, "t": t.now, "reason": reason})
        _close(t, child, "terminated")
        _save_wf(t, child, RUNNING)
    link = rec.get("parent")
    if isinstance(link, dict) and isinstance(link.get("num"), int) and isinstance(link.get("seq"), int) \
            and not link.get("told") and status != "continued_as_new":  # its last run will tell
        _tell_parent(t, rec, status, link)


def _continue_family(t: Txn, rec: dict[str, Any], new: dict[str, Any]) -> None:
    """Child run `rec` continued as new into run `new` (in this transaction): `new` is the
    child its parent waits for now."""
    link = rec.get("parent")
    if not isinstance(link, dict) or link.get("told") or not isinstance(link.get("num"), int):
        return
    new["parent"] = dict(link)
    parent = _wf_by_num(t, link["num"])
    children = parent.get("children") if parent is not None and parent["status"] == RUNNING else None
    entry = children.get(link.get("seq")) if isinstance(children, dict) else None
    if isinstance(entry, list) and len(entry) == 3 and entry[1] == rec["num"]:
        entry[1] = new["num"]
        _save_wf(t, parent)  # type: ignore[arg-type]


def _tell_parent(t: Txn, rec: dict[str, Any], status: str, link: dict[str, Any]) -> None:
    """Deliver the closed child `rec`'s outcome to its parent's history, if the parent still
    waits for it (it may have closed and abandoned the child)."""
    parent = _wf_by_num(t, link["num"])
    if parent is None or parent["status"] != RUNNING:
        return
    children = parent.get("children")
    seq = link["seq"]
    if not isinstance(children, dict):
        return
    entry = children.get(seq)
    if not isinstance(entry, list) or len(entry) != 3 or entry[1] != rec["num"]:
        return
    del children[seq]
    last = read_history(t, rec["num"], rec["hlen"] - 1)[-1]
    event: dict[str, Any]
    if status == "completed" and last["k"] == ev.WORKFLOW_COMPLETED:
        event = {"k": ev.CHILD_COMPLETED, "seq": seq, "out": last["out"]}
    elif status == "cancelled":
        event = {"k": ev.CHILD_CANCELLED, "seq": seq}
    else:
        if last["k"] == ev.WORKFLOW_FAILED:
            err = last["err"]
        else:
            reason = last.get("reason")
            if last["k"] == ev.WORKFLOW_TIMED_OUT:
                reason = f"its {str(last.get('timeout')).replace('_', ' ')} timeout passed"
            err = {"type": "durable.Workflow" + "".join(part.capitalize() for part in status.split("_")),
                   "msg": f"the child {_was(status).replace('_', ' ')}"
                          + (f": {reason}" if isinstance(reason, str) and reason else "")}
        event = {"k": ev.CHILD_FAILED, "seq": seq, "err": err, "why": status}
    _deliver(t, parent, event)
    _save_wf(t, parent)
# --- continue-as-new and workflow timeouts -----------------------------------------------------

#: Events a run may pass the history limit by to record its `WorkflowContinuedAsNew` (the last
#: task's commands with it), so that a run at the limit can still hand over to a new one.
_CONTINUE_ROOM = 64


def continue_run(t: Txn, rec: dict[str, Any], command: dict[str, Any], carried: list[dict[str, Any]]) -> int:
    """Start the run that `rec` (just closed as continued_as_new by `command`) continues into,
    in the same transaction: same id, the command's type, queue and input; its execution
    deadline, run timeout and grace carried over. The inputs the old run had not taken in
    (`carried`: what was in its inbox) that belong to the workflow rather than to the old run's
    steps, signals and a cancel request, follow its `WorkflowStarted` in order: no signal is lost
    (F13), and one sent after this transaction reaches the new run, the id's current one.
    Returns the new run's number; the old record names it ("next"), the new one the old ("prev")."""
    extra: dict[str, Any] = {"prev": rec["num"], "first": rec.get("first", rec["num"])}
    for field_name in ("xdl", "rto", "grace", "sched", "sgen", "slot"):
        if rec.get(field_name) is not None:
            extra[field_name] = rec[field_name]
    num, _ = start_workflow(t, rec["id"], command["type"], command["queue"], command["in"], False, False,
                            extra=extra, started_extra={"prev": f"{rec['num']:x}"})
    new = load_wf(t, rec["id"])
    if "parent" in rec:  # a child workflow: its parent waits for the new run
        _continue_family(t, rec, new)
    for event in carried:
        if event["k"] == ev.SIGNAL_RECEIVED or event["k"] == ev.CANCEL_REQUESTED:
            if event["k"] == ev.CANCEL_REQUESTED:
                if new["cancel"]:
                    continue
                new["cancel"] = True
            _append(t, new, event)
    if carried and new["wft"] == WFT_NONE:
        _enqueue_wft(t, new)
    _save_wf(t, new)
    old = t.get_rec("runs", _run_key(rec["id"], rec["num"]))
    if old is not None:
        old["next"] = num
        t.put_rec("runs", _run_key(rec["id"], rec["num"]), old)
    if "sched" in rec:  # started by a schedule: it now waits for this run
        from . import _schedules

        _schedules.on_continue(t, rec, num)
    return num


def chain_end(t: Txn, wid: str, num: int | None) -> int | None:
    """The run that run `num` of `wid` continued into, through every continue-as-new (`num`
    itself if it did not continue; None stays None: the current run)."""
    if num is None:
        return None
    rec = load_run(t, wid, num)
    while rec["status"] == "continued_as_new" and isinstance(rec.get("next"), int):
        rec = load_run(t, wid, rec["next"])
    return int(rec["num"])


def workflow_timeouts(execution: float | None, run: float | None, grace: float | None, now: int) -> dict[str, Any] | None:
    """The record fields of a start's workflow timeouts (seconds; None: none), or None."""
    extra: dict[str, Any] = {}
    if execution:
        extra["xdl"] = now + int(execution * _NS)
    if run:
        extra["rto"] = int(run * _NS)
    if extra and grace:
        extra["grace"] = int(grace * _NS)
    return extra or None


def _arm_timeouts(t: Txn, rec: dict[str, Any]) -> None:
    """Set the store's timer of `rec`'s workflow timeouts: its execution deadline ("xdl", ns,
    the whole continue-as-new chain's) or run deadline ("rto" ns after the run's start),
    whichever comes first. It fires in `_fire_workflow_timeout`, with or without a worker
    running at the time (the first worker's clock to look fires it)."""
    if rec.get("rto"):
        rec["rdl"] = rec["created"] + rec["rto"]
    deadlines = [d for d in (rec.get("xdl"), rec.get("rdl")) if d is not None]
    if deadlines:
        rec["xdue"] = _set_due(t, min(deadlines), b"X" + u64(rec["num"]))


def _fire_workflow_timeout(t: Txn, num: int, due_key: bytes) -> None:
    """A workflow timeout passed. With no grace, the run closes as timed_out at once (as a
    terminate does: no more of its code runs, its activities lose their leases). With a grace,
    the workflow is first asked to cancel (it sees `durable.Cancelled`, its compensations run;
    closing by that cancellation counts as timed_out), and closed as timed_out when the grace
    is over if it has not closed by then."""
    rec = _wf_by_num(t, num)
    if rec is None or rec["status"] != RUNNING or rec.get("xdue") != due_key:
        return
    rec.pop("xdue", None)
    which = rec.get("tmo")
    if which is None:
        xdl = rec.get("xdl")
        which = "execution" if xdl is not None and xdl <= t.now else "run"
        grace = rec.get("grace")
        if grace:
            rec["tmo"] = which
            rec["xdue"] = _set_due(t, t.now + grace, b"X" + u64(num))
            if not rec["cancel"]:
                rec["cancel"] = True
                _deliver(t, rec, {"k": ev.CANCEL_REQUESTED, "reason": f"the {which} timeout passed"})
            _save_wf(t, rec)
            return
    _append(t, rec, {"k": ev.WORKFLOW_TIMED_OUT, "t": t.now, "timeout": which})
    _close(t, rec, "timed_out")
    _save_wf(t, rec, RUNNING)
