"""The client's side of schedules: `ScheduleHandle` and what `describe` reports.

`Client.create_schedule` checks its arguments here, then writes the schedule in one
transaction (`_schedules.create`); every other operation is one transaction too.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _ops, _schedules
from ._defs import check_arity, arity_from_record, check_seconds, workflow_def
from ._errors import InvalidArgument
from ._limits import MAX_BACKFILL_SLOTS, MAX_SCHEDULE_ID_BYTES

if TYPE_CHECKING:
    from ._client import Client, WorkflowDescription

_NS = 1_000_000_000
#: Default catch-up window (Temporal's SDKs' default): slots missed while no worker ran are
#: taken if they are at most this old.
DEFAULT_CATCHUP_WINDOW = _dt.timedelta(days=365)
#: How many upcoming fire times `describe` shows.
UPCOMING = 5


@dataclass(frozen=True)
class ScheduleAction:
    """One workflow a schedule started: for which slot, when, and which run."""

    #: the slot's time (a trigger's: when it was triggered)
    scheduled_at: _dt.datetime
    #: when the workflow was started (later than the slot by jitter, or after downtime)
    started_at: _dt.datetime
    workflow_id: str
    run_id: str
    #: "scheduled", "trigger" or "backfill"
    kind: str

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready data (times as ISO 8601 strings)."""
        return {k: v.isoformat() if isinstance(v, _dt.datetime) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class ScheduleDescription:
    """What `ScheduleHandle.describe` and `Client.list_schedules` report about a schedule."""

    schedule_id: str
    workflow_type: str
    queue: str
    #: the cron expression (evaluated in UTC), or None
    cron: str | None
    #: the interval (aligned to the Unix epoch), or None
    every: _dt.timedelta | None
    jitter: _dt.timedelta
    overlap: str
    catchup_window: _dt.timedelta
    pause_on_failure: bool
    paused: bool
    #: why it was paused or unpaused (the note given, or the failure that paused it)
    note: str
    created_at: _dt.datetime
    #: its next fire times (slot times, before jitter); none while paused
    next_action_times: tuple[_dt.datetime, ...]
    #: the latest workflows it started, oldest first
    recent_actions: tuple[ScheduleAction, ...]
    #: workflows it started, slots it skipped (overlap policy), slots missed (older than the
    #: catch-up window when a worker came back)
    actions_started: int
    actions_skipped: int
    actions_missed: int
    #: the slot whose start waits for the running workflow to close (buffer_one, cancel_other)
    buffered: _dt.datetime | None
    #: the id of the workflow it started last, if that one is running
    running: str | None

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ScheduleDescription:
        """Build from a schedule record as `_schedules.describe` gives it."""
        spec = rec["spec"]
        t = _schedules.to_datetime
        return cls(
            schedule_id=rec["id"], workflow_type=rec["type"], queue=rec["queue"], cron=spec.get("cron"),
            every=None if spec.get("every") is None else _dt.timedelta(microseconds=spec["every"] // 1000),
            jitter=_dt.timedelta(microseconds=rec["jitter"] // 1000), overlap=rec["overlap"],
            catchup_window=_dt.timedelta(microseconds=rec["catchup"] // 1000), pause_on_failure=rec["pof"],
            paused=rec["paused"], note=rec["note"], created_at=t(rec["created"]),
            next_action_times=tuple(t(ns) for ns in rec["upcoming"]),
            recent_actions=tuple(
                ScheduleAction(scheduled_at=t(a["slot"]), started_at=t(a["at"]), workflow_id=a["id"],
                               run_id=f"{a['num']:x}", kind=a["kind"])
                for a in rec["recent"]
            ),
            actions_started=rec["n_started"], actions_skipped=rec["n_skipped"], actions_missed=rec["n_missed"],
            buffered=None if rec["buffered"] is None else t(rec["buffered"]), running=rec["running"],
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready data (times as ISO 8601 strings, durations in seconds)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, _dt.datetime):
                value = value.isoformat()
            elif isinstance(value, _dt.timedelta):
                value = value.total_seconds()
            elif key == "next_action_times":
                value = [v.isoformat() for v in value]
            elif key == "recent_actions":
                value = [a.to_json() for a in value]
            out[key] = value
        return out


class ScheduleHandle:
    """A schedule in the store, by id (checked when used). Get one from `Client.create_schedule`
    or `Client.get_schedule_handle`."""

    def __init__(self, client: Client, schedule_id: str) -> None:
        self._client = client
        #: the schedule's id
        self.id = check_schedule_id(schedule_id)

    def __repr__(self) -> str:
        return f"ScheduleHandle({self.id!r})"

    def describe(self) -> ScheduleDescription:
        """Its spec, policies, state, next fire times and latest starts."""
        rec = self._client._store.read(lambda t: _schedules.describe(t, self.id, UPCOMING))
        return ScheduleDescription.from_record(rec)

    def pause(self, note: str = "") -> None:
        """Take no scheduled action until `unpause`; the slots meanwhile are not caught up."""
        note = _check_note(note)
        self._client._store.write(lambda t: _schedules.pause(t, self.id, note))

    def unpause(self, note: str = "") -> None:
        """Take scheduled actions again, from the first slot after now."""
        note = _check_note(note)
        self._client._store.write(lambda t: _schedules.unpause(t, self.id, note))

    def trigger(self) -> None:
        """Take one action now (paused or not), under the schedule's overlap policy."""
        self._client._store.write(lambda t: _schedules.trigger(t, self.id))

    def backfill(self, start: _dt.datetime, end: _dt.datetime, *, overlap: str = "allow_all") -> int:
        """Take the actions of the slots in [start, end) now, under `overlap` (default
        "allow_all": a backfill under "skip" would start only its first slot). A slot whose
        workflow exists (it fired, or was backfilled before) is not started again. Naive
        datetimes are UTC. Return the number of slots in the range."""
        _check_overlap(overlap)
        lo, hi = _time_arg(start, "start"), _time_arg(end, "end")
        if hi <= lo:
            raise InvalidArgument(f"backfill: end ({end}) must be after start ({start})")
        return self._client._store.write(lambda t: _schedules.backfill(t, self.id, lo, hi, overlap, MAX_BACKFILL_SLOTS))

    def delete(self) -> None:
        """Delete the schedule. The workflows it started go on (and keep its id in `describe`)."""
        self._client._store.write(lambda t: _schedules.delete(t, self.id))

    def list_workflows(self, limit: int = 1000) -> list[WorkflowDescription]:
        """The workflows it started, newest first (as `Client.list(schedule=...)`)."""
        return self._client.list(schedule=self.id, limit=limit)


def check_schedule_id(sid: Any) -> str:
    """`sid` if it is a valid schedule id, else `InvalidArgument`."""
    if (isinstance(sid, str) and sid and "\x00" not in sid and sid.isprintable()
            and len(sid.encode("utf-8", "surrogatepass")) <= MAX_SCHEDULE_ID_BYTES):
        try:
            sid.encode()
            return sid
        except UnicodeEncodeError:
            pass
    raise InvalidArgument(
        f"a schedule id must be a non-empty string of at most {MAX_SCHEDULE_ID_BYTES} bytes of printable "
        f"Unicode text (the ids of the workflows it starts add a time to it), not {sid!r:.80}"
    )


def _check_note(note: Any) -> str:
    if not isinstance(note, str) or len(note) > 1000:
        raise InvalidArgument(f"a note must be a string of at most 1000 characters, not {note!r:.80}")
    return note


def _check_overlap(overlap: Any) -> None:
    if not isinstance(overlap, str) or overlap not in _schedules.OVERLAP_POLICIES:
        raise InvalidArgument(f"overlap must be one of {', '.join(map(repr, _schedules.OVERLAP_POLICIES))}, "
                              f"not {overlap!r:.80}")


def _seconds(value: Any, what: str) -> float | None:
    if isinstance(value, _dt.timedelta):
        value = value.total_seconds()
    return check_seconds(value, what)


def _time_arg(value: Any, what: str) -> int:
    if not isinstance(value, _dt.datetime):
        raise InvalidArgument(f"{what} must be a datetime (a naive one is taken as UTC), not {value!r:.80}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return _schedules.to_ns(value)


def create_schedule(client: Client, schedule_id: str, workflow: Any, args: tuple[Any, ...], *,
                    cron: str | None, every: float | _dt.timedelta | None, queue: str,
                    jitter: float | _dt.timedelta | None, overlap: str,
                    catchup_window: float | _dt.timedelta, pause_on_failure: bool, paused: bool,
                    note: str) -> ScheduleHandle:
    """`Client.create_schedule`: check everything, then write the schedule in one transaction."""
    from ._client import check_name

    sid = check_schedule_id(schedule_id)
    if (cron is None) == (every is None):
        raise InvalidArgument("a schedule needs exactly one of cron= (a cron expression) and every= (an interval)")
    spec: dict[str, Any]
    if cron is not None:
        if not isinstance(cron, str):
            raise InvalidArgument(f"cron must be a cron expression (a string), not {cron!r:.80}")
        spec = {"cron": _schedules.check_cron(cron)}
    else:
        seconds = _seconds(every, "every")
        if not seconds or seconds < 0.001:
            raise InvalidArgument(f"every must be an interval of at least 1 ms, not {every!r}")
        spec = {"every": int(seconds * _NS)}
    jitter_s = _seconds(jitter, "jitter") or 0.0
    catchup_s = _seconds(catchup_window, "catchup_window")
    if catchup_s is None or catchup_s < 1:
        raise InvalidArgument(f"catchup_window must be at least 1 second, not {catchup_window!r}")
    _check_overlap(overlap)
    if not isinstance(pause_on_failure, bool) or not isinstance(paused, bool):
        raise InvalidArgument("pause_on_failure and paused must be True or False")
    note = _check_note(note)
    check_name(queue, "queue")
    if isinstance(workflow, str):
        name, check = check_name(workflow, "workflow name"), True
        known = client._store.read(lambda t: _ops.registered_workflow(t, queue, name))
        fits = arity_from_record((known or {}).get("params"))
        if fits is not None:
            check_arity(f"workflow {name!r}", fits, len(args))
    else:
        defn = workflow_def(workflow)
        name, check = defn.name, False
        defn.check_start_args(args)
        if defn.plan.args_out:  # by the parameters' annotations (`_convert`)
            args = tuple(defn.plan.args_to_plain(args, f"input of schedule {sid!r}"))
    payload = client._converter.to_payload(list(args), f"input of schedule {sid!r}")
    client._store.write(lambda t: _schedules.create(
        t, sid, name, queue, payload, spec, jitter=int(jitter_s * _NS), overlap=overlap,
        catchup=int(catchup_s * _NS), pause_on_failure=pause_on_failure, paused=paused, note=note,
        check_type=check,
    ))
    return ScheduleHandle(client, sid)
