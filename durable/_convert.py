"""The data converter: values of typed parameters and results to plain data and back, by the
type hints of the signatures.

A payload holds plain data (`_plain`). Values of other types cross as plain CBOR maps, arrays
and strings, and are built again from the annotation of the parameter or return that receives
them, never from a name read from the store (so no code is named by data, F15):

=======================  ==============================  ==================================
type                     plain form                      built again by
=======================  ==============================  ==================================
dataclass                map of its fields               the annotated class
``typing.NamedTuple``    map of its fields               the annotated class (or an array)
tuple, set, frozenset    array (a set sorted if it can)  ``tuple[...]``, ``set[...]``...
``enum.Enum``            its value                       ``Cls(value)``
date, time               ISO 8601 str                    ``fromisoformat``
timedelta                seconds (int, float, or str)    ``timedelta(seconds=...)``
Decimal, UUID            str                             ``Decimal(s)``, ``UUID(s)``
datetime (aware)         CBOR datetime (as before)       an ISO str is also accepted
pydantic v2 model        ``model_dump()`` made plain     ``model_validate``
``Annotated[T, Convert]`` ``to_plain(value)``            ``from_plain(plain)``
=======================  ==============================  ==================================

A value with no annotation on its side (an unannotated or ``Any`` parameter, a value inside a
``dict``) is made plain by its own type (`value_to_plain`, from `Converter.to_payload` when a
payload is not plain data already): a dataclass still becomes a map, a tuple an array. Values
of the plain types are passed as they are, unchecked, in both directions: code that uses plain
dicts costs what it did (one attribute read per crossing, `Plan.identity`).

The nodes (how each type converts) are in `_convert_nodes`; this module has the plans of
functions and the entry points.

Conversion entry points (one `Plan` per function, made on first use and kept; the crossings):

- `plan_of(fn, method=...)`: the plan of a function's parameters and return; kept on its owner
  as `Activity.plan`, `WorkflowDef.plan` (the workflow function or `run`) and
  `WorkflowDef.handler_plan(method)` (a signal or query method).
- `Plan.args_to_plain(args, what)` where arguments are made: `Client.start` given the workflow
  (its parameters), `Activity.__call__` and `Saga.add_compensation` (the activity's),
  `WorkflowHandle.signal` / `query` on a handle that knows its workflow (the handler's).
- `Plan.args_from_plain(args, what)` where they are received: `Runtime._start` (workflow
  input), the worker's activity attempts (`worker/_activities.py`, `worker/_inline.py`),
  `Runtime._signal` (a signal that does not fit is dropped with a warning, as one of the wrong
  arity is), `Runtime.query`.
- `Plan.result_to_plain(value, what)`: the activity's result (worker), the workflow's result
  (`Runtime._maybe_finish`), a query's answer (`Runtime.query`).
- `Plan.result_from_plain(value, what)`: the value ``await activity(...)`` gives in the workflow
  (`Runtime._apply`, per the activity's return annotation), `WorkflowHandle.result` and the
  answer of `WorkflowHandle.query` when the handle knows its workflow.

A conversion error is a `PayloadError` naming the parameter and the path inside the value. In
a workflow (a recorded value that does not fit the annotation any more) it fails the workflow
task, like any bug, so that fixed code lets the workflow go on; converting the same plain data
to the same type gives equal values every time, so replay stays deterministic.

Also: `continue_as_new` (the next run's arguments, by its workflow's plan, `_continue`),
`create_schedule` (by the workflow's, `_schedule_client`); `AsyncClient` goes through `Client`,
and `durable.testing`'s handles keep their workflow (its mocks take the activity's plan).

New crossings convert the same way. A child workflow: its arguments by the child's
`WorkflowDef.plan.args_to_plain` where the parent starts it, and its result by
`result_from_plain` where the parent receives it (the child's own `Runtime._start` and
`_maybe_finish` already convert its side). Then `Converter.to_payload` as for any payload: it
makes plain by its own type what is left.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from ._convert_nodes import _LOCK, Convert, _hints, _Mismatch, _Node, _path_text, node_of, value_to_plain
from ._errors import PayloadError

__all__ = ["IDENTITY", "Convert", "Plan", "early_plan", "node_of", "plan_of", "value_to_plain"]


# --- plans: a function's parameters and return -------------------------------------------------


class Plan:
    """How the arguments and the result of one function cross: a node per parameter (None for
    those that need no conversion), for `*args`, and for the return. `identity` when nothing
    needs converting (every crossing then costs one attribute read)."""

    __slots__ = ("qualname", "names", "params", "var", "ret", "identity", "args_out", "args_in", "ret_out", "ret_in")

    def __init__(self, qualname: str, names: list[str], params: list[_Node | None], var: _Node | None,
                 ret: _Node | None) -> None:
        self.qualname = qualname
        self.names = names
        self.params = params
        self.var = var
        self.ret = ret
        nodes = [n for n in [*params, var] if n is not None]
        self.args_out = any(n.needs_out for n in nodes)
        self.args_in = any(n.needs_in for n in nodes)
        self.ret_out = ret is not None and ret.needs_out
        self.ret_in = ret is not None and ret.needs_in
        self.identity = not (self.args_out or self.args_in or self.ret_out or self.ret_in)

    def _param(self, i: int) -> tuple[str, _Node | None]:
        if i < len(self.params):
            return self.names[i], self.params[i]
        return f"*{self.names[-1] if len(self.names) > len(self.params) else 'args'}[{i - len(self.params)}]", self.var

    def args_to_plain(self, args: tuple[Any, ...] | list[Any], what: str) -> list[Any]:
        """The arguments as plain data, each by its parameter's annotation."""
        if not self.args_out:
            return list(args)
        out = []
        for i, value in enumerate(args):
            name, node = self._param(i)
            if node is None or not node.needs_out:
                out.append(value)
                continue
            try:
                out.append(node.out(value))
            except _Mismatch as exc:
                raise _error(exc, what, f"parameter {name!r}") from None
        return out

    def args_from_plain(self, args: list[Any], what: str) -> list[Any]:
        """The arguments read from plain data, each built by its parameter's annotation."""
        if not self.args_in:
            return args
        out = []
        for i, value in enumerate(args):
            name, node = self._param(i)
            if node is None or not node.needs_in:
                out.append(value)
                continue
            try:
                out.append(node.into(value))
            except _Mismatch as exc:
                raise _error(exc, what, f"parameter {name!r}") from None
        return out

    def result_to_plain(self, value: Any, what: str) -> Any:
        """The result as plain data, by the return annotation."""
        if not self.ret_out:
            return value
        assert self.ret is not None
        try:
            return self.ret.out(value)
        except _Mismatch as exc:
            raise _error(exc, what, f"the return annotation of {self.qualname}") from None

    def result_from_plain(self, value: Any, what: str) -> Any:
        """The result read from plain data, built by the return annotation."""
        if not self.ret_in:
            return value
        assert self.ret is not None
        try:
            return self.ret.into(value)
        except _Mismatch as exc:
            raise _error(exc, what, f"the return annotation of {self.qualname}") from None


def _error(exc: _Mismatch, what: str, where: str) -> PayloadError:
    path = _path_text(exc.path)
    return PayloadError(f"{what}: {where}{' at ' + path if path else ''}: {exc.message}")


#: The plan of a function with nothing to convert (the common case: plain data).
IDENTITY = Plan("", [], [], None, None)

_PLANS: dict[Any, Plan] = {}


def plan_of(fn: Callable[..., Any], *, method: bool = False) -> Plan:
    """The plan of `fn` (without `self` if `method`), made on first use and kept.

    A hint that does not evaluate yet is a `PayloadError` (each crossing then says so); a
    function whose hints need no conversion has the shared `IDENTITY` plan."""
    key = (fn, method)
    plan = _PLANS.get(key)
    if plan is None:
        with _LOCK:
            plan = _make_plan(fn, method)
        _PLANS[key] = plan
    return plan


def early_plan(fn: Callable[..., Any], *, method: bool = False) -> Plan | None:
    """The plan of `fn` when it is decorated, if its hints can all be read then (else None: made
    on first use, once the classes its hints name further down the module exist)."""
    try:
        typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - a name not defined yet: later
        return None
    return plan_of(fn, method=method)


def _make_plan(fn: Callable[..., Any], method: bool) -> Plan:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return IDENTITY
    if not any(p.annotation is not p.empty for p in sig.parameters.values()) and sig.return_annotation is sig.empty:
        return IDENTITY
    hints = _hints(fn)
    params = list(sig.parameters.values())
    if method and params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        params = params[1:]
    names: list[str] = []
    nodes: list[_Node | None] = []
    var: _Node | None = None
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
            nodes.append(node_of(hints.get(p.name, Any)))
        elif p.kind is p.VAR_POSITIONAL:
            names.append(p.name)
            var = node_of(hints.get(p.name, Any))
    plan = Plan(getattr(fn, "__qualname__", repr(fn)), names, nodes, var, node_of(hints.get("return", Any)))
    return IDENTITY if plan.identity else plan
