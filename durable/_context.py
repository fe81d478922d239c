"""Which workflow instance the current thread is running, if any.

Workflow code calls module-level functions (`durable.sleep`, `durable.now`, an activity). They
find their own workflow through this thread-local, which the runtime sets for exactly the span of
one activation of one instance; so concurrent workflows never see each other (F04), and code that
runs outside an activation gets a clear error instead of touching someone else's state.
"""

from __future__ import annotations

import gc
import threading
from typing import TYPE_CHECKING

from ._errors import DurableError

if TYPE_CHECKING:
    from ._runtime import Runtime

_local = threading.local()


def current_or_none() -> Runtime | None:
    """The runtime whose activation this thread is running, or None."""
    return getattr(_local, "runtime", None)


def current(what: str, hint: str = "") -> Runtime:
    """The runtime of the current activation; a clear error outside workflow code.

    The error reads "{what} can only be used inside workflow code", then `hint` if given.
    """
    rt: Runtime | None = getattr(_local, "runtime", None)
    if rt is None:
        raise DurableError(f"{what} can only be used inside workflow code{hint}")
    return rt


def set_current(rt: Runtime | None) -> Runtime | None:
    """Make `rt` the current runtime of this thread; return the previous one."""
    prev = getattr(_local, "runtime", None)
    _local.runtime = rt
    return prev


def _unbind_during_gc(phase: str, info: dict[str, int]) -> None:
    """Run the garbage collector's finalizers outside any activation.

    A workflow instance dropped without `Runtime.close` has its coroutines closed by the
    collector, which may run inside another instance's activation: their ``finally`` code must
    meet "only inside workflow code", never the instance that happens to be running.
    """
    if phase == "start":
        _local.during_gc = getattr(_local, "runtime", None)
        _local.runtime = None
    else:
        _local.runtime = getattr(_local, "during_gc", None)
        _local.during_gc = None


gc.callbacks.append(_unbind_during_gc)
