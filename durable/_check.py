"""Check recorded histories against workflow code before deploying it: would any of them break?

Each history is replayed (`durable.replay`) through the code: nothing runs but workflow code,
no activity, and nothing is written anywhere. `check_histories` checks exported histories (in a
user's own tests); `durable check` checks the workflows of a store, in parallel processes
(durable/cli/_check.py), with `stored_runs` and `check_one` from here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import _events as ev
from . import _ops
from ._codec import PayloadCodec
from ._defs import Registry
from ._errors import DecodeError
from ._replay import decode_history, replay
from ._runtime import task_error_text
from ._backend import Backend


@dataclass(frozen=True)
class CheckResult:
    """Whether one recorded history replays through the code checked (`check_histories`,
    ``durable check``): `ok`, or `error`, the error its replay raised (a `NondeterminismError`
    naming the event where the code departs from the history, a workflow type the code does not
    have, a bug the code now hits...)."""

    workflow_id: str
    #: the run, for a history read from a store (None for an exported history: it does not say)
    run_id: str | None
    workflow_type: str
    ok: bool
    error: str | None = None
    #: events replayed: up to the last recorded command (input events after it are for the
    #: code to run live); 0 if the history would break
    events: int = 0

    def to_json(self) -> dict[str, Any]:
        """What ``durable check --json`` prints for it."""
        return {"id": self.workflow_id, "run_id": self.run_id, "type": self.workflow_type, "ok": self.ok,
                "error": self.error}


def check_histories(
    workflows: Iterable[Any],
    histories: Iterable[bytes | list[dict[str, Any]]],
    *,
    codec: PayloadCodec | None = None,
) -> list[CheckResult]:
    """Replay each history through the one of `workflows` of its type; say which would break.

    `histories` are what `WorkflowHandle.export_history()` returned (or their decoded events),
    for example the histories of running workflows saved before a deploy; `workflows` the code
    about to be deployed (workflow functions or classes). One `CheckResult` per history, in
    order. Nothing is written anywhere and no activity runs.
    """
    registry = Registry(workflows)
    results = []
    for history in histories:
        try:
            events = decode_history(history) if isinstance(history, (bytes, bytearray)) else [
                ev.check_event(e, f"event {i}") for i, e in enumerate(history)
            ]
        except DecodeError as exc:
            results.append(CheckResult("?", None, "?", False, task_error_text(exc)))
            continue
        start = events[0] if events and events[0]["k"] == ev.WORKFLOW_STARTED else None
        if start is None:
            results.append(CheckResult("?", None, "?", False, "DecodeError: a history must begin with WorkflowStarted"))
            continue
        results.append(check_one(registry, start["id"], None, start["type"], events, codec=codec))
    return results


def check_one(
    registry: Registry,
    workflow_id: str,
    run_id: str | None,
    workflow_type: str,
    history: bytes | list[dict[str, Any]],
    *,
    codec: PayloadCodec | None = None,
    code: str = "the workflows given",
) -> CheckResult:
    """Replay one history through `registry`'s workflow of its type (`code` says where those
    come from, for the error when it has none)."""
    defn = registry.workflows.get(workflow_type)
    if defn is None:
        known = ", ".join(sorted(registry.workflows)) or "none"
        return CheckResult(workflow_id, run_id, workflow_type, False,
                           f"NotRegistered: workflow type {workflow_type!r} is not registered in {code}; "
                           f"registered: {known}")
    try:
        count = replay(defn.target, history, codec=codec)
    except Exception as exc:  # noqa: BLE001 - whatever the replay raises is why it would break
        return CheckResult(workflow_id, run_id, workflow_type, False, task_error_text(exc))
    return CheckResult(workflow_id, run_id, workflow_type, True, None, count)


def stored_runs(store: Backend, *, queue: str | None = None, closed: int = 0) -> list[tuple[str, str, str, int]]:
    """(workflow id, run id, type, run number) of every running workflow in `store` (of `queue`,
    if given), then of the `closed` closed runs started last. Read only."""
    recs = store.read(lambda t: _ops.runs_to_check(t, queue, closed))
    return [(rec["id"], f"{rec['num']:x}", rec["type"], rec["num"]) for rec in recs]


def stored_histories(store: Backend, runs: Iterable[tuple[str, str, str, int]]) -> Iterator[tuple[str, str, str, bytes]]:
    """(workflow id, run id, type, history as exported) of each of `runs`, each read from the
    store as it is asked for (one short read transaction each)."""
    for wid, run_id, wtype, num in runs:
        yield wid, run_id, wtype, store.read(functools.partial(_ops.raw_history, num=num))
