"""Issue 19, points 2 and 3: the worker's INFO lines about each workflow's life (once each, by the
worker that records it, not on replay), its Prometheus metrics scraped over HTTP from a real
worker process, and OpenTelemetry spans children of the client's span."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import urllib.request
from typing import Any

import pytest

import durable
from tests.conftest import ROOT, start_worker_process, stop_worker_process, worker_thread
from tests.fault._util import wait_until
from tests.wfs import observed

FAST_PATHS = [pytest.param("1", id="fast-paths"), pytest.param("0", id="no-fast-paths")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_the_lives(client: durable.Client) -> None:
    """One workflow of each end: completed (x3), failed, retried activity, cancelled, timed out,
    continued as new (twice, then completed)."""
    handles = [client.start(observed.three_steps, i, id=f"three-{i}") for i in range(3)]
    assert [h.result(timeout=60) for h in handles] == [3, 4, 5]
    assert client.start(observed.retried, 7, id="retried").result(timeout=60) == 7
    with pytest.raises(durable.WorkflowFailed):
        client.start(observed.fails, 1, id="fails").result(timeout=60)
    waiting = client.start(observed.waits, id="cancelled")
    wait_until(lambda: len(waiting.history()) > 1, what="the waiting workflow to start its timer")
    waiting.cancel("enough")
    with pytest.raises(durable.WorkflowFailed):
        waiting.result(timeout=60)
    with pytest.raises(durable.WorkflowFailed):
        client.start(observed.waits, id="timed-out", run_timeout=0.3).result(timeout=60)
    assert client.start(observed.again, 2, id="again").result(timeout=60) == 0


def _lifecycle_lines(lines: list[str]) -> list[str]:
    return sorted(line.split("durable.worker.lifecycle: ", 1)[1].strip() for line in lines
                  if "durable.worker.lifecycle: " in line)


@pytest.mark.parametrize("fast", FAST_PATHS)
def test_the_worker_logs_each_workflows_life_once(data_dir: str, fast: str) -> None:
    # --cache 1: instances are evicted and replayed; a replay must not log a start again
    worker = start_worker_process(data_dir, "tests.wfs.observed", extra=("--cache", "1"),
                                  env={"DURABLE_FAST_PATHS": fast})
    try:
        _run_the_lives(durable.Client(data_dir))
        wait_until(lambda: len(_lifecycle_lines(worker.log_lines)) >= 20,  # type: ignore[attr-defined]
                   what="the log lines of every workflow")
    finally:
        assert stop_worker_process(worker) == 0
    assert _lifecycle_lines(worker.log_lines) == sorted([  # type: ignore[attr-defined]
        *[f"workflow 'three-{i}' (three_steps) {what}" for i in range(3) for what in ("started", "completed")],
        "workflow 'retried' (retried) started", "workflow 'retried' (retried) completed",
        "workflow 'fails' (fails) started", "workflow 'fails' (fails) failed: durable.ActivityError: activity 'broken' (seq 1) failed after 1 "
        "attempt(s): Broken: broken 1",
        "workflow 'cancelled' (waits) started", "workflow 'cancelled' (waits) cancelled",
        "workflow 'timed-out' (waits) started", "workflow 'timed-out' (waits) timed out",
        *["workflow 'again' (again) started"] * 3,  # one per run
        *["workflow 'again' (again) continued as new"] * 2, "workflow 'again' (again) completed",
    ])


def test_no_log_workflows_keeps_the_worker_quiet_about_each_workflow(data_dir: str) -> None:
    worker = start_worker_process(data_dir, "tests.wfs.observed", extra=("--no-log-workflows",))
    try:
        client = durable.Client(data_dir)
        assert client.start("three_steps", 1, id="quiet").result(timeout=30) == 4
    finally:
        assert stop_worker_process(worker) == 0
    lines = worker.log_lines  # type: ignore[attr-defined]
    assert any("serving queue" in line for line in lines)  # the worker's own lines stay
    assert _lifecycle_lines(lines) == []


def test_with_two_workers_each_life_is_told_once_by_the_one_that_recorded_it(data_dir: str) -> None:
    workers = [start_worker_process(data_dir, "tests.wfs.observed", extra=("--log-format", "json"))
               for _ in range(2)]
    try:
        client = durable.Client(data_dir)
        handles = [client.start(observed.three_steps, i, id=f"w{i}") for i in range(20)]
        assert [h.result(timeout=60) for h in handles] == [i + 3 for i in range(20)]

        def told() -> list[dict[str, Any]]:
            lines = [line for w in workers for line in w.log_lines]  # type: ignore[attr-defined]
            records = [json.loads(line) for line in lines if line.startswith("{")]
            return [r for r in records if r["logger"] == "durable.worker.lifecycle"]

        wait_until(lambda: len(told()) >= 40, what="the lines of 20 workflows")
    finally:
        for w in workers:
            assert stop_worker_process(w) == 0
    records = told()
    assert sorted((r["workflow_id"], r["message"].rsplit(" ", 1)[1]) for r in records) == sorted(
        (f"w{i}", what) for i in range(20) for what in ("started", "completed"))
    runs = {h.id: h.run_id for h in handles}
    assert all(r["level"] == "INFO" and r["workflow_type"] == "three_steps" and r["run_id"] == runs[r["workflow_id"]]
               for r in records)


def test_no_lifecycle_lines_below_info(data_dir: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="durable"), worker_thread(data_dir, observed.WORKFLOWS,
                                                                         observed.ACTIVITIES):
        assert durable.Client(data_dir).start(observed.three_steps, 1).result(timeout=30) == 4
    assert not [r for r in caplog.records if "started" in r.getMessage() or "completed" in r.getMessage()]


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of a worker's /metrics, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(dict(labels, **({"queue": "default"} if "queue" not in labels else {})).items()))), 0.0)


@pytest.mark.parametrize("fast", FAST_PATHS)
def test_a_worker_process_serves_prometheus_metrics(data_dir: str, fast: str) -> None:
    pytest.importorskip("prometheus_client")  # in the test extra: skipped only outside it
    port = _free_port()
    client = durable.Client(data_dir)
    for i in range(4):  # a queue no worker serves: its backlog and lag come from the store
        client.start("anything", i, id=f"nobody-{i}", queue="nobody")
    worker = start_worker_process(data_dir, "tests.wfs.observed", extra=("--metrics-port", str(port)),
                                  env={"DURABLE_FAST_PATHS": fast})
    try:
        _run_the_lives(client)
        expected = {
            ("durable_workflows_started_total", "three_steps"): 3,
            ("durable_workflows_started_total", "again"): 3,
        }

        def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            samples = _scrape(port)
            done = all(_value(samples, name, workflow_type=wtype) == n for (name, wtype), n in expected.items())
            done = done and _value(samples, "durable_workflows_closed_total", workflow_type="again",
                                   status="completed") == 1
            return samples if done else None

        found = wait_until(counted, what="the workflows counted")
    finally:
        assert stop_worker_process(worker) == 0
    assert found is not None
    samples = found
    closed = {(labels[2][1], labels[1][1]): v for (name, labels), v in samples.items()
              if name == "durable_workflows_closed_total"}  # labels sorted: queue, status, workflow_type
    assert closed == {("three_steps", "completed"): 3, ("retried", "completed"): 1, ("fails", "failed"): 1,
                      ("waits", "cancelled"): 1, ("waits", "timed_out"): 1, ("again", "continued_as_new"): 2,
                      ("again", "completed"): 1}
    for wtype in ("three_steps", "retried", "fails"):
        assert _value(samples, "durable_workflows_started_total", workflow_type=wtype) == (3 if wtype == "three_steps" else 1)
    assert _value(samples, "durable_activity_attempts_total", activity="step") == 9
    assert _value(samples, "durable_activity_attempts_total", activity="flaky") == 2
    assert _value(samples, "durable_activity_failures_total", activity="flaky") == 1
    assert _value(samples, "durable_activity_failures_total", activity="broken") == 1
    assert _value(samples, "durable_activity_failures_total", activity="step") == 0
    assert _value(samples, "durable_activity_attempt_seconds_count", activity="step") == 9
    assert _value(samples, "durable_activity_attempt_seconds_count", activity="broken") == 1
    hits = _value(samples, "durable_workflow_cache_requests_total", result="hit")
    misses = _value(samples, "durable_workflow_cache_requests_total", result="miss")
    assert misses >= 10 and hits > 0  # one miss per run at least (10 runs), hits after
    assert _value(samples, "durable_schedule_to_start_seconds_count", kind="workflow") >= 1
    assert _value(samples, "durable_commit_batch_ops_count") >= 10
    assert samples[("durable_commit_seconds_count", ())] >= 10
    assert _value(samples, "durable_task_queue_backlog", queue="nobody", kind="workflow") == 4
    assert _value(samples, "durable_task_queue_lag_seconds", queue="nobody", kind="workflow") > 0
    assert _value(samples, "durable_task_queue_backlog", kind="workflow") == 0  # served: nothing waits
    assert ("durable_workflow_cache_size", (("queue", "default"),)) in samples


def test_a_worker_process_with_tracing_runs_workflows(data_dir: str) -> None:
    pytest.importorskip("opentelemetry")
    # no SDK configured in the worker process: the API's spans are no-ops, the work goes on
    worker = start_worker_process(data_dir, "tests.wfs.observed", extra=("--tracing",))
    try:
        assert durable.Client(data_dir).start(observed.three_steps, 1).result(timeout=30) == 4
    finally:
        assert stop_worker_process(worker) == 0


def test_the_metrics_port_must_be_free(data_dir: str) -> None:
    pytest.importorskip("prometheus_client")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "durable", "--data", data_dir, "worker", "tests.wfs.observed",
                               "--metrics-port", str(port)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert f"error: cannot serve metrics on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_taken_port_stops_a_worker_run_in_a_program_before_it_claims_anything(data_dir: str) -> None:
    pytest.importorskip("prometheus_client")
    import trio

    client = durable.Client(data_dir)
    handle = client.start(observed.three_steps, 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        worker = durable.Worker(data_dir, workflows=observed.WORKFLOWS, activities=observed.ACTIVITIES,
                                metrics=durable.Metrics(taken.getsockname()[1]))
        with pytest.raises(durable.DurableError, match="cannot serve metrics on 127.0.0.1"):
            trio.run(worker.run)
    assert handle.describe().status == "running" and len(handle.history()) == 1  # nothing was claimed


@pytest.mark.parametrize(("option", "said"), [
    (("--metrics-port", "0"), "error: metrics need prometheus_client: pip install 'durable-workflows[metrics]'"),
    (("--tracing",), "error: tracing needs opentelemetry-api: pip install 'durable-workflows[tracing]'"),
])
def test_without_the_extra_installed_the_worker_says_what_to_install(data_dir: str, tmp_path: Any,
                                                                      option: tuple[str, ...], said: str) -> None:
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(  # as if they were not installed: importing them fails
        "import sys\nsys.modules['prometheus_client'] = None\nsys.modules['opentelemetry'] = None\n")
    proc = subprocess.run([sys.executable, "-m", "durable", "--data", data_dir, "worker", "tests.wfs.observed",
                           *option], cwd=ROOT, env=dict(os.environ, PYTHONPATH=f"{hide}{os.pathsep}{ROOT}"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert said in proc.stderr and "Traceback" not in proc.stderr


def test_bad_metrics_options_are_refused_clearly(data_dir: str) -> None:
    for port in (-1, 70000, "9464", True):
        with pytest.raises(durable.DurableError, match="metrics port"):
            durable.Metrics(port)  # type: ignore[arg-type]
    with pytest.raises(durable.DurableError, match="must be a durable.Metrics"):
        durable.Worker(data_dir, metrics=9464)  # type: ignore[arg-type]
    proc = subprocess.run([sys.executable, "-m", "durable", "--data", data_dir, "worker", "tests.wfs.observed",
                           "--metrics-host", "0.0.0.0"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "error: --metrics-host needs --metrics-port" in proc.stderr


def test_metrics_into_a_registry_of_ones_own(data_dir: str) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    metrics = durable.Metrics(registry=registry)
    with worker_thread(data_dir, observed.WORKFLOWS, observed.ACTIVITIES, metrics=metrics):
        assert durable.Client(data_dir).start(observed.three_steps, 1).result(timeout=30) == 4
        labels = {"queue": "default", "workflow_type": "three_steps", "status": "completed"}
        wait_until(lambda: registry.get_sample_value("durable_workflows_closed_total", labels) == 1,
                   what="the close counted")
    assert metrics.port is None  # no server: the program exposes its registry itself
    assert registry.get_sample_value("durable_activity_attempts_total", {"queue": "default", "activity": "step"}) == 3


def test_without_metrics_or_tracing_nothing_is_imported(data_dir: str) -> None:
    code = f"""
import sys
import durable
from tests.conftest import worker_thread
from tests.wfs import observed
with worker_thread({data_dir!r}, observed.WORKFLOWS, observed.ACTIVITIES):
    assert durable.Client({data_dir!r}).start(observed.three_steps, 1).result(timeout=30) == 4
print(sorted(m for m in sys.modules if m.startswith(("prometheus_client", "opentelemetry"))))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_spans_are_children_of_the_clients_span(data_dir: str) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    # the worker's spans go to the global provider: set it once for this process
    trace.set_tracer_provider(provider)
    assert trace.get_tracer_provider() is provider, "another test set a global tracer provider first"
    with worker_thread(data_dir, observed.WORKFLOWS, observed.ACTIVITIES, tracing=True):
        with tracer.start_as_current_span("checkout") as parent:
            handle = durable.Client(data_dir).start(observed.three_steps, 1, id="traced")
        assert handle.result(timeout=30) == 4
        assert durable.replay(observed.three_steps, handle.export_history()) > 0  # the field is data: replay agrees
        untraced = durable.Client(data_dir).start(observed.three_steps, 1, id="untraced")
        assert untraced.result(timeout=30) == 4
        assert durable.Client(data_dir).start(observed.retried, 5, id="retried").result(timeout=30) == 5
    spans: list[Any] = list(exporter.get_finished_spans())
    mine = [s for s in spans if s.attributes.get("durable.workflow_id") == "traced"]
    tasks = [s for s in mine if s.name == "workflow task three_steps"]
    attempts = [s for s in mine if s.name == "activity step"]
    assert len(tasks) >= 1 and len(attempts) == 3
    ctx = parent.get_span_context()
    for span in tasks + attempts:
        assert span.parent is not None and span.parent.span_id == ctx.span_id
        assert span.context.trace_id == ctx.trace_id
        assert span.attributes["durable.run_id"] == handle.run_id
        assert span.attributes["durable.workflow_type"] == "three_steps"
    assert sorted(s.attributes["durable.attempt"] for s in attempts) == [1, 1, 1]
    assert all(s.status.is_ok for s in tasks + attempts)
    flaky = sorted((s.attributes["durable.attempt"], s.status.status_code.name) for s in spans
                   if s.name == "activity flaky")
    assert flaky == [(1, "ERROR"), (2, "UNSET")]  # the failed attempt says so
    others = [s for s in spans if s.attributes.get("durable.workflow_id") == "untraced"]
    assert others and all(s.parent is None for s in others)  # started outside a span: roots of their own


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_the_async_clients_start_carries_the_span_too(data_dir: str, library: str) -> None:
    pytest.importorskip("opentelemetry.sdk")
    import asyncio

    import trio
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")

    async def start() -> tuple[str | None, str]:
        with tracer.start_as_current_span("caller") as span:
            handle = await durable.AsyncClient(data_dir).start(observed.waits, id=f"async-{library}")
        ctx = span.get_span_context()
        return handle.run_id, f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"

    run_id, traceparent = asyncio.run(start()) if library == "asyncio" else trio.run(start)
    [started] = [e for e in durable.Client(data_dir).get_handle(f"async-{library}").history()
                 if e["kind"] == "WorkflowStarted"]
    assert started["tp"] == traceparent
