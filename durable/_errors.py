"""The error tree of `durable`, drawn in one place.

Every error a user can meet derives from `DurableError`. Messages name the record and, where
there is one, the fix. Control flow that user code must never swallow (cancellation inside a
workflow) is a `BaseException` and lives in the runtime, not here.
"""

from __future__ import annotations

from typing import Any


class DurableError(Exception):
    """Root of every error raised by `durable`."""


class InvalidArgument(DurableError, ValueError):
    """An argument given to the API was invalid: the message names it and the limit."""


class PayloadError(InvalidArgument):
    """A value could not be stored as a payload (not plain data, or larger than the payload limit),
    or does not fit the type its annotation asks for (the data converter: the message names the
    parameter and the path)."""


# --- the store ---------------------------------------------------------------------------


class StoreError(DurableError):
    """The data directory cannot be used as a store."""


class NotAStore(StoreError):
    """The path exists but is not a `durable` store, or no store exists there."""


class StoreFormatError(StoreError):
    """The store was written by a newer (or unknown) on-disk format version."""


class StorePermissionError(StoreError):
    """The data directory is writable by other users, or cannot be accessed."""


class StoreFullError(StoreError):
    """The disk under the store is full; nothing of the failed change was written."""


class DecodeError(StoreError):
    """Bytes read from the store are not a valid record (corrupt or hostile data)."""


class HistoryLimitError(InvalidArgument):
    """A workflow's history would grow past the configured limit."""


# --- workflows ---------------------------------------------------------------------------


class WorkflowNotFound(DurableError):
    """No workflow with this id exists in the store."""


class WorkflowAlreadyExists(DurableError):
    """A workflow with this id already exists."""


class ScheduleNotFound(DurableError):
    """No schedule with this id exists in the store."""


class ScheduleAlreadyExists(DurableError):
    """A schedule with this id already exists."""


class WorkflowClosed(DurableError):
    """The workflow has already ended, so it cannot be signalled or cancelled."""


class NotRegistered(DurableError):
    """A workflow, activity, signal or query name is not known to the workers of a queue."""


class NondeterminismError(DurableError):
    """Replaying a workflow's history through its code produced different commands."""


class WaitTimeout(DurableError, TimeoutError):
    """Waiting for a result or an answer took longer than the timeout given."""


class QueryFailed(DurableError):
    """A query handler raised, or no worker could answer it."""


class UpdateRejected(DurableError):
    """An update's validator refused it: nothing was recorded, its handler did not run."""


class UpdateFailed(DurableError):
    """An update's handler raised a failure, or its workflow closed before the update finished."""


class TooSlowError(DurableError, TimeoutError):
    """Raised by `fail_after` and `wait_condition(timeout=...)` when the durable deadline passes."""


# --- failures carried through history ------------------------------------------------------


class ApplicationError(DurableError):
    """An error raised by user code (an activity or a workflow), carried through history.

    Raise it from an activity with ``non_retryable=True`` to stop retries at once. Errors that
    come back from history are rebuilt as `ApplicationError` with the original type name in
    `type`, because the store never names code to import.
    """

    def __init__(
        self,
        message: str,
        *,
        type: str | None = None,
        non_retryable: bool = False,
        details: Any = None,
        stack: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type = type or "ApplicationError"
        self.non_retryable = non_retryable
        self.details = details
        self.stack = stack

    def __str__(self) -> str:
        if self.type in ("ApplicationError", ""):
            return self.message
        return f"{self.type}: {self.message}"


class ActivityError(DurableError):
    """An activity ended without a result: its last failure is the `__cause__`.

    `kind` is "failed", "timed_out" or "cancelled"; `attempts` counts the attempts that ran.
    """

    def __init__(self, message: str, *, activity: str, seq: int, kind: str, attempts: int) -> None:
        super().__init__(message)
        self.activity = activity
        self.seq = seq
        self.kind = kind
        self.attempts = attempts


class ChildWorkflowError(DurableError):
    """A child workflow did not complete, or could not start: the child's error is the `__cause__`.

    `kind` is "failed", "cancelled", "terminated" (or another way the child closed), or
    "start_failed" (its id was taken, its type unknown: the cause says which).
    """

    def __init__(self, message: str, *, workflow_id: str, workflow_type: str, seq: int, kind: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.workflow_type = workflow_type
        self.seq = seq
        self.kind = kind


class ExternalWorkflowError(DurableError):
    """A signal or cancel request sent from a workflow to another could not be delivered (no
    such workflow, it has closed, or it has no such signal): the reason is the `__cause__`."""


class CompensationFailed(DurableError):
    """A saga's compensation did not complete: it raised (the error is the `__cause__`), or the
    saga's `compensation_timeout` passed before it ended (the cause is a `TooSlowError`).

    A saga whose compensations fail raises an `ExceptionGroup` holding the original error and one
    `CompensationFailed` per compensation that did not complete, so ``except*
    durable.CompensationFailed`` finds exactly the undo work that still needs a human.
    `compensation` names the activity or function.
    """

    def __init__(self, message: str, *, compensation: str) -> None:
        super().__init__(message)
        self.compensation = compensation


class WorkflowFailed(DurableError):
    """The workflow ended with an error; the error tree is the `__cause__`."""

    def __init__(self, message: str, *, workflow_id: str, status: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.status = status
