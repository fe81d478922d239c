"""Named crash points for fault tests: the process kills itself at a chosen point.

Enabled only by the environment variable ``DURABLE_CRASHPOINT=name[:n][:stop]`` (read once, at
import): the process sends itself SIGKILL the ``n``-th time (default: the first) it reaches the
point called ``name``; with ``:stop``, SIGSTOP instead (it freezes there until sent SIGCONT, as a
paused VM or a host cut off would). When the variable is unset, `ENABLED` is False and every call
site is a single false test of a module constant (``if _crashpoint.ENABLED: _crashpoint.hit("...")``).

Points:

- ``activity-after-effect``: in the worker, after an activity's function returned (its side
  effect is done) and before its completion is written;
- ``batch-before-commit``: in the store, after every operation of a group-commit batch ran in the
  write transaction and before the transaction commits;
- ``timer-before-commit``: in ``fire_due``, after a timer fired inside the transaction and before
  that transaction commits;
- ``schedule-before-commit``: in ``fire_due``, after a schedule's slot started its workflow inside
  the transaction and before that transaction commits;
- ``reset-before-commit``: in a reset (``durable reset``), after the old run was closed and the new
  run made inside the transaction and before that transaction commits.
"""

from __future__ import annotations

import os
import signal
import threading

POINTS = ("activity-after-effect", "batch-before-commit", "timer-before-commit", "schedule-before-commit",
          "reset-before-commit")

_SPEC = os.environ.get("DURABLE_CRASHPOINT", "")
_NAME, _, _REST = _SPEC.partition(":")
_N, _, _ACTION = _REST.partition(":")
ENABLED = bool(_NAME)
_TARGET = int(_N) if _N else 1
_STOP = _ACTION == "stop"
_hits = 0

if ENABLED and _NAME not in POINTS:
    raise RuntimeError(f"DURABLE_CRASHPOINT names an unknown crash point {_NAME!r} (one of: {', '.join(POINTS)})")
if ENABLED and _ACTION not in ("", "stop"):
    raise RuntimeError(f"DURABLE_CRASHPOINT's action must be 'stop' or nothing, not {_ACTION!r}")


def hit(name: str) -> None:
    """Die (SIGKILL, no clean-up at all) if `name` is the chosen point and this is its n-th hit."""
    global _hits
    if name != _NAME:
        return
    _hits += 1
    if _hits == _TARGET:
        what = "freezing" if _STOP else "killing"
        os.write(2, f"durable: crash point {name} reached (hit {_hits}): {what} this process\n".encode())
        # to this thread, not the process: sent to the process, another thread may take it and
        # this one run on for a moment (it was seen to send the COMMIT before it stopped)
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP if _STOP else signal.SIGKILL)
