"""OpenTelemetry tracing (the optional extra ``durable-workflows[tracing]``: opentelemetry-api).

The client's start puts the current span's context (W3C ``traceparent``) into the workflow's
`WorkflowStarted` event (field ``tp``): data, not a command, so replay never looks at it. A
worker made with ``tracing=True`` makes a span per workflow task and per activity attempt, each
a child of that context (read once per run from the history's first event, then kept), with the
workflow's id, run and type, and the activity's name and attempt as attributes.

Nothing is imported when tracing is off: the client injects only if the program has imported
``opentelemetry.trace`` itself (it cannot have a span otherwise), the worker only if asked.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from . import _ops
from ._errors import DurableError

if TYPE_CHECKING:
    from ._backend import Backend

#: The field of `WorkflowStarted` that holds the starting client's trace context (traceparent).
FIELD = "tp"
#: Runs whose trace context a worker keeps (least recently used dropped first).
_KEEP = 10_000


def current_traceparent() -> str | None:
    """Client side: the W3C traceparent of the current span, or None (no span, or opentelemetry
    not imported by this program)."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


class Tracer:
    """A worker's spans (``Worker(tracing=True)``): one per workflow task and activity attempt,
    children of the trace context the workflow was started in."""

    def __init__(self, store: Backend) -> None:
        try:
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError:
            raise DurableError("tracing needs opentelemetry-api: pip install 'durable-workflows[tracing]'") from None
        self._trace = trace
        self._tracer = trace.get_tracer("durable")
        self._propagator = TraceContextTextMapPropagator()
        self._store = store
        self._parents: OrderedDict[int, Any] = OrderedDict()  # run number -> its start's context (or None)

    def _parent(self, num: int) -> Any:
        if num in self._parents:
            self._parents.move_to_end(num)
            return self._parents[num]
        try:
            first = self._store.read(lambda t: _ops.read_history(t, num, 0, 1))
            tp = first[0].get(FIELD) if first else None
        except Exception:  # noqa: BLE001 - a span without a parent rather than no span
            tp = None
        ctx = self._propagator.extract({"traceparent": tp}) if isinstance(tp, str) else None
        self._parents[num] = ctx
        if len(self._parents) > _KEEP:
            self._parents.popitem(last=False)
        return ctx

    def task_span(self, item: dict[str, Any]) -> Any:
        """Start the span of a workflow task (ended by `end`)."""
        return self._tracer.start_span(
            f"workflow task {item['type']}", context=self._parent(item["num"]),
            attributes={"durable.workflow_id": item["id"], "durable.run_id": f"{item['num']:x}",
                        "durable.workflow_type": item["type"]})

    def attempt_span(self, item: dict[str, Any]) -> Any:
        """Start the span of an activity attempt (ended by `end`)."""
        return self._tracer.start_span(
            f"activity {item['name']}", context=self._parent(item["num"]),
            attributes={"durable.workflow_id": item["wid"], "durable.run_id": f"{item['num']:x}",
                        "durable.workflow_type": item["wtype"], "durable.activity": item["name"],
                        "durable.attempt": item["attempt"]})

    def end(self, span: Any, failed: bool = False) -> None:
        """End a span started here; with `failed`, its status says so (an attempt that raised,
        timed out or was cancelled)."""
        if failed:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end()
