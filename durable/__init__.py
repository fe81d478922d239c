"""Durable workflows for Python: Temporal's semantics on an embedded LMDB store.

Decorate workflows and activities, run ``durable worker``, and start, signal, query and cancel
workflows with `Client` (`AsyncClient` from asyncio or trio) or the ``durable`` command. Everything a user needs is importable from
here; the implementation lives in private modules.
"""

from ._activity import ActivityCancelled, ActivityInfo, activity_info, heartbeat
from ._async_client import AsyncClient, AsyncScheduleHandle, AsyncUpdateHandle, AsyncWorkflowHandle
from ._check import CheckResult, check_histories
from ._children import ChildWorkflowHandle, ExternalWorkflowHandle, execute_child, get_external_handle, start_child
from ._client import Client, PendingActivity, WorkerDescription, WorkflowDescription, WorkflowHandle
from ._codec import PayloadCodec
from ._convert import Convert
from ._schedule_client import ScheduleAction, ScheduleDescription, ScheduleHandle
from ._continue import continue_as_new
from ._update_client import UpdateHandle
from ._defs import Activity, ActivityOptions, UpdateMethod, activity, query, signal, update, workflow
from ._errors import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    CompensationFailed,
    DecodeError,
    DurableError,
    ExternalWorkflowError,
    HistoryLimitError,
    InvalidArgument,
    NondeterminismError,
    NotAStore,
    NotRegistered,
    PayloadError,
    QueryFailed,
    UpdateFailed,
    UpdateRejected,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    StoreError,
    StoreFormatError,
    StoreFullError,
    StorePermissionError,
    TooSlowError,
    WaitTimeout,
    WorkflowAlreadyExists,
    WorkflowClosed,
    WorkflowFailed,
    WorkflowNotFound,
)
from ._logging import logger
from ._replay import replay
from ._retry import RetryPolicy
from ._runtime import (
    CancelScope,
    Cancelled,
    Event,
    Nursery,
    WorkflowInfo,
    deprecate_patch,
    fail_after,
    info,
    move_on_after,
    now,
    open_nursery,
    patched,
    random,
    sleep,
    uuid4,
    wait_condition,
)
from ._saga import Saga, saga

# The worker lives in its own package (worker/ in the source tree); it imports the layers
# above, so it is imported last.
from .worker import Metrics, Worker  # noqa: E402

# A literal list, in sorted order (tests/test_exports.py checks both), so that type checkers
# see the re-exports.
__all__ = [
    "Activity",
    "ActivityCancelled",
    "ActivityError",
    "ActivityInfo",
    "ActivityOptions",
    "ApplicationError",
    "AsyncClient",
    "AsyncScheduleHandle",
    "AsyncUpdateHandle",
    "AsyncWorkflowHandle",
    "CancelScope",
    "Cancelled",
    "CheckResult",
    "ChildWorkflowError",
    "ChildWorkflowHandle",
    "Client",
    "CompensationFailed",
    "Convert",
    "DecodeError",
    "DurableError",
    "Event",
    "ExternalWorkflowError",
    "ExternalWorkflowHandle",
    "HistoryLimitError",
    "InvalidArgument",
    "Metrics",
    "NondeterminismError",
    "NotAStore",
    "NotRegistered",
    "Nursery",
    "PayloadCodec",
    "PayloadError",
    "PendingActivity",
    "QueryFailed",
    "RetryPolicy",
    "Saga",
    "ScheduleAction",
    "ScheduleAlreadyExists",
    "ScheduleDescription",
    "ScheduleHandle",
    "ScheduleNotFound",
    "StoreError",
    "StoreFormatError",
    "StoreFullError",
    "StorePermissionError",
    "TooSlowError",
    "UpdateFailed",
    "UpdateHandle",
    "UpdateMethod",
    "UpdateRejected",
    "WaitTimeout",
    "Worker",
    "WorkerDescription",
    "WorkflowAlreadyExists",
    "WorkflowClosed",
    "WorkflowDescription",
    "WorkflowFailed",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowNotFound",
    "activity",
    "activity_info",
    "check_histories",
    "continue_as_new",
    "deprecate_patch",
    "execute_child",
    "fail_after",
    "get_external_handle",
    "heartbeat",
    "info",
    "logger",
    "move_on_after",
    "now",
    "open_nursery",
    "patched",
    "query",
    "random",
    "replay",
    "saga",
    "signal",
    "sleep",
    "start_child",
    "update",
    "uuid4",
    "wait_condition",
    "workflow",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("durable.") and callable(_obj):
        _obj.__module__ = "durable"
del _name, _obj
