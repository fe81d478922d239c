"""Workflows for the F15 tests: what they schedule is named by their input, i.e. by store data.

`calls_by_name` schedules an activity under any name it is given. The worker that runs it has no
activity of that name (this module registers none), so nothing may run: not `touch_sentinel`,
which is right here and would create the sentinel file, nor anything a name like ``os.system``
could be resolved to by importing it.
"""

from __future__ import annotations

import durable
from durable._defs import Activity, ActivityOptions

FAST = durable.RetryPolicy(max_attempts=3, initial_interval=0.05, max_interval=0.1)


def touch_sentinel(path: str) -> str:
    """Create `path`. If it ever exists, code named only by the store has run."""
    with open(path, "w") as f:
        f.write("ran")
    return "ran"


@durable.workflow
async def calls_by_name(name: str, arg: str) -> str:
    """Schedule activity `name` with `arg`: the name comes from the workflow's input."""
    act: Activity[[str], str] = Activity(touch_sentinel, name, ActivityOptions(retry=FAST))
    return await act(arg)


@durable.workflow
async def harmless(x: int) -> int:
    """A workflow the worker does have, to show it serves the queue."""
    return x + 1
