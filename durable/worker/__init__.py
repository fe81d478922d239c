"""The `durable` worker process: serves a queue of a store with registered code."""

from ._fast import FastPaths
from ._lifecycle import Worker
from ._metrics import Metrics

__all__ = ["FastPaths", "Metrics", "Worker"]
