"""The `durable` worker process: serves a queue of a store with registered code."""

from ._fast import FastPaths
from ._lifecycle import Worker

__all__ = ["FastPaths", "Worker"]
