"""Continue-as-new, on the workflow's side: `durable.continue_as_new` and the history facts that
tell a workflow when to call it (`WorkflowInfo.history_length`, `history_size`,
`continue_as_new_suggested`).

`continue_as_new(*args)` raises `ContinueAsNew` out of workflow code. It is a `BaseException`,
as trio's `Cancelled` is, so that a broad ``except Exception`` in user code does not swallow it
by accident; it passes through nurseries and cancel scopes like any error (a nursery cancels its
other children and waits for them, so no step outlives its scope), and when it leaves the run
the runtime records one `WorkflowContinuedAsNew` command. The store (`_ops.continue_run`) closes
the run as ``continued_as_new`` and starts the next run of the same id in the transaction that
records that command, carrying over the signals the old run had not taken in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from . import _context
from . import _events as ev
from ._defs import check_name, workflow_def
from ._errors import DurableError
from . import _limits
from ._limits import MAX_HISTORY_EVENTS

#: When a history suggests continuing as new (`_limits`; module attributes here, read at each
#: use, so that tests may lower them)
SUGGEST_CONTINUE_AS_NEW_EVENTS = _limits.SUGGEST_CONTINUE_AS_NEW_EVENTS
SUGGEST_CONTINUE_AS_NEW_BYTES = _limits.SUGGEST_CONTINUE_AS_NEW_BYTES

if TYPE_CHECKING:
    from ._runtime import Runtime


class ContinueAsNew(BaseException):
    """Raised by `durable.continue_as_new` to end the run; the runtime turns it into the
    `WorkflowContinuedAsNew` command. Not an `Exception`: do not catch it (if a ``finally`` or
    an ``except BaseException`` sees it, re-raise it)."""

    def __init__(self, command: dict[str, Any]) -> None:
        super().__init__("the workflow continues as new")
        self.command = command


def continue_as_new(*args: Any, workflow: Any = None, queue: str | None = None) -> NoReturn:
    """End this run and start a new run of the same workflow id with `args`, atomically.

    The new run starts from a fresh history (its `WorkflowStarted` names the run it continues),
    of the same workflow type and queue unless `workflow` (a decorated workflow or its name) or
    `queue` say otherwise; signals the old run had not taken in yet are delivered to the new
    run, in order, and none sent meanwhile is lost. Handles follow the chain: `result()` gives
    the last run's outcome. Execution timeouts carry over; a run timeout starts again.

    It raises `ContinueAsNew` (a `BaseException`): call it from the workflow's code (its `run`,
    or a task it started), not from a signal or query handler. Activities still running in
    scopes it leaves are cancelled and waited for, as for any error leaving a scope.
    """
    rt = _context.current("durable.continue_as_new")
    if rt._in_query or rt._current is None:
        raise DurableError("durable.continue_as_new must be called from workflow code, not from a signal or query handler")
    target = None  # the next run's definition, if known: its arguments convert by its hints
    if workflow is None:
        target = rt.defn
        wtype = rt.defn.name
        rt.defn.check_start_args(args)  # a bug here fails this task, not the next run
    elif isinstance(workflow, str):
        wtype = check_name(workflow, "continue_as_new(workflow=)")
    else:
        target = workflow_def(workflow)
        wtype = target.name
        target.check_start_args(args)
    if queue is None:
        queue = rt.info().queue
    else:
        queue = check_name(queue, "continue_as_new(queue=)")
    # replaying, the command is compared by kind only and never written: no payload is made
    payload = None
    if not rt.replaying:
        what = f"input of the next run of workflow {wtype!r}"
        plain = target.plan.args_to_plain(args, what) if target is not None and target.plan.args_out else list(args)
        payload = rt.converter.to_payload(plain, what)
    raise ContinueAsNew({"k": ev.WORKFLOW_CONTINUED_AS_NEW, "in": payload, "type": wtype, "queue": queue})


def only_continue(errors: list[BaseException]) -> ContinueAsNew | None:
    """The `ContinueAsNew` among `errors` (exception groups looked into) if every one of them
    is one, else None: a real failure beside it fails the workflow instead."""
    found: list[ContinueAsNew] = []

    def walk(exc: BaseException) -> bool:
        if isinstance(exc, ContinueAsNew):
            found.append(exc)
            return True
        if isinstance(exc, BaseExceptionGroup):
            return all(walk(e) for e in exc.exceptions)
        return False

    if errors and all(walk(e) for e in errors):
        return found[0]
    return None


def event_size(event: dict[str, Any]) -> int:
    """An event's size in the history, as counted for `WorkflowInfo.history_size`: its payload's
    bytes plus a fixed 32 for the rest (close to the stored size, and the same on every replay).
    The runtime counts it so for whole activations (`_runtime._size`)."""
    return 32 + len(event.get("in") or event.get("out") or b"")


def suggested(length: int, size: int) -> bool:
    """Whether a history of `length` events and `size` bytes should continue as new."""
    return length >= SUGGEST_CONTINUE_AS_NEW_EVENTS or size >= SUGGEST_CONTINUE_AS_NEW_BYTES


def history_warning(length: int) -> str | None:
    """The warning for a run whose history holds `length` events, or None below the threshold."""
    if length < SUGGEST_CONTINUE_AS_NEW_EVENTS:
        return None
    return (
        f"its history has {length} events; at {MAX_HISTORY_EVENTS} the workflow fails: "
        "call durable.continue_as_new (see durable.info().continue_as_new_suggested)"
    )


def info_fields(rt: Runtime) -> dict[str, Any]:
    """The history facts `durable.info()` adds, as of the activation running."""
    length, size = rt._hist_len, rt._hist_size
    return {"history_length": length, "history_size": size, "continue_as_new_suggested": suggested(length, size)}
