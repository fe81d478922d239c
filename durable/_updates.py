"""Workflow updates, the store's side: requests, their outcomes, exactly once per update id.

An update is a request a caller waits on. The caller writes a request (`request`) keyed by the
run and the update's id and, if no workflow task is queued or running, queues one. The worker
that runs the next workflow task reads the pending requests (`pending`) and runs their
validators against the workflow's state; a refusal is written to the request alone
(`reject`, under the task's token: the history is untouched), an acceptance is an
``UpdateAccepted`` input event recorded with the task's commands, and the handler's outcome an
``UpdateCompleted`` command (`on_command` keeps both in the request's record, where the caller
reads them). A request for an id the run already has returns that record: a retried call gets
the same outcome and the handler never runs twice.

Layout, in the ``query`` database (apart from the queries' "r"/"a" keys):

- ``"u" + run number + update id`` -> the update's record: "st" is "p" (pending), "a"
  (accepted, its handler running), "d" (done: "out" or "err") or "r" (refused: "rej", the
  validator's error as text); "name", "in", "t" (when asked), "n" (its order)
- ``"P" + run number + n`` -> update id, for each pending request, in the order they came

The run's record counts its pending requests ("upd"): a workflow task recorded while some are
left queues another one (see `_ops._record_commands`). "uany" marks a run that ever had an
update: closing it fails the ones still in flight (`on_close`).
"""

from __future__ import annotations

from typing import Any

from . import _events as ev
from . import _ops
from ._defs import arity_from_record, check_arity
from ._errors import DecodeError, InvalidArgument, NotRegistered, WorkflowClosed
from ._limits import MAX_NAME_BYTES
from ._backend import Txn
from ._store import u64

PENDING, ACCEPTED, DONE, REJECTED = "p", "a", "d", "r"


def check_update_id(uid: Any) -> str:
    """Validate an update id given by a caller."""
    if (not isinstance(uid, str) or not uid or len(uid.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
            or "\x00" in uid or not uid.isprintable() and any(0xD800 <= ord(c) <= 0xDFFF for c in uid)):
        raise InvalidArgument(
            f"update id must be a non-empty string of at most {MAX_NAME_BYTES} bytes without NUL, not {uid!r}"
        )
    return uid


def _key(num: int, uid: str) -> bytes:
    return b"u" + u64(num) + uid.encode()


def request(t: Txn, wid: str, name: str, payload: bytes, uid: str, num: int | None = None,
            nargs: int | None = None) -> int:
    """Ask run `num` (default: the current one) of `wid` for update `name` with id `uid`;
    return the run's number. A request for an id the run already has changes nothing (the
    caller waits for that update's outcome); one that was refused is asked again."""
    rec = _ops.load_run(t, wid, num)
    key = _key(rec["num"], uid)
    old = t.get_rec("query", key)
    if old is not None and not _well_formed(old):
        raise DecodeError(f"the record of update {uid!r} of workflow {wid!r} is malformed")
    if old is not None and old["st"] != REJECTED:  # a refused id is free to be asked again
        if old["name"] != name:
            raise InvalidArgument(f"update id {uid!r} of workflow {wid!r} was used for update {old['name']!r}, "
                                  f"not {name!r}: give each update its own id")
        return int(rec["num"])  # the same update asked again: its outcome is (or will be) in `old`
    rec = _ops._running(t, wid, f"send update {name!r} to", num)
    if rec.get("closing"):
        raise WorkflowClosed(f"cannot send update {name!r} to workflow {wid!r}: its code has returned and it is closing")
    known = (_ops._types(t, rec["queue"]) or {}).get("workflows", {}).get(rec["type"])
    if known is not None and "updates" in known:  # published by workers that know of updates
        if name not in known["updates"]:
            names = ", ".join(known["updates"]) or "none"
            raise NotRegistered(f"workflow type {rec['type']!r} has no update {name!r} (updates: {names})")
        fits = arity_from_record(known.get("update_params", {}).get(name))
        if fits is not None and nargs is not None:
            check_arity(f"update {name!r} of workflow type {rec['type']!r}", fits, nargs)
    n = _ops._counter(t, b"updatenum")
    t.put_rec("query", key, {"st": PENDING, "name": name, "in": payload, "t": t.now, "n": n})
    t.put("query", b"P" + u64(rec["num"]) + u64(n), uid.encode())
    rec["upd"] = rec.get("upd", 0) + 1
    rec["uany"] = True
    if rec["wft"] == _ops.WFT_NONE:
        _ops._enqueue_wft(t, rec)
    _ops._save_wf(t, rec)  # a task running now leaves another queued when it ends (rec["upd"])
    return rec["num"]  # type: ignore[no-any-return]


def _well_formed(rec: Any) -> bool:
    """Whether a stored update record has the fields this code reads (not written by others)."""
    if not isinstance(rec, dict) or rec.get("st") not in (PENDING, ACCEPTED, DONE, REJECTED):
        return False
    if not isinstance(rec.get("name"), str) or not isinstance(rec.get("n"), int):
        return False
    if rec["st"] == PENDING:
        return isinstance(rec.get("in"), bytes) and isinstance(rec.get("t"), int)
    if rec["st"] == REJECTED:
        return isinstance(rec.get("rej"), (str, bytes))
    if rec["st"] == DONE:
        return (isinstance(rec.get("closed"), str) or isinstance(rec.get("err"), dict)
                or isinstance(rec.get("out"), bytes))
    return True


def outcome(t: Txn, num: int, uid: str) -> dict[str, Any] | None:
    """The record of update `uid` of run `num` (read only), or None if there is none;
    `DecodeError` if it is malformed."""
    rec = t.get_rec("query", _key(num, uid))
    if rec is not None and not _well_formed(rec):
        raise DecodeError(f"the record of update {uid!r} of run {num:x} is malformed")
    return rec  # type: ignore[no-any-return]


def pending(t: Txn, num: int) -> list[dict[str, Any]]:
    """The pending update requests of run `num`, in the order they came (for a workflow task)."""
    prefix = b"P" + u64(num)
    out = []
    for _, raw in t.scan("query", prefix):
        uid = raw.decode()
        req = t.get_rec("query", _key(num, uid))
        if not _well_formed(req):  # not written by this code: refused by the task, never run
            out.append({"uid": uid, "name": "", "in": b"", "t": 0, "bad": True})
        elif req["st"] == PENDING:
            out.append({"uid": uid, "name": req["name"], "in": req["in"], "t": req["t"]})
    return out


def in_flight(t: Txn, num: int) -> list[dict[str, Any]]:
    """The updates of run `num` not finished yet: {"id", "name", "status"} ("pending" or
    "accepted"), for `describe`."""
    out = []
    for key, _ in t.scan("query", b"u" + u64(num)):
        rec = t.get_rec("query", key)
        if _well_formed(rec) and rec["st"] in (PENDING, ACCEPTED):
            out.append({"id": key[9:].decode(), "name": rec["name"],
                        "status": "pending" if rec["st"] == PENDING else "accepted"})
    return out


def _unpend(t: Txn, wf: dict[str, Any], upd: dict[str, Any]) -> None:
    t.delete("query", b"P" + u64(wf["num"]) + u64(upd["n"]))
    wf["upd"] = max(0, wf.get("upd", 0) - 1)


def reject(t: Txn, num: int, token: int, rejections: list[tuple[str, str | bytes]]) -> bool:
    """Record the refusals of a workflow task's validators (update id, error text as the
    worker's codec made it) if `token` still holds the run's task; write no history."""
    wf = _ops._fenced_wft(t, num, token)
    if wf is None:
        return False
    for uid, err in rejections:
        upd = t.get_rec("query", _key(num, uid))
        if not _well_formed(upd):  # malformed: replaced by a refusal, its pending entries dropped
            for key, raw in list(t.scan("query", b"P" + u64(num))):
                if raw == uid.encode():
                    t.delete("query", key)
                    wf["upd"] = max(0, wf.get("upd", 0) - 1)
            t.put_rec("query", _key(num, uid), {"st": REJECTED, "name": "", "n": 0, "rej": err})
            continue
        if upd["st"] != PENDING:
            continue
        _unpend(t, wf, upd)
        upd.update(st=REJECTED, rej=err)
        t.put_rec("query", _key(num, uid), upd)
    _ops._save_wf(t, wf)
    t.wake = True
    return True


def on_command(t: Txn, wf: dict[str, Any], event: dict[str, Any]) -> None:
    """An ``UpdateAccepted`` or ``UpdateCompleted`` event was recorded in run `wf`'s history."""
    key = _key(wf["num"], event["uid"])
    upd = t.get_rec("query", key)
    if not _well_formed(upd):
        return  # none (or not ours): the history holds the event all the same
    if event["k"] == ev.UPDATE_ACCEPTED:
        if upd["st"] == PENDING:
            _unpend(t, wf, upd)
        upd["st"] = ACCEPTED
    else:
        upd["st"] = DONE
        if "err" in event:
            upd["err"] = event["err"]
        else:
            upd["out"] = event.get("out")
    if upd["st"] == DONE:
        upd.pop("in", None)
    t.put_rec("query", key, upd)
    t.wake = True


def on_close(t: Txn, wf: dict[str, Any], status: str) -> None:
    """Run `wf` closed: its updates still pending or running fail with a clear error."""
    num = wf["num"]
    for key, _ in list(t.scan("query", b"P" + u64(num))):
        t.delete("query", key)
    wf["upd"] = 0
    for key, _ in list(t.scan("query", b"u" + u64(num))):
        upd = t.get_rec("query", key)
        if _well_formed(upd) and upd["st"] in (PENDING, ACCEPTED):
            how = "before its validator ran" if upd["st"] == PENDING else "before the update's handler finished"
            upd.update(st=DONE, closed=f"workflow {wf['id']!r} {_ops._was(status).replace('_', ' ')} {how}")
            upd.pop("in", None)
            t.put_rec("query", key, upd)
    t.wake = True

