"""Activities that run on asyncio: one asyncio event loop in a thread the worker owns.

An ``async def`` activity runs on the worker's trio loop unless it is declared with
``@durable.activity(loop="asyncio")`` (or the worker's ``activity_loop="asyncio"`` is its
default). Such an attempt runs as an asyncio task on the loop here, so asyncio libraries (aiohttp,
asyncpg, ``asyncio.sleep``...) work in it; its trio side (`_activities.Activities._attempt`) waits
for the task in the attempt's cancel scope, as for any attempt.

- Context: the task runs in a copy of the trio task's context with the attempt's
  `ActivityContext` bound, so `durable.heartbeat`, `durable.activity_info` and `durable.logger`
  work in it (and in the tasks it starts, which copy its context).
- Cancellation: when the attempt's scope is cancelled (the workflow asked, the lease was lost, the
  start_to_close deadline passed, a heartbeat timeout made the lease lost, the worker shuts down),
  the asyncio task is cancelled and waited for: it sees ``CancelledError`` at its await, and the
  attempt's report is made once it has stopped, as for a trio activity.
- The loop's thread is started when the first such attempt runs and stopped when the worker stops
  (`stop`: the tasks still there are cancelled and waited for, then the loop is closed).

trio-asyncio (running asyncio on the trio loop) was not chosen: a dependency more, and asyncio code
that blocks would block the worker's own loop; a loop of its own keeps the worker's heartbeats on
time whatever the activity does between its awaits.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Any

import sniffio
import trio

from durable import _activity


class AsyncioLoop:
    """One asyncio event loop in a daemon thread, started on first use (`run`)."""

    def __init__(self, name: str = "durable-asyncio") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def started(self) -> bool:
        """Whether the loop was started (and so must be stopped)."""
        return self._loop is not None

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._stopped:
                raise RuntimeError("the worker's asyncio loop was stopped")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                loop.call_soon(ready.set)
                self._thread = threading.Thread(target=self._serve, args=(loop,), name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    async def run(self, fn: Callable[..., Any], args: list[Any], ctx: _activity.ActivityContext) -> Any:
        """Run ``fn(*args)`` (a coroutine function) as an asyncio task with `ctx` bound; return
        its result or raise its error. Cancelled (trio), it cancels the task, waits for it to
        stop, and raises `trio.Cancelled`."""
        loop = self._start()
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        context = contextvars.copy_context()
        context.run(_bind, ctx)
        box: list[asyncio.Task[Any]] = []

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:  # pragma: no cover - the attempt's task waits for it
                pass

        def start() -> None:
            task = loop.create_task(_call(fn, args), context=context)
            task.add_done_callback(wake)
            box.append(task)

        loop.call_soon_threadsafe(start)
        try:
            await done.wait()
        except trio.Cancelled:
            # call_soon_threadsafe keeps the order: the task exists when this runs
            loop.call_soon_threadsafe(lambda: box[0].cancel())
            with trio.CancelScope(shield=True):
                await done.wait()
            raise
        task = box[0]
        if task.cancelled():  # not by us: by its own code, or another task of the activity's
            raise ActivityTaskCancelled(
                f"the asyncio task of activity {ctx.info.activity!r} was cancelled, but not by the worker"
            )
        return task.result()

    def stop(self) -> None:
        """Cancel the tasks still on the loop, wait for them, stop the loop and its thread."""
        with self._lock:
            self._stopped = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(_wind_down(), loop)
            try:
                future.result(timeout=10)
            except Exception:  # noqa: BLE001 - stopped below all the same
                pass
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        if not thread.is_alive():
            loop.close()


class ActivityTaskCancelled(Exception):
    """The asyncio task of an activity ended cancelled without the worker asking: an error of
    the attempt (retried as any other)."""


def _bind(ctx: _activity.ActivityContext) -> None:
    """In the task's context: the attempt's context bound; no async library named (the trio
    task's own name must not follow the code to asyncio: sniffio-based libraries read it)."""
    _activity.set_current(ctx)
    sniffio.current_async_library_cvar.set(None)


async def _call(fn: Callable[..., Any], args: list[Any]) -> Any:
    return await fn(*args)


async def _wind_down() -> None:
    """On the loop: cancel every other task (those the activities left behind) and wait for
    them; close async generators and the default executor (``asyncio.to_thread``'s threads)."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    loop = asyncio.get_running_loop()
    await loop.shutdown_asyncgens()
    try:
        await asyncio.wait_for(loop.shutdown_default_executor(), _EXECUTOR_WAIT)
    except TimeoutError:  # a thread still runs: the worker stops without waiting longer for it
        pass


_EXECUTOR_WAIT = 5.0  # seconds the worker waits, when it stops, for threads its activities started


#: The errors a library written for asyncio raises when its code runs on trio: the hint that
#: says how to run it on asyncio is added to them (`hint_asyncio`).
_ASYNCIO_ON_TRIO = ("no running event loop", "unrecognized yield message")


def hint_asyncio(exc: BaseException, name: str) -> BaseException:
    """`exc`, or, if it is what asyncio code raises when run on trio, a clearer error that says
    how to run activity `name` on asyncio (the original as its cause)."""
    if not isinstance(exc, (RuntimeError, TypeError)) or not any(s in str(exc) for s in _ASYNCIO_ON_TRIO):
        return exc
    err = RuntimeError(
        f"activity {name!r} uses asyncio, but async activities run on trio unless declared otherwise: "
        f"declare it with @durable.activity(loop=\"asyncio\") (or run the worker with "
        f"activity_loop=\"asyncio\") ({type(exc).__name__}: {exc})"
    )
    err.__cause__ = exc
    return err
