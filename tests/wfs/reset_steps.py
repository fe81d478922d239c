"""Activities of the reset tests (tests/durable/test_reset.py), counting their runs."""

from __future__ import annotations

import threading

import durable

#: how many times each activity ran (the workers run in this process)
RAN: dict[str, int] = {}
_lock = threading.Lock()


def _count(name: str) -> None:
    with _lock:
        RAN[name] = RAN.get(name, 0) + 1


@durable.activity
def charge(x: int) -> int:
    _count("charge")
    return x * 10


@durable.activity
def ship_bad(x: int) -> str:
    _count("ship_bad")
    raise durable.ApplicationError("the carrier is unknown", non_retryable=True)


@durable.activity
def ship(x: int) -> str:
    _count("ship")
    return f"shipped {x}"
