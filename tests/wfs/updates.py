"""Workflows with updates, for tests/worker/test_updates.py and tests/fault/test_updates_kill.py."""

from __future__ import annotations

import os
import time
from typing import Any

import durable


@durable.activity
def record_effect(path: str, line: str) -> str:
    """Append `line` to the file `path` (an effect outside the store, counted by tests), then
    hold until the file `path` + ".go" exists (so that a test can kill the worker mid-step)."""
    with open(path, "a") as f:
        f.write(line + "\n")
    deadline = time.monotonic() + 60
    while not os.path.exists(path + ".go") and time.monotonic() < deadline:
        time.sleep(0.02)
    return line


@durable.activity
async def double(n: int) -> int:
    return 2 * n


@durable.workflow
class Counter:
    """A counter changed by updates; it ends when told to (signal `finish`)."""

    def __init__(self) -> None:
        self.total = 0
        self.finished = False
        self.signals: list[str] = []
        self.effects = ""
        self.restart = False

    async def run(self, effects: str = "") -> int:
        self.effects = effects
        await durable.wait_condition(lambda: self.finished or self.restart)
        if self.restart:
            durable.continue_as_new(effects)
        return self.total

    @durable.update
    def add(self, n: int) -> int:
        self.total += n
        return self.total

    @add.validator
    def _check_add(self, n: int) -> None:
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"only positive integers can be added, not {n!r}")

    @durable.update
    async def add_doubled(self, n: int) -> int:
        """An async handler that runs an activity."""
        doubled = await double(n)  # read the total after the await: other handlers may run meanwhile
        self.total += doubled
        return self.total

    @durable.update
    async def add_recorded(self, n: int, tag: str) -> int:
        """Records its effect outside the store (once per attempt of the activity)."""
        await record_effect(self.effects, tag)
        self.total += n
        return self.total

    @durable.update
    async def slow_add(self, n: int, seconds: float) -> int:
        await durable.sleep(seconds)
        self.total += n
        return self.total

    @durable.update
    def fail(self, message: str) -> None:
        raise durable.ApplicationError(message, type="Refused")

    @durable.update
    def buggy(self) -> None:
        raise KeyError("a bug in the handler")

    @durable.update(name="seen-signals")
    def seen_signals(self) -> list[str]:
        return list(self.signals)

    @durable.update
    def finish(self) -> int:
        self.finished = True
        return self.total

    @durable.signal
    def note(self, text: str) -> None:
        self.signals.append(text)

    @durable.signal
    def stop(self) -> None:
        self.finished = True

    @durable.signal
    def continue_as_new(self) -> None:
        self.restart = True

    @durable.query
    def value(self) -> int:
        return self.total


ALL: list[Any] = [Counter]
ACTIVITIES: list[Any] = [record_effect, double]


# --- workflows of the conformance tests (Temporal's features repo, update/...) ---------------

#: how many times `TaskFailure.do_update` and `ValidationReplay.do_update` failed their task
#: (module state on purpose: the tests count across retries, in a worker in this process)
task_fails = {"n": 0}


@durable.workflow
class TaskFailure:
    """update/task_failure: a handler's bug fails the task (retried), a failure fails the update."""

    def __init__(self) -> None:
        self.am_done = False

    async def run(self) -> str:
        await durable.wait_condition(lambda: self.am_done)
        return "Hello, World!"

    @durable.update
    async def do_update(self) -> None:
        if task_fails["n"] < 2:
            task_fails["n"] += 1
            raise RuntimeError("I'll fail task")
        raise durable.ApplicationError("I'll fail update")

    @durable.update
    async def throw_or_done(self, do_throw: bool) -> None:
        self.am_done = True

    @throw_or_done.validator
    def _the_validator(self, do_throw: bool) -> None:
        if do_throw:
            raise RuntimeError("This will fail validation, not task")


@durable.workflow
class ValidationReplay:
    """update/validation_replay: once accepted, an update's validator never runs again."""

    def __init__(self) -> None:
        self.am_done = False

    async def run(self) -> str:
        await durable.wait_condition(lambda: self.am_done)
        return "Hello, World!"

    @durable.update
    async def do_update(self) -> None:
        if task_fails["n"] == 0:
            task_fails["n"] += 1
            raise RuntimeError("I'll fail task")  # forces the task to run again, from history
        self.am_done = True

    @do_update.validator
    def _the_validator(self) -> None:
        if task_fails["n"] > 1:
            raise durable.ApplicationError("I would reject if I even ran")


@durable.activity
def self_update(data: str, workflow_id: str) -> None:
    """Send an update to the workflow that runs this activity."""
    durable.Client(data).get_handle(workflow_id).update("update_me", timeout=60)


@durable.workflow
class SelfUpdate:
    """update/self: an activity of the workflow updates its own workflow."""

    def __init__(self) -> None:
        self.am_done = False

    async def run(self, data: str) -> str:
        await self_update(data, durable.info().workflow_id)
        await durable.wait_condition(lambda: self.am_done)
        return "Hello, World!"

    @durable.update
    async def update_me(self) -> None:
        self.am_done = True


CONFORMANCE: list[Any] = [TaskFailure, ValidationReplay, SelfUpdate]
