"""Every runtime a test made is evicted after it, as the worker evicts its cache: an instance
left to the garbage collector would run its workflow's `finally` code at a random later time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .sim import close_all


@pytest.fixture(autouse=True)
def _evict_runtimes() -> Iterator[None]:
    yield
    close_all()
