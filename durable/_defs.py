"""The decorators users write (`activity`, `workflow`, `signal`, `query`) and the `Registry`.

A decorated workflow keeps its own type (function or class) with its definition attached; a
decorated activity becomes an `Activity`, whose call inside workflow code schedules it durably.
Nothing here is global: a `Registry` is built from the objects a worker is given, and names read
from the store are only ever looked up in it (F14, F15).

The decorators keep their targets' signatures for type checkers: an `Activity[P, R]` has the
function's parameters and its (awaited) result type, and a workflow keeps its own type, from which
`Client.start` takes the parameters and the result type (see `WorkflowInstance`).
"""

from __future__ import annotations

import inspect
import math
import types
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypedDict, TypeVar, TypeVarTuple, Unpack, cast, overload

from . import _context
from ._convert import Plan, early_plan, plan_of
from ._errors import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    CompensationFailed,
    ExternalWorkflowError,
    InvalidArgument,
    NotRegistered,
    TooSlowError,
)
from ._limits import MAX_DURATION_SECONDS, MAX_NAME_BYTES
from ._retry import RetryPolicy

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

Cancellation = Literal["wait", "try", "abandon"]
_CANCELLATION_MODES = ("wait", "try", "abandon")


def check_name(name: Any, what: str) -> str:
    """Validate a workflow/activity/signal/query/queue name."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{what} must be a non-empty string, not {name!r}")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:  # a lone surrogate, as a command line can carry
        raise InvalidArgument(f"{what} {name[:40]!r} is invalid: not valid text (a lone surrogate)") from None
    if size > MAX_NAME_BYTES or "\x00" in name:
        raise InvalidArgument(
            f"{what} {name[:40]!r} is invalid: at most {MAX_NAME_BYTES} bytes, no NUL characters"
        )
    return name


def check_seconds(value: Any, what: str, *, allow_none: bool = True) -> float | None:
    """Validate a duration in seconds: positive, finite, at most ten years."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(f"{what} must be a number of seconds, not {value!r}")
    if not 0 <= value <= MAX_DURATION_SECONDS:
        raise InvalidArgument(f"{what} must be between 0 and {MAX_DURATION_SECONDS:g} seconds, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class ActivityOptions:
    """How an activity is run: timeouts (seconds), retries, queue and cancellation mode."""

    start_to_close: float | None = None
    schedule_to_close: float | None = None
    heartbeat: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    queue: str | None = None
    cancellation: Cancellation = "wait"

    def __post_init__(self) -> None:
        check_seconds(self.start_to_close, "start_to_close")
        check_seconds(self.schedule_to_close, "schedule_to_close")
        check_seconds(self.heartbeat, "heartbeat")
        if not isinstance(self.retry, RetryPolicy):
            raise InvalidArgument(f"retry must be a durable.RetryPolicy, not {self.retry!r}")
        if self.queue is not None:
            check_name(self.queue, "queue")
        if self.cancellation not in _CANCELLATION_MODES:
            raise InvalidArgument(
                f"cancellation must be one of {', '.join(_CANCELLATION_MODES)}, not {self.cancellation!r}"
            )

    def to_record(self) -> dict[str, Any]:
        """Plain-data form stored in the ActivityScheduled event (a new dict each time)."""
        rec = self.__dict__.get("_record")
        if rec is None:  # options are frozen: made once, copied (its parts are never changed)
            rec = self._make_record()
            object.__setattr__(self, "_record", rec)
        return dict(rec)

    def _make_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"retry": self.retry.to_record(), "cancel": self.cancellation}
        for key, value in (
            ("s2c", self.start_to_close),
            ("sched2c", self.schedule_to_close),
            ("hb", self.heartbeat),
            ("queue", self.queue),
        ):
            if value is not None:
                rec[key] = value
        return rec


class _OptionChanges(TypedDict, total=False):
    """The keyword arguments of `Activity.with_options` (the fields of `ActivityOptions`)."""

    start_to_close: float | None
    schedule_to_close: float | None
    heartbeat: float | None
    retry: RetryPolicy
    queue: str | None
    cancellation: Cancellation


#: The event loops an async activity can run on (see `activity`'s ``loop``).
ActivityLoop = Literal["trio", "asyncio"]
ACTIVITY_LOOPS: tuple[str, ...] = ("trio", "asyncio")


def _check_loop(loop: Any, is_async: bool, name: str) -> ActivityLoop | None:
    if loop is None:
        return None
    if not isinstance(loop, str) or loop not in ACTIVITY_LOOPS:
        raise InvalidArgument(f"loop of activity {name!r} must be \"trio\" or \"asyncio\", not {loop!r}")
    if not is_async:
        raise InvalidArgument(f"loop={loop!r} is for async def activities: activity {name!r} is a plain "
                              "function, which runs in a thread of the worker")
    return cast(ActivityLoop, loop)


class Activity(Generic[P, R]):
    """An activity: a plain function (sync or async) that workflows call to do real work.

    Inside workflow code, ``await act(*args)`` schedules one durable execution of it and returns
    its result. Outside workflow code, call ``act.fn(*args)`` to run the function itself.
    """

    def __init__(self, fn: Callable[P, Any], name: str, options: ActivityOptions, loop: ActivityLoop | None = None,
                 plan: Plan | None = None) -> None:
        self.fn = fn
        self.name = check_name(name, "activity name")
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        #: the event loop an async activity runs on: "trio", "asyncio", or None (the worker's
        #: ``activity_loop``); not part of the options stored in history, only of how it runs
        self.loop = _check_loop(loop, self.is_async, self.name)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__qualname__ = getattr(fn, "__qualname__", name)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__wrapped__ = fn
        #: made when decorated if the hints can be read then, else on first use (`plan`)
        self._plan: Plan | None = plan or early_plan(fn)

    @property
    def plan(self) -> Plan:
        """How its arguments and result are converted (`_convert`): made on first use, kept."""
        plan = self._plan
        if plan is None:
            plan = self._plan = plan_of(self.fn)
        return plan

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        if kwargs:
            raise InvalidArgument(
                f"activity {self.name!r} takes positional arguments only (got {sorted(kwargs)})"
            )
        rt = _context.current(
            f"activity {self.name!r}",
            f"; outside a workflow, call its function directly: {self.__name__}.fn(...)",
        )
        return rt.schedule_activity(self.name, args, self.options, self._plan or self.plan)

    def with_options(self, **options: Unpack[_OptionChanges]) -> Activity[P, R]:
        """A copy of this activity with some options changed, for one call site."""
        try:
            new_options = replace(self.options, **options)
        except TypeError as exc:
            raise InvalidArgument(f"with_options: {exc}") from None
        return Activity(self.fn, self.name, new_options, self.loop, self._plan)

    def __repr__(self) -> str:
        return f"<durable.Activity {self.name!r}>"


class _ActivityDecorator(Protocol):
    """What ``@durable.activity(...)`` with options returns: applied to a function, an `Activity`
    of its parameters and its result type (the awaited type for an ``async def``)."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Activity[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Activity[P, R]: ...


# An ``async def`` function is a Callable[P, Coroutine[Any, Any, R]]: the first overload gives it
# its awaited result type; a plain function falls through to the second. (Coroutine, not
# Awaitable: the worker runs a function as async only if it is a coroutine function.)
@overload
def activity(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Activity[P, R]: ...
@overload
def activity(fn: Callable[P, R], /) -> Activity[P, R]: ...
@overload
def activity(
    *,
    name: str | None = None,
    start_to_close: float | None = None,
    schedule_to_close: float | None = None,
    heartbeat: float | None = None,
    retry: RetryPolicy | None = None,
    queue: str | None = None,
    cancellation: Cancellation = "wait",
    loop: ActivityLoop | None = None,
) -> _ActivityDecorator: ...


def activity(fn: Any = None, /, *, name: str | None = None, retry: RetryPolicy | None = None,
             loop: ActivityLoop | None = None, **options: Any) -> Any:
    """Declare an activity. Use bare (``@durable.activity``) or with options.

    Options: ``start_to_close``, ``schedule_to_close`` and ``heartbeat`` timeouts in seconds,
    ``retry`` (a `RetryPolicy`), ``queue`` (default: the workflow's queue) and ``cancellation``
    ("wait" for the activity to confirm, "try" to request and move on, "abandon").

    ``loop`` is for an ``async def`` activity: "asyncio" runs it on an asyncio event loop of the
    worker (for asyncio libraries: aiohttp, asyncpg...), "trio" on the worker's trio loop; by
    default, the worker's ``activity_loop`` ("trio" unless set).
    """

    def wrap(f: Callable[..., Any]) -> Activity[Any, Any]:
        if not callable(f) or inspect.isclass(f):
            raise InvalidArgument(f"@durable.activity needs a function, not {f!r}")
        opts = ActivityOptions(retry=retry or RetryPolicy(), **options)
        return Activity(f, name or f.__name__, opts, loop)

    if fn is not None:
        return wrap(fn)
    return wrap


#: The errors that fail a workflow when they leave its code: failures that carry through history
#: (an activity's, a child workflow's, a durable deadline's, a saga's, a request to another
#: workflow's, or one the code raises on purpose). Any other exception is a bug in the code: it
#: fails the workflow task, not the workflow (Temporal's rule), so that the workflow waits, its
#: history untouched, until fixed code is deployed.
FAILURE_TYPES: tuple[type[BaseException], ...] = (
    ApplicationError, ActivityError, TooSlowError, CompensationFailed, ChildWorkflowError, ExternalWorkflowError,
)

#: How many positional arguments a function takes: (least, most); most is None with *args.
Arity = tuple[int, "int | None"]


def arity(fn: Callable[..., Any], *, method: bool = False) -> Arity:
    """The positional arguments `fn` takes (without `self` if `method`)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: anything goes
        return (0, None)
    if method and params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        params = params[1:]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    least = sum(1 for p in positional if p.default is p.empty)
    most = None if any(p.kind is p.VAR_POSITIONAL for p in params) else len(positional)
    return (least, most)


def check_arity(what: str, fits: Arity, count: int, params: str = "") -> None:
    """Refuse `count` arguments for `what` unless `fits` admits them; the message names both."""
    least, most = fits
    if least <= count and (most is None or count <= most):
        return
    if most is None:
        takes = f"at least {least}"
    elif least == most:
        takes = str(least)
    else:
        takes = f"{least} to {most}"
    noun = "argument" if (most if most is not None else least) == 1 else "arguments"
    raise InvalidArgument(f"{what} takes {takes} {noun}{f' ({params})' if params else ''}, not {count}")


def signature_text(fn: Callable[..., Any], *, method: bool = False) -> str:
    """The parameters of `fn` as written, for error messages (without `self` if `method`)."""
    try:
        sig = inspect.signature(fn, eval_str=True)
    except Exception:  # noqa: BLE001 - an annotation that does not evaluate: shown as written
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return ""
    params = list(sig.parameters.values())
    return ", ".join(str(p) for p in (params[1:] if method else params))


@dataclass(frozen=True)
class WorkflowDef:
    """What the runtime needs to know about a workflow type."""

    name: str
    target: Any  # the function, or the class
    is_class: bool
    signals: dict[str, str]  # signal name -> method name
    queries: dict[str, str]  # query name -> method name
    #: errors that fail the workflow when they leave its code (FAILURE_TYPES and the declared)
    failure_types: tuple[type[BaseException], ...] = FAILURE_TYPES
    params: Arity = (0, None)  # of the workflow function (or `run`)
    signal_params: dict[str, Arity] = field(default_factory=dict)
    updates: dict[str, str] = field(default_factory=dict)  # update name -> method name
    validators: dict[str, str] = field(default_factory=dict)  # update name -> validator's method name
    update_params: dict[str, Arity] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """Plain data published to the store, so clients can check names and argument counts."""
        return {
            "signals": sorted(self.signals), "queries": sorted(self.queries),
            "params": _arity_record(self.params),
            "signal_params": {name: _arity_record(a) for name, a in sorted(self.signal_params.items())},
            "updates": sorted(self.updates),
            "update_params": {name: _arity_record(a) for name, a in sorted(self.update_params.items())},
        }

    @property
    def function(self) -> Callable[..., Any]:
        """The function the workflow's arguments go to (the class's `run`)."""
        return self.target.run if self.is_class else self.target  # type: ignore[no-any-return]

    @property
    def plan(self) -> Plan:
        """How the workflow's arguments and result are converted (`_convert`): made on first
        use (not when decorated: its hints may name classes defined further down), then kept."""
        plan = self.__dict__.get("_plan")
        if plan is None:
            plan = plan_of(self.function, method=self.is_class)
            object.__setattr__(self, "_plan", plan)  # frozen: a cache, not a field
        return plan

    def handler_plan(self, method: str) -> Plan:
        """How the arguments and result of the signal or query method `method` are converted."""
        return plan_of(getattr(self.target, method), method=True)

    def check_start_args(self, args: tuple[Any, ...] | list[Any]) -> None:
        """`InvalidArgument` unless `args` fit the workflow's parameters."""
        least, most = self.params
        if least <= len(args) and (most is None or len(args) <= most):
            return  # every start comes here: the message's signature is made only on a refusal
        check_arity(f"workflow {self.name!r}", self.params, len(args),
                    signature_text(self.function, method=self.is_class))


def _arity_record(a: Arity) -> list[int]:
    return [a[0], -1 if a[1] is None else a[1]]


def arity_from_record(rec: Any) -> Arity | None:
    """The arity a worker published (see `WorkflowDef.describe`), or None if it is not there."""
    if isinstance(rec, list) and len(rec) == 2 and all(isinstance(n, int) for n in rec):
        return (rec[0], None if rec[1] < 0 else rec[1])
    return None


_Method = TypeVar("_Method", bound=Callable[..., Any])


class _Marker(Protocol):
    """The type of `signal` and `query`: used bare or with a name, they give back the method."""

    @overload
    def __call__(self, fn: _Method, /) -> _Method: ...
    @overload
    def __call__(self, *, name: str | None = None) -> Callable[[_Method], _Method]: ...


def _mark(attr: str, kind: str) -> _Marker:
    def decorator(fn: Any = None, /, *, name: str | None = None) -> Any:
        def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(f):
                raise InvalidArgument(f"@durable.{kind} needs a method, not {f!r}")
            setattr(f, attr, check_name(name or f.__name__, f"{kind} name"))
            return f

        return wrap(fn) if fn is not None else wrap

    decorator.__name__ = decorator.__qualname__ = kind  # shown by help() and repr()
    return cast(_Marker, decorator)


signal = _mark("__durable_signal__", "signal")
signal.__doc__ = """Mark a method of a workflow class as a signal handler (sync or async).

Signals are recorded in history and delivered once each, in order. ``@durable.signal(name=...)``
sets another name."""
query = _mark("__durable_query__", "query")
query.__doc__ = """Mark a method of a workflow class as a query handler (sync, read-only).

A query runs on a worker against the workflow's live state and never changes its history."""


class UpdateMethod(Protocol[P, R_co]):
    """What ``@durable.update`` gives back: the method itself, with `validator` to declare the
    update's validator."""

    __durable_update__: str

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def validator(self, fn: Callable[..., Any], /) -> Callable[..., Any]:
        """Declare `fn` (a sync method with the handler's parameters) as the update's validator:
        it runs before anything is recorded, must not change the workflow, and raises to refuse."""
        ...


@overload
def update(fn: Callable[P, R], /) -> UpdateMethod[P, R]: ...
@overload
def update(*, name: str | None = None) -> Callable[[Callable[P, R]], UpdateMethod[P, R]]: ...


def update(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Mark a method of a workflow class as an update handler (sync or async).

    An update is a request the caller waits on: ``handle.update(name, *args)`` returns the
    handler's return value or raises its failure (`UpdateFailed`). A validator, declared with
    ``@handler.validator``, runs first and may refuse the update by raising (`UpdateRejected`):
    a refused update writes nothing to the history. An accepted one is recorded
    (``UpdateAccepted``), its handler runs as workflow code (an async handler may await
    activities and timers), and its outcome is recorded (``UpdateCompleted``), once per update id.
    ``@durable.update(name=...)`` sets another name."""
    def wrap(f: Any) -> Any:
        if not callable(f):
            raise InvalidArgument(f"@durable.update needs a method, not {f!r}")
        f.__durable_update__ = check_name(name or f.__name__, "update name")

        def validator(v: Callable[..., Any], /) -> Callable[..., Any]:
            if not callable(v) or inspect.iscoroutinefunction(v):
                raise InvalidArgument(f"the validator of update {f.__durable_update__!r} must be a plain (sync) method")
            v.__durable_validates__ = f.__durable_update__  # type: ignore[attr-defined]
            return v

        f.validator = validator
        return f

    return wrap(fn) if fn is not None else wrap


class WorkflowInstance(Protocol[*Ts, R_co]):
    """An instance of a workflow class, for type checkers: its ``run`` takes `Ts` and gives `R_co`.

    `Client.start` accepts a class whose instances are made with no arguments and match this, and
    takes its arguments' and its result's types from ``run``.
    """

    def run(self, *args: *Ts) -> Awaitable[R_co]: ...


class _HasRun(Protocol):
    @property
    def run(self) -> Callable[..., Coroutine[Any, Any, Any]]: ...


_WorkflowFn = TypeVar("_WorkflowFn", bound=Callable[..., Coroutine[Any, Any, Any]])
_WorkflowCls = TypeVar("_WorkflowCls", bound=_HasRun)


class _WorkflowDecorator(Protocol):
    """What ``@durable.workflow(...)`` with options returns: the workflow decorator itself."""

    @overload
    def __call__(self, target: type[_WorkflowCls], /) -> type[_WorkflowCls]: ...
    @overload
    def __call__(self, target: _WorkflowFn, /) -> _WorkflowFn: ...


# The decorated object is returned unchanged, and so is its type: a class stays its class (its
# signals and queries callable as methods), a function keeps its signature, which `Client.start`
# checks the arguments against. A class without an async `run`, or a plain function, is refused.
@overload
def workflow(target: type[_WorkflowCls], /) -> type[_WorkflowCls]: ...
@overload
def workflow(target: _WorkflowFn, /) -> _WorkflowFn: ...
@overload
def workflow(*, name: str | None = None,
             failure_exceptions: Iterable[type[BaseException]] = ()) -> _WorkflowDecorator: ...


def workflow(target: Any = None, /, *, name: str | None = None,
             failure_exceptions: Iterable[type[BaseException]] = ()) -> Any:
    """Declare a workflow: an ``async def`` function, or a class with an ``async def run``.

    The class form may have `signal` and `query` methods. The decorated object is returned
    unchanged, with its definition attached; pass it (or its name) to `Client.start`.

    An exception that leaves workflow code fails the workflow if it is an `ApplicationError`,
    an `ActivityError`, a `TooSlowError` or a `CompensationFailed`, or of a type named in
    `failure_exceptions`. Any other is taken for a bug: it fails the workflow *task*; the workflow
    keeps running with its history untouched, `describe` shows the error, and the task is
    tried again with a growing delay, so that deploying fixed code lets it go on.
    """
    declared = tuple(failure_exceptions)
    for exc_type in declared:
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise InvalidArgument(f"failure_exceptions must be exception classes, not {exc_type!r}")

    def wrap(obj: Any) -> Any:
        wf_name = check_name(name or getattr(obj, "__name__", ""), "workflow name")
        extra: dict[str, Any] = {"failure_types": FAILURE_TYPES + declared}
        if inspect.isclass(obj):
            run = getattr(obj, "run", None)
            if run is None or not inspect.iscoroutinefunction(run):
                raise InvalidArgument(f"workflow class {wf_name!r} needs an 'async def run(self, ...)' method")
            signals: dict[str, str] = {}
            queries: dict[str, str] = {}
            updates: dict[str, str] = {}
            validators: dict[str, str] = {}
            for attr, member in inspect.getmembers(obj):
                if getattr(member, "__durable_update__", None):
                    updates[member.__durable_update__] = attr
                if getattr(member, "__durable_validates__", None):
                    validators[member.__durable_validates__] = attr
                if getattr(member, "__durable_signal__", None):
                    signals[member.__durable_signal__] = attr
                if getattr(member, "__durable_query__", None):
                    if inspect.iscoroutinefunction(member):
                        raise InvalidArgument(f"query {attr!r} of {wf_name!r} must be a plain (sync) method")
                    queries[member.__durable_query__] = attr
            extra["signal_params"] = {sig: arity(getattr(obj, attr), method=True) for sig, attr in signals.items()}
            for upd in validators:
                if upd not in updates:
                    raise InvalidArgument(f"workflow {wf_name!r} has a validator for update {upd!r} but no such update")
            extra.update(updates=updates, validators=validators,
                         update_params={u: arity(getattr(obj, attr), method=True) for u, attr in updates.items()})
            defn = WorkflowDef(wf_name, obj, True, signals, queries, params=arity(run, method=True), **extra)
        elif inspect.iscoroutinefunction(obj):
            defn = WorkflowDef(wf_name, obj, False, {}, {}, params=arity(obj), **extra)
        else:
            raise InvalidArgument(f"@durable.workflow needs an async function or a class, not {obj!r}")
        plan = early_plan(defn.function, method=defn.is_class)
        if plan is not None:  # made when decorated if the hints can be read then (see `plan`)
            object.__setattr__(defn, "_plan", plan)
        obj.__durable_workflow__ = defn
        return obj

    if target is not None:
        return wrap(target)
    return wrap


def workflow_def(obj: Any) -> WorkflowDef:
    """The definition attached to a decorated workflow; a clear error for anything else."""
    defn = getattr(obj, "__durable_workflow__", None)
    if not isinstance(defn, WorkflowDef):
        raise InvalidArgument(f"{obj!r} is not a workflow (decorate it with @durable.workflow)")
    return defn


class Registry:
    """The workflows and activities one worker serves, by name. Never global (F14)."""

    def __init__(self, workflows: Iterable[Any] = (), activities: Iterable[Activity[Any, Any]] = ()) -> None:
        self.workflows: dict[str, WorkflowDef] = {}
        self.activities: dict[str, Activity[Any, Any]] = {}
        for wf in workflows:
            defn = workflow_def(wf)
            if defn.name in self.workflows and self.workflows[defn.name].target is not defn.target:
                raise InvalidArgument(f"two different workflows are named {defn.name!r}")
            self.workflows[defn.name] = defn
        for act in activities:
            if not isinstance(act, Activity):
                raise InvalidArgument(f"{act!r} is not an activity (decorate it with @durable.activity)")
            if act.name in self.activities and self.activities[act.name].fn is not act.fn:
                raise InvalidArgument(f"two different activities are named {act.name!r}")
            self.activities[act.name] = act

    @classmethod
    def from_modules(cls, modules: Iterable[types.ModuleType]) -> Registry:
        """Collect every workflow and activity defined at the top level of `modules`."""
        workflows: list[Any] = []
        activities: list[Activity[Any, Any]] = []
        for module in modules:
            for value in vars(module).values():
                if isinstance(value, Activity):
                    activities.append(value)
                elif isinstance(getattr(value, "__durable_workflow__", None), WorkflowDef):
                    workflows.append(value)
        return cls(workflows, activities)

    def workflow(self, name: str) -> WorkflowDef:
        """Look up a workflow by the name read from the store."""
        defn = self.workflows.get(name)
        if defn is None:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise NotRegistered(f"workflow type {name!r} is not registered on this worker (registered: {known})")
        return defn

    def activity(self, name: str) -> Activity[Any, Any]:
        """Look up an activity by the name read from the store."""
        act = self.activities.get(name)
        if act is None:
            known = ", ".join(sorted(self.activities)) or "none"
            raise NotRegistered(f"activity {name!r} is not registered on this worker (registered: {known})")
        return act

    def describe(self) -> dict[str, Any]:
        """Plain data published to the store for the names this worker serves."""
        return {
            "workflows": {name: d.describe() for name, d in self.workflows.items()},
            "activities": sorted(self.activities),
        }
