"""The client: start, signal, query, cancel, terminate, describe and list workflows.

`Client` works from plain synchronous scripts; it talks to the store directly (there is no
server). Waiting for a result or a query answer sleeps on the data directory's wake-up socket,
with polling only as a fallback.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import select
import threading
import time
import uuid
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from typing import Any

from . import _events as ev
from . import _ops, _wake
from ._codec import Converter, PayloadCodec, encode, error_from_record, format_error_record
from ._defs import check_name as _check_name
from ._defs import workflow_def
from ._errors import InvalidArgument, QueryFailed, WaitTimeout, WorkflowFailed
from ._limits import DEFAULT_QUERY_TIMEOUT, MAX_ID_BYTES, MAX_REASON_BYTES, POLL_FALLBACK_SECONDS
from ._store import Store

DEFAULT_QUEUE = "default"
_PLAIN = Converter()


def default_data_dir() -> str:
    """``$DURABLE_DATA`` if set, else ``./.durable``."""
    return os.environ.get("DURABLE_DATA") or "./.durable"


def _time(ns: int | None) -> _dt.datetime | None:
    return None if ns is None else _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc)


@dataclass(frozen=True)
class WorkflowDescription:
    """What `describe` and `list` report about one workflow."""

    workflow_id: str
    workflow_type: str
    run_id: str
    queue: str
    status: str
    created_at: _dt.datetime
    updated_at: _dt.datetime
    closed_at: _dt.datetime | None
    history_length: int
    activities_scheduled: int
    activity_attempts: int
    activity_retries: int
    cancel_requested: bool
    task_failures: int
    task_error: str | None

    @classmethod
    def from_record(cls, rec: dict[str, Any], converter: Converter | None = None) -> WorkflowDescription:
        """Build from a stored workflow record (its task error decoded by `converter`'s codec)."""
        tfail = rec.get("tfail") or {}
        return cls(
            workflow_id=rec["id"], workflow_type=rec["type"], run_id=f"{rec['num']:x}",
            queue=rec["queue"], status=rec["status"], created_at=_time(rec["created"]),  # type: ignore[arg-type]
            updated_at=_time(rec["updated"]), closed_at=_time(rec["closed"]),  # type: ignore[arg-type]
            history_length=rec["hlen"], activities_scheduled=rec["n_act"],
            activity_attempts=rec["n_att"], activity_retries=rec["n_retry"],
            cancel_requested=bool(rec["cancel"]), task_failures=int(tfail.get("n", 0)),
            task_error=(converter or _PLAIN).readable_text(tfail.get("err")),
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready data (times as ISO 8601 strings)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = value.isoformat() if isinstance(value, _dt.datetime) else value
        return out


class Client:
    """Starts and manages workflows in the store at `data` (default: `default_data_dir()`).

    With ``create=False`` a missing store is an error instead of being created. A payload `codec`
    is this client's own; with it, the client also reads the failures a worker encoded.
    """

    def __init__(self, data: str | os.PathLike[str] | None = None, *, codec: PayloadCodec | None = None,
                 create: bool = True) -> None:
        self._store = Store.open(data if data is not None else default_data_dir(), create=create)
        # this client's own: a store is shared by everything in the process that opens it, and a
        # client must not change the codec of a worker running there (nor take up another's)
        self._converter = Converter(codec)

    @property
    def data_dir(self) -> str:
        """The store's directory."""
        return self._store.path

    # --- starting ----------------------------------------------------------------------------

    def start(self, workflow: Any, *args: Any, id: str | None = None, queue: str = DEFAULT_QUEUE,
              reuse_existing: bool = False) -> WorkflowHandle:
        """Start `workflow` (a decorated workflow or its name) with `args`; return its handle.

        A workflow id is unique: starting an existing id raises `WorkflowAlreadyExists`, or with
        ``reuse_existing=True`` returns the handle of the existing one (idempotent start).
        A name is checked against the names the queue's workers registered.
        """
        if isinstance(workflow, str):
            name, check = check_name(workflow, "workflow name"), True
        else:
            name, check = workflow_def(workflow).name, False
        check_name(queue, "queue")
        wid = _check_id(id) if id is not None else str(uuid.uuid4())
        payload = self._converter.to_payload(list(args), f"input of workflow {name!r}")
        self._store.write(lambda t: _ops.start_workflow(t, wid, name, queue, payload, reuse_existing, check))
        return WorkflowHandle(self, wid)

    def get_handle(self, workflow_id: str) -> WorkflowHandle:
        """A handle to an existing workflow (checked when used)."""
        return WorkflowHandle(self, _check_id(workflow_id))

    def list(self, *, status: str | None = None, workflow: str | None = None, limit: int = 1000) -> list[WorkflowDescription]:
        """Workflows, optionally only those with `status` or of type `workflow`."""
        if not isinstance(limit, int) or limit < 1:
            raise InvalidArgument(f"limit must be a positive integer, not {limit!r}")
        if workflow is not None:
            check_name(workflow, "workflow name")
        recs = self._store.read(lambda t: _ops.list_workflows(t, status, workflow, limit))
        return [WorkflowDescription.from_record(r, self._converter) for r in recs]

    # --- waiting -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _listening(self) -> Iterator[Callable[[float | None], None]]:
        """Listen for wake-ups (bound before the first look at the store, so none is missed)."""
        listener = _wake.Listener(os.path.join(self._store.path, "wake"), self._store.notifier)

        def wait(deadline: float | None) -> None:
            remaining = POLL_FALLBACK_SECONDS
            if deadline is not None:
                remaining = min(deadline - time.monotonic(), POLL_FALLBACK_SECONDS)
            listener.wait(max(remaining, 0.0))

        try:
            yield wait
        finally:
            listener.close()


class _CloseWatcher:
    """Wakes the threads of this process that wait for workflows to end, without each of them
    looking at the store on every commit: one thread reads the store's close log once per
    wake-up and wakes only the waiters of the workflows that ended. One per store and process.
    """

    @classmethod
    def of(cls, store: Store) -> _CloseWatcher:
        """The store's watcher, started on first use."""
        with store.shared_lock:
            watcher = store.shared.get("close-watcher")
            if watcher is None:
                watcher = store.shared["close-watcher"] = cls(store)
            return watcher  # type: ignore[no-any-return]

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._waiting: dict[str, list[threading.Event]] = {}
        self._stopping = False
        # bound before the log is first read, so that no close after that read goes unnoticed
        self._listener = _wake.Listener(os.path.join(store.path, "wake"), store.notifier)
        self._cursor = store.read(_ops.last_close)
        self._thread = threading.Thread(target=self._run, name="durable-close-watcher", daemon=True)
        self._thread.start()
        store.on_close(self._stop)

    @contextlib.contextmanager
    def watch(self, workflow_id: str) -> Iterator[threading.Event]:
        """An event set whenever `workflow_id` may have ended (look at the store, then wait)."""
        event = threading.Event()
        with self._lock:
            self._waiting.setdefault(workflow_id, []).append(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._waiting[workflow_id]
                events.remove(event)
                if not events:
                    del self._waiting[workflow_id]

    def _run(self) -> None:
        sock = self._listener.sock
        try:
            while not self._stopping:
                if select.select([sock], [], [], POLL_FALLBACK_SECONDS)[0]:
                    self._listener.drain()
                if self._stopping:
                    return
                try:
                    newest, ids, gap = self._store.read(lambda t: _ops.closes_since(t, self._cursor))
                except Exception:  # noqa: BLE001 - waiters fall back on their own polling
                    continue
                self._cursor = newest
                with self._lock:
                    if gap:
                        targets = [e for events in self._waiting.values() for e in events]
                    else:
                        targets = [e for wid in ids for e in self._waiting.get(wid, ())]
                for event in targets:
                    event.set()
        finally:
            self._listener.close()

    def _stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._store.notifier.wake_one(self._listener.path)
        self._thread.join(5)


def _check_id(wid: Any) -> str:
    if isinstance(wid, str) and wid and "\x00" not in wid and _is_unicode(wid) and len(wid.encode()) <= MAX_ID_BYTES:
        return wid
    raise InvalidArgument(
        f"a workflow id must be a non-empty string of at most {MAX_ID_BYTES} bytes of Unicode text "
        f"without NUL characters, not {_short(wid)}"
    )


def _check_reason(reason: Any) -> None:
    # kept in the history as it is: anything else would make the history unreadable
    if not isinstance(reason, str) or not _is_unicode(reason) or len(reason.encode()) > MAX_REASON_BYTES:
        raise InvalidArgument(
            f"a reason must be Unicode text of at most {MAX_REASON_BYTES} bytes (MAX_REASON_BYTES), "
            f"not {_short(reason)}"
        )


def check_name(name: Any, what: str) -> str:
    """A name given to the client: checked as `_defs.check_name` does, and encodable as UTF-8
    (undecodable bytes on a command line become lone surrogates, which cannot be stored)."""
    if isinstance(name, str) and not _is_unicode(name):
        raise InvalidArgument(f"{what} {_short(name)} is invalid: it is not Unicode text (it holds a lone surrogate)")
    return _check_name(name, what)


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _short(value: Any) -> str:
    """`repr(value)`, cut to a length fit for an error message."""
    text = repr(value[:60] if isinstance(value, str) else value)
    return text if len(text) <= 80 else text[:77] + "..."


class WorkflowHandle:
    """A handle on one workflow, by id."""

    def __init__(self, client: Client, workflow_id: str) -> None:
        self._client = client
        self._store = client._store
        self._converter = client._converter
        self.id = workflow_id

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id!r}>"

    def describe(self) -> WorkflowDescription:
        """Status, type, times, queue and counters of the workflow."""
        return WorkflowDescription.from_record(self._store.read(lambda t: _ops.load_wf(t, self.id)), self._converter)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow to end; return its result or raise `WorkflowFailed`.

        Raises `WaitTimeout` if it has not ended after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with _CloseWatcher.of(self._store).watch(self.id) as ended:
            while True:
                ended.clear()
                rec, last = self._store.read(self._closing_event)
                if last is not None:
                    return self._outcome(rec, last)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise WaitTimeout(f"workflow {self.id!r} is still {rec['status']} after {timeout:g} s")
                ended.wait(POLL_FALLBACK_SECONDS if deadline is None else min(deadline - now, POLL_FALLBACK_SECONDS))

    def _closing_event(self, t: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        rec = _ops.load_wf(t, self.id)
        if rec["status"] == _ops.RUNNING:
            return rec, None
        events = _ops.read_history(t, rec["num"], rec["hlen"] - 1)
        return rec, events[-1]

    def _outcome(self, rec: dict[str, Any], last: dict[str, Any]) -> Any:
        kind = last["k"]
        if kind == ev.WORKFLOW_COMPLETED:
            return self._converter.from_payload(last["out"], "workflow result")
        if kind == ev.WORKFLOW_FAILED:
            failure = self._converter.readable_failure(last["err"])
            cause = error_from_record(failure)
            err = WorkflowFailed(
                f"workflow {self.id!r} failed: {format_error_record(failure)}",
                workflow_id=self.id, status="failed",
            )
            err.__cause__ = cause
            raise err
        if kind == ev.WORKFLOW_CANCELLED:
            raise WorkflowFailed(f"workflow {self.id!r} was cancelled", workflow_id=self.id, status="cancelled")
        reason = last.get("reason") or "no reason given"
        raise WorkflowFailed(f"workflow {self.id!r} was terminated: {reason}", workflow_id=self.id, status="terminated")

    def signal(self, name: str, *args: Any) -> None:
        """Send signal `name` with `args`: recorded in history, delivered once, in order."""
        check_name(name, "signal name")
        payload = self._converter.to_payload(list(args), f"signal {name!r}")
        self._store.write(lambda t: _ops.signal(t, self.id, name, payload))

    def query(self, name: str, *args: Any, timeout: float = DEFAULT_QUERY_TIMEOUT) -> Any:
        """Run query `name` on a worker against the workflow's live state; return its answer."""
        check_name(name, "query name")
        payload = self._converter.to_payload(list(args), f"query {name!r}")
        deadline = time.monotonic() + timeout
        with self._client._listening() as wait:
            qnum = self._store.write(lambda t: _ops.put_query(t, self.id, name, payload))
            while True:
                expired = time.monotonic() >= deadline
                answer = self._store.read(lambda t: _ops.peek_query_answer(t, qnum))
                if answer is not None or expired:
                    answer = self._store.write(lambda t: _ops.take_query_answer(t, qnum, expired))
                if answer is not None:
                    if "err" in answer:
                        raise QueryFailed(f"query {name!r} on workflow {self.id!r}: "
                                          f"{self._converter.readable_text(answer['err'])}")
                    return self._converter.from_payload(answer["ok"], f"answer to query {name!r}")
                if expired:
                    queue = self.describe().queue
                    raise QueryFailed(
                        f"no worker answered query {name!r} on workflow {self.id!r} within {timeout:g} s "
                        f"(is a worker running on queue {queue!r}?)"
                    )
                wait(deadline)

    def cancel(self, reason: str = "") -> None:
        """Ask the workflow to cancel: its scopes are cancelled, its compensations run."""
        _check_reason(reason)
        self._store.write(lambda t: _ops.request_cancel(t, self.id, reason))

    def terminate(self, reason: str = "") -> None:
        """End the workflow at once; none of its code runs again."""
        _check_reason(reason)
        self._store.write(lambda t: _ops.terminate(t, self.id, reason))

    def history(self) -> list[dict[str, Any]]:
        """The workflow's history as readable dicts (payloads decoded, times as datetimes)."""
        rec, events = self._store.read(lambda t: self._history(t))
        return [readable_event(i, e, self._converter) for i, e in enumerate(events)]

    def export_history(self) -> bytes:
        """The raw history as CBOR bytes, for `durable.replay` and golden-history tests."""
        _, events = self._store.read(lambda t: self._history(t))
        return encode(events)

    def _history(self, t: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        rec = _ops.load_wf(t, self.id)
        return rec, _ops.read_history(t, rec["num"])


_PAYLOAD_FIELDS = {"in": "input", "out": "result"}


def readable_event(index: int, event: dict[str, Any], converter: Converter) -> dict[str, Any]:
    """An event as plain data for people and JSON: payloads decoded, errors kept as trees (what
    cannot be decoded, for want of the right codec or else, is shown as such)."""
    out: dict[str, Any] = {"index": index, "kind": event["k"], "time": _time(event["t"])}
    for key, value in event.items():
        if key in ("k", "t"):
            continue
        if key in _PAYLOAD_FIELDS and isinstance(value, bytes):
            out[_PAYLOAD_FIELDS[key]] = converter.readable(value)
        elif key == "err":
            out["error"] = converter.readable_failure(value)
        elif key == "hb":
            continue
        else:
            out[{"err": "error", "dur": "duration_ns"}.get(key, key)] = value
    return out
