"""What the writer tells of the workflows' lives once a batch is committed: the INFO log lines
"workflow 'ID' (Type) started" (its first workflow task recorded) and "... completed", "failed:
<error>", "cancelled", "timed out", "continued as new", "terminated" (the run closed), and the
matching metrics.

They come from the committed transactions' notes (`Txn.note`: `_ops._close` notes a close, the
worker's `_claimed_then` a first task), so each is told once, by the worker whose commit
recorded it, whatever path recorded it, and never on replay. Nothing is collected when neither
INFO logging (of the ``durable.worker.lifecycle`` logger) nor metrics are on (`observing`,
asked once per batch).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from durable import _ops
from durable._codec import format_error_record

if TYPE_CHECKING:
    from ._base import WorkerBase

#: The lines of the workflows' lives go to a logger of their own, so that a program can keep the
#: worker's other INFO lines and drop these (``logging.getLogger("durable.worker.lifecycle")
#: .setLevel(logging.WARNING)``): they cost a log record each, two or more per workflow.
log = logging.getLogger("durable.worker.lifecycle")


def observing(worker: WorkerBase) -> bool:
    """Whether the worker's lifecycle events are wanted: INFO logging or metrics."""
    return worker.metrics is not None or log.isEnabledFor(logging.INFO)


def tell(worker: WorkerBase, notes: list[tuple[Any, ...]]) -> None:
    """Writer thread, after the commit: log and count what the batch's ops noted."""
    metrics = worker.metrics
    logging_on = log.isEnabledFor(logging.INFO)
    for note in notes:
        if note[0] == "started":
            _, num, wid, wtype = note
            if metrics is not None:
                metrics.workflow_started(wtype)
            if logging_on:
                log.info("workflow %r (%s) started", wid, wtype, extra=_context(num, wid, wtype))
        elif note[0] == "closed":
            _, num, wid, wtype, status, hlen = note
            if metrics is not None:
                metrics.workflow_closed(wtype, status)
            if logging_on:
                log.info("workflow %r (%s) %s", wid, wtype, _how(worker, num, status, hlen),
                         extra=_context(num, wid, wtype))


def _context(num: int, wid: str, wtype: str) -> dict[str, str]:
    """The record's context fields, as `durable.logger`'s records carry them (``--log-format json``)."""
    return {"workflow_id": wid, "run_id": f"{num:x}", "workflow_type": wtype}


def _how(worker: WorkerBase, num: int, status: str, hlen: int) -> str:
    """How a run closed, for the log: "completed", "failed: ValueError: ...", "timed out"..."""
    text = status.replace("_", " ")
    if status not in ("failed", "terminated") or hlen < 1:
        return text
    try:
        last = worker.store.read(lambda t: _ops.read_history(t, num, hlen - 1, hlen))[-1]
        if status == "failed":
            err = worker.converter.readable_failure(last["err"])
            return f"{text}: {format_error_record(err).split(chr(10), 1)[0]}"
        reason = last.get("reason")
        return f"{text}: {reason}" if isinstance(reason, str) and reason else text
    except Exception:  # noqa: BLE001 - the log line goes out without the detail
        return text
