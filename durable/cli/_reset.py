"""`durable reset` (a new run from a prefix of a run's history), and what `durable replay
--inspect` (the workflow's state at an event) and `durable history --diff` print."""

from __future__ import annotations

import sys
from typing import Any

import click

import durable
from durable import _inspect
from durable._client import readable_event
from durable._replay import decode_history
from durable._runtime import task_error_text

from ._main import _fail, _import_modules, _State, _to_json, handle_errors, main


@main.command()
@click.argument("workflow_id")
@click.option("--to", "to_event", required=True, type=click.IntRange(0), metavar="N",
              help="Keep events 0..N: the last input event before a workflow task's commands.")
@click.option("--reason", default="", help="Why: in the WorkflowTerminated event of the run it closes, if one runs.")
@click.option("--run", "run_id", default=None, metavar="RUN", help="Reset this run of the id (default: its latest).")
@click.option("--no-reapply-signals", "no_reapply", is_flag=True,
              help="Do not deliver the signals received after event N to the new run.")
@click.pass_obj
@handle_errors
def reset(state: _State, workflow_id: str, to_event: int, reason: str, run_id: str | None, no_reapply: bool) -> None:
    """Start a new run of WORKFLOW_ID whose history is events 0..N of its run, from which the code
    now deployed goes on; print the new run's id. The old run is kept (`durable history --run`);
    the id's current run, if running, is terminated. Activities scheduled before N and not
    finished are run again; the signals received after N are delivered again (unless
    --no-reapply-signals). N must end the inputs of a workflow task: a wrong N is refused with
    the events allowed."""
    handle = state.client().get_handle(workflow_id, run_id=run_id)
    new = handle.reset(to_event, reason=reason, reapply_signals=not no_reapply)
    click.echo(new.run_id)


def replay_command(state: _State, workflow_id: str, modules: tuple[str, ...], run_id: str | None,
                   until: int | None, show: bool, as_json: bool) -> None:
    """`durable replay` (see its help): exit 1 with one error line if the code does not match."""
    loaded = _import_modules(modules)
    registry = durable._defs.Registry.from_modules(loaded)
    client = state.client()
    desc = client.get_handle(workflow_id, run_id=run_id).describe()
    events = decode_history(client.get_handle(workflow_id, run_id=desc.run_id).export_history())
    name = f"{workflow_id} (run {desc.run_id}, {desc.workflow_type})"
    defn = registry.workflows.get(desc.workflow_type)
    if defn is None:
        known = ", ".join(sorted(registry.workflows)) or "none"
        _fail(f"{name} would break: NotRegistered: workflow type {desc.workflow_type!r} is not registered "
              f"in {' '.join(modules)}; registered: {known}")
        return
    try:
        found = _inspect.inspect_history(defn, events, until, codec=state.codec, run_live=show)
    except durable.InvalidArgument:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the replay raises is why it would break
        _fail(f"{name} would break: {task_error_text(exc)}")
        return
    if as_json:
        click.echo(_to_json({"id": workflow_id, "run_id": desc.run_id, "type": desc.workflow_type, "ok": True,
                             **found.to_json()}))
        return
    if until is None and not show:
        click.echo(f"{workflow_id}: {found.replayed} events replayed through {desc.workflow_type!r}: "
                   "the code matches the history")
    else:
        click.echo(f"{name}: replayed events 0..{found.until}: the code matches the history")
    if not show:
        return
    if found.done:
        click.echo("the workflow has ended")
    if found.attributes is not None:
        click.echo("attributes:" if found.attributes else "attributes: none")
        for key, value in found.attributes.items():
            click.echo(f"  {key} = {value}")
    for function, line, local in found.frames:
        click.echo(f"locals of {function} (suspended at line {line}):")
        for key, value in local.items():
            click.echo(f"  {key} = {value}")
    if found.waiting:
        click.echo(f"waiting for: {', '.join(found.waiting)}")
    if found.ran_live:
        click.echo(f"next commands (run live, not recorded): {', '.join(found.next_commands)}")


def print_diff(state: _State, workflow_id: str, run_id: str | None, other_id: str, other_run: str | None,
               as_json: bool) -> None:
    """`durable history ID --diff OTHER`: where two runs' histories part (times, workflow ids
    and random seeds aside); exit 1 if they differ."""
    client = state.client()
    sides = []
    for wid, run in ((workflow_id, run_id), (other_id, other_run)):
        run = client.get_handle(wid, run_id=run).describe().run_id
        sides.append((f"{wid} (run {run})", decode_history(client.get_handle(wid, run_id=run).export_history())))
    (left_name, left), (right_name, right) = sides
    common, same = _inspect.diff_histories(left, right)
    first_left = left[common] if common < len(left) else None
    first_right = right[common] if common < len(right) else None
    if as_json:
        click.echo(_to_json({
            "same": same, "common": common, "lengths": [len(left), len(right)],
            "left": None if first_left is None else readable_event(common, first_left, client._converter),
            "right": None if first_right is None else readable_event(common, first_right, client._converter),
            "fields": [] if first_left is None or first_right is None
            else _inspect.differing_fields(first_left, first_right),
        }))
    elif same:
        click.echo(f"the histories are the same: {common} events (times aside)")
    else:
        click.echo(f"common prefix: {common} event{'' if common == 1 else 's'}"
                   + (f" (0..{common - 1})" if common else ""))
        click.echo(f"they part at event {common}:")
        width = max(len(left_name), len(right_name))
        for name, event, other in ((left_name, first_left, first_right), (right_name, first_right, first_left)):
            click.echo(f"  {name:<{width}}  {_side(event, other, client)}")
    if not same:
        sys.exit(1)


def _side(event: dict[str, Any] | None, other: dict[str, Any] | None, client: durable.Client) -> str:
    """One side of the first difference: the kind and the fields that differ."""
    if event is None:
        return "(ends here)"
    if other is None or other["k"] != event["k"]:
        fields = [k for k in _inspect._comparable(event) if k != "k"]
    else:
        fields = [k for k in _inspect.differing_fields(event, other) if k != "k"]
    shown = readable_event(0, {k: v for k, v in event.items() if k in fields or k in ("k", "t")}, client._converter)
    parts = [f"{k}={_to_json(v)}" for k, v in shown.items() if k not in ("index", "kind", "time", "opts")]
    return " ".join([event["k"]] + parts)
