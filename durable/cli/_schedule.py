"""`durable schedule ...`: create, list, describe, pause, unpause, trigger, backfill, delete."""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

import click

import durable
from durable._schedules import OVERLAP_POLICIES

from ._main import _Group, _State, _Time, _json_arg, _one_line, _to_json, handle_errors, main

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


class _Duration(click.ParamType):
    """A duration: seconds (90, 0.5) or with units (90s, 30m, 1h, 1h30m, 2d, 500ms)."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        try:
            return float(text)
        except ValueError:
            pass
        pos, total = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            self.fail(f"{value!r} is not a duration (e.g. 90, 90s, 30m, 1h, 1h30m, 2d, 500ms)", param, ctx)
        return total


@main.group(cls=_Group)
def schedule() -> None:
    """Start a workflow on a cron expression or an interval: create, list, describe, pause,
    unpause, trigger, backfill, delete.

    Any running worker of the store fires schedules (whatever its queue); each slot starts one
    workflow, with id SCHEDULE-ID-<slot time, ISO 8601 UTC>, exactly once. Cron expressions are
    evaluated in UTC (no daylight saving time); intervals are aligned to the Unix epoch."""


@schedule.command("create")
@click.argument("schedule_id")
@click.argument("workflow")
@click.option("--cron", default=None, metavar="EXPR",
              help="Cron expression, in UTC: 'minute hour day-of-month month day-of-week' or @hourly, @daily...")
@click.option("--every", default=None, type=_Duration(), help="Interval (aligned to the epoch): 90s, 30m, 1h, 1d...")
@click.option("--input", "-i", "inputs", multiple=True, metavar="JSON",
              help="One argument of the workflow, as JSON (repeat for several).")
@click.option("--queue", default="default", show_default=True, help="Queue of the workflows it starts.")
@click.option("--overlap", default="skip", show_default=True, type=click.Choice(OVERLAP_POLICIES),
              help="If the workflow started last still runs: skip the slot; start it once that one "
                   "closes (one kept); start anyway; cancel that one and start once it closed.")
@click.option("--jitter", default=None, type=_Duration(), help="Delay each slot by a random time below this.")
@click.option("--catchup-window", default="365d", show_default=True, type=_Duration(),
              help="After downtime, take the missed slots at most this old.")
@click.option("--pause-on-failure", is_flag=True, help="Pause the schedule when a workflow it started fails.")
@click.option("--paused", is_flag=True, help="Create it paused.")
@click.option("--note", default="", help="Why it is paused (with --paused).")
@click.pass_obj
@handle_errors
def create(state: _State, schedule_id: str, workflow: str, cron: str | None, every: float | None,
           inputs: tuple[str, ...], queue: str, overlap: str, jitter: float | None, catchup_window: float,
           pause_on_failure: bool, paused: bool, note: str) -> None:
    """Create schedule SCHEDULE_ID that starts WORKFLOW (by name); print its id."""
    args = [_json_arg(text, f"--input {i + 1}") for i, text in enumerate(inputs)]
    handle = state.client(create=True).create_schedule(
        schedule_id, workflow, *args, cron=cron, every=every, queue=queue, overlap=overlap, jitter=jitter,
        catchup_window=catchup_window, pause_on_failure=pause_on_failure, paused=paused, note=note)
    click.echo(handle.id)


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
@handle_errors
def list_(state: _State, as_json: bool) -> None:
    """List schedules by id: spec, workflow, state, next fire time, workflows started."""
    rows = state.client().list_schedules()
    if as_json:
        for row in rows:
            click.echo(_to_json(row.to_json()))
        return
    table = [["ID", "SPEC", "WORKFLOW", "STATE", "NEXT", "STARTED"]]
    for row in rows:
        nxt = row.next_action_times[0].isoformat(timespec="seconds") if row.next_action_times else "-"
        table.append([row.schedule_id, _spec(row), row.workflow_type, "paused" if row.paused else "active", nxt,
                      str(row.actions_started)])
    table = [[_one_line(cell) for cell in line] for line in table]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def _spec(desc: durable.ScheduleDescription) -> str:
    if desc.cron is not None:
        return f"cron {desc.cron}"
    assert desc.every is not None
    return f"every {desc.every.total_seconds():g}s"


@schedule.command("describe")
@click.argument("schedule_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def describe(state: _State, schedule_id: str, as_json: bool) -> None:
    """Show a schedule: spec, policies, state, next fire times and the latest workflows it started."""
    desc = state.client().get_schedule_handle(schedule_id).describe()
    data = desc.to_json()
    if as_json:
        click.echo(_to_json(data))
        return
    for key, value in data.items():
        if key in ("cron", "every", "buffered", "running") and value is None:
            continue
        if key == "note" and not value:
            continue
        if key == "next_action_times":
            click.echo("next_action_times:" + ("" if value else " none"))
            for when in value:
                click.echo(f"  {when}")
        elif key == "recent_actions":
            click.echo("recent_actions:" + ("" if value else " none"))
            for action in desc.recent_actions:
                click.echo(f"  {action.scheduled_at.isoformat()}  {action.kind:9}  {_one_line(action.workflow_id)}"
                           f"  run {action.run_id}")
        else:
            click.echo(_one_line(f"{key}: {value}"))


@schedule.command("pause")
@click.argument("schedule_id")
@click.option("--note", default="", help="Why (shown by describe).")
@click.pass_obj
@handle_errors
def pause(state: _State, schedule_id: str, note: str) -> None:
    """Take no scheduled action until unpaused (the slots meanwhile are not caught up)."""
    state.client().get_schedule_handle(schedule_id).pause(note)
    click.echo(f"paused: {schedule_id}")


@schedule.command("unpause")
@click.argument("schedule_id")
@click.option("--note", default="", help="Why (shown by describe).")
@click.pass_obj
@handle_errors
def unpause(state: _State, schedule_id: str, note: str) -> None:
    """Take scheduled actions again, from the first slot after now."""
    state.client().get_schedule_handle(schedule_id).unpause(note)
    click.echo(f"unpaused: {schedule_id}")


@schedule.command("trigger")
@click.argument("schedule_id")
@click.pass_obj
@handle_errors
def trigger(state: _State, schedule_id: str) -> None:
    """Take one action now (paused or not), under the schedule's overlap policy."""
    state.client().get_schedule_handle(schedule_id).trigger()
    click.echo(f"triggered: {schedule_id}")


@schedule.command("backfill")
@click.argument("schedule_id")
@click.argument("start", type=_Time())
@click.argument("end", type=_Time())
@click.option("--overlap", default="allow_all", show_default=True, type=click.Choice(OVERLAP_POLICIES),
              help="Overlap policy among the backfilled slots.")
@click.pass_obj
@handle_errors
def backfill(state: _State, schedule_id: str, start: _dt.datetime, end: _dt.datetime, overlap: str) -> None:
    """Take now the actions of the slots from START (included) to END (excluded): ISO 8601 dates
    or datetimes, UTC unless they carry an offset. A slot whose workflow exists is not started again."""
    n = state.client().get_schedule_handle(schedule_id).backfill(start, end, overlap=overlap)
    click.echo(f"backfilled {n} slot{'' if n == 1 else 's'}: {schedule_id}")


@schedule.command("delete")
@click.argument("schedule_id")
@click.pass_obj
@handle_errors
def delete(state: _State, schedule_id: str) -> None:
    """Delete a schedule (the workflows it started go on)."""
    state.client().get_schedule_handle(schedule_id).delete()
    click.echo(f"deleted: {schedule_id}")
