"""F14 and F15: workers are given their code explicitly; names read from the store are only
looked up in the worker's own registry.

F14: two `Worker` objects in one process, on different queues, register different code under the
same names; each runs only its own. F15: a workflow type or an activity that a worker does not
have never runs there: the workflow shows the error in `describe()`, its history stays as it was,
and it goes on by itself once a worker with the code serves the queue.
"""

from __future__ import annotations

import threading

import durable
from tests.conftest import worker_process, worker_thread
from tests.fault._util import history, kinds, store_snapshot, wait_until
from tests.wfs import faults

RAN: list[str] = []
_lock = threading.Lock()


def _ran(what: str) -> None:
    with _lock:
        RAN.append(what)


@durable.activity(name="step")
def step_a(x: int) -> str:
    _ran(f"step_a({x})")
    return f"A:{x}"


@durable.activity(name="step")
def step_b(x: int) -> str:
    _ran(f"step_b({x})")
    return f"B:{x}"


@durable.workflow(name="greet")
async def greet_a(x: int) -> str:
    return "greet_a " + await step_a(x)


@durable.workflow(name="greet")
async def greet_b(x: int) -> str:
    return "greet_b " + await step_a(x)  # the activity is scheduled by name: "step"


@durable.workflow
async def only_a(x: int) -> str:
    return "only_a " + await step_a.with_options(queue="qb")(x)  # runs where queue qb is served


@durable.activity
def missing_step(x: int) -> int:
    _ran(f"missing_step({x})")
    return x * 10


@durable.workflow
async def uses_missing(x: int) -> int:
    return await missing_step(x) + 1


# --- F14 ----------------------------------------------------------------------------------------


def test_f14_two_workers_in_one_process_are_independent(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [greet_a, only_a], [step_a], queue="qa") as wa, \
         worker_thread(data_dir, [greet_b], [step_b], queue="qb") as wb:
        assert client.start("greet", 1, id="g-a", queue="qa").result(timeout=10) == "greet_a A:1"
        assert client.start("greet", 2, id="g-b", queue="qb").result(timeout=10) == "greet_b B:2"
        # the object passed to start only names the type: queue qb runs its own "greet"
        assert client.start(greet_a, 3, id="g-b2", queue="qb").result(timeout=10) == "greet_b B:3"
        # an activity routed to queue qb runs with qb's code, for a workflow of queue qa
        assert client.start(only_a, 4, id="o-a", queue="qa").result(timeout=10) == "only_a B:4"
        # queue qb does not have only_a: refused by name, and nothing is written
        before = store_snapshot(client)
        try:
            client.start("only_a", 5, id="o-b", queue="qb")
        except durable.NotRegistered as exc:
            assert "only_a" in str(exc) and "qb" in str(exc)
        else:
            raise AssertionError("starting an unregistered workflow by name was accepted")
        assert store_snapshot(client) == before
        stats = (wa.stats["act"], wb.stats["act"])
    assert sorted(RAN) == sorted(["step_a(1)", "step_b(2)", "step_b(3)", "step_b(4)"])
    assert stats == (1, 3)


# --- F15 ----------------------------------------------------------------------------------------


def test_f15_unknown_workflow_type_waits_for_a_worker_with_the_code(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_process(data_dir, "tests.wfs.basic"):  # serves the queue, without Gate
        handle = client.start(faults.Gate, id="gate")  # started from code: no name check
        desc = wait_until(lambda: (d := handle.describe()).task_failures >= 1 and d, timeout=20,
                          what="the workflow task to fail")
        assert desc.status == "running"
        assert desc.task_error is not None and "'Gate' is not registered" in desc.task_error
        assert kinds(history(client, "gate")) == ["WorkflowStarted"]  # the history is untouched
        handle.signal("open", "hello")
        wait_until(lambda: handle.describe().task_failures >= 2, timeout=20, what="another failure")
        assert [k for k in kinds(history(client, "gate")) if k != "SignalReceived"] == ["WorkflowStarted"]
    with worker_process(data_dir, "tests.wfs.faults"):
        assert handle.result(timeout=30) == "hello"
    desc = handle.describe()
    assert desc.status == "completed" and desc.task_error is None


def test_f15_unknown_activity_waits_for_a_worker_with_the_code(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [uses_missing], []):  # has the workflow, not its activity
        handle = client.start(uses_missing, 4, id="missing")
        desc = wait_until(lambda: (d := handle.describe()).task_error and d, timeout=20,
                          what="the activity's task to be refused")
        assert "missing_step" in desc.task_error and "not registered" in desc.task_error
        wait_until(lambda: handle.describe().task_failures >= 3, timeout=20, what="more refusals")
        desc = handle.describe()
        assert desc.status == "running"
        assert (desc.activities_scheduled, desc.activity_attempts) == (1, 0)  # no attempt was spent
        assert "ActivityFailed" not in kinds(history(client, "missing"))
    assert RAN.count("missing_step(4)") == 0
    with worker_thread(data_dir, [uses_missing], [missing_step]):
        assert handle.result(timeout=30) == 41
    assert RAN.count("missing_step(4)") == 1
    desc = handle.describe()
    assert (desc.activity_attempts, desc.activity_retries, desc.task_error) == (1, 0, None)
    [done] = [e for e in history(client, "missing") if e["kind"] == "ActivityCompleted"]
    assert done["attempt"] == 1
