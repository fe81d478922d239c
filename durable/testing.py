"""Testing workflows: a real worker in process on a temporary store, with a clock that skips.

    async with durable.testing.Environment(workflows=[three_steps], activities=[add_one, double]) as env:
        assert await env.execute(three_steps, 1) == 5

    with durable.testing.SyncEnvironment(workflows=[three_steps], activities=[add_one, double]) as env:
        assert env.execute(three_steps, 1) == 5

Both run a `durable.Worker` in a thread of its own (its own trio loop) on a fresh store in a
temporary directory, removed at the end. The store's clock is virtual: it runs at the pace of
real time from its start (`start_time`, default now), plus every jump. Time skips (Temporal's
rule) only while a caller waits for a workflow's result (`env.result`, `env.execute`, or
`result()` on a handle of `env.client`), and then only when nothing can run without time
passing: no task of the environment's queue claimable, nothing due, and no workflow task or
activity attempt running (holding a lease) anywhere (`_ops.idle_until` reads that in one
transaction of the store). The clock then jumps to the next due time (a timer, a retry's
backoff, a deadline, a delayed start) and the worker fires it. The look and the jump are one
write transaction of their own, so no write of this process comes between them, and every write
after it takes its time from the moved clock. So a ``durable.sleep(86400)``
completes at once; an activity that runs is never timed out by a jump (its deadline is due while
it runs, and time only flows with real time then); and a signal sent before waiting for a result
is recorded before any timer the skip could fire, as in real time.

`env.sleep(seconds)` moves time by hand whether or not anyone waits: through each due time in
order, each fired and run to rest before the next jump, and returns once the environment is at
rest at the target time. `env.now()` is the clock's time.

Time never jumps to the retry of a failed workflow task (a bug in the code) or of an activity no
worker here has: it would only fail again. Waiting for such a workflow's result raises
`WorkflowTaskFailed` instead. The temporary store lives in /dev/shm where there is one: each
commit is synced, which costs milliseconds on a disk and nothing in memory.

Why the worker runs in its own thread in both forms: the client is synchronous; a blocking call
(`handle.query`, `handle.result`) made by a test, from a trio task too, must not stop the
worker that answers it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple, overload

import trio

from . import _ops
from ._client import DEFAULT_QUEUE, Client, WorkflowHandle
from ._codec import PayloadCodec
from ._defs import Activity, Registry, WorkflowInstance, arity, check_seconds, signature_text
from ._errors import DurableError, InvalidArgument, WaitTimeout
from ._replay import replay as _replay
from ._store import Clock, Store, Txn
from .worker import Worker

__all__ = ["Environment", "SyncEnvironment", "WorkflowTaskFailed", "mock_activity"]

R = TypeVar("R")
Ts = TypeVarTuple("Ts")
A = TypeVar("A", bound=Activity[Any, Any])

_NS = 1_000_000_000
#: How often a waiting caller, or the skipper, looks at the store again while something runs.
_POLL_SECONDS = 0.001
#: What `_Harness._try_jump` found: something can run; nothing can, and the clock jumped; nothing
#: can and nothing is due before the limit, where the clock is.
BUSY, JUMPED, AT_REST = "busy", "jumped", "at rest"
#: How long one wait for a result lasts before the waiter looks again (whether it was cancelled).
_RESULT_SLICE_SECONDS = 0.1


class WorkflowTaskFailed(DurableError):
    """Waiting for a result in a test environment was given up: the workflow's task fails (a
    bug in its code, an activity no worker has). In production the workflow waits for fixed code
    and its task is retried; in a test the same code would only fail again. The message holds
    the task's error (as `describe` shows it)."""

    def __init__(self, message: str, *, workflow_id: str, task_error: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.task_error = task_error


def _memory_dir() -> str | None:
    """A directory in memory for temporary stores (/dev/shm), if there is one we may write in,
    else None (the system's temporary directory). Each commit syncs the store to disk: on a disk
    that is some milliseconds per commit and a dozen to create a store; in memory, nothing. A
    test's store holds nothing that must outlive it."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


class _SkippingClock(Clock):
    """Real time's pace from `start_ns`, plus the jumps made so far; it never goes back."""

    def __init__(self, start_ns: int) -> None:
        self._lock = threading.Lock()
        self._origin = start_ns - time.monotonic_ns()  # real time's pace, not the wall clock's steps
        self._skipped = 0

    def now_ns(self) -> int:
        return self._origin + time.monotonic_ns() + self._skipped

    def advance_to(self, when_ns: int) -> int:
        """Jump to `when_ns` if it is ahead; return by how much the clock moved (ns)."""
        with self._lock:
            delta = when_ns - self.now_ns()
            if delta <= 0:
                return 0
            self._skipped += delta
            return delta


def mock_activity(activity: Activity[Any, Any]) -> Callable[[Callable[..., Any]], Activity[Any, Any]]:
    """Decorator: an activity with `activity`'s name and options that runs the decorated function
    instead. Give it to an environment in place of the real one::

        @durable.testing.mock_activity(charge)
        def fake_charge(amount: int) -> str:
            return "ok"

        Environment(workflows=[order], activities=[fake_charge, ship])

    The function must take the arguments the activity takes (checked here: `InvalidArgument`)."""
    if not isinstance(activity, Activity):
        raise InvalidArgument(f"mock_activity needs the activity it replaces (an @durable.activity), not {activity!r}")

    def wrap(fn: Callable[..., Any]) -> Activity[Any, Any]:
        return _mocked(activity, fn)

    return wrap


def _mocked(original: Activity[Any, Any], fn: Any) -> Activity[Any, Any]:
    """`original`'s name and options around `fn`, if `fn` takes the arguments `original` takes."""
    if isinstance(fn, Activity):
        fn = fn.fn
    if not callable(fn) or isinstance(fn, type):
        raise InvalidArgument(f"the mock of activity {original.name!r} must be a function, not {fn!r}")
    (least, most), (mock_least, mock_most) = arity(original.fn), arity(fn)
    if mock_least > least or (mock_most is not None and (most is None or mock_most < most)):
        raise InvalidArgument(
            f"the mock of activity {original.name!r} takes ({signature_text(fn)}), but the activity takes "
            f"({signature_text(original.fn)}): a mock must accept the arguments the activity takes"
        )
    # the original's plan: the mock gets the typed arguments the activity would (`_convert`)
    return Activity(fn, original.name, original.options, plan=original.plan)


def _with_mocks(activities: Iterable[Activity[Any, Any]],
                mocks: Mapping[str | Activity[Any, Any], Callable[..., Any]] | None) -> list[Activity[Any, Any]]:
    """`activities`, each named in `mocks` replaced by its mock."""
    acts = list(activities)
    for act in acts:
        if not isinstance(act, Activity):
            raise InvalidArgument(f"{act!r} is not an activity (decorate it with @durable.activity)")
    if not mocks:
        return acts
    by_name = {act.name: i for i, act in enumerate(acts)}
    for key, fn in mocks.items():
        name = key.name if isinstance(key, Activity) else key
        if not isinstance(name, str) or name not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise InvalidArgument(
                f"mock_activities names {name!r}, which is not among the activities given ({known}): "
                "give the activity too, or fix the name"
            )
        acts[by_name[name]] = _mocked(acts[by_name[name]], fn)
    return acts


class _EnvClient(Client):
    """The environment's client: its handles let time skip while `result()` waits."""

    _harness: _Harness

    def start(self, workflow: Any, *args: Any, **options: Any) -> WorkflowHandle[Any]:  # type: ignore[override]
        handle = super().start(workflow, *args, **options)
        own: _EnvHandle[Any] = _EnvHandle(self, handle.id, run_id=handle.run_id,
                                          workflow=None if isinstance(workflow, str) else workflow)
        own.warning = handle.warning
        return own

    def get_handle(self, workflow_id: str, run_id: str | None = None, *,
                   workflow: Any = None) -> WorkflowHandle[Any]:
        handle = super().get_handle(workflow_id, run_id)
        return _EnvHandle(self, handle.id, run_id=handle.run_id, workflow=workflow)


class _EnvHandle(WorkflowHandle[R]):
    """A handle of the environment's client: waiting for the result lets time skip."""

    _client: _EnvClient

    def result(self, timeout: float | None = None) -> R:
        return self._client._harness.wait_result(self, timeout)


class _Harness:
    """The worker, its thread and trio loop, the store and its clock, and time skipping: what
    both forms of environment share (their waiting calls are this one's, blocking)."""

    def __init__(self, *, workflows: Iterable[Any], activities: Iterable[Activity[Any, Any]],
                 mock_activities: Mapping[str | Activity[Any, Any], Callable[..., Any]] | None,
                 time_skipping: bool, queue: str, start_time: _dt.datetime | None,
                 codec: PayloadCodec | None, data: str | os.PathLike[str] | None) -> None:
        acts = _with_mocks(activities, mock_activities)
        self.time_skipping = bool(time_skipping)
        self.queue = queue
        self.codec = codec
        if start_time is None:
            start_ns = time.time_ns()
        elif isinstance(start_time, _dt.datetime):
            aware = start_time if start_time.tzinfo is not None else start_time.replace(tzinfo=_dt.timezone.utc)
            start_ns = int(aware.timestamp() * 1e6) * 1000
        else:
            raise InvalidArgument(f"start_time must be a datetime (a naive one is UTC), not {start_time!r}")
        self.clock = _SkippingClock(start_ns)
        self._tmp = tempfile.mkdtemp(prefix="durable-test-", dir=_memory_dir()) if data is None else None
        path = os.path.join(self._tmp, "store") if self._tmp is not None else os.fspath(data)  # type: ignore[arg-type]
        try:
            if os.path.exists(os.path.join(path, "data.mdb")):
                raise InvalidArgument(f"a test environment needs a fresh store, and {path} holds one already")
            self.store = Store.open(path, clock=self.clock)
            if self.store.clock is not self.clock:
                raise InvalidArgument(f"the store at {path} is already open in this process: give a fresh directory")
            self.worker = Worker(path, workflows=workflows, activities=acts, queue=queue, codec=codec)
            self.client = _EnvClient(path, codec=codec)
        except BaseException:
            opened = getattr(self, "store", None)
            if opened is not None and opened.clock is self.clock:
                opened.close()
            self._remove_tmp()
            raise
        self.client._harness = self
        self._waiting = 0  # callers waiting for a result: time may skip while there are some
        self._lock = threading.Lock()
        self._token: trio.lowlevel.TrioToken | None = None
        self._kicked: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []
        self._closed = False

    # --- starting and stopping ---------------------------------------------------------------

    def open(self) -> None:
        """Start the worker's thread; return once the worker serves the queue."""
        ready = threading.Event()

        def target() -> None:
            try:
                trio.run(self._main, ready)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                self._errors.append(exc)
            finally:
                ready.set()

        self._thread = threading.Thread(target=target, name="durable-test-worker", daemon=True)
        self._thread.start()
        ready.wait()
        if self._errors:
            self.close()
            raise self._errors[0]

    async def _main(self, ready: threading.Event) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._kicked = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._skip_loop)
            await nursery.start(self._run_worker)
            ready.set()

    async def _run_worker(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.worker.run(task_status=task_status)
        finally:
            assert self._nursery is not None
            self._nursery.cancel_scope.cancel()  # the skipper ends with the worker

    def close(self) -> None:
        """Stop the worker (gracefully), close the store and remove the temporary directory.
        Raises what made the worker's thread fail, if something did."""
        if self._closed:
            return
        self._closed = True
        self.worker.shutdown()
        if self._thread is not None:
            self._thread.join()
        self.store.close()
        self._remove_tmp()
        if self._errors:
            raise self._errors[0]

    def _remove_tmp(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _check_running(self) -> None:
        if self._closed or self._thread is None or not self._thread.is_alive():
            if self._errors:
                raise DurableError(f"the test environment's worker failed: {self._errors[0]!r}") from self._errors[0]
            raise DurableError("the test environment is not running (use it inside its `with` block)")

    # --- time --------------------------------------------------------------------------------

    def now(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.clock.now_ns() / _NS, tz=_dt.timezone.utc)

    def _try_jump(self, limit: int | None = None) -> str:
        """If nothing can run now (`_ops.idle_until`), move the clock to the next due time, or to
        `limit` if that comes first: `JUMPED`; `BUSY` if something can run; `AT_REST` if nothing
        is due until `limit` and the clock is there (or, without one, nothing is due at all).

        One transaction of its own, under the store's write lock (not group-committed with
        others): the look, the jump, and the worker's presence past the new time (clients judge
        from the clock whether a worker serves a queue) are one step, which no other write of
        this process comes between; each write after it takes its time from the moved clock.
        The worker is woken then: its clock fires what fell due, its poller claims what came due.
        Blocks for one commit: call it outside the worker's trio thread."""
        w = self.worker
        if not self.store.read(lambda t: _ops.idle_until(t, self.queue))[0]:
            return BUSY  # the usual answer while work runs: no need to take the write lock for it

        def op(t: Txn) -> str:
            idle, nxt = _ops.idle_until(t, self.queue)
            if not idle:
                return BUSY
            target = nxt if limit is None or (nxt is not None and nxt < limit) else limit
            if target is None or target <= self.clock.now_ns():
                return AT_REST
            until = target + max(w.lease_ns, int(3 * _NS * w._presence_interval()))
            _ops.record_presence(t, w.queue, w.identity, until, w._presence)
            self.clock.advance_to(target)
            return JUMPED

        [status] = self.store.write_batch([op])
        if isinstance(status, BaseException):
            raise status
        if status == JUMPED and self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(w._notify_local)
        return str(status)

    async def _skip_loop(self) -> None:
        """While callers wait for a result: jump to the next due time whenever nothing can run."""
        while True:
            if not self.time_skipping or self._waiting == 0:
                assert self._kicked is not None
                await self._kicked.wait()
                self._kicked = trio.Event()
                continue
            if await trio.to_thread.run_sync(self._try_jump) != JUMPED:
                await trio.sleep(_POLL_SECONDS)

    def _kick(self) -> None:
        assert self._kicked is not None
        self._kicked.set()

    @contextlib.contextmanager
    def skipping(self) -> Iterator[None]:
        """Let time skip for the duration of the block (a caller waits for a result)."""
        with self._lock:
            self._waiting += 1
        if self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._kick)
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Move time forward by `seconds`, through each due time in order, each run to rest."""
        amount = check_seconds(seconds, "seconds", allow_none=False)
        assert amount is not None
        self._check_running()
        target = self.clock.now_ns() + int(amount * _NS)
        while stop is None or not stop.is_set():
            status = self._try_jump(target)
            if status == AT_REST:
                return
            if status == BUSY:
                self._check_running()
                time.sleep(_POLL_SECONDS)

    # --- results -----------------------------------------------------------------------------

    def wait_result(self, handle: WorkflowHandle[R], timeout: float | None = None,
                    stop: threading.Event | None = None) -> R:
        """`handle.result(timeout)`, letting time skip meanwhile; given up when `stop` is set."""
        limit = check_seconds(timeout, "timeout")
        deadline = None if limit is None else time.monotonic() + limit
        self._check_running()
        with self.skipping():
            while True:
                left = _RESULT_SLICE_SECONDS if deadline is None else min(deadline - time.monotonic(), _RESULT_SLICE_SECONDS)
                try:
                    return WorkflowHandle.result(handle, max(left, 0.0))
                except WaitTimeout:
                    self._check_task(handle)
                    if deadline is not None and time.monotonic() >= deadline:
                        raise WaitTimeout(f"workflow {handle.id!r} is still running after {limit:g} s") from None
                    if stop is not None and stop.is_set():
                        raise
                    self._check_running()

    @staticmethod
    def _check_task(handle: WorkflowHandle[Any]) -> None:
        """Raise `WorkflowTaskFailed` if the workflow's task fails: it would only fail again."""
        desc = handle.describe()
        if desc.status == "running" and desc.task_error is not None:
            raise WorkflowTaskFailed(
                f"workflow {handle.id!r} cannot go on: its workflow task failed ({desc.task_failures} "
                f"time{'s' if desc.task_failures != 1 else ''}): {desc.task_error}",
                workflow_id=handle.id, task_error=desc.task_error)

    def replay(self, workflow: Any, history: WorkflowHandle[Any] | bytes | list[dict[str, Any]] | str | os.PathLike[str]) -> int:
        if isinstance(history, WorkflowHandle):
            history = history.export_history()
        elif isinstance(history, (str, os.PathLike)):
            history = Path(history).read_bytes()
        return _replay(workflow, history, codec=self.codec)


#: What `replay` takes: a handle (its history is exported), exported bytes, decoded events, or
#: the path of a file holding exported bytes.
History = WorkflowHandle[Any] | bytes | list[dict[str, Any]] | str | os.PathLike[str]


class _Common:
    """What both forms of environment offer alike (their waiting calls differ)."""

    _harness: _Harness

    def __init__(
        self,
        *,
        workflows: Iterable[Any] = (),
        activities: Iterable[Activity[Any, Any]] = (),
        mock_activities: Mapping[str | Activity[Any, Any], Callable[..., Any]] | None = None,
        time_skipping: bool = True,
        queue: str = DEFAULT_QUEUE,
        start_time: _dt.datetime | None = None,
        codec: PayloadCodec | None = None,
        data: str | os.PathLike[str] | None = None,
    ) -> None:
        self._options: dict[str, Any] = dict(
            workflows=list(workflows), activities=list(activities), mock_activities=mock_activities,
            time_skipping=time_skipping, queue=queue, start_time=start_time, codec=codec, data=data)
        # a mistake is refused here, before anything starts
        Registry(self._options["workflows"], _with_mocks(self._options["activities"], mock_activities))
        self._open: _Harness | None = None

    def _running(self) -> _Harness:
        if self._open is None:
            raise DurableError(f"the test environment is not running: use it as `{self._form}`")
        return self._open

    _form = "with SyncEnvironment(...) as env"

    @property
    def client(self) -> Client:
        """A `durable.Client` on the environment's store; `result()` on its handles lets time skip."""
        return self._running().client

    @property
    def worker(self) -> Worker:
        """The environment's worker (its `stats` count what it ran)."""
        return self._running().worker

    @property
    def data_dir(self) -> str:
        """The temporary store's directory."""
        return self._running().store.path

    def now(self) -> _dt.datetime:
        """The environment's time (UTC): where workflows' `durable.now()` and history times come from."""
        return self._running().now()

    @overload
    def start(self, workflow: str, *args: Any, id: str | None = None, **options: Any) -> WorkflowHandle[Any]: ...
    @overload
    def start(self, workflow: Callable[[*Ts], Awaitable[R]], *args: *Ts, id: str | None = None,
              **options: Any) -> WorkflowHandle[R]: ...
    @overload
    def start(self, workflow: Callable[[], WorkflowInstance[*Ts, R]], *args: *Ts, id: str | None = None,
              **options: Any) -> WorkflowHandle[R]: ...

    def start(self, workflow: Any, *args: object, id: str | None = None, **options: Any) -> WorkflowHandle[Any]:
        """Start `workflow` on the environment's queue (`env.client.start`, which takes the same
        options: ``start_delay=``, ...)."""
        options.setdefault("queue", self._running().queue)
        return self._running().client.start(workflow, *args, id=id, **options)

    def replay(self, workflow: Any, history: History) -> int:
        """Replay a history through `workflow`'s code (`durable.replay`, with the environment's
        codec); return the events replayed. `history` is a handle (its history), what
        `export_history()` gave, its decoded events, or a file holding those bytes. Raises
        `durable.NondeterminismError` naming the event where the code departs from it."""
        return self._running().replay(workflow, history)


class SyncEnvironment(_Common):
    """A test environment for plain (synchronous) test functions: ``with SyncEnvironment(...)
    as env:`` runs a worker in process on a temporary store whose clock skips to the next timer
    whenever nothing else can run while a result is awaited (see `durable.testing`).

    `workflows` and `activities` are the worker's; `mock_activities` maps activity names (or the
    activities) to functions run in their place, with the same arguments; `time_skipping=False`
    lets time pass only with real time and `sleep`; `start_time` sets the clock's start (default:
    now); `queue` is the worker's queue, and `start`'s default; `codec` the payload codec of the
    worker and the client; `data` an empty directory for the store (default: a temporary one,
    removed at the end)."""

    def __enter__(self) -> SyncEnvironment:
        harness = _Harness(**self._options)
        harness.open()
        self._open = harness
        return self

    def __exit__(self, *exc: object) -> None:
        harness, self._open = self._open, None
        if harness is not None:
            harness.close()

    def result(self, handle: WorkflowHandle[R], timeout: float | None = None) -> R:
        """Wait for the workflow's result (as `handle.result`), letting time skip meanwhile."""
        return self._running().wait_result(handle, timeout)

    @overload
    def execute(self, workflow: str, *args: Any, id: str | None = None, timeout: float | None = None,
                **options: Any) -> Any: ...
    @overload
    def execute(self, workflow: Callable[[*Ts], Awaitable[R]], *args: *Ts, id: str | None = None,
                timeout: float | None = None, **options: Any) -> R: ...
    @overload
    def execute(self, workflow: Callable[[], WorkflowInstance[*Ts, R]], *args: *Ts, id: str | None = None,
                timeout: float | None = None, **options: Any) -> R: ...

    def execute(self, workflow: Any, *args: object, id: str | None = None, timeout: float | None = None,
                **options: Any) -> Any:
        """Start `workflow` and return its result (time skips while it runs)."""
        return self.result(self.start(workflow, *args, id=id, **options), timeout)

    def sleep(self, seconds: float) -> None:
        """Move the environment's time forward by `seconds`: each timer, backoff and deadline on
        the way fires in order, and what it wakes runs to rest before the next jump. Returns at
        rest at the target time. Time flows with real time meanwhile while something runs."""
        self._running().sleep(seconds)


class Environment(_Common):
    """A test environment for trio tests: ``async with Environment(...) as env:``; the same as
    `SyncEnvironment` (see there for the options), with the waiting calls async (`result`,
    `execute`, `sleep`: cancellable, they do not block the test's trio loop)."""

    _form = "async with Environment(...) as env"

    async def __aenter__(self) -> Environment:
        harness = _Harness(**self._options)
        await trio.to_thread.run_sync(harness.open)
        self._open = harness
        return self

    async def __aexit__(self, *exc: object) -> None:
        harness, self._open = self._open, None
        if harness is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(harness.close)

    def __enter__(self) -> None:
        raise DurableError("durable.testing.Environment is used with `async with`; in a plain "
                           "(synchronous) test, use durable.testing.SyncEnvironment")

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ refuses
        return None

    async def _in_thread(self, fn: Callable[[threading.Event], R]) -> R:
        """Run a blocking call of the harness in a thread; cancelled, it is told to give up."""
        stop = threading.Event()
        try:
            return await trio.to_thread.run_sync(fn, stop, abandon_on_cancel=True)
        finally:
            stop.set()

    async def result(self, handle: WorkflowHandle[R], timeout: float | None = None) -> R:
        """Wait for the workflow's result (as `handle.result`), letting time skip meanwhile."""
        harness = self._running()
        return await self._in_thread(functools.partial(_wait_result, harness, handle, timeout))

    @overload
    async def execute(self, workflow: str, *args: Any, id: str | None = None, timeout: float | None = None,
                      **options: Any) -> Any: ...
    @overload
    async def execute(self, workflow: Callable[[*Ts], Awaitable[R]], *args: *Ts, id: str | None = None,
                      timeout: float | None = None, **options: Any) -> R: ...
    @overload
    async def execute(self, workflow: Callable[[], WorkflowInstance[*Ts, R]], *args: *Ts, id: str | None = None,
                      timeout: float | None = None, **options: Any) -> R: ...

    async def execute(self, workflow: Any, *args: object, id: str | None = None, timeout: float | None = None,
                      **options: Any) -> Any:
        """Start `workflow` and return its result (time skips while it runs)."""
        return await self.result(self.start(workflow, *args, id=id, **options), timeout)

    async def sleep(self, seconds: float) -> None:
        """Move the environment's time forward by `seconds` (see `SyncEnvironment.sleep`)."""
        harness = self._running()
        check_seconds(seconds, "seconds", allow_none=False)
        await self._in_thread(functools.partial(_sleep, harness, seconds))


def _wait_result(harness: _Harness, handle: WorkflowHandle[R], timeout: float | None, stop: threading.Event) -> R:
    return harness.wait_result(handle, timeout, stop)


def _sleep(harness: _Harness, seconds: float, stop: threading.Event) -> None:
    harness.sleep(seconds, stop)
