"""Workflow updates, the client's side: ask, then wait for the outcome on the store's wake-ups.

See durable/_updates.py for what the store keeps. The caller's update id makes a call safe to
repeat: a second call with the same id (after a client crash, or a timeout) waits for the same
update and gets its outcome; the handler never runs twice.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from . import _updates
from ._codec import error_from_record, format_error_record
from ._defs import check_name, check_seconds
from ._errors import UpdateFailed, UpdateRejected, WaitTimeout

if TYPE_CHECKING:
    from ._client import WorkflowHandle


def run_update(handle: WorkflowHandle[Any], name: str, args: tuple[Any, ...], update_id: str | None,
               timeout: float | None) -> Any:
    """`WorkflowHandle.update`: send the update and wait for its outcome."""
    check_name(name, "update name")
    uid = str(uuid.uuid4()) if update_id is None else _updates.check_update_id(update_id)
    limit = check_seconds(timeout, "timeout")
    conv = handle._converter
    payload = conv.to_payload(list(args), f"update {name!r}")
    handle._client._warn_if_on_event_loop("update")
    deadline = None if limit is None else time.monotonic() + limit
    store = handle._store
    with handle._client._listening() as wait:
        num = store.write(lambda t: _updates.request(t, handle.id, name, payload, uid, handle._chain_end(t), len(args)))
        while True:
            rec = store.read(lambda t: _updates.outcome(t, num, uid))
            if rec is None:  # never happens for a run's own request (records are kept)
                raise UpdateFailed(f"update {name!r} (id {uid!r}) of workflow {handle.id!r} is gone")
            if rec["st"] == _updates.REJECTED:
                raise UpdateRejected(f"workflow {handle.id!r}: {conv.readable_text(rec['rej'])}")
            if rec["st"] == _updates.DONE:
                return _outcome(handle, name, uid, rec)
            if deadline is not None and time.monotonic() >= deadline:
                state = "accepted, its handler running" if rec["st"] == _updates.ACCEPTED else "waiting for a worker"
                raise WaitTimeout(
                    f"update {name!r} (id {uid!r}) of workflow {handle.id!r} has not finished after {limit:g} s "
                    f"({state}); call update again with update_id={uid!r} to go on waiting for it"
                )
            wait(deadline)


def _outcome(handle: WorkflowHandle[Any], name: str, uid: str, rec: dict[str, Any]) -> Any:
    conv = handle._converter
    if "closed" in rec:
        raise UpdateFailed(f"update {name!r} (id {uid!r}) failed: {rec['closed']}")
    if "err" in rec:
        failure = conv.readable_failure(rec["err"])
        err = UpdateFailed(f"update {name!r} (id {uid!r}) of workflow {handle.id!r} failed: "
                           f"{format_error_record(failure)}")
        err.__cause__ = error_from_record(failure)
        raise err
    return conv.from_payload(rec["out"], f"result of update {name!r}")
