"""Retry policies: bounded attempts, capped exponential backoff, non-retryable error types."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ._errors import InvalidArgument
from ._limits import MAX_ATTEMPTS_CAP, MAX_BACKOFF_SECONDS


@dataclass(frozen=True)
class RetryPolicy:
    """How an activity is retried after a failed or timed-out attempt.

    Attempt ``n`` (counting from 1) that fails is followed, if ``n < max_attempts``, by a delay of
    ``min(initial_interval * backoff ** (n - 1), max_interval)`` seconds. Errors whose type name
    is in ``non_retryable`` (or an `ApplicationError` raised with ``non_retryable=True``) stop at
    once. Every policy is bounded: there is no "retry forever".
    """

    max_attempts: int = 5
    initial_interval: float = 1.0
    backoff: float = 2.0
    max_interval: float = 60.0
    non_retryable: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or not 1 <= self.max_attempts <= MAX_ATTEMPTS_CAP:
            raise InvalidArgument(
                f"RetryPolicy.max_attempts must be an int from 1 to {MAX_ATTEMPTS_CAP}, "
                f"not {self.max_attempts!r}"
            )
        for name in ("initial_interval", "max_interval"):
            value = getattr(self, name)
            if not _finite(value) or not 0 <= value <= MAX_BACKOFF_SECONDS:
                raise InvalidArgument(
                    f"RetryPolicy.{name} must be between 0 and {MAX_BACKOFF_SECONDS} seconds, "
                    f"not {value!r}"
                )
        if not _finite(self.backoff) or not 1.0 <= self.backoff <= 100.0:
            raise InvalidArgument(f"RetryPolicy.backoff must be from 1 to 100, not {self.backoff!r}")
        names = tuple(
            t if isinstance(t, str) else _type_name(t) for t in self.non_retryable
        )
        object.__setattr__(self, "non_retryable", names)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based); never overflows."""
        # clamped so that it converts to a float: past 2**1000 every backoff > 1 has reached the cap
        exponent = min(max(0, attempt - 1), 2**1000)
        if self.initial_interval == 0 or self.max_interval == 0:
            return 0.0
        # log-space comparison avoids float overflow of backoff ** exponent (F10); the logs are
        # subtracted, not the intervals divided: max / a subnormal initial overflows to inf
        if exponent * math.log(self.backoff) >= math.log(self.max_interval) - math.log(self.initial_interval):
            return self.max_interval
        try:
            value = self.initial_interval * self.backoff**exponent
        except OverflowError:  # a tiny initial interval: the power alone passes the float range
            value = math.exp(math.log(self.initial_interval) + exponent * math.log(self.backoff))
        return min(value, self.max_interval)

    def to_record(self) -> dict[str, Any]:
        """Plain-data form stored with a scheduled activity."""
        return {
            "max": self.max_attempts,
            "init": self.initial_interval,
            "back": self.backoff,
            "maxi": self.max_interval,
            "nr": list(self.non_retryable),
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> RetryPolicy:
        """Rebuild a policy from `to_record` output (validated again)."""
        try:
            return cls(
                max_attempts=int(rec["max"]),
                initial_interval=float(rec["init"]),
                backoff=float(rec["back"]),
                max_interval=float(rec["maxi"]),
                non_retryable=tuple(str(x) for x in rec.get("nr", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"malformed retry policy record: {exc}") from None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _type_name(t: Any) -> str:
    if isinstance(t, type):
        mod = t.__module__
        return t.__qualname__ if mod in ("builtins", "__main__") else f"{mod}.{t.__qualname__}"
    raise InvalidArgument(f"RetryPolicy.non_retryable takes exception types or names, not {t!r}")
