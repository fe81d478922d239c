"""The `durable` command line."""

from ._main import main
from . import _schedule  # noqa: F401,E402 - registers `durable schedule ...` on main

__all__ = ["main"]
