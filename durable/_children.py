"""Child workflows, and signals and cancel requests sent from a workflow to another.

A child workflow is a step of its parent's scope, as an activity is. `execute_child` waits for
the child inline; `start_child` hands back a `ChildWorkflowHandle` once the child has started,
and the child is watched by a task of the innermost nursery around the call (the workflow's own
scope at top level). Either way, cancelling the scope around the child asks the child to cancel
and the scope waits until the child has closed: no compensation races a running child.

In the parent's history (each command applied by `_ops` in the transaction that records it):

- ``ChildWorkflowInitiated`` (command): the child is started in the same transaction, and
  ``ChildWorkflowStarted`` (its run number) or ``ChildWorkflowStartFailed`` (its id is taken by a
  running workflow, or refused by the id reuse policy; its type is unknown on its queue) follows;
- ``ChildWorkflowCompleted`` / ``ChildWorkflowFailed`` / ``ChildWorkflowCancelled``: written in
  the child's closing transaction;
- ``ChildWorkflowCancelRequested`` (command): the child's cancel request, in the same transaction;
- ``ExternalSignalRequested`` / ``ExternalCancelRequested`` (commands): the signal or cancel
  request is delivered in the same transaction, and ``ExternalRequestCompleted`` or
  ``ExternalRequestFailed`` follows. So each is sent exactly once, whatever process dies when.

When the parent closes, each child still running gets its parent close policy, in the parent's
closing transaction: "terminate" (the default), "request_cancel" or "abandon".
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, TypeVarTuple, overload

from . import _context
from . import _events as ev
from ._codec import error_from_record
from ._convert import Plan
from ._defs import WorkflowInstance, check_name, check_seconds, workflow_def
from ._errors import ChildWorkflowError, DecodeError, ExternalWorkflowError, InvalidArgument
from ._limits import MAX_ID_BYTES
from ._runtime import CancelScope, Cancelled, Runtime, _refuse_in_query, _Task, _Waiter

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
Ts = TypeVarTuple("Ts")

#: What happens to a child still running when its parent closes (Temporal's names).
PARENT_CLOSE_POLICIES = ("terminate", "request_cancel", "abandon")
#: What starting a child whose id names a closed workflow does (as `Client.start`'s policy).
ID_REUSE_POLICIES = ("allow_duplicate", "allow_duplicate_failed_only", "reject_duplicate")


class _Child:
    """One child of one runtime: where its events go, its outcome once it has closed."""

    __slots__ = ("rt", "seq", "wid", "wtype", "run", "outcome", "waiters", "started", "cancel_sent", "home", "plan")

    def __init__(self, rt: Runtime, seq: int, wid: str, wtype: str) -> None:
        self.rt = rt
        self.seq = seq
        self.wid = wid
        self.wtype = wtype
        self.run: int | None = None
        self.outcome: tuple[Any, BaseException | None] | None = None
        self.waiters: list[_Waiter] = []
        self.started: _Waiter | None = None
        self.cancel_sent = False
        #: the child's `Plan` (the data converter), when the parent gave its workflow, not its name
        self.plan: Plan | None = None
        #: the scope of the nursery that watches a child of `start_child`
        self.home: CancelScope | None = None

    def on_event(self, event: dict[str, Any]) -> None:
        rt, kind = self.rt, event["k"]
        if kind in (ev.EXTERNAL_DONE, ev.EXTERNAL_FAILED):
            raise DecodeError(f"workflow {rt.workflow_id!r}: the history has {kind} for seq {self.seq}, "
                              "which started a child workflow")
        if kind == ev.CHILD_STARTED:
            self.run = event["run"]
            if self.started is not None:
                waiter, self.started = self.started, None
                rt._wake(waiter, None, None)
            return
        del rt._callbacks[self.seq]
        cancelled = kind == ev.CHILD_CANCELLED
        error: BaseException | None = None
        value = None
        if kind == ev.CHILD_COMPLETED:
            value = rt.converter.from_payload(event["out"], f"result of child workflow {self.wid!r}")
            if self.plan is not None and self.plan.ret_in:  # by its return annotation; a misfit fails the task
                value = self.plan.result_from_plain(value, f"result of child workflow {self.wid!r}")
        elif cancelled:
            error = self._error("was cancelled", "cancelled", None)
        else:
            what = f"child workflow {self.wid!r}"
            cause = error_from_record(rt.converter.decode_failure(event["err"], f"failure of {what}"))
            if kind == ev.CHILD_START_FAILED:
                error = self._error(f"could not start: {cause}", "start_failed", cause)
            else:
                why = event["why"]
                error = self._error(f"{ {'failed': 'failed', 'terminated': 'was terminated'}.get(why, why)}: {cause}",
                                    why, cause)
        self.outcome = (value, error)
        if self.started is not None:
            waiter, self.started = self.started, None
            rt._wake(waiter, None, error)
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if cancelled and waiter.task is not None and rt._is_cancelled(waiter.task):
                rt._wake(waiter, None, Cancelled())  # the child ended as its scope asked
            else:
                rt._wake(waiter, value, error)

    def _error(self, verb: str, kind: str, cause: BaseException | None) -> ChildWorkflowError:
        err = ChildWorkflowError(
            f"child workflow {self.wid!r} ({self.wtype}, seq {self.seq}) {verb}",
            workflow_id=self.wid, workflow_type=self.wtype, seq=self.seq, kind=kind,
        )
        err.__cause__ = cause
        return err

    def request_cancel(self) -> None:
        """Ask the child to cancel (once; nothing if it has closed)."""
        if not self.cancel_sent and self.outcome is None:
            self.cancel_sent = True
            self.rt._emit({"k": ev.CHILD_CANCEL_REQUESTED, "seq": self.seq})

    def _abort(self) -> bool:
        # the scope around the child was cancelled: ask the child to cancel, and wait on for
        # its final event (a scope never exits while a child of it runs)
        self.request_cancel()
        return False

    async def closed(self) -> Any:
        """Wait until the child has closed: its result, or `ChildWorkflowError`. No checkpoint
        first: a cancelled caller still waits (the watcher of `start_child` must, or its nursery
        would exit while the child runs)."""
        if self.outcome is None:
            waiter = _Waiter(self._abort)
            self.waiters.append(waiter)
            return await waiter
        value, error = self.outcome
        if error is not None:
            raise error
        return value

    async def watch(self) -> None:
        """The task that holds the nursery of a child started by `start_child` open until the
        child closes; the outcome is kept for `ChildWorkflowHandle.result`.

        A child cancelled because the nursery (or a scope around it) was cancelled ends this
        task with `Cancelled`, as any task of that nursery would end; one cancelled by a scope
        inside the nursery (around the `start_child` call) ends it quietly, so that the
        cancellation does not leave the scope that caused it."""
        try:
            await self.closed()
        except Cancelled:
            if self.home is not None and _scope_cancelled(self.home):
                raise
        except Exception:  # noqa: BLE001, S110 - the handle's result() raises it
            pass


def _scope_cancelled(scope: CancelScope | None) -> bool:
    """Whether code in `scope` is cancelled (by it, or a scope around it not kept out by a shield)."""
    while scope is not None:
        if scope.cancel_called:
            return True
        if scope.shield:
            return False
        scope = scope.parent
    return False


def _default_id(rt: Runtime, seq: int) -> str:
    """The child's id when none is given: the parent's id and the command's seq, so the same
    on every replay (the parent's id hashed if the id would be too long)."""
    wid = f"{rt.workflow_id}/child-{seq}"
    if len(wid.encode()) <= MAX_ID_BYTES:
        return wid
    return f"{hashlib.sha256(rt.workflow_id.encode()).hexdigest()[:32]}/child-{seq}"


def _check_id(wid: Any, what: str) -> str:
    if isinstance(wid, str) and wid and "\x00" not in wid:
        try:
            if len(wid.encode()) <= MAX_ID_BYTES:
                return wid
        except UnicodeEncodeError:  # a lone surrogate
            pass
    raise InvalidArgument(
        f"{what} must be a non-empty string of at most {MAX_ID_BYTES} bytes of Unicode text "
        f"without NUL characters, not {wid!r:.80}"
    )


def _choice(value: Any, what: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidArgument(f"{what} must be one of {', '.join(map(repr, allowed))}, not {value!r:.80}")
    return value


def _initiate(what: str, workflow: Any, args: tuple[Any, ...], id: str | None, queue: str | None,
              parent_close_policy: str, id_reuse_policy: str, execution_timeout: float | None = None,
              run_timeout: float | None = None) -> _Child:
    """Emit the command that starts a child; return its state (its events go to it)."""
    rt = _context.current(what)
    _refuse_in_query(what)
    rt._require_task(what)
    plan = None  # the child's parameters and return, when given the workflow (the data converter)
    if isinstance(workflow, str):
        name = check_name(workflow, "a child workflow's name")
    else:
        defn = workflow_def(workflow)
        defn.check_start_args(args)
        name = defn.name
        plan = defn.plan
    opts: dict[str, Any] = {
        "close": _choice(parent_close_policy, "parent_close_policy", PARENT_CLOSE_POLICIES),
        "reuse": _choice(id_reuse_policy, "id_reuse_policy", ID_REUSE_POLICIES),
    }
    if queue is not None:
        opts["queue"] = check_name(queue, "queue")
    for key, seconds, option in (("xto", execution_timeout, "execution_timeout"), ("rto", run_timeout, "run_timeout")):
        if seconds is not None:
            opts[key] = check_seconds(seconds, option, allow_none=False)
    wid = None if id is None else _check_id(id, "a child workflow's id")
    rt._checkpoint()
    what = f"input of child workflow {name!r}"
    plain = plan.args_to_plain(args, what) if plan is not None and plan.args_out else list(args)
    payload = None if rt._replaying else rt.converter.to_payload(plain, what)
    seq = rt._next_seq()
    wid = wid or _default_id(rt, seq)
    rt._emit({"k": ev.CHILD_INITIATED, "seq": seq, "name": name, "id": wid, "in": payload, "opts": opts})
    child = _Child(rt, seq, wid, name)
    child.plan = plan
    rt._callbacks[seq] = child.on_event
    return child


class ChildWorkflowHandle(Generic[R_co]):
    """A child workflow started by `start_child`: wait for its result, signal it, cancel it.

    The child belongs to the scope `start_child` was called in: cancelling that scope cancels
    the child, and the innermost nursery around the call does not exit until the child closed.
    """

    def __init__(self, child: _Child) -> None:
        self._child = child

    @property
    def id(self) -> str:
        """The child's workflow id."""
        return self._child.wid

    @property
    def run_id(self) -> str:
        """The child's run id (as `WorkflowDescription.run_id` shows it)."""
        return f"{self._child.run or 0:x}"

    async def result(self) -> R_co:
        """Wait until the child has closed; return its result or raise `ChildWorkflowError`
        (its error the `__cause__`). Cancelling the caller's scope asks the child to cancel."""
        self._child.rt._checkpoint()  # a cancelled caller: at once (its nursery still waits for the child)
        return await self._child.closed()  # type: ignore[no-any-return]

    async def signal(self, signal: str | Callable[..., Any], *args: Any) -> None:
        """Send signal `signal` (a name, or the handler method) with `args` to this run of the
        child, exactly once; `ExternalWorkflowError` if it has closed or has no such signal."""
        await _request(_context.current("ChildWorkflowHandle.signal"), self._child.wid,
                       self._child.run or 0, _signal_name(signal), args)

    def cancel(self) -> None:
        """Ask the child to cancel (it sees `Cancelled`); `result` then tells how it ended."""
        _refuse_in_query("ChildWorkflowHandle.cancel")
        self._child.request_cancel()


@overload
async def start_child(workflow: str, *args: Any, id: str | None = None, queue: str | None = None,
                      parent_close_policy: str = "terminate",
                      id_reuse_policy: str = "allow_duplicate", execution_timeout: float | None = None,
                      run_timeout: float | None = None) -> ChildWorkflowHandle[Any]: ...
@overload
async def start_child(workflow: Callable[[*Ts], Awaitable[R]], *args: *Ts, id: str | None = None,
                      queue: str | None = None, parent_close_policy: str = "terminate",
                      id_reuse_policy: str = "allow_duplicate", execution_timeout: float | None = None,
                      run_timeout: float | None = None) -> ChildWorkflowHandle[R]: ...
@overload
async def start_child(workflow: Callable[[], WorkflowInstance[*Ts, R]], *args: *Ts, id: str | None = None,
                      queue: str | None = None, parent_close_policy: str = "terminate",
                      id_reuse_policy: str = "allow_duplicate", execution_timeout: float | None = None,
                      run_timeout: float | None = None) -> ChildWorkflowHandle[R]: ...


async def start_child(workflow: Any, *args: object, id: str | None = None, queue: str | None = None,
                      parent_close_policy: str = "terminate",
                      id_reuse_policy: str = "allow_duplicate", execution_timeout: float | None = None,
                      run_timeout: float | None = None) -> ChildWorkflowHandle[Any]:
    """Start a child workflow; return its handle once it has started (workflow code only).

    `workflow` is a decorated workflow or its name; `id` defaults to the parent's id and a
    number, the same on every replay; `queue` to the parent's. A child whose id is taken by a
    running workflow (or refused by `id_reuse_policy`, as for `Client.start`), or whose type the
    queue's workers do not know, does not start: `ChildWorkflowError` (kind "start_failed").
    `parent_close_policy` says what happens to it if the parent closes first: "terminate",
    "request_cancel" or "abandon". `execution_timeout` and `run_timeout` (seconds) are the
    child's workflow timeouts, as for `Client.start`: a child that passes one closes as
    timed_out (`ChildWorkflowError`, kind "timed_out"). The child belongs to the scope of this
    call: see `ChildWorkflowHandle`.
    """
    child = _initiate("durable.start_child", workflow, args, id, queue, parent_close_policy, id_reuse_policy,
                      execution_timeout, run_timeout)
    rt = child.rt
    task = rt._require_task("durable.start_child")
    scope = task.scope
    while scope._nursery is None and scope.parent is not None:
        scope = scope.parent
    nursery = scope._nursery or rt._root
    child.home = nursery.cancel_scope
    watcher = _Task(child.watch(), task.scope, nursery, f"child {child.wid}")
    nursery._children[watcher] = None
    rt._ready.append((watcher, None, None))
    if child.run is None and child.outcome is None:
        waiter = _Waiter(child._abort)
        child.started = waiter
        await waiter
    elif child.outcome is not None and child.outcome[1] is not None:
        raise child.outcome[1]
    return ChildWorkflowHandle(child)


@overload
async def execute_child(workflow: str, *args: Any, id: str | None = None, queue: str | None = None,
                        parent_close_policy: str = "terminate", id_reuse_policy: str = "allow_duplicate",
                        execution_timeout: float | None = None, run_timeout: float | None = None) -> Any: ...
@overload
async def execute_child(workflow: Callable[[*Ts], Awaitable[R]], *args: *Ts, id: str | None = None,
                        queue: str | None = None, parent_close_policy: str = "terminate",
                        id_reuse_policy: str = "allow_duplicate", execution_timeout: float | None = None,
                        run_timeout: float | None = None) -> R: ...
@overload
async def execute_child(workflow: Callable[[], WorkflowInstance[*Ts, R]], *args: *Ts, id: str | None = None,
                        queue: str | None = None, parent_close_policy: str = "terminate",
                        id_reuse_policy: str = "allow_duplicate", execution_timeout: float | None = None,
                        run_timeout: float | None = None) -> R: ...


async def execute_child(workflow: Any, *args: object, id: str | None = None, queue: str | None = None,
                        parent_close_policy: str = "terminate", id_reuse_policy: str = "allow_duplicate",
                        execution_timeout: float | None = None, run_timeout: float | None = None) -> Any:
    """Run a child workflow and return its result (workflow code only); `ChildWorkflowError`
    if it fails, is cancelled or terminated, or cannot start. Options as for `start_child`.
    Cancelling the caller's scope asks the child to cancel, and waits until it has closed."""
    child = _initiate("durable.execute_child", workflow, args, id, queue, parent_close_policy, id_reuse_policy,
                      execution_timeout, run_timeout)
    return await child.closed()


# --- requests to other workflows ------------------------------------------------------------


def _signal_name(signal: Any) -> str:
    name = getattr(signal, "__durable_signal__", signal)
    return check_name(name, "a signal's name")


async def _request(rt: Runtime, wid: str, run: int, signal: str | None, args: tuple[Any, ...]) -> None:
    """Emit a signal (or, with `signal` None, a cancel request) to workflow `wid` (its run `run`,
    0 for its current one) and wait for the event that says it was delivered."""
    what = "a signal to another workflow" if signal is not None else "a cancel request to another workflow"
    _refuse_in_query(what)
    rt._require_task(what)
    rt._checkpoint()
    seq = rt._next_seq()
    if signal is not None:
        payload = None if rt._replaying else rt.converter.to_payload(list(args), f"signal {signal!r} to {wid!r}")
        # "n": the count of arguments, checked by the store against the handler's signature
        rt._emit({"k": ev.EXTERNAL_SIGNAL, "seq": seq, "id": wid, "run": run, "name": signal, "in": payload,
                  "n": len(args)})
    else:
        rt._emit({"k": ev.EXTERNAL_CANCEL, "seq": seq, "id": wid, "run": run})

    def on_event(event: dict[str, Any]) -> None:
        if event["k"] not in (ev.EXTERNAL_DONE, ev.EXTERNAL_FAILED):
            raise DecodeError(f"workflow {rt.workflow_id!r}: the history has {event['k']} for seq {seq}, "
                              f"which sent {what}")
        del rt._callbacks[seq]
        if event["k"] == ev.EXTERNAL_DONE:
            rt._wake(waiter, None, None)
            return
        cause = error_from_record(rt.converter.decode_failure(event["err"], f"failure of {what}"))
        err = ExternalWorkflowError(f"{what} ({wid!r}, seq {seq}) was not delivered: {cause}")
        err.__cause__ = cause
        rt._wake(waiter, None, err)

    # the request is applied as it is recorded and its answer follows at once: the wait is not
    # abandoned when the scope is cancelled (the caller sees Cancelled at its next await)
    waiter = _Waiter(lambda: False)
    rt._callbacks[seq] = on_event
    await waiter


class ExternalWorkflowHandle:
    """Another workflow, seen from workflow code (`get_external_handle`): signal it, cancel it.

    Each request is a command of this workflow's history, delivered in the transaction that
    records it: exactly once, whatever process dies when.
    """

    def __init__(self, workflow_id: str, run_id: str | None = None) -> None:
        self.id = _check_id(workflow_id, "a workflow id")
        self._run = 0
        if run_id is not None:
            try:
                self._run = int(run_id, 16) if isinstance(run_id, str) else -1
            except ValueError:
                self._run = -1
            if self._run <= 0:
                raise InvalidArgument(f"a run id is the hexadecimal form WorkflowDescription.run_id shows, not {run_id!r:.80}")

    @property
    def run_id(self) -> str | None:
        """The run this handle names, or None for the workflow's current run."""
        return f"{self._run:x}" if self._run else None

    async def signal(self, signal: str | Callable[..., Any], *args: Any) -> None:
        """Send signal `signal` (a name, or the handler method) with `args`; wait until it is
        recorded in the other workflow's history. `ExternalWorkflowError` if there is no such
        workflow, it has closed, or its type has no such signal."""
        await _request(_context.current("ExternalWorkflowHandle.signal"), self.id, self._run, _signal_name(signal), args)

    async def cancel(self) -> None:
        """Ask the other workflow to cancel; wait until the request is recorded in its history.
        `ExternalWorkflowError` if there is no such workflow or it has closed."""
        await _request(_context.current("ExternalWorkflowHandle.cancel"), self.id, self._run, None, ())


def get_external_handle(workflow_id: str, *, run_id: str | None = None) -> ExternalWorkflowHandle:
    """A handle on workflow `workflow_id` (its run `run_id`, default its current run), to signal
    or cancel it from workflow code."""
    _context.current("durable.get_external_handle")
    return ExternalWorkflowHandle(workflow_id, run_id)
