"""A deterministic stand-in for the store, to drive a workflow `Runtime` without LMDB or workers.

`Driver` keeps one workflow's history and writes it the way the store does: the input events
of an activation, then the commands the runtime returned (stamped with the current time), then
what the store itself adds in the same transaction (a cancel request for an activity that no
worker has started yet is answered at once by `ActivityCancelled`; `TimerCancelled` removes the
timer). Tests that need exact control call its methods one event at a time.

`Sim` plays the rest of the world on a virtual clock: each activity ends as its `Outcome` says,
timers fire after their duration, signals and cancel requests arrive at chosen times. Everything
that falls due at one instant is delivered together, in the order it was scheduled, as one
activation; so the same choices always build the same history.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from durable import _events as ev
from durable._codec import Converter
from durable._defs import workflow_def
from durable._runtime import Runtime

NS = 1_000_000_000
#: Virtual time of the first event (2023-11-14T22:13:20Z), in ns.
T0 = 1_700_000_000 * NS


def strip(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events without their time, for comparing what was done rather than when."""
    return [{k: v for k, v in e.items() if k != "t"} for e in events]


def kinds(events: Iterable[dict[str, Any]]) -> list[str]:
    return [e["k"] for e in events]


def error_record(message: str, type: str = "ValueError") -> dict[str, Any]:
    """The error record a worker writes for an activity that raised ``type(message)``."""
    return {"type": type, "msg": message}


@dataclass
class _Activity:
    seq: int
    name: str
    args: list[Any]
    started: bool = False
    cancel: bool = False


#: Every runtime a Driver made, so that tests can evict them all as a worker would.
OPEN: list[Runtime] = []


def close_all() -> None:
    """Evict every runtime made so far (`Runtime.close`), as a worker evicts its cache."""
    while OPEN:
        OPEN.pop().close()


class Driver:
    """One workflow's history, appended to as the store would. See the module docstring.

    Activities count as started by a worker as soon as the activation that scheduled them is
    committed, unless ``autostart=False`` (then call `start_activity`).
    """

    def __init__(
        self,
        workflow: Any,
        *,
        workflow_id: str = "wf-1",
        run_id: str = "run-1",
        queue: str = "q",
        seed: int = 7,
        autostart: bool = True,
        converter: Converter | None = None,
    ) -> None:
        self.defn = workflow_def(workflow)
        self.workflow_id, self.run_id, self.queue, self.seed = workflow_id, run_id, queue, seed
        self.autostart = autostart
        self.conv = converter or Converter()
        self.rt = Runtime(self.defn, workflow_id, run_id, self.conv)
        OPEN.append(self.rt)
        self.history: list[dict[str, Any]] = []
        self.now = T0
        self.activities: dict[int, _Activity] = {}  # scheduled and not yet ended, by seq
        self.timers: dict[int, int] = {}  # running timers: seq -> due time (ns)
        self.closed: str | None = None  # the closing event's kind

    # --- writing history -------------------------------------------------------------------

    def _append(self, event: dict[str, Any]) -> dict[str, Any]:
        event = dict(event, t=self.now)
        ev.check_event(event, f"event {len(self.history)}")
        self.history.append(event)
        return event

    def pending_inputs(self) -> list[dict[str, Any]]:
        """Input events in history that no activation has consumed yet."""
        return self.history[self.rt.processed :]

    def deliver(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        """Append input events and run the activation they (with any pending ones) make."""
        assert self.closed is None, "the workflow has closed: the store accepts no more input"
        for event in events:
            assert event["k"] in ev.INPUT_KINDS, event
            self._append(event)
            if event["k"] in (ev.ACTIVITY_COMPLETED, ev.ACTIVITY_FAILED, ev.ACTIVITY_CANCELLED):
                self.activities.pop(event["seq"], None)
            elif event["k"] == ev.TIMER_FIRED:
                self.timers.pop(event["seq"], None)
        return self.activate()

    def activate(self) -> list[dict[str, Any]]:
        """Run the activation of the pending input events; record and return its commands."""
        inputs = self.pending_inputs()
        assert inputs, "no pending input events"
        commands = self.rt.advance(list(inputs))
        recorded = [self._append(c) for c in commands]
        self.rt.mark_recorded()
        followups: list[dict[str, Any]] = []
        for command in recorded:
            self._apply(command, followups)
        if self.closed is None:
            for event in followups:
                self._append(event)
            if self.autostart:
                for act in self.activities.values():
                    act.started = True
        return recorded

    def _apply(self, command: dict[str, Any], followups: list[dict[str, Any]]) -> None:
        kind = command["k"]
        if kind == ev.ACTIVITY_SCHEDULED:
            args = self.conv.from_payload(command["in"])
            self.activities[command["seq"]] = _Activity(command["seq"], command["name"], args)
        elif kind == ev.ACTIVITY_CANCEL_REQUESTED:
            act = self.activities.get(command["seq"])
            if act is None:
                return  # it already ended
            if not act.started:  # no worker has it: the store cancels it at once
                del self.activities[act.seq]
                followups.append({"k": ev.ACTIVITY_CANCELLED, "seq": act.seq})
            else:  # its worker learns of it at the next heartbeat
                act.cancel = True
        elif kind == ev.TIMER_STARTED:
            self.timers[command["seq"]] = self.now + command["dur"]
        elif kind == ev.TIMER_CANCELLED:
            self.timers.pop(command["seq"], None)
        elif kind in ev.CLOSING_KINDS:
            self.closed = kind

    # --- one event at a time ---------------------------------------------------------------

    def start(self, *args: Any) -> list[dict[str, Any]]:
        """Write WorkflowStarted with these arguments and run the first activation."""
        assert not self.history
        return self.deliver(
            {
                "k": ev.WORKFLOW_STARTED,
                "type": self.defn.name,
                "in": self.conv.to_payload(list(args), "input"),
                "seed": self.seed,
                "id": self.workflow_id,
                "queue": self.queue,
            }
        )

    def start_activity(self, seq: int) -> None:
        """A worker claims the activity: from now on a cancel request waits for its answer."""
        self.activities[seq].started = True

    def complete(self, seq: int, value: Any = None, attempt: int = 1) -> list[dict[str, Any]]:
        return self.deliver(self.completed_event(seq, value, attempt))

    def completed_event(self, seq: int, value: Any = None, attempt: int = 1) -> dict[str, Any]:
        return {"k": ev.ACTIVITY_COMPLETED, "seq": seq, "out": self.conv.to_payload(value, "out"), "attempt": attempt}

    def fail(self, seq: int, message: str = "boom", type: str = "ValueError") -> list[dict[str, Any]]:
        return self.deliver(self.failed_event(seq, message, type))

    @staticmethod
    def failed_event(seq: int, message: str = "boom", type: str = "ValueError", attempt: int = 1) -> dict[str, Any]:
        return {"k": ev.ACTIVITY_FAILED, "seq": seq, "err": error_record(message, type), "attempt": attempt, "why": "failed"}

    def cancelled(self, seq: int) -> list[dict[str, Any]]:
        return self.deliver({"k": ev.ACTIVITY_CANCELLED, "seq": seq})

    def fire(self, seq: int) -> list[dict[str, Any]]:
        """Move the clock to the timer's due time and fire it."""
        self.now = max(self.now, self.timers[seq])
        return self.deliver({"k": ev.TIMER_FIRED, "seq": seq})

    def signal(self, name: str, *args: Any) -> list[dict[str, Any]]:
        return self.deliver(self.signal_event(name, *args))

    def signal_event(self, name: str, *args: Any) -> dict[str, Any]:
        return {"k": ev.SIGNAL_RECEIVED, "name": name, "in": self.conv.to_payload(list(args), "signal")}

    def cancel(self, reason: str = "test") -> list[dict[str, Any]]:
        return self.deliver({"k": ev.CANCEL_REQUESTED, "reason": reason})

    # --- reading the outcome ---------------------------------------------------------------

    @property
    def result(self) -> Any:
        last = self.history[-1]
        assert last["k"] == ev.WORKFLOW_COMPLETED, f"the workflow did not complete: {last}"
        return self.conv.from_payload(last["out"])

    @property
    def error(self) -> dict[str, Any]:
        last = self.history[-1]
        assert last["k"] == ev.WORKFLOW_FAILED, f"the workflow did not fail: {last}"
        return last["err"]  # type: ignore[no-any-return]

    def seq_of(self, name: str, nth: int = 0) -> int:
        """The seq of the `nth` ActivityScheduled of activity `name` in history."""
        seqs = [e["seq"] for e in self.history if e["k"] == ev.ACTIVITY_SCHEDULED and e["name"] == name]
        return seqs[nth]


def replay(workflow: Any, history: Sequence[dict[str, Any]], *, workflow_id: str = "wf-1",
           run_id: str = "run-1") -> tuple[Runtime, list[dict[str, Any]]]:
    """Feed `history` to a fresh `Runtime` (a cache miss); return it and the live commands."""
    rt = Runtime(workflow_def(workflow), workflow_id, run_id, Converter())
    OPEN.append(rt)
    commands = rt.advance(list(history))
    return rt, commands


# --- the world around one workflow, on a virtual clock -------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How one activity ends.

    It waits `starts_after` seconds in its queue (a cancel request meanwhile cancels it at once),
    runs for `takes` seconds, then completes with `value` or, if `error` is set, fails with it.
    A running activity whose cancel request reaches it (`heartbeat` seconds later) ends as
    cancelled, unless `on_cancel="ignore"`: then it runs to its end.
    """

    value: Any = None
    error: str | None = None
    takes: float = 0.0
    starts_after: float = 0.0
    on_cancel: str = "cancel"


Policy = Callable[[str, list[Any], int], Outcome]


def scripted(choices: Sequence[str | Outcome], value: Callable[[str, list[Any]], Any] | None = None,
             slow: float = 10.0) -> Policy:
    """A policy giving the i-th scheduled activity ``choices[i]`` ("ok" for any beyond).

    A choice is an `Outcome` or one of "ok", "fail", "slow" (completes after `slow` seconds).
    Values are ``value(name, args)`` (default: the activity's name and arguments).
    """
    counter = iter(range(1 << 62))
    compute = value or (lambda name, args: [name, *args])

    def policy(name: str, args: list[Any], seq: int) -> Outcome:
        i = next(counter)
        choice = choices[i] if i < len(choices) else "ok"
        if isinstance(choice, Outcome):
            return choice
        if choice == "fail":
            return Outcome(error=f"{name} #{i} failed")
        return Outcome(value=compute(name, args), takes=slow if choice == "slow" else 0.0)

    return policy


@dataclass(order=True)
class _Item:
    at: int
    order: int
    what: str = field(compare=False)
    data: Any = field(compare=False)


class Sim:
    """Run a workflow to its end in virtual time. See the module docstring.

    `signals` is a sequence of ``(at_seconds, name, args)``; `cancel_at` the time of a cancel
    request. Times count from the workflow's start.
    """

    def __init__(
        self,
        workflow: Any,
        *args: Any,
        policy: Policy | None = None,
        signals: Sequence[tuple[float, str, Sequence[Any]]] = (),
        cancel_at: float | None = None,
        heartbeat: float = 1.0,
        **driver_options: Any,
    ) -> None:
        self.driver = Driver(workflow, autostart=False, **driver_options)
        self.args = args
        self.policy = policy or scripted([])
        self.heartbeat = int(heartbeat * NS)
        self._queue: list[_Item] = []
        self._order = 0
        self._outcomes: dict[int, Outcome] = {}
        for at, name, sargs in signals:
            self._at(T0 + int(at * NS), "input", self.driver.signal_event(name, *sargs))
        if cancel_at is not None:
            self._at(T0 + int(cancel_at * NS), "input", {"k": ev.CANCEL_REQUESTED, "reason": "sim"})

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.driver.history

    @property
    def closed(self) -> str | None:
        return self.driver.closed

    def _at(self, when: int, what: str, data: Any) -> None:
        self._order += 1
        heapq.heappush(self._queue, _Item(when, self._order, what, data))

    def run(self, max_activations: int = 10_000) -> Sim:
        """Run until the workflow closes or waits for something that will never come."""
        d = self.driver
        self._react(d.start(*self.args))
        activations = 1
        while d.closed is None:
            assert activations < max_activations, "the workflow does not end"
            activations += 1
            if d.pending_inputs():  # the store's own follow-ups: the next task runs at once
                self._react(d.activate())
                continue
            if not self._queue:
                break  # waiting for something that never comes
            d.now = self._queue[0].at
            inputs: list[dict[str, Any]] = []
            while self._queue and self._queue[0].at == d.now:
                item = heapq.heappop(self._queue)
                self._handle(item.what, item.data, inputs)
            if inputs and d.closed is None:
                self._react(d.deliver(*inputs))
        return self

    def _react(self, commands: list[dict[str, Any]]) -> None:
        d = self.driver
        for c in commands:
            if c["k"] == ev.ACTIVITY_SCHEDULED:
                act = d.activities.get(c["seq"])
                if act is None:
                    continue  # cancelled in the same activation: the store dropped it at once
                outcome = self.policy(act.name, act.args, act.seq)
                self._outcomes[act.seq] = outcome
                self._at(d.now + int(outcome.starts_after * NS), "start", act.seq)
            elif c["k"] == ev.ACTIVITY_CANCEL_REQUESTED:
                act = d.activities.get(c["seq"])
                if act is not None and act.cancel and self._outcomes[act.seq].on_cancel == "cancel":
                    self._at(d.now + self.heartbeat, "cancelled", act.seq)
            elif c["k"] == ev.TIMER_STARTED and c["seq"] in d.timers:  # not cancelled at once
                self._at(d.timers[c["seq"]], "timer", c["seq"])

    def _handle(self, what: str, data: Any, inputs: list[dict[str, Any]]) -> None:
        d = self.driver
        if what == "input":
            inputs.append(data)
        elif what == "timer":
            if d.timers.pop(data, None) is not None:
                inputs.append({"k": ev.TIMER_FIRED, "seq": data})
        elif what == "start":
            act = d.activities.get(data)
            if act is not None:  # else it was cancelled while queued
                act.started = True
                self._at(d.now + int(self._outcomes[data].takes * NS), "end", data)
        elif what == "end":
            act = d.activities.pop(data, None)
            if act is None:
                return  # it already ended (cancelled)
            outcome = self._outcomes[data]
            if outcome.error is None:
                inputs.append(d.completed_event(data, outcome.value))
            elif act.cancel:  # a failed attempt after a cancel request is not retried
                inputs.append({"k": ev.ACTIVITY_CANCELLED, "seq": data})
            else:
                inputs.append(d.failed_event(data, outcome.error))
        elif what == "cancelled":
            if d.activities.pop(data, None) is not None:
                inputs.append({"k": ev.ACTIVITY_CANCELLED, "seq": data})
        else:  # pragma: no cover
            raise AssertionError(what)
