"""The `durable` worker process: serves a queue of a store with registered code."""

from ._worker import Worker

__all__ = ["Worker"]
