"""The `durable` command line."""

from ._main import main
from . import _schedule  # noqa: F401,E402 - registers `durable schedule ...` on main
from . import _reset  # noqa: F401,E402 - registers `durable reset` on main

__all__ = ["main"]
