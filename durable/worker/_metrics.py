"""Prometheus metrics of workers (`durable.Metrics`): what the issue lists, counted where the
worker does the thing, with the maintained client library (``prometheus_client``, the optional
extra ``durable-workflows[metrics]``).

Nothing here is imported or counted unless a worker is given a `Metrics`: the worker's hooks
test one attribute for None (`WorkerBase.metrics`). With metrics on, each measured point adds
one to a plain number (a histogram: to its bucket's and its sum), kept by the worker's
`Recorder` and turned into prometheus_client's metric families when scraped (`_Counts`). The queues' backlog and lag are read from the store when scraped (`_Backlog`),
not counted per event. docs/observability.md lists every metric with its labels.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from durable import _ops
from durable._errors import DurableError
from durable._store import unpack_u64

if TYPE_CHECKING:
    from durable._backend import Backend

#: Buckets of the latency histograms (seconds): from 100 µs (an activity that returns at once,
#: an fsync on a fast disk) to a minute.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)
#: Buckets of the commit batch sizes (ops per group commit).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """Prometheus metrics of the workers given it: ``Worker(..., metrics=durable.Metrics(port=9464))``
    serves them at ``http://127.0.0.1:9464/metrics`` while the worker runs (``durable worker
    --metrics-port 9464``). Needs ``pip install 'durable-workflows[metrics]'`` (prometheus_client).

    `host` is the address to listen on (the loopback by default: metrics say what runs where).
    Port 0 picks a free port (`port` says which once serving). With `registry` (a
    ``prometheus_client.CollectorRegistry``), the metrics go into it and no server is started
    unless `port` is given: for programs that expose their own metrics already.

    Several workers of one process may share one `Metrics`: each counts under its ``queue`` label.
    docs/observability.md lists the metrics.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", *, registry: Any = None) -> None:
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
            raise DurableError(f"the metrics port must be a number from 0 to 65535, not {port!r}")
        if not isinstance(host, str) or not host:
            raise DurableError(f"the metrics host must be an address such as 127.0.0.1, not {host!r}")
        self.host = host
        self._port = port
        self._registry = registry
        self._lock = threading.Lock()
        self._made: _Instruments | None = None
        self._server: Any = None
        self._users = 0

    @property
    def port(self) -> int | None:
        """The port metrics are served on (the one chosen, for port 0, once serving), or None."""
        if self._server is not None:
            return int(self._server.server_port)
        return self._port

    @property
    def registry(self) -> Any:
        """The ``prometheus_client.CollectorRegistry`` holding the metrics (made on first use)."""
        return self._instruments().registry

    def _instruments(self) -> _Instruments:
        with self._lock:
            if self._made is None:
                self._made = _Instruments(self._registry)
            return self._made

    def _serve(self) -> None:
        """Start the server, if a port is given and it is not serving yet (a clear error if the
        port is taken). It stops when the last worker using it stops."""
        made = self._instruments()
        with self._lock:
            if self._port is not None and self._server is None:
                from prometheus_client import start_http_server

                try:
                    self._server, _ = start_http_server(self._port, addr=self.host, registry=made.registry)
                except OSError as exc:
                    raise DurableError(f"cannot serve metrics on {self.host}:{self._port}: {exc.strerror or exc}") from None

    def _attach(self, queue: str, store: Backend, cache_size: Callable[[], int]) -> Recorder:
        """A worker starts: its recorder; the server starts with the first worker."""
        self._serve()
        made = self._instruments()
        recorder = Recorder(made, queue, store.clock.now_ns)
        with self._lock:
            made.backlog.stores[store.path] = store
            made.cache_sizes[queue] = cache_size
            made.recorders.append(recorder)
            self._users += 1
        return recorder

    def _detach(self, queue: str) -> None:
        """A worker stopped: the server stops with the last one."""
        with self._lock:
            self._users -= 1
            if self._made is not None:
                self._made.cache_sizes.pop(queue, None)
            if self._users == 0 and self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._server = None


#: The counters a worker keeps (`Recorder`): attribute -> (name, help, labels after "queue").
_COUNTERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "started": ("durable_workflows_started", "Workflow runs whose first workflow task this worker recorded.",
                ("workflow_type",)),
    "closed": ("durable_workflows_closed", "Workflow runs closed by what this worker recorded, by status "
               "(completed, failed, cancelled, timed_out, continued_as_new, terminated).", ("workflow_type", "status")),
    "task_failures": ("durable_workflow_task_failures", "Workflow tasks whose code failed (a bug: retried with "
                      "backoff, the workflow goes on once fixed).", ("workflow_type",)),
    "attempts": ("durable_activity_attempts", "Activity attempts started by this worker.", ("activity",)),
    "failures": ("durable_activity_failures", "Failed activity attempts recorded by this worker (errors and "
                 "timeouts; cancellations are not failures).", ("activity",)),
    "cache": ("durable_workflow_cache_requests", "Workflow tasks that found their live instance in the worker's "
              "cache (hit) or replayed the history (miss).", ("result",)),
}
#: The histograms a worker keeps: attribute -> (name, help, labels after "queue", buckets).
_HISTOGRAMS: dict[str, tuple[str, str, tuple[str, ...], tuple[float, ...]]] = {
    "latency": ("durable_activity_attempt_seconds", "Time an activity attempt's code ran, from its start to its "
                "result or error.", ("activity",), LATENCY_BUCKETS),
    "waited": ("durable_schedule_to_start_seconds", "Time a task waited in its queue, from when it became visible "
               "to its claim (tasks the worker claims as it makes them never wait and are not counted).",
               ("kind",), LATENCY_BUCKETS),
    "batch": ("durable_commit_batch_ops", "Operations committed together in one transaction by the worker's "
              "writer (group commit).", (), BATCH_BUCKETS),
}


class _Instruments:
    """The metrics of one `Metrics` (prometheus_client imported here, on first use): the workers'
    counts, kept by their `Recorder` as plain numbers and read when scraped (`_Counts`), the
    commit histogram (any thread of the process commits), and the backlog read from the stores."""

    def __init__(self, registry: Any) -> None:
        try:
            import prometheus_client as pc
        except ImportError:
            raise DurableError(
                "metrics need prometheus_client: pip install 'durable-workflows[metrics]'") from None
        self.registry = registry if registry is not None else pc.CollectorRegistry()
        r = self.registry
        self.recorders: list[Recorder] = []  # every worker's, kept after it stops: counters never go back
        self.commit = pc.Histogram("durable_commit_seconds", "Time of each commit of the store in this process "
                                   "(LMDB's commit: writing the pages and the fsync).", buckets=LATENCY_BUCKETS,
                                   registry=r)
        r.register(_Counts(self.recorders))
        self.cache_sizes: dict[str, Callable[[], int]] = {}
        self.backlog = _Backlog(self.cache_sizes)
        r.register(self.backlog)


class _Counts:
    """A collector of the workers' counters and histograms, summed over their recorders when scraped."""

    def __init__(self, recorders: list[Recorder]) -> None:
        self.recorders = recorders

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        recorders = list(self.recorders)
        for attr, (name, doc, labels) in _COUNTERS.items():
            counter = CounterMetricFamily(name, doc, labels=["queue", *labels])
            sums: dict[tuple[str, ...], int] = {}
            for rec in recorders:
                for key, n in list(getattr(rec, attr).items()):
                    full = (rec.queue, *key)
                    sums[full] = sums.get(full, 0) + n
            for key, n in sorted(sums.items()):
                counter.add_metric(list(key), n)
            yield counter
        for attr, (name, doc, labels, bounds) in _HISTOGRAMS.items():
            histogram = HistogramMetricFamily(name, doc, labels=["queue", *labels])
            merged: dict[tuple[str, ...], list[float]] = {}
            for rec in recorders:
                for key, cells in list(getattr(rec, attr).items()):
                    full = (rec.queue, *key)
                    into = merged.setdefault(full, [0.0] * len(cells))
                    for i, v in enumerate(list(cells)):
                        into[i] += v
            for key, cells in sorted(merged.items()):
                cumulative, buckets = 0.0, []
                for bound, n in zip((*bounds, float("inf")), cells[:-1]):
                    cumulative += n
                    buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
                histogram.add_metric(list(key), buckets, sum_value=cells[-1])
            yield histogram


class _Backlog:
    """A collector that reads the queues' backlog and lag from the stores when scraped."""

    def __init__(self, cache_sizes: dict[str, Callable[[], int]]) -> None:
        self.stores: dict[str, Backend] = {}
        self.cache_sizes = cache_sizes

    def describe(self) -> list[Any]:
        return []  # the families are made at each scrape: nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        backlog = GaugeMetricFamily("durable_task_queue_backlog", "Tasks visible in their queue, waiting to be "
                                    "claimed (read from the store when scraped).", labels=["queue", "kind"])
        lag = GaugeMetricFamily("durable_task_queue_lag_seconds", "Age of the oldest task waiting in its queue "
                                "since it became visible (0: none waits).", labels=["queue", "kind"])
        size = GaugeMetricFamily("durable_workflow_cache_size", "Live workflow instances in the worker's cache.",
                                 labels=["queue"])
        for store in list(self.stores.values()):
            try:
                now, found = store.read(lambda t: (t.now, _ops.queue_backlog(t)))
            except Exception:  # noqa: BLE001 - a closed store: nothing to report for it
                continue
            for queue in self.cache_sizes:  # the queues served here show even when empty
                for kind in _ops.TASK_KINDS.values():
                    found.setdefault((queue, kind), (0, None))
            for (queue, kind), (n, oldest) in sorted(found.items()):
                backlog.add_metric([queue, kind], n)
                lag.add_metric([queue, kind], 0.0 if oldest is None else max(0, now - oldest) / 1e9)
        for queue, fn in list(self.cache_sizes.items()):
            size.add_metric([queue], fn())
        yield backlog
        yield lag
        yield size


class Recorder:
    """What one worker counts, under its queue's label: plain numbers in dicts by label values,
    read when scraped (`_Counts`). Each is written by one thread of the worker only (the trio
    thread: attempts, failures, waits; the engine: cache, task failures; the writer: starts,
    closes, batches), so no update is lost; the commit histogram is prometheus_client's own."""

    def __init__(self, made: _Instruments, queue: str, now_ns: Callable[[], int]) -> None:
        self.queue = queue
        self._now_ns = now_ns
        self.started: dict[tuple[str, ...], int] = {}
        self.closed: dict[tuple[str, ...], int] = {}
        self.task_failures: dict[tuple[str, ...], int] = {}
        self.attempts: dict[tuple[str, ...], int] = {}
        self.failures: dict[tuple[str, ...], int] = {}
        self.cache: dict[tuple[str, ...], int] = {}
        self.latency: dict[tuple[str, ...], list[float]] = {}
        self.waited: dict[tuple[str, ...], list[float]] = {}
        self.batch: dict[tuple[str, ...], list[float]] = {}
        self.commit = made.commit.observe

    def workflow_started(self, wtype: str) -> None:
        _inc(self.started, (wtype,))

    def workflow_closed(self, wtype: str, status: str) -> None:
        _inc(self.closed, (wtype, status))

    def task_failed(self, wtype: str) -> None:
        _inc(self.task_failures, (wtype,))

    def attempt_started(self, activity: str) -> float:
        """An attempt's code starts: counted; returns its start time for `attempt_ended`."""
        _inc(self.attempts, (activity,))
        return time.perf_counter()

    def attempt_ended(self, activity: str, t0: float) -> None:
        _observe(self.latency, (activity,), LATENCY_BUCKETS, time.perf_counter() - t0)

    def attempt_failed(self, activity: str) -> None:
        _inc(self.failures, (activity,))

    def dispatched(self, item: dict[str, Any]) -> None:
        """A claimed task starts: how long it waited in its queue, if it did (a task run before
        it is claimed: until now, from its queue key's visible time)."""
        waited = item.get("waited")
        if waited is None and "tkey" in item:
            waited = self._now_ns() - unpack_u64(item["tkey"], len(item["tkey"]) - 16)
        if waited is not None:
            kind = {"wft": "workflow", "act": "activity"}.get(item["kind"], "query")
            _observe(self.waited, (kind,), LATENCY_BUCKETS, max(0, waited) / 1e9)

    def cache_used(self, hit: bool) -> None:
        _inc(self.cache, _HIT if hit else _MISS)

    def batched(self, n: int) -> None:
        _observe(self.batch, (), BATCH_BUCKETS, n)


_HIT, _MISS = ("hit",), ("miss",)


def _inc(table: dict[tuple[str, ...], int], key: tuple[str, ...]) -> None:
    table[key] = table.get(key, 0) + 1


def _observe(table: dict[tuple[str, ...], list[float]], key: tuple[str, ...], bounds: tuple[float, ...],
             value: float) -> None:
    """Count `value` in its bucket (the first bound at or above it; the last cell but one: +Inf)
    and add it to the sum (the last cell)."""
    cells = table.get(key)
    if cells is None:
        cells = table[key] = [0.0] * (len(bounds) + 2)
    cells[bisect_left(bounds, value)] += 1
    cells[-1] += value
