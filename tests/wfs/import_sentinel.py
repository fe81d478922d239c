"""Importing this module creates the file named by $DURABLE_TEST_IMPORT_SENTINEL (if set).

The F15 tests name it as a workflow type and an activity in the store: it must never be imported.
"""

from __future__ import annotations

import os

_path = os.environ.get("DURABLE_TEST_IMPORT_SENTINEL")
if _path:
    with open(_path, "w") as _f:
        _f.write(f"imported by pid {os.getpid()}")


def main(*args: object) -> str:
    return "imported and run"
