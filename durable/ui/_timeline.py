"""A workflow's history as a timeline: an SVG drawn on the server from the readable events.

Each activity is a bar from its scheduling to its final event (or to now, if it is pending),
coloured by its outcome, with its attempts: a final event says how many attempts it took, and
for a pending activity `describe` says which attempt runs, since when, its last failure and when
the next attempt starts (the history records only the final attempt: retries are not events).
Each timer is a thin bar from its start to when it fired or was cancelled (or, while it waits,
to when it falls due). Signals, cancel requests, patch markers and the workflow's end are points.
"""

from __future__ import annotations

import datetime as _dt
import html
from dataclasses import dataclass, field
from typing import Any

from durable import WorkflowDescription
from durable._codec import format_error_record

from ._format import readable_duration

#: Lanes drawn at most (activities and timers): a longer history is cut, with a note saying so.
MAX_LANES = 300

WIDTH = 1000
LABEL_WIDTH = 210
RIGHT_PAD = 14
LANE = 20
BAR = 12
AXIS = 26


@dataclass
class Mark:
    """A moment on a bar or on the events lane."""

    time: _dt.datetime
    css: str
    title: str
    label: str = ""


@dataclass
class Bar:
    """One lane: an activity, a timer, or the workflow itself."""

    kind: str  # "workflow", "activity" or "timer"
    label: str
    start: _dt.datetime
    end: _dt.datetime | None = None  # None: still open (drawn to the end of the timeline)
    state: str = "running"
    attempts: int = 0
    details: list[str] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    due: _dt.datetime | None = None  # a waiting timer: when it falls due


@dataclass
class Timeline:
    """What the SVG shows: lanes of bars, the points of the events lane, and the time span."""

    bars: list[Bar]
    points: list[Mark]
    t0: _dt.datetime
    t1: _dt.datetime
    now: _dt.datetime
    cut: int = 0  # lanes not drawn (past MAX_LANES)


_CLOSED = {"WorkflowCompleted": "completed", "WorkflowFailed": "failed", "WorkflowCancelled": "cancelled",
           "WorkflowTerminated": "terminated"}


def build(events: list[dict[str, Any]], desc: WorkflowDescription, now: _dt.datetime) -> Timeline | None:
    """The timeline of `events` (as `WorkflowHandle.history` gives them), with the pending
    activities of `desc`; None for an empty history."""
    if not events:
        return None
    t0 = events[0]["time"]
    wf = Bar("workflow", f"workflow {desc.workflow_type}", t0, state=desc.status)
    lanes: dict[tuple[str, int], Bar] = {}
    points: list[Mark] = []
    for event in events:
        kind, when = event["kind"], event["time"]
        seq = event.get("seq")
        if not isinstance(seq, int):
            seq = -1  # an event without a seq: it names no lane
        if kind == "ActivityScheduled":
            lanes[("a", seq)] = Bar("activity", f"{event.get('name')} #{seq}", when, state="scheduled",
                                    details=[f"activity {event.get('name')!s}, seq {seq}"])
        elif kind in ("ActivityCompleted", "ActivityFailed", "ActivityCancelled") and ("a", seq) in lanes:
            bar = lanes[("a", seq)]
            bar.end = when
            bar.attempts = int(event.get("attempt") or 0)
            if kind == "ActivityCompleted":
                bar.state = "completed"
            elif kind == "ActivityCancelled":
                bar.state = "cancelled"
            else:
                bar.state = "timed_out" if event.get("why") == "timed_out" else "failed"
                if "error" in event:
                    bar.details.append(format_error_record(event["error"]))
        elif kind == "ActivityCancelRequested" and ("a", seq) in lanes:
            lanes[("a", seq)].marks.append(Mark(when, "cancel", "cancel requested"))
        elif kind == "TimerStarted":
            dur = event.get("duration_ns")
            bar = Bar("timer", f"timer #{seq}", when, state="waiting",
                      details=[f"timer of {readable_duration(dur / 1e9)}" if isinstance(dur, int) else "timer"])
            if isinstance(dur, int):
                bar.due = when + _dt.timedelta(microseconds=dur // 1000)
            lanes[("t", seq)] = bar
        elif kind in ("TimerFired", "TimerCancelled") and ("t", seq) in lanes:
            bar = lanes[("t", seq)]
            bar.end, bar.state = when, "fired" if kind == "TimerFired" else "cancelled"
        elif kind == "SignalReceived":
            points.append(Mark(when, "signal", f"signal {event.get('name')}", str(event.get("name"))))
        elif kind in ("UpdateAccepted", "UpdateCompleted"):  # shown as signals are
            how = "accepted" if kind == "UpdateAccepted" else "failed" if "error" in event else "completed"
            points.append(Mark(when, "signal", f"update {event.get('name')} {how} (id {event.get('uid')})",
                               f"{event.get('name')} {how}"))
        elif kind == "CancelRequested":
            points.append(Mark(when, "cancel", f"cancel requested: {event.get('reason') or 'no reason given'}",
                               "cancel"))
        elif kind == "MarkerRecorded":
            points.append(Mark(when, "marker", f"patch {event.get('patch')}", str(event.get("patch"))))
        elif kind in _CLOSED:
            wf.end = when
            wf.state = _CLOSED[kind]
            title = f"workflow {_CLOSED[kind]}"
            if kind == "WorkflowTerminated":
                title += f": {event.get('reason') or 'no reason given'}"
            elif "error" in event:
                title += ":\n" + format_error_record(event["error"])
            points.append(Mark(when, f"close {_CLOSED[kind]}", title, _CLOSED[kind]))
    for p in desc.pending_activities:
        pending = lanes.get(("a", p.seq))
        if pending is None or pending.end is not None:
            continue
        bar = pending
        bar.state, bar.attempts = p.state, p.attempt
        bar.details.append(f"{p.state.replace('_', ' ')}, attempt {p.attempt}" + (f" on {p.worker}" if p.worker else ""))
        if p.started_at is not None:
            bar.marks.append(Mark(p.started_at, "attempt", f"attempt {p.attempt} started"))
        if p.last_failure_type is not None:
            bar.details.append(f"last failure: {p.last_failure_type}: {p.last_failure_message or ''}")
        if p.next_attempt_at is not None:
            bar.marks.append(Mark(p.next_attempt_at, "retry", f"attempt {p.attempt + 1} starts"))
    times = [e["time"] for e in events] + [m.time for b in lanes.values() for m in b.marks]
    times += [b.due for b in lanes.values() if b.due is not None and b.end is None]
    if wf.end is None:
        times.append(now)
    t1 = max(times)
    bars = sorted(lanes.values(), key=lambda b: b.start)
    cut = max(0, len(bars) - MAX_LANES)
    t1 = t1 if t1 > t0 else t0 + _dt.timedelta(milliseconds=1)
    return Timeline([wf, *bars[:MAX_LANES]], points, t0, t1, min(max(now, t0), t1), cut)


def render(timeline: Timeline | None) -> str:
    """The SVG of `timeline` (every text from the store escaped), or a note for no history."""
    if timeline is None:
        return '<p class="muted" id="timeline-empty">No events yet.</p>'
    t0, span = timeline.t0, (timeline.t1 - timeline.t0).total_seconds()
    plot = WIDTH - LABEL_WIDTH - RIGHT_PAD

    def x(when: _dt.datetime) -> float:
        return LABEL_WIDTH + max(0.0, min(1.0, (when - t0).total_seconds() / span)) * plot

    lanes = len(timeline.bars) + 1  # the events lane last
    height = AXIS + lanes * LANE + 6
    out = [f'<svg id="timeline" class="timeline" viewBox="0 0 {WIDTH} {height}" width="100%" '
           f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg" role="img" '
           f'aria-label="timeline of the workflow\'s history">']
    for i in range(5):
        tx = LABEL_WIDTH + plot * i / 4
        out.append(f'<line class="grid" x1="{tx:.1f}" y1="{AXIS - 6}" x2="{tx:.1f}" y2="{height}"/>')
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        out.append(f'<text class="axis" x="{tx:.1f}" y="{AXIS - 10}" text-anchor="{anchor}">'
                   f'+{_e(readable_duration(span * i / 4))}</text>')
    for row, bar in enumerate(timeline.bars):
        y = AXIS + row * LANE
        out.append(_bar(bar, y, x, timeline.now))
    y = AXIS + len(timeline.bars) * LANE
    out.append(f'<text class="label" x="4" y="{y + LANE / 2 + 4}">signals and events</text>')
    labelled = -1000.0  # where the last label was drawn: a label too close to it is left out
    for mark in timeline.points:
        cx, cy = x(mark.time), y + LANE / 2
        label = _point_label(mark.label, cx, cy) if cx - labelled > 90 else ""
        labelled = cx if label else labelled
        out.append(f'<g class="point {_e(mark.css)}"><title>{_e(_when(mark.time, t0))} {_e(mark.title)}</title>'
                   f'<path d="M{cx:.1f} {cy - 6} l6 6 l-6 6 l-6 -6 z"/>{label}</g>')
    out.append("</svg>")
    if timeline.cut:
        out.append(f'<p class="muted">{timeline.cut} more activities and timers are not drawn (the first '
                   f'{MAX_LANES} are); the events table below lists every event.</p>')
    return "".join(out)


def _bar(bar: Bar, y: float, x: Any, now: _dt.datetime) -> str:
    """One lane: a closed bar ends at its final event; an open one at now (a waiting timer at
    when it falls due); a retry's wait is dashed from now to when the next attempt starts."""
    end = bar.end or (bar.due if bar.kind == "timer" and bar.due is not None else now)
    x0, x1 = x(bar.start), x(end)
    height = BAR if bar.kind != "timer" else BAR / 2
    top = y + (LANE - height) / 2
    attempts = f", {bar.attempts} attempts" if bar.attempts > 1 else ""
    took = readable_duration((end - bar.start).total_seconds())
    title = "\n".join([f"{bar.label}: {bar.state.replace('_', ' ')}{attempts}, "
                       f"{'took' if bar.end is not None else 'so far'} {took}", *bar.details])
    css = f"bar {bar.kind} {bar.state}" + (" open" if bar.end is None else "")
    parts = [f'<g class="{_e(css)}" data-label="{_e(bar.label)}"><title>{_e(title)}</title>',
             f'<text class="label" x="4" y="{y + LANE / 2 + 4}">{_e(_cut(bar.label, 30))}</text>',
             f'<rect x="{x0:.1f}" y="{top:.1f}" width="{max(x1 - x0, 2):.1f}" height="{height:.0f}" rx="2"/>']
    if bar.attempts > 1:
        parts.append(f'<text class="attempts" x="{max(x1, x0 + 2) + 4:.1f}" y="{y + LANE / 2 + 4}">'
                     f'\u00d7{bar.attempts}</text>')
    for mark in bar.marks:
        mx = x(mark.time)
        if mark.css == "retry" and mark.time > now:
            parts.append(f'<line class="wait" x1="{x(now):.1f}" y1="{y + LANE / 2:.1f}" x2="{mx:.1f}" '
                         f'y2="{y + LANE / 2:.1f}"/>')
        parts.append(f'<line class="mark {_e(mark.css)}" x1="{mx:.1f}" y1="{top - 3:.1f}" x2="{mx:.1f}" '
                     f'y2="{top + height + 3:.1f}"><title>{_e(mark.title)}</title></line>')
    parts.append("</g>")
    return "".join(parts)


def _point_label(label: str, cx: float, cy: float) -> str:
    """A point's label: right of it, or left of it near the right edge."""
    left = cx > WIDTH - 110
    return (f'<text class="point-label" x="{cx - 8 if left else cx + 8:.1f}" y="{cy + 4}" '
            f'text-anchor="{"end" if left else "start"}">{_e(_cut(label, 18))}</text>')


def _when(when: _dt.datetime, t0: _dt.datetime) -> str:
    return f"+{readable_duration((when - t0).total_seconds())}"


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
