"""stepper_b.py's code, and a line with the importing process's id appended to the file named by
$DURABLE_TEST_PIDS: which processes imported the module (`durable check --jobs`)."""

from __future__ import annotations

import os

from tests.wfs.stepper_b import Stepper, step

__all__ = ["Stepper", "step"]

_path = os.environ.get("DURABLE_TEST_PIDS")
if _path:
    with open(_path, "a") as _f:
        _f.write(f"{os.getpid()}\n")
