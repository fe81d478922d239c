"""The worker's two threads besides trio's: the writer, which commits every write the trio tasks
ask for in batches (group commit), and the engine, which runs workflow code (activations) in
batches, so that a stray ``trio.sleep`` in workflow code fails loudly instead of touching the
worker's own scopes. Each starts its next batch as soon as the last one is done, without waiting
for the trio thread to pick up the results.

This module knows nothing of the worker: `_base.WorkerBase` starts the threads and gives them
their batch functions (`WorkerBase._write_batch`, `run_jobs`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

import trio

from ._records import Forward


class BatchThread:
    """A thread that runs the jobs trio tasks queue for it in batches: each batch is every job
    queued while the previous one ran. Results go back to the waiting tasks through the trio
    token, so the thread starts its next batch at once. With `forward_to`, a job whose result is
    `(True, Forward)` goes on to that thread: its task wakes once the op there is done.

    A submitting task waits without a `trio.Event` (rescheduled directly), and cannot be
    cancelled while its job is in a thread: it is woken once the job is done."""

    def __init__(self, name: str, run_batch: Callable[[list[Any]], list[Any]], token: trio.lowlevel.TrioToken,
                 forward_to: BatchThread | None = None) -> None:
        self._run_batch = run_batch
        self._token = token
        self._forward_to = forward_to
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    async def submit(self, job: Any) -> Any:
        """Queue `job`; return what the batch function made of it."""
        return (await self.submit_box(job))[0]

    async def submit_box(self, job: Any) -> list[Any]:
        """Queue `job`; return what the batch functions made of it, of this thread first and then
        of the thread it was forwarded to, if it was."""
        box: list[Any] = []
        self._queue.put((job, box, trio.lowlevel.current_task()))
        # no checkpoint in between: _deliver runs on this thread, so it cannot come first
        await trio.lowlevel.wait_task_rescheduled(_cannot_abort)
        return box

    def _loop(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            batch = [get()]
            try:
                while True:
                    batch.append(get_nowait())
            except Empty:
                pass
            jobs = [entry for entry in batch if entry is not _STOP]
            if jobs:
                results = self._run_batch([job for job, _, _ in jobs])
                kept, kept_results = self._forward(jobs, results) if self._forward_to else (jobs, results)
                if kept:
                    try:
                        self._token.run_sync_soon(_deliver, kept, kept_results)
                    except trio.RunFinishedError:
                        return
            if len(jobs) != len(batch):  # stop() was called: what came before it is done
                return

    def _forward(self, batch: list[tuple[Any, list[Any], Any]],
                 results: list[Any]) -> tuple[list[tuple[Any, list[Any], Any]], list[Any]]:
        """Fast path (``forward``): a job that made an op for the writer goes on to it from here,
        instead of back to its trio task, which would submit the op itself: one hop of the trio
        thread less per step. The task still wakes only once the op's batch is committed (or
        failed), with both results; nothing about what is written changes."""
        assert self._forward_to is not None
        kept: list[tuple[Any, list[Any], Any]] = []
        kept_results: list[Any] = []
        for entry, result in zip(batch, results):
            if result[0] and isinstance(result[1], Forward):
                entry[1].append(result)
                self._forward_to._queue.put((result[1].op, entry[1], entry[2]))
            else:
                kept.append(entry)
                kept_results.append(result)
        return kept, kept_results

    def stop(self) -> None:
        """Run what is queued, then end the thread (stop a thread before the one it forwards to)."""
        self._queue.put(_STOP)
        self._thread.join()


_STOP = object()  # what stop() queues


def _cannot_abort(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


def _deliver(batch: list[tuple[Any, list[Any], Any]], results: list[Any]) -> None:
    reschedule = trio.lowlevel.reschedule
    for (_, box, task), result in zip(batch, results):
        box.append(result)
        reschedule(task)


def run_jobs(jobs: list[Any]) -> list[Any]:
    """Engine thread: run each job in order; keep its result or its error."""
    out: list[tuple[bool, Any]] = []
    for fn, args in jobs:
        try:
            out.append((True, fn(*args)))
        except Exception as exc:  # noqa: BLE001 - handed back to the job's own task
            out.append((False, exc))
    return out
