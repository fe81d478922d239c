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
    from ._convert import Plan


def send(handle: WorkflowHandle[Any], name: str, args: tuple[Any, ...], update_id: str | None) -> tuple[str, int]:
    """Write the request of update `name`; return its id and its run's number."""
    check_name(name, "update name")
    uid = str(uuid.uuid4()) if update_id is None else _updates.check_update_id(update_id)
    plan = _plan(handle, name)
    if plan is not None and plan.args_out:  # the handle knows its workflow: by the handler's annotations
        args = tuple(plan.args_to_plain(args, f"update {name!r}"))
    payload = handle._converter.to_payload(list(args), f"update {name!r}")
    num = handle._store.write(
        lambda t: _updates.request(t, handle.id, name, payload, uid, handle._chain_end(t), len(args)))
    return uid, num


def wait(handle: WorkflowHandle[Any], name: str, uid: str, num: int, timeout: float | None,
         accepted: bool = False) -> Any:
    """Wait until update `uid` is done (or, with `accepted`, accepted) and return its result (or
    None if it is only accepted); raise what its outcome says."""
    limit = check_seconds(timeout, "timeout")
    deadline = None if limit is None else time.monotonic() + limit
    conv, store = handle._converter, handle._store
    with handle._client._listening() as sleep:
        while True:
            rec = store.read(lambda t: _updates.outcome(t, num, uid))
            if rec is None:  # never happens for a run's own request (records are kept)
                raise UpdateFailed(f"update {name!r} (id {uid!r}) of workflow {handle.id!r} is gone")
            if rec["st"] == _updates.REJECTED:
                raise UpdateRejected(f"workflow {handle.id!r}: {conv.readable_text(rec['rej'])}")
            if rec["st"] == _updates.DONE:
                return None if accepted and "closed" not in rec else _outcome(handle, name, uid, rec)
            if accepted and rec["st"] == _updates.ACCEPTED:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                state = "accepted, its handler running" if rec["st"] == _updates.ACCEPTED else "waiting for a worker"
                raise WaitTimeout(
                    f"update {name!r} (id {uid!r}) of workflow {handle.id!r} has not "
                    f"{'been accepted' if accepted else 'finished'} after {limit:g} s "
                    f"({state}); call again with update_id={uid!r} to go on waiting for it"
                )
            sleep(deadline)


def run_update(handle: WorkflowHandle[Any], name: str, args: tuple[Any, ...], update_id: str | None,
               timeout: float | None) -> Any:
    """`WorkflowHandle.update`: send the update and wait for its outcome."""
    check_seconds(timeout, "timeout")
    handle._client._warn_if_on_event_loop("update")
    uid, num = send(handle, name, args, update_id)
    return wait(handle, name, uid, num, timeout)


class UpdateHandle:
    """An update sent by `WorkflowHandle.start_update` and accepted: wait for its outcome with
    `result`."""

    def __init__(self, handle: WorkflowHandle[Any], name: str, update_id: str, num: int) -> None:
        self._handle, self._name, self._id, self._num = handle, name, update_id, num

    def __repr__(self) -> str:
        return f"<UpdateHandle {self._name!r} id {self._id!r} of workflow {self._handle.id!r}>"

    @property
    def id(self) -> str:
        """The update's id."""
        return self._id

    @property
    def name(self) -> str:
        """The update's name."""
        return self._name

    @property
    def workflow_id(self) -> str:
        """The id of the workflow it was sent to."""
        return self._handle.id

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the handler's return value (`UpdateFailed` if it raised a failure or the
        workflow closed first; `WaitTimeout` after `timeout` seconds: the update goes on)."""
        self._handle._client._warn_if_on_event_loop("result")
        return wait(self._handle, self._name, self._id, self._num, timeout)


def start_update(handle: WorkflowHandle[Any], name: str, args: tuple[Any, ...], update_id: str | None,
                 timeout: float | None) -> UpdateHandle:
    """`WorkflowHandle.start_update`: send the update, wait until it is accepted."""
    check_seconds(timeout, "timeout")
    handle._client._warn_if_on_event_loop("start_update")
    uid, num = send(handle, name, args, update_id)
    wait(handle, name, uid, num, timeout, accepted=True)
    return UpdateHandle(handle, name, uid, num)


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
    value = conv.from_payload(rec["out"], f"result of update {name!r}")
    plan = _plan(handle, name)
    if plan is not None and plan.ret_in:  # by the handler's return annotation
        value = plan.result_from_plain(value, f"result of update {name!r}")
    return value


def _plan(handle: WorkflowHandle[Any], name: str) -> Plan | None:
    """The plan of update handler `name` of the handle's workflow, if the handle knows it."""
    return handle._handler_plan(handle._defn.updates if handle._defn is not None else None, name)
