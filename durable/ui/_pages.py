"""The UI's pages as HTML, from what the client API returned (no store access here).

Every value from the store passes through `h` (see `_format`). The pages hold no inline script
or style (the Content-Security-Policy forbids them): behaviour is in /static/app.js, which reads
`data-` attributes, and the pages work without it (forms post, confirmations are pages).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from durable import WorkflowDescription, WorkerDescription
from durable._codec import format_error_record
from durable._ops import STATUSES

from . import _timeline
from ._format import clock, details, h, readable_duration, short, stamp, to_json

#: Events listed at most in a workflow's events table (the newest; the timeline shows them all).
MAX_EVENT_ROWS = 2000

#: What an action did, by the `done` parameter of the page it redirects to (never text from the URL).
DONE = {
    "signal": "Signal sent: it is recorded in the history and delivered to the workflow.",
    "cancel": "Cancellation requested: the workflow runs its compensations and ends as cancelled.",
    "terminate": "Workflow terminated.",
}


def layout(title: str, body: str, store: str) -> str:
    """A whole page around `body`."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{h(title)} \u2014 durable</title>"
        '<link rel="stylesheet" href="/static/app.css"><script src="/static/app.js" defer></script>'
        '<link rel="icon" href="data:,"></head><body>'
        '<header class="top"><a class="brand" href="/">durable</a>'
        '<nav><a href="/">Workflows</a><a href="/workers">Workers</a></nav>'
        f'<span class="store" title="the store this UI reads">{h(store)}</span></header>'
        f"<main>{body}</main></body></html>"
    )


def error_page(status: int, message: str, store: str, back: str | None = None) -> str:
    """A page that says what went wrong (and where to go back)."""
    link = f'<p><a href="{h(back)}">Back</a></p>' if back else '<p><a href="/">All workflows</a></p>'
    return layout(f"Error {status}", f'<h1>Error {status}</h1><p class="error" id="error">{h(message)}</p>{link}',
                  store)


def status_badge(status: str) -> str:
    return f'<span class="status s-{h(status)}">{h(status)}</span>'


def workflow_url(workflow_id: str, run_id: str | None = None, **extra: str) -> str:
    params = {"id": workflow_id, **({"run": run_id} if run_id else {}), **extra}
    return "/workflow?" + urlencode(params)


# --- the list ---------------------------------------------------------------------------------


@dataclass
class ListView:
    """The list page's data: the filters given, the rows, and how many match."""

    status: str
    workflow_type: str
    search: str
    rows: list[WorkflowDescription]
    total: int
    limit: int
    types: list[str] = field(default_factory=list)
    #: set when the id search looked only at the newest `limit` workflows
    searched: int = 0
    #: every run of each id, not only its latest
    all_runs: bool = False


def list_page(view: ListView, store: str) -> str:
    """The list of workflows with its filters; it refreshes itself (app.js) while "live" is on."""
    statuses = "".join(f'<option value="{s}"{" selected" if s == view.status else ""}>{s}</option>'
                       for s in STATUSES)
    types = "".join(f'<option value="{h(t)}">' for t in view.types)
    query = urlencode({"status": view.status, "type": view.workflow_type, "q": view.search,
                       **({"all": "1"} if view.all_runs else {})})
    body = (
        "<h1>Workflows</h1>"
        '<form class="filters" method="get" action="/" id="filters">'
        f'<label>Status <select name="status" id="f-status"><option value="">any</option>{statuses}</select></label>'
        f'<label>Type <input name="type" id="f-type" list="types" value="{h(view.workflow_type)}" '
        f'placeholder="any" autocomplete="off"><datalist id="types">{types}</datalist></label>'
        f'<label>Id <input name="q" id="f-q" type="search" value="{h(view.search)}" '
        'placeholder="id, or a part of it" autocomplete="off"></label>'
        f'<label class="live"><input type="checkbox" name="all" value="1" id="f-all"'
        f'{" checked" if view.all_runs else ""}> all runs</label>'
        '<button type="submit">Filter</button>'
        '<label class="live"><input type="checkbox" id="live-toggle" checked> live</label>'
        "</form>"
        f'<div id="list" data-refresh="/api/list?{h(query)}" data-every="2000">{list_fragment(view)}</div>'
    )
    return layout("Workflows", body, store)


def list_fragment(view: ListView) -> str:
    """The count and the table of the list page (what its refresh replaces)."""
    shown = len(view.rows)
    text = f"{view.total} workflow{'' if view.total == 1 else 's'}"
    if view.search:
        text = f"{shown} matching \u201c{h(view.search)}\u201d"
        if view.searched:
            text += f" among the newest {view.searched}"
    elif shown < view.total:
        text += f", the newest {shown} shown"
    rows = []
    for d in view.rows:
        error = f'<span class="task-error" title="{h(d.task_error)}">{h(short(d.task_error.splitlines()[0], 80))}</span>' \
            if d.task_error else ""
        rows.append(
            f'<tr data-id="{h(d.workflow_id)}" data-run="{h(d.run_id)}"><td class="wid">'
            f'<a href="{h(workflow_url(d.workflow_id, d.run_id if view.all_runs else None))}">'
            f"{h(d.workflow_id)}</a></td><td>{h(d.workflow_type)}</td><td>{status_badge(d.status)}{error}</td>"
            f"<td>{h(stamp(d.created_at))}</td><td>{h(stamp(d.closed_at))}</td><td>{h(d.queue)}</td>"
            f'<td class="num">{d.history_length}</td><td class="run">{h(d.run_id)}</td></tr>'
        )
    if not rows:
        table = '<p class="muted" id="no-workflows">No workflow matches.</p>'
    else:
        table = ('<table class="workflows" id="workflows"><thead><tr><th>Id</th><th>Type</th><th>Status</th>'
                 "<th>Started</th><th>Closed</th><th>Queue</th><th>Events</th><th>Run</th></tr></thead>"
                 f"<tbody>{''.join(rows)}</tbody></table>")
    return f'<p class="count" id="count">{text}</p>{table}'


# --- one workflow -----------------------------------------------------------------------------


@dataclass
class WorkflowView:
    """A workflow page's data."""

    desc: WorkflowDescription
    events: list[dict[str, Any]]
    now: _dt.datetime
    #: the run this page shows was asked for by its run id (else: the id's latest run)
    run_id: str | None
    csrf: str
    done: str | None = None
    query_name: str = ""
    query_args: str = "[]"
    #: the answer of a query just run (as JSON text), or its error
    query_answer: str | None = None
    query_error: str | None = None
    signal_name: str = ""
    signal_args: str = "[]"


def workflow_page(view: WorkflowView, version: str, store: str) -> str:
    """A workflow: its description, pending activities, timeline and events (refreshed while it
    runs), and the forms to query, signal, cancel and terminate it."""
    d = view.desc
    params = {"id": d.workflow_id, **({"run": view.run_id} if view.run_id else {})}
    top, events = workflow_fragments(view)
    done = f'<p class="flash" id="flash">{h(DONE[view.done])}</p>' if view.done in DONE else ""
    live = "" if d.status != "running" else " data-live"
    body = (
        f'<h1>Workflow <span class="wid" id="workflow-id">{h(d.workflow_id)}</span> '
        f'<span id="workflow-status">{status_badge(d.status)}</span></h1>{done}'
        f'<div id="live" data-refresh="/api/workflow?{h(urlencode(params))}" data-version="{h(version)}" '
        f'data-every="1000"{live}>'
        f'<div id="part-top">{top}</div></div>'
        f"{_actions(view)}"
        f'<section><h2>History</h2><div id="part-events">{events}</div></section>'
    )
    return layout(f"Workflow {d.workflow_id}", body, store)


def workflow_fragments(view: WorkflowView) -> tuple[str, str]:
    """The parts of a workflow page its refresh replaces: description, pending activities and
    timeline; and the events table."""
    return _summary(view) + _pending(view) + _timeline_section(view), _events(view)


def _summary(view: WorkflowView) -> str:
    d = view.desc
    rows = [("Type", h(d.workflow_type)), ("Status", status_badge(d.status)), ("Run", h(d.run_id)),
            ("Queue", h(d.queue)), ("Started", h(stamp(d.created_at)))]
    if d.start_at is not None:
        rows.append(("Code starts", h(stamp(d.start_at))))
    if d.closed_at is not None:
        rows.append(("Closed", h(stamp(d.closed_at))))
        rows.append(("Took", h(readable_duration((d.closed_at - d.created_at).total_seconds()))))
    rows.append(("Updated", h(stamp(d.updated_at))))
    rows += [("Events", str(d.history_length)), ("Activities scheduled", str(d.activities_scheduled)),
             ("Attempts", str(d.activity_attempts)), ("Retries", str(d.activity_retries))]
    if d.cancel_requested:
        rows.append(("Cancel", "requested"))
    if view.run_id is None:
        rows.append(("Runs", f'<a href="/?{h(urlencode({"q": d.workflow_id, "all": "1"}))}">every run of this id</a>'))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    out = f'<section id="summary"><dl class="fields">{dl}</dl>'
    if d.queue_warning:
        out += f'<p class="warning" id="queue-warning">{h(d.queue_warning)}</p>'
    if d.task_error:
        out += (f'<div class="problem" id="task-error"><h3>The workflow task fails ({d.task_failures} '
                f'time{"" if d.task_failures == 1 else "s"}); it is retried</h3><pre>{h(d.task_error)}</pre></div>')
    closing = view.events[-1] if view.events and d.status != "running" else None
    if closing is not None and "error" in closing:
        out += (f'<div class="problem" id="failure"><h3>Failure</h3>'
                f"<pre>{h(format_error_record(closing['error']))}</pre></div>")
    if closing is not None and closing.get("kind") == "WorkflowTerminated":
        out += f'<p class="warning">Terminated: {h(closing.get("reason") or "no reason given")}</p>'
    if closing is not None and "result" in closing:
        out += f'<div id="result"><h3>Result</h3><pre>{h(short(to_json(closing["result"]), 5000))}</pre></div>'
    return out + "</section>"


def _pending(view: WorkflowView) -> str:
    pending = view.desc.pending_activities
    if not pending:
        return ""
    rows = []
    for p in pending:
        failure = ""
        if p.last_failure_type is not None:
            failure = f"{p.last_failure_type}: {p.last_failure_message or ''}"
        state = p.state.replace("_", " ") + (", cancel requested" if p.cancel_requested else "")
        rows.append(
            f'<tr><td class="num">{p.seq}</td><td>{h(p.name)}</td><td>{h(state)}</td><td class="num">{p.attempt}</td>'
            f"<td>{h(p.worker or '')}</td><td>{h(stamp(p.started_at))}</td><td>{h(stamp(p.last_heartbeat_at))}</td>"
            f"<td>{h(stamp(p.next_attempt_at))}</td>"
            f'<td class="failure"><span title="{h(failure)}">{h(short(failure, 200))}</span></td></tr>'
        )
    return ('<section id="pending"><h2>Pending activities</h2><table class="pending"><thead><tr><th>Seq</th>'
            "<th>Activity</th><th>State</th><th>Attempt</th><th>Worker</th><th>Attempt started</th>"
            "<th>Last heartbeat</th><th>Next attempt</th><th>Last failure</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>")


def _timeline_section(view: WorkflowView) -> str:
    timeline = _timeline.build(view.events, view.desc, view.now)
    legend = ('<p class="legend"><span class="key completed">completed</span><span class="key running">running'
              '</span><span class="key backing_off">backing off</span><span class="key failed">failed</span>'
              '<span class="key timed_out">timed out</span><span class="key cancelled">cancelled</span>'
              '<span class="key timer">timer</span><span class="key signal">signal</span>'
              "<span>\u00d7N: attempts</span></p>")
    return f'<section id="timeline-section"><h2>Timeline</h2>{_timeline.render(timeline)}{legend}</section>'


def _events(view: WorkflowView) -> str:
    events = view.events
    if not events:
        return '<p class="muted">No events yet.</p>'
    t0 = events[0]["time"]
    shown = events[-MAX_EVENT_ROWS:]
    rows = []
    for e in shown:
        error = f"<pre>{h(short(format_error_record(e['error']), 4000))}</pre>" if "error" in e else ""
        rows.append(
            f'<tr class="k-{h(e["kind"])}"><td class="num">{e["index"]}</td><td>{h(clock(e["time"]))}</td>'
            f'<td class="num">+{h(readable_duration((e["time"] - t0).total_seconds()))}</td>'
            f'<td class="kind">{h(e["kind"])}</td><td class="details">{h(short(details(e), 600))}{error}</td></tr>'
        )
    note = "" if len(shown) == len(events) else f'<p class="muted">The last {len(shown)} of {len(events)} events.</p>'
    return (f'{note}<table class="events" id="events"><thead><tr><th>#</th><th>Time (UTC)</th><th>Since start</th>'
            f"<th>Event</th><th>Details</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _actions(view: WorkflowView) -> str:
    d = view.desc
    hidden = f'<input type="hidden" name="csrf" value="{h(view.csrf)}"><input type="hidden" name="id" ' \
             f'value="{h(d.workflow_id)}">'
    if view.run_id:
        hidden += f'<input type="hidden" name="run" value="{h(view.run_id)}">'
    out = ['<section id="actions"><h2>Actions</h2>']
    # the names the workers of its queue registered for its type; None if none has yet
    queries, signals = list(d.queries or ()), list(d.signals or ())
    answer = ""
    if view.query_answer is not None:
        answer = f'<div class="answer" id="query-answer"><h3>Answer</h3><pre>{h(view.query_answer)}</pre></div>'
    elif view.query_error is not None:
        answer = f'<p class="error" id="query-error">{h(view.query_error)}</p>'
    if d.status == "running":
        if d.queries is not None and not queries:
            out.append(f'<p class="muted">Workflow type {h(d.workflow_type)} has no queries.</p>')
        else:
            out.append(_form("query", "/query", "Query", hidden, _name_field("query", view.query_name, queries)
                             + _args_field("query", view.query_args), "Run the query"))
        if d.signals is not None and not signals:
            out.append(f'<p class="muted">Workflow type {h(d.workflow_type)} has no signals.</p>')
        else:
            out.append(_form("signal", "/action", "Signal", hidden + '<input type="hidden" name="action" value="signal">',
                             _name_field("signal", view.signal_name, signals)
                             + _args_field("signal", view.signal_args), "Send the signal\u2026"))
        for action, label, help_text in (
            ("cancel", "Cancel", "the workflow is asked to cancel: it runs its compensations and ends as cancelled"),
            ("terminate", "Terminate", "the workflow ends at once; none of its code runs again"),
        ):
            out.append(_form(action, "/action", label, hidden + f'<input type="hidden" name="action" value="{action}">',
                             f'<p class="muted">{help_text}</p><label>Reason <input name="reason" '
                             f'id="{action}-reason" maxlength="1000" autocomplete="off"></label>', f"{label}\u2026"))
    else:
        out.append(f'<p class="muted">This run is {h(d.status)}: it takes no queries, signals or cancellation.</p>')
    out.append(answer)
    out.append("</section>")
    return "".join(out)


def _form(kind: str, action: str, title: str, hidden: str, fields: str, button: str) -> str:
    return (f'<form class="action {kind}" id="{kind}-form" method="post" action="{action}"><h3>{title}</h3>'
            f'{hidden}{fields}<button type="submit" id="{kind}-submit">{button}</button></form>')


def _name_field(kind: str, value: str, known: list[str]) -> str:
    options = "".join(f'<option value="{h(n)}">' for n in known)
    first = value or (known[0] if len(known) == 1 else "")
    return (f'<label>Name <input name="name" id="{kind}-name" list="{kind}-names" required value="{h(first)}" '
            f'autocomplete="off"><datalist id="{kind}-names">{options}</datalist></label>')


def _args_field(kind: str, value: str) -> str:
    return (f'<label>Arguments (a JSON array) <input name="args" id="{kind}-args" value="{h(value)}" '
            'autocomplete="off" spellcheck="false"></label>')


def confirm_page(action: str, workflow_id: str, run_id: str | None, fields: dict[str, str], what: str,
                 csrf: str, store: str) -> str:
    """The confirmation of an action: what it will do, and a button that does it."""
    hidden = "".join(f'<input type="hidden" name="{h(k)}" value="{h(v)}">'
                     for k, v in {**fields, "action": action, "id": workflow_id, "csrf": csrf, "confirm": "yes",
                                  **({"run": run_id} if run_id else {})}.items())
    body = (f"<h1>Confirm</h1><p class=\"confirm-what\" id=\"confirm-what\">{h(what)}</p>"
            f'<form method="post" action="/action" id="confirm-form">{hidden}'
            f'<button type="submit" class="danger" id="confirm">Yes, {h(action)}</button> '
            f'<a href="{h(workflow_url(workflow_id, run_id))}" id="back">No, go back</a></form>')
    return layout("Confirm", body, store)


# --- workers ----------------------------------------------------------------------------------


def workers_page(workers: list[WorkerDescription], store: str, now: _dt.datetime) -> str:
    """The workers of every queue, those gone too."""
    rows = []
    for w in workers:
        seen = "never" if w.last_seen_at is None else \
            readable_duration(max((now - w.last_seen_at).total_seconds(), 0.0)) + " ago"
        rows.append(
            f"<tr><td>{h(w.identity)}</td><td>{h(w.queue)}</td><td>{'serving' if w.alive else 'gone'}</td>"
            f"<td>{h(seen)}</td><td>{h(', '.join(w.running_activities) or 'nothing')}</td>"
            f"<td>{h(', '.join(w.workflows) or 'none')}</td><td>{h(', '.join(w.activities) or 'none')}</td></tr>"
        )
    table = ('<table class="workers" id="workers"><thead><tr><th>Worker</th><th>Queue</th><th>State</th>'
             "<th>Last seen</th><th>Running</th><th>Workflows</th><th>Activities</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>") if rows else '<p class="muted">No worker has served this store.</p>'
    return layout("Workers", f"<h1>Workers</h1>{table}", store)
