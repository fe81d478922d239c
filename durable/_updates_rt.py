"""Workflow updates, the runtime's side: validators, and handlers run as workflow tasks.

A live activation given pending update requests runs each one's validator after applying its
inputs (so a validator sees every signal recorded before it), in the mode of a query: it must
not change the workflow, and its random numbers are put back. A refusal (the validator raised,
no such update, arguments that do not fit) is kept in `Runtime.update_rejections` and never
recorded. An acceptance becomes an ``UpdateAccepted`` input event, applied at once: its handler
starts as a task of the workflow's root nursery, as an async signal handler does, and when it
ends it emits ``UpdateCompleted`` with its result, or with its failure if it raised one that
would fail a workflow (an `ApplicationError`, ...): the update fails, the workflow goes on. Any
other exception is a bug and fails the workflow task, as in any workflow code.

On replay, ``UpdateAccepted`` events are inputs like signals and validators do not run; the
handler's commands, ``UpdateCompleted`` among them, are compared with the history's.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from . import _context
from . import _continue
from . import _events as ev
from ._codec import error_to_record

if TYPE_CHECKING:
    from ._convert import Plan
    from ._runtime import Runtime


def _names(rt: Runtime) -> str:
    return ", ".join(sorted(rt.defn.updates)) or "none"


def validate(rt: Runtime, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the validators of `updates` (pending requests); return the ``UpdateAccepted`` events
    of those accepted (dated no earlier than the activation) and keep the refusals."""
    from ._runtime import _arity_text, _fits

    accepted: list[dict[str, Any]] = []
    when = rt._now_ns
    for req in updates:
        name, uid = req["name"], req["uid"]
        if req.get("bad"):
            rt.update_rejections.append((uid, f"the stored request of update {uid!r} is malformed"))
            continue
        method = rt.defn.updates.get(name)
        if method is None or rt.instance is None:
            rt.update_rejections.append((uid, f"workflow type {rt.defn.name!r} has no update {name!r} "
                                              f"(updates: {_names(rt)})"))
            continue
        try:
            args = rt.converter.from_payload(req["in"], f"arguments of update {name!r}")
            if not isinstance(args, list):
                raise TypeError("the arguments are not a list")
            fits = rt.defn.update_params.get(name)
            if fits is not None and not _fits(fits, args):
                raise TypeError(f"its handler takes {_arity_text(fits)} arguments, it came with {len(args)}")
            plan = rt.defn.handler_plan(method)
            if plan.args_in:  # by the handler's annotations (the data converter): a misfit is refused
                args = plan.args_from_plain(args, f"update {name!r}")
        except Exception as exc:  # noqa: BLE001 - a caller's mistake: refused, not recorded
            rt.update_rejections.append((uid, f"update {name!r}: {type(exc).__name__}: {exc}"))
            continue
        checker = rt.defn.validators.get(name)
        if checker is not None:
            error = _run_validator(rt, getattr(rt.instance, checker), args)
            if error is not None:
                rt.update_rejections.append((uid, f"update {name!r} rejected by its validator: {error}"))
                continue
        when = max(when, req["t"])
        # "at": the workflow's time for it (`durable.now()` on every replay); "t" is the store's
        accepted.append({"k": ev.UPDATE_ACCEPTED, "t": when, "at": when, "uid": uid, "name": name, "in": req["in"]})
    return accepted


def _run_validator(rt: Runtime, fn: Any, args: list[Any]) -> str | None:
    """Run a validator as a query runs (it must not change anything); its error text, or None."""
    prev = _context.set_current(rt)
    rt._in_query = True
    rng_state = None if rt._rng is None else rt._rng.getstate()
    try:
        fn(*args)
        return None
    except Exception as exc:  # noqa: BLE001 - any exception refuses the update
        return f"{type(exc).__name__}: {exc}"
    finally:
        if rng_state is None:
            rt._rng = None
        else:
            rt._rng.setstate(rng_state)  # type: ignore[union-attr]
        rt._in_query = False
        _context.set_current(prev)


def start_handler(rt: Runtime, event: dict[str, Any]) -> None:
    """Apply an ``UpdateAccepted`` event: start its handler as a task of the root nursery."""
    from ._runtime import _Task

    name, uid = event["name"], event["uid"]
    method = rt.defn.updates.get(name)
    if method is None or rt.instance is None:
        return  # an old history of code that had the update: nothing to run it with
    args = rt.converter.from_payload(event["in"], f"arguments of update {name!r}")
    plan = rt.defn.handler_plan(method)
    if plan.args_in:  # accepted, so they fitted: the same conversion again (a misfit fails the task)
        args = plan.args_from_plain(args, f"update {name!r}")
    handler = getattr(rt.instance, method)
    task = _Task(_run_handler(rt, handler, args, uid, name, plan), rt._root_scope, rt._root, f"update {name}")
    rt._root._children[task] = None
    rt._ready.append((task, None, None))


async def _run_handler(rt: Runtime, handler: Any, args: list[Any], uid: str, name: str, plan: Plan) -> None:
    from ._runtime import Cancelled

    try:
        if inspect.iscoroutinefunction(handler):
            value = await handler(*args)
        else:
            value = handler(*args)
    except _continue.ContinueAsNew:
        raise
    except BaseException as exc:  # noqa: BLE001 - a failure fails the update; a bug is raised
        if not (isinstance(exc, Cancelled) or rt._fails_workflow(exc)):
            raise
        if isinstance(exc, Cancelled):
            from ._errors import ApplicationError

            errors = rt._root._errors
            why = ("its workflow continued as new" if any(isinstance(e, _continue.ContinueAsNew) for e in errors)
                   else "its workflow failed" if errors else "its workflow was cancelled")
            exc = ApplicationError(f"update {name!r} was cancelled: {why}", type="Cancelled")
        err = error_to_record(exc) if rt._replaying else rt.converter.failure(exc)
        rt._emit({"k": ev.UPDATE_COMPLETED, "uid": uid, "name": name, "err": err})
        return
    if plan.ret_out:
        value = plan.result_to_plain(value, f"result of update {name!r}")
    out = None if rt._replaying else rt.converter.to_payload(value, f"result of update {name!r}")
    rt._emit({"k": ev.UPDATE_COMPLETED, "uid": uid, "name": name, "out": out})
