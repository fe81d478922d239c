"""The client: start, signal, query, cancel, terminate, describe and list workflows.

`Client` works from plain synchronous scripts; it talks to the store directly (there is no
server). Waiting for a result or a query answer sleeps on the data directory's wake-up socket,
with polling only as a fallback.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import datetime as _dt
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar, TypeVarTuple, cast, overload

import sniffio


from . import _continue
from . import _events as ev
from . import _ops, _schedules, _tracing
from ._codec import Converter, PayloadCodec, encode, error_from_record, format_error_record
from ._convert import Plan
from ._defs import check_name as _check_name
from ._defs import WorkflowInstance, arity_from_record, check_arity, check_seconds, workflow_def
from ._errors import InvalidArgument, QueryFailed, WaitTimeout, WorkflowFailed
from ._limits import DEFAULT_QUERY_TIMEOUT, MAX_ID_BYTES, MAX_REASON_BYTES, POLL_FALLBACK_SECONDS
from ._backend import STORE_ENV, Backend, open_store
from ._schedule_client import UPCOMING, ScheduleDescription, ScheduleHandle, check_schedule_id, create_schedule
from ._update_client import UpdateHandle

DEFAULT_QUEUE = "default"
_PLAIN = Converter()

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
Ts = TypeVarTuple("Ts")

_log = logging.getLogger("durable.client")


def default_data_dir() -> str:
    """The store used when none is named: ``$DURABLE_STORE`` (a directory or a URL) if set, else
    ``$DURABLE_DATA`` (a directory) if set, else ``./.durable``."""
    return os.environ.get(STORE_ENV) or os.environ.get("DURABLE_DATA") or "./.durable"


def _time(ns: int | None) -> _dt.datetime | None:
    return None if ns is None else _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _time_ns(value: Any, what: str) -> int | None:
    """A datetime given to the client as ns since the epoch (a naive one is UTC)."""
    if value is None:
        return None
    if not isinstance(value, _dt.datetime):
        raise InvalidArgument(f"{what} must be a datetime (a naive one is taken as UTC), not {_short(value)}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return int((value - _EPOCH) // _dt.timedelta(microseconds=1)) * 1000


@dataclass(frozen=True)
class WorkerDescription:
    """A worker that serves (or served) a queue, as `Client.workers` reports it."""

    identity: str
    queue: str
    host: str
    pid: int
    started_at: _dt.datetime | None
    #: when it last showed that it serves the queue (it does so with its heartbeats)
    last_seen_at: _dt.datetime | None
    #: whether it serves the queue now (it stopped, or was last seen too long ago, if not)
    alive: bool
    #: the activities it runs now, by name, in the order they were scheduled
    running_activities: tuple[str, ...]
    #: the names registered on its queue (by every worker of the queue)
    workflows: tuple[str, ...]
    activities: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready data (times as ISO 8601 strings)."""
        return {k: v.isoformat() if isinstance(v, _dt.datetime) else list(v) if isinstance(v, tuple) else v
                for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class PendingActivity:
    """An activity of a running workflow that has no final event yet (see `describe`)."""

    seq: int
    name: str
    #: "scheduled" (waiting for a worker), "running", or "backing_off" (waiting to be retried)
    state: str
    #: attempts started so far (the running one included)
    attempt: int
    #: the last failed attempt's error type and message, if one failed
    last_failure_type: str | None
    last_failure_message: str | None
    #: when the next attempt may start (a retry's backoff), if it is waiting
    next_attempt_at: _dt.datetime | None
    #: the worker holding the running attempt's lease
    worker: str | None
    started_at: _dt.datetime | None
    last_heartbeat_at: _dt.datetime | None
    cancel_requested: bool

    @classmethod
    def from_record(cls, rec: dict[str, Any], converter: Converter | None = None) -> PendingActivity:
        """Build from `_ops.pending_activities` output (a failure decoded by `converter`'s codec)."""
        err = rec.get("last_failure") if isinstance(rec.get("last_failure"), dict) else None
        if err is not None:
            err = (converter or _PLAIN).readable_failure(err)
        return cls(
            seq=rec["seq"], name=str(rec["name"]), state=rec["state"], attempt=int(rec["attempt"]),
            last_failure_type=None if err is None else str(err.get("type", "Error")),
            last_failure_message=None if err is None else str(err.get("msg", "")),
            next_attempt_at=_time(rec["next_attempt"]), worker=rec["worker"],
            started_at=_time(rec["started"]), last_heartbeat_at=_time(rec["heartbeat"]),
            cancel_requested=rec["cancel_requested"],
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready data (times as ISO 8601 strings)."""
        return {k: v.isoformat() if isinstance(v, _dt.datetime) else v for k, v in self.__dict__.items()}


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
    #: activities with no final event yet (filled in by `describe`, empty in `list`)
    pending_activities: tuple[PendingActivity, ...] = ()
    #: when a delayed start's code starts running (`start_delay`), else None
    start_at: _dt.datetime | None = None
    #: for a running workflow whose queue no worker serves now (filled in by `describe`):
    #: "no worker has polled queue 'q' since ...", else None
    queue_warning: str | None = None
    #: for a child workflow, its parent's workflow id and run id, else None
    parent_id: str | None = None
    parent_run_id: str | None = None
    #: the workflow ids of its child workflows still running (while it runs)
    pending_children: tuple[str, ...] = ()
    #: the id of the schedule that started it, else None
    schedule_id: str | None = None

    #: the run this one continues (`durable.continue_as_new`), and the one it continued into
    previous_run_id: str | None = None
    next_run_id: str | None = None
    #: when the history is long enough to near its limit: what to do about it, else None
    history_warning: str | None = None
    #: the workflow timeouts' deadlines (`execution_timeout`, `run_timeout` of `Client.start`)
    execution_deadline: _dt.datetime | None = None
    run_deadline: _dt.datetime | None = None
    #: updates not finished yet (filled in by `describe`): "name (id ..., pending|accepted)"
    pending_updates: tuple[str, ...] = ()

    #: the run a reset of this one started (`WorkflowHandle.reset`), and the run and event this
    #: one was reset from, else None
    reset_run_id: str | None = None
    reset_from_run_id: str | None = None
    reset_from_event: int | None = None
    #: the signal, query and update names the workers of its queue registered for its type, to
    #: send it (filled in by `describe`; None in `list`, or while no worker of the queue has
    #: registered the type)
    signals: tuple[str, ...] | None = None
    queries: tuple[str, ...] | None = None
    updates: tuple[str, ...] | None = None

    @classmethod
    def from_record(cls, rec: dict[str, Any], pending: Sequence[dict[str, Any]] = (),
                    queue_warning: str | None = None, converter: Converter | None = None) -> WorkflowDescription:
        """Build from a stored workflow record (and its pending activities, and a queue warning;
        its task error and failures decoded by `converter`'s codec)."""
        tfail = rec.get("tfail") or {}
        return cls(
            workflow_id=rec["id"], workflow_type=rec["type"], run_id=f"{rec['num']:x}",
            queue=rec["queue"], status=rec["status"], created_at=_time(rec["created"]),  # type: ignore[arg-type]
            updated_at=_time(rec["updated"]), closed_at=_time(rec["closed"]),  # type: ignore[arg-type]
            history_length=rec["hlen"], activities_scheduled=rec["n_act"],
            activity_attempts=rec["n_att"], activity_retries=rec["n_retry"],
            cancel_requested=bool(rec["cancel"]), task_failures=int(tfail.get("n", 0)),
            task_error=(converter or _PLAIN).readable_text(tfail.get("err")),
            pending_activities=tuple(PendingActivity.from_record(p, converter) for p in pending),
            queue_warning=queue_warning, start_at=_time(rec.get("start_at")), schedule_id=rec.get("sched"),
            previous_run_id=_run_id(rec.get("prev")), next_run_id=_run_id(rec.get("next")),
            history_warning=_continue.history_warning(rec["hlen"]) if rec["status"] == _ops.RUNNING else None,
            execution_deadline=_time(rec.get("xdl")), run_deadline=_time(rec.get("rdl")),
            reset_run_id=_run_id((rec.get("reset") or {}).get("run")), reset_from_run_id=_run_id(rec.get("reset_from")),
            reset_from_event=rec.get("reset_to"), **_family(rec),
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready data (times as ISO 8601 strings)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key == "pending_activities":
                value = [p.to_json() for p in value]
            out[key] = value.isoformat() if isinstance(value, _dt.datetime) else value
        return out


def _family(rec: dict[str, Any]) -> dict[str, Any]:
    """`WorkflowDescription`'s fields about parent and children (`_ops`' child workflows)."""
    out: dict[str, Any] = {}
    parent = rec.get("parent")
    if isinstance(parent, dict) and isinstance(parent.get("id"), str) and isinstance(parent.get("num"), int):
        out["parent_id"], out["parent_run_id"] = parent["id"], f"{parent['num']:x}"
    children = rec.get("children")
    if isinstance(children, dict) and children:
        out["pending_children"] = tuple(str(entry[0]) for _, entry in sorted(children.items())
                                        if isinstance(entry, list) and entry)
    return out


def _run_id(num: Any) -> str | None:
    return f"{num:x}" if isinstance(num, int) else None


class Client:
    """Starts and manages workflows in the store at `data` (default: `default_data_dir()`): a
    directory (the embedded LMDB store), ``lmdb:///abs/dir``, or ``postgresql://user@host/db``.

    With ``create=False`` a missing store is an error instead of being created. A payload `codec`
    is this client's own; with it, the client also reads the failures a worker encoded.
    """

    def __init__(self, data: str | os.PathLike[str] | None = None, *, codec: PayloadCodec | None = None,
                 create: bool = True) -> None:
        self._store: Backend = open_store(data if data is not None else default_data_dir(), create=create)
        # this client's own: a store is shared by everything in the process that opens it, and a
        # client must not change the codec of a worker running there (nor take up another's)
        self._converter = Converter(codec)
        self._served_until: dict[str, int] = {}  # queue -> until when a worker is known to serve it
        self._told_blocking = False  # whether a wait from async code was warned about (once)

    @property
    def data_dir(self) -> str:
        """The store's directory (or, for a store at a URL, the URL without its password)."""
        return self._store.path

    # --- starting ----------------------------------------------------------------------------

    # Typed by overloads: a workflow function's parameters (Ts) and result type (R), a workflow
    # class's from its `run`; by name, anything. Ts is a TypeVarTuple rather than a ParamSpec
    # because the options (id=, queue=...) follow *args, which a ParamSpec does not allow.
    @overload
    def start(self, workflow: str, *args: Any, id: str | None = None, queue: str = DEFAULT_QUEUE,
              id_reuse_policy: str = "allow_duplicate", id_conflict_policy: str = "fail",
              start_delay: float | _dt.timedelta | None = None, execution_timeout: _Seconds = None,
              run_timeout: _Seconds = None, timeout_grace: _Seconds = None) -> WorkflowHandle[Any]: ...
    @overload
    def start(self, workflow: Callable[[*Ts], Awaitable[R]], *args: *Ts, id: str | None = None,
              queue: str = DEFAULT_QUEUE, id_reuse_policy: str = "allow_duplicate",
              id_conflict_policy: str = "fail",
              start_delay: float | _dt.timedelta | None = None, execution_timeout: _Seconds = None,
              run_timeout: _Seconds = None, timeout_grace: _Seconds = None) -> WorkflowHandle[R]: ...
    @overload
    def start(self, workflow: Callable[[], WorkflowInstance[*Ts, R]], *args: *Ts, id: str | None = None,
              queue: str = DEFAULT_QUEUE, id_reuse_policy: str = "allow_duplicate",
              id_conflict_policy: str = "fail",
              start_delay: float | _dt.timedelta | None = None, execution_timeout: _Seconds = None,
              run_timeout: _Seconds = None, timeout_grace: _Seconds = None) -> WorkflowHandle[R]: ...

    def start(self, workflow: Any, *args: object, id: str | None = None, queue: str = DEFAULT_QUEUE,
              id_reuse_policy: str = "allow_duplicate", id_conflict_policy: str = "fail",
              start_delay: float | _dt.timedelta | None = None, execution_timeout: _Seconds = None,
              run_timeout: _Seconds = None, timeout_grace: _Seconds = None) -> WorkflowHandle[Any]:
        """Start `workflow` (a decorated workflow or its name) with `args`; return the handle of
        the run started (its `run_id` set).

        At most one run of an id runs at a time. If the id's workflow is running, `id_conflict_policy`
        decides: "fail" raises `WorkflowAlreadyExists`, "use_existing" returns the running one's
        handle (idempotent start). If it is closed, `id_reuse_policy` decides (Temporal's
        policies): "allow_duplicate" starts a new run, "allow_duplicate_failed_only" only if the
        last run failed, was cancelled or terminated, "reject_duplicate" never; a refused start
        raises `WorkflowAlreadyExists`. Earlier runs stay readable through their run ids.
        A name is checked against the names the queue's workers registered. The arguments are
        checked against the workflow's parameters before anything is written (`InvalidArgument`):
        by its signature when given the workflow, by the signature its workers published when
        given a name.

        With `start_delay` (seconds or a timedelta), the workflow is recorded now (it runs, and
        takes signals, from now on) but its code starts that much later, on a durable timer.

        Workflow timeouts (seconds or timedeltas): `execution_timeout` bounds the whole workflow,
        every run of its continue-as-new chain; `run_timeout` each run. When one passes, the
        workflow closes as ``timed_out`` (its code stops, its activities lose their leases);
        with `timeout_grace`, it is first asked to cancel, as `cancel` does (it sees
        `durable.Cancelled`, its compensations run), and is closed as timed out if it has not
        ended when the grace is over. The deadlines are timers in the store: they hold across
        restarts, and fire when a worker's clock next looks if none runs at the time.
        """
        if isinstance(start_delay, _dt.timedelta):
            start_delay = start_delay.total_seconds()
        delay = check_seconds(start_delay, "start_delay") or 0.0
        timeouts = [_seconds(execution_timeout, "execution_timeout"), _seconds(run_timeout, "run_timeout"),
                    _seconds(timeout_grace, "timeout_grace")]
        if timeouts[2] is not None and timeouts[0] is None and timeouts[1] is None:
            raise InvalidArgument("timeout_grace needs execution_timeout or run_timeout")
        _check_choice(id_reuse_policy, "id_reuse_policy", _ops.ID_REUSE_POLICIES)
        _check_choice(id_conflict_policy, "id_conflict_policy", _ops.ID_CONFLICT_POLICIES)
        use_existing = id_conflict_policy == "use_existing"
        check_name(queue, "queue")
        wid = _check_id(id) if id is not None else str(uuid.uuid4())
        if isinstance(workflow, str):
            name, check = check_name(workflow, "workflow name"), True
        else:
            defn = workflow_def(workflow)
            name, check = defn.name, False
            defn.check_start_args(args)
            if defn.plan.args_out:  # by the parameters' annotations (`_convert`)
                args = tuple(defn.plan.args_to_plain(args, f"input of workflow {name!r}"))
        payload = self._converter.to_payload(list(args), f"input of workflow {name!r}")
        tp = _tracing.current_traceparent()  # the workers' spans are children of the caller's (if any)
        nargs = len(args)

        def start(t: Any) -> tuple[int, bool]:
            if check:  # by name: a caller's mistake is refused before the op writes anything
                fits = arity_from_record((_ops.registered_workflow(t, queue, name) or {}).get("params"))
                if fits is not None:
                    check_arity(f"workflow {name!r}", fits, nargs)
            return _ops.start_workflow(t, wid, name, queue, payload, use_existing, check, id_reuse_policy,
                                       int(delay * 1_000_000_000),
                                       extra=_ops.workflow_timeouts(timeouts[0], timeouts[1], timeouts[2], t.now)
                                       if any(timeouts) else None,
                                       started_extra={_tracing.FIELD: tp} if tp else None)

        num, _ = self._store.write(start)
        handle: WorkflowHandle[Any] = WorkflowHandle(self, wid, run_id=f"{num:x}",
                                                     workflow=None if isinstance(workflow, str) else workflow)
        handle.warning = self._nobody_serves(queue)
        if handle.warning is not None:
            _log.warning("workflow %r started, but %s", wid, handle.warning)
        return handle

    def _nobody_serves(self, queue: str) -> str | None:
        """A warning if no worker serves `queue` now (looked up at most once per presence period)."""
        now = self._store.clock.now_ns()
        if self._served_until.get(queue, 0) > now:
            return None
        presence = self._store.read(lambda t: _ops.queue_presence(t, queue))
        self._served_until[queue] = presence[0]
        return _ops.nobody_serves(queue, now, presence)

    # Typed as `start` is: given the workflow, the handle's result type is its return type.
    @overload
    def get_handle(self, workflow_id: str, run_id: str | None = None, *,
                   workflow: None = None) -> WorkflowHandle[Any]: ...
    @overload
    def get_handle(self, workflow_id: str, run_id: str | None = None, *,
                   workflow: Callable[..., Awaitable[R]]) -> WorkflowHandle[R]: ...
    @overload
    def get_handle(self, workflow_id: str, run_id: str | None = None, *,
                   workflow: Callable[[], WorkflowInstance[*Ts, R]]) -> WorkflowHandle[R]: ...

    def get_handle(self, workflow_id: str, run_id: str | None = None, *,
                   workflow: Any = None) -> WorkflowHandle[Any]:
        """A handle to an existing workflow (checked when used): to its latest run, or with
        `run_id` (as `describe` and `list` show it) to that run.

        Given its `workflow` (the decorated function or class), the handle converts by its type
        hints as `start`'s handle does: `result` builds the return annotation's type, `signal`
        and `query` convert by their handlers' annotations."""
        return WorkflowHandle(self, _check_id(workflow_id), run_id=run_id, workflow=workflow)

    def list(self, *, status: str | None = None, workflow: str | None = None, limit: int = 1000,
             since: _dt.datetime | None = None, until: _dt.datetime | None = None,
             all_runs: bool = False, schedule: str | None = None) -> list[WorkflowDescription]:
        """Workflows, newest first by start time: at most `limit`, optionally only those with
        `status`, of type `workflow`, started at or after `since` and before `until` (naive
        datetimes are UTC). One entry per id, its latest run; with `all_runs`, every run.
        With `schedule`, only the runs that schedule started (every run: each has its own id)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgument(f"limit must be a positive integer, not {limit!r}")
        if schedule is not None:
            return self._list_scheduled(schedule, status, workflow, limit, since, until)
        args = self._filters(workflow, since, until)
        recs = self._store.read(lambda t: _ops.list_workflows(t, status, args[0], limit, since=args[1],
                                                              until=args[2], all_runs=bool(all_runs)))
        return [WorkflowDescription.from_record(r, converter=self._converter) for r in recs]

    def _list_scheduled(self, schedule: str, status: str | None, workflow: str | None, limit: int,
                        since: Any, until: Any) -> builtins.list[WorkflowDescription]:
        sid = check_schedule_id(schedule)
        _ops._check_status(status)
        wtype, lo, hi = self._filters(workflow, since, until)

        def keep(rec: dict[str, Any]) -> bool:
            return ((status is None or rec["status"] == status) and (wtype is None or rec["type"] == wtype)
                    and (lo is None or rec["created"] >= lo) and (hi is None or rec["created"] < hi))

        recs = self._store.read(lambda t: [r for r in _schedules.started(t, sid, 1 << 62) if keep(r)][:limit])
        return [WorkflowDescription.from_record(r, converter=self._converter) for r in recs]

    # --- schedules ---------------------------------------------------------------------------

    # Typed as `start` is: the arguments must fit the workflow's parameters.
    @overload
    def create_schedule(self, schedule_id: str, workflow: str, *args: Any, cron: str | None = None,
                        every: float | _dt.timedelta | None = None, queue: str = DEFAULT_QUEUE,
                        jitter: float | _dt.timedelta | None = None, overlap: str = "skip",
                        catchup_window: float | _dt.timedelta = _dt.timedelta(days=365),
                        pause_on_failure: bool = False, paused: bool = False, note: str = "") -> ScheduleHandle: ...
    @overload
    def create_schedule(self, schedule_id: str, workflow: Callable[[*Ts], Awaitable[Any]], *args: *Ts,
                        cron: str | None = None,
                        every: float | _dt.timedelta | None = None, queue: str = DEFAULT_QUEUE,
                        jitter: float | _dt.timedelta | None = None, overlap: str = "skip",
                        catchup_window: float | _dt.timedelta = _dt.timedelta(days=365),
                        pause_on_failure: bool = False, paused: bool = False, note: str = "") -> ScheduleHandle: ...
    @overload
    def create_schedule(self, schedule_id: str, workflow: Callable[[], WorkflowInstance[*Ts, Any]], *args: *Ts,
                        cron: str | None = None,
                        every: float | _dt.timedelta | None = None, queue: str = DEFAULT_QUEUE,
                        jitter: float | _dt.timedelta | None = None, overlap: str = "skip",
                        catchup_window: float | _dt.timedelta = _dt.timedelta(days=365),
                        pause_on_failure: bool = False, paused: bool = False, note: str = "") -> ScheduleHandle: ...

    def create_schedule(self, schedule_id: str, workflow: Any, *args: object, cron: str | None = None,
                        every: float | _dt.timedelta | None = None, queue: str = DEFAULT_QUEUE,
                        jitter: float | _dt.timedelta | None = None, overlap: str = "skip",
                        catchup_window: float | _dt.timedelta = _dt.timedelta(days=365),
                        pause_on_failure: bool = False, paused: bool = False, note: str = "") -> ScheduleHandle:
        """Create a schedule that starts `workflow` (a decorated workflow or its name) with `args`
        at each slot of `cron` (a cron expression, evaluated in UTC) or `every` (an interval in
        seconds or a timedelta, aligned to the Unix epoch); return its handle.

        The schedule lives in the store: whichever worker of the store is running fires it (no
        worker of its own, any queue's). Each slot starts one workflow, with id
        ``<schedule_id>-<slot time, ISO 8601 UTC>``, on `queue`, exactly once however workers
        crash. `jitter` delays each slot by a random time below it (the same for a slot in every
        process). `overlap` says what a slot does while the workflow started last still runs:
        "skip" (the default), "buffer_one" (start once it closes; one start kept),
        "allow_all" (start anyway), "cancel_other" (cancel it, start once it has closed).
        After downtime, the missed slots at most `catchup_window` old are taken, each under
        the overlap policy; older ones are counted as missed. With `pause_on_failure`, a
        started workflow that fails pauses the schedule. `paused` creates it paused, with `note`.
        Raises `ScheduleAlreadyExists` if the id is taken.
        """
        return create_schedule(self, schedule_id, workflow, args, cron=cron, every=every, queue=queue,
                               jitter=jitter, overlap=overlap, catchup_window=catchup_window,
                               pause_on_failure=pause_on_failure, paused=paused, note=note)

    def get_schedule_handle(self, schedule_id: str) -> ScheduleHandle:
        """A handle to the schedule `schedule_id` (checked when used)."""
        return ScheduleHandle(self, schedule_id)

    def list_schedules(self) -> builtins.list[ScheduleDescription]:
        """Every schedule, by id."""
        recs = self._store.read(lambda t: _schedules.list_schedules(t, UPCOMING))
        return [ScheduleDescription.from_record(r) for r in recs]

    def count(self, *, status: str | None = None, workflow: str | None = None, since: _dt.datetime | None = None,
              until: _dt.datetime | None = None, all_runs: bool = False) -> int:
        """How many workflows `list` would give without a limit (with the same filters)."""
        args = self._filters(workflow, since, until)
        return self._store.read(lambda t: _ops.count_workflows(t, status, args[0], since=args[1], until=args[2],
                                                               all_runs=bool(all_runs)))

    @staticmethod
    def _filters(workflow: str | None, since: Any, until: Any) -> tuple[str | None, int | None, int | None]:
        if workflow is not None:
            check_name(workflow, "workflow name")
        return workflow, _time_ns(since, "since"), _time_ns(until, "until")

    def workers(self, *, queue: str | None = None, include_gone: bool = False) -> builtins.list[WorkerDescription]:
        """The workers that serve a queue now (of `queue`, or of every queue), newest seen first;
        with `include_gone`, also those that stopped or were last seen too long ago."""
        if queue is not None:
            check_name(queue, "queue")
        recs, names, running = self._store.read(lambda t: _ops.describe_workers(t, queue))
        now = self._store.clock.now_ns()
        out = []
        for rec in recs:
            alive = isinstance(rec.get("until"), int) and rec["until"] > now
            if not (alive or include_gone):
                continue
            registered = names.get(rec["queue"]) or {}
            out.append(WorkerDescription(
                identity=rec["identity"], queue=rec["queue"], host=str(rec.get("host", "")),
                pid=int(rec.get("pid", 0)), started_at=_time(rec.get("started")),
                last_seen_at=_time(rec.get("seen")), alive=alive,
                running_activities=tuple(running.get(rec["identity"], ())),
                workflows=tuple(sorted(registered.get("workflows", {}))),
                activities=tuple(registered.get("activities", [])),
            ))
        out.sort(key=lambda w: (not w.alive, -(w.last_seen_at.timestamp() if w.last_seen_at else 0)))
        return out

    # --- waiting -----------------------------------------------------------------------------

    def _warn_if_on_event_loop(self, method: str) -> None:
        """A wait called from async code blocks its event loop: say once what to use instead."""
        if self._told_blocking:
            return
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            return
        self._told_blocking = True
        _log.warning("WorkflowHandle.%s() blocks the %s event loop it is called from until it returns: in "
                     "async code, use durable.AsyncClient (await handle.%s())", method, library, method)

    @contextlib.contextmanager
    def _listening(self) -> Iterator[Callable[[float | None], None]]:
        """Listen for wake-ups (bound before the first look at the store, so none is missed)."""
        listener = self._store.listener()

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
    def of(cls, store: Backend) -> _CloseWatcher:
        """The store's watcher, started on first use."""
        with store.shared_lock:
            watcher = store.shared.get("close-watcher")
            if watcher is None:
                watcher = store.shared["close-watcher"] = cls(store)
            return watcher

    def __init__(self, store: Backend) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._waiting: dict[str, list[threading.Event]] = {}
        self._stopping = False
        # bound before the log is first read, so that no close after that read goes unnoticed
        self._listener = store.listener()
        self._cursor = store.read(_ops.last_close)
        self._thread = threading.Thread(target=self._run, name="durable-close-watcher", daemon=True)
        self._thread.start()
        store.on_close(self._stop)

    @contextlib.contextmanager
    def watch(self, workflow_id: str, event: threading.Event | None = None) -> Iterator[threading.Event]:
        """An event set whenever `workflow_id` may have ended (look at the store, then wait):
        `event` if given (a subclass may also wake an event loop: `_async_client`)."""
        event = event if event is not None else threading.Event()
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
        try:
            while not self._stopping:
                if self._listener.readable(POLL_FALLBACK_SECONDS):
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
            self._listener.poke()
        self._thread.join(5)


def _check_id(wid: Any) -> str:
    if isinstance(wid, str) and wid and "\x00" not in wid and _is_unicode(wid) and len(wid.encode()) <= MAX_ID_BYTES:
        return wid
    raise InvalidArgument(
        f"a workflow id must be a non-empty string of at most {MAX_ID_BYTES} bytes of Unicode text "
        f"without NUL characters, not {_short(wid)}"
    )


_Seconds = float | _dt.timedelta | None


def _seconds(value: Any, what: str) -> float | None:
    """A duration given as seconds or a timedelta, checked (None or 0: none)."""
    if isinstance(value, _dt.timedelta):
        value = value.total_seconds()
    return check_seconds(value, what) or None


def _check_choice(value: Any, what: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidArgument(f"{what} must be one of {', '.join(map(repr, allowed))}, not {_short(value)}")


def _check_run_id(run_id: Any) -> int:
    """The run number a run id names (the hexadecimal form `WorkflowDescription.run_id` has)."""
    if isinstance(run_id, str) and 0 < len(run_id) <= 16 and run_id.isascii():
        try:
            num = int(run_id, 16)
        except ValueError:
            num = 0
        if num > 0 and f"{num:x}" == run_id:
            return num
    raise InvalidArgument(
        f"a run id must be a run's number as describe() and list() show it (1 to 16 lowercase hexadecimal "
        f"digits, no leading zero), not {_short(run_id)}"
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


class WorkflowHandle(Generic[R_co]):
    """A handle on one workflow, by id: on its latest run, or with `run_id`, on that run.

    `R_co` is the workflow's result type, as `result` gives it: the workflow's return type for a
    handle from `Client.start` given the workflow, `Any` for one by name or from `get_handle`.

    Reads (`describe`, `history`) see the handle's run. Signals, queries, cancel and terminate
    reach the id's current run only: on a handle whose run is an earlier one, they raise
    `WorkflowClosed`; but a run that continued as new (`durable.continue_as_new`) stands for the
    run it continued into, so that they, and `result`, follow a continue-as-new chain to its
    latest run.
    """

    def __init__(self, client: Client, workflow_id: str, run_id: str | None = None, *,
                 workflow: Any = None) -> None:
        self._client = client
        #: the workflow's definition, if the handle was given it: values convert by its hints
        self._defn = None if workflow is None else workflow_def(workflow)
        self._store = client._store
        self._converter = client._converter
        self.id = workflow_id
        self._num = None if run_id is None else _check_run_id(run_id)
        #: the run this handle is bound to (None: whichever run of the id is the latest)
        self.run_id = run_id
        #: set by `Client.start` when no worker served the workflow's queue at the time (the
        #: workflow waits for one): "no worker has polled queue 'q' since ...", else None
        self.warning: str | None = None

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id!r}>" if self.run_id is None else f"<WorkflowHandle {self.id!r} run {self.run_id}>"

    def describe(self) -> WorkflowDescription:
        """Status, type, times, queue and counters of the workflow's run, and its pending activities."""
        def read(t: Any) -> tuple[dict[str, Any], list[dict[str, Any]], str | None, Any]:
            rec = _ops.load_run(t, self.id, self._num)
            registered = _ops.registered_workflow(t, rec["queue"], rec["type"])
            if rec["status"] != _ops.RUNNING:
                return rec, [], None, registered
            warning = _ops.nobody_serves(rec["queue"], t.now, _ops.queue_presence(t, rec["queue"]))
            return rec, _ops.pending_activities(t, rec["num"]), warning, registered

        rec, pending, warning, registered = self._store.read(read)
        desc = WorkflowDescription.from_record(rec, pending, warning, converter=self._converter)
        if isinstance(registered, dict):
            def names(kind: str) -> tuple[str, ...]:
                return tuple(str(n) for n in registered.get(kind, ()))

            desc = dataclasses.replace(desc, signals=names("signals"), queries=names("queries"),
                                       updates=names("updates"))
        if rec.get("uany") and rec["status"] == _ops.RUNNING:
            from ._updates import in_flight

            updates = self._store.read(lambda t: in_flight(t, rec["num"]))
            desc = dataclasses.replace(desc, pending_updates=tuple(
                f"{u['name']} (id {u['id']}, {u['status']})" for u in updates))
        return desc

    def result(self, timeout: float | None = None) -> R_co:
        """Wait for the run to end; return its result or raise `WorkflowFailed`. Without a run
        id, the latest run's: if the id starts a new run meanwhile, that one's.

        Raises `WaitTimeout` if it has not ended after `timeout` seconds.
        """
        self._client._warn_if_on_event_loop("result")
        deadline = None if timeout is None else time.monotonic() + timeout
        with _CloseWatcher.of(self._store).watch(self.id) as ended:
            while True:
                ended.clear()
                rec, last = self._store.read(self._closing_event)
                if last is not None:
                    return cast(R_co, self._outcome(rec, last))
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise WaitTimeout(f"workflow {self.id!r} is still {rec['status']} after {timeout:g} s")
                ended.wait(POLL_FALLBACK_SECONDS if deadline is None else min(deadline - now, POLL_FALLBACK_SECONDS))

    def _chain_end(self, t: Any) -> int | None:
        """The handle's run, or the run it continued into (through every continue-as-new)."""
        return _ops.chain_end(t, self.id, self._num)

    def _closing_event(self, t: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        rec = _ops.load_run(t, self.id, self._chain_end(t))
        if rec["status"] == _ops.RUNNING:
            return rec, None
        events = _ops.read_history(t, rec["num"], rec["hlen"] - 1)
        return rec, events[-1]

    def _outcome(self, rec: dict[str, Any], last: dict[str, Any]) -> Any:
        kind = last["k"]
        if kind == ev.WORKFLOW_COMPLETED:
            value = self._converter.from_payload(last["out"], "workflow result")
            defn = self._defn  # (a chain continued as another workflow type gives its plain form)
            if defn is not None and defn.plan.ret_in and rec.get("type") == defn.name:  # by the return annotation
                value = defn.plan.result_from_plain(value, f"result of workflow {self.id!r}")
            return value
        if kind == ev.WORKFLOW_FAILED:
            failure = self._converter.readable_failure(last["err"])
            cause = error_from_record(failure)
            err = WorkflowFailed(
                f"workflow {self.id!r} failed: {format_error_record(failure)}",
                workflow_id=self.id, status="failed",
            )
            err.__cause__ = cause
            raise err
        if rec["status"] == "timed_out":
            how = (f"its {last.get('timeout')} timeout passed" if kind == ev.WORKFLOW_TIMED_OUT
                   else "it was cancelled in its grace period")
            raise WorkflowFailed(f"workflow {self.id!r} timed out ({how})", workflow_id=self.id, status="timed_out")
        if kind == ev.WORKFLOW_CANCELLED:
            raise WorkflowFailed(f"workflow {self.id!r} was cancelled", workflow_id=self.id, status="cancelled")
        reason = last.get("reason") or "no reason given"
        raise WorkflowFailed(f"workflow {self.id!r} was terminated: {reason}", workflow_id=self.id, status="terminated")

    def signal(self, name: str, *args: Any) -> None:
        """Send signal `name` with `args`: recorded in history, delivered once, in order."""
        check_name(name, "signal name")
        plan = self._handler_plan(self._defn.signals if self._defn is not None else None, name)
        if plan is not None and plan.args_out:
            args = tuple(plan.args_to_plain(args, f"signal {name!r}"))
        payload = self._converter.to_payload(list(args), f"signal {name!r}")
        self._store.write(lambda t: _ops.signal(t, self.id, name, payload, self._chain_end(t), len(args)))

    def query(self, name: str, *args: Any, timeout: float = DEFAULT_QUERY_TIMEOUT) -> Any:
        """Run query `name` on a worker against the workflow's live state; return its answer."""
        check_name(name, "query name")
        plan = self._handler_plan(self._defn.queries if self._defn is not None else None, name)
        if plan is not None and plan.args_out:
            args = tuple(plan.args_to_plain(args, f"query {name!r}"))
        payload = self._converter.to_payload(list(args), f"query {name!r}")
        self._client._warn_if_on_event_loop("query")
        deadline = time.monotonic() + timeout
        with self._client._listening() as wait:
            qnum = self._store.write(lambda t: _ops.put_query(t, self.id, name, payload, self._chain_end(t)))
            while True:
                expired = time.monotonic() >= deadline
                answer = self._store.read(lambda t: _ops.peek_query_answer(t, qnum))
                if answer is not None or expired:
                    answer = self._store.write(lambda t: _ops.take_query_answer(t, qnum, expired))
                if answer is not None:
                    if "err" in answer:
                        raise QueryFailed(f"query {name!r} on workflow {self.id!r}: "
                                          f"{self._converter.readable_text(answer['err'])}")
                    value = self._converter.from_payload(answer["ok"], f"answer to query {name!r}")
                    if plan is not None and plan.ret_in:  # by the query's return annotation
                        value = plan.result_from_plain(value, f"answer to query {name!r}")
                    return value
                if expired:
                    queue = self.describe().queue
                    raise QueryFailed(
                        f"no worker answered query {name!r} on workflow {self.id!r} within {timeout:g} s "
                        f"(is a worker running on queue {queue!r}?)"
                    )
                wait(deadline)

    def update(self, name: str, *args: Any, update_id: str | None = None, timeout: float | None = None) -> Any:
        """Send update `name` with `args` and wait for its handler's return value.

        `UpdateRejected` if its validator refused it (nothing recorded), `UpdateFailed` if its
        handler raised a failure or the workflow closed first, `WaitTimeout` after `timeout`
        seconds (the update goes on: call again with the same `update_id` to wait for it). A
        call with the id of an update the run already has gets that update's outcome: the
        handler runs once per id (default id: a fresh uuid)."""
        from ._update_client import run_update

        return run_update(self, name, args, update_id, timeout)

    def start_update(self, name: str, *args: Any, update_id: str | None = None,
                     timeout: float | None = None) -> UpdateHandle:
        """Send update `name` with `args` and wait only until its validator has accepted it;
        return an `UpdateHandle` whose `result()` waits for the handler's value.

        `UpdateRejected` if the validator refused it; `WaitTimeout` after `timeout` seconds.
        Same ids, same update, as for `update`."""
        from ._update_client import start_update

        return start_update(self, name, args, update_id, timeout)

    def _handler_plan(self, handlers: dict[str, str] | None, name: str) -> Plan | None:
        """The plan of the signal or query handler `name` of the handle's workflow, if known."""
        method = None if handlers is None else handlers.get(name)
        return None if method is None or self._defn is None else self._defn.handler_plan(method)

    def cancel(self, reason: str = "") -> None:
        """Ask the workflow to cancel: its scopes are cancelled, its compensations run."""
        _check_reason(reason)
        self._store.write(lambda t: _ops.request_cancel(t, self.id, reason, self._chain_end(t)))

    def terminate(self, reason: str = "") -> None:
        """End the workflow at once; none of its code runs again."""
        _check_reason(reason)
        self._store.write(lambda t: _ops.terminate(t, self.id, reason, self._chain_end(t)))

    def reset(self, to_event: int, *, reason: str = "", reapply_signals: bool = True) -> WorkflowHandle[R_co]:
        """Start a new run of this id whose history is the handle's run's events 0..`to_event`,
        from which the code now deployed goes on (a reset: see ``durable reset``); return a
        handle on the new run. `to_event` must end the inputs of a workflow task (the last input
        event before the commands it recorded): the new run's code runs that task anew. The old
        run is kept, readable, and names the new one (`WorkflowDescription.reset_run_id`); if
        the id's current run is running it is terminated. Activities scheduled in the prefix and
        not finished in it are scheduled again, its open timers set again; with
        `reapply_signals`, the signals the old run received after `to_event` are delivered to
        the new one. All in one transaction: a bad `to_event` (`InvalidArgument`, naming the
        events allowed) writes nothing."""
        from . import _reset

        _check_reason(reason)
        to_event = _reset.require_int(to_event, "to_event")
        num = self._store.write(lambda t: _reset.reset(t, self.id, self._num, to_event, reason, bool(reapply_signals)))
        return WorkflowHandle(self._client, self.id, f"{num:x}")

    def history(self, start: int = 0) -> list[dict[str, Any]]:
        """The run's history as readable dicts (payloads decoded, times as datetimes), from
        event `start` on."""
        if not isinstance(start, int) or start < 0:
            raise InvalidArgument(f"start must be a non-negative event index, not {start!r}")
        rec, events = self._store.read(lambda t: self._history(t, start))
        return [readable_event(start + i, e, self._converter) for i, e in enumerate(events)]

    def follow_history(self, start: int = 0, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """The run's events from `start` on as `history` gives them, each as soon as it is
        recorded, until the run has closed and its last event is given (or `timeout` seconds
        pass: `WaitTimeout`). Events wait in an inbox while a workflow task runs: they follow
        once it is recorded, in history order."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._client._listening() as wait:
            while True:
                rec, events = self._store.read(lambda t: self._history(t, start))
                for i, event in enumerate(events):
                    yield readable_event(start + i, event, self._converter)
                start += len(events)
                if rec["status"] != _ops.RUNNING and start >= rec["hlen"]:
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"workflow {self.id!r} is still {rec['status']} after {timeout:g} s")
                wait(deadline)

    def export_history(self) -> bytes:
        """The raw history as CBOR bytes, for `durable.replay` and golden-history tests."""
        _, events = self._store.read(lambda t: self._history(t))
        return encode(events)

    def _history(self, t: Any, start: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        rec = _ops.load_run(t, self.id, self._num)
        return rec, _ops.read_history(t, rec["num"], start)


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
        elif key == "at" and event["k"] == ev.UPDATE_ACCEPTED:
            out["workflow_time"] = _time(value)  # what durable.now() gave its handler
        else:
            out[{"err": "error", "dur": "duration_ns", "dep": "deprecated"}.get(key, key)] = value
    return out
