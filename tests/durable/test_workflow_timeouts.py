"""Workflow-level timeouts (issue 16, point 4): `execution_timeout` bounds a whole continue-as-new
chain, `run_timeout` one run; when one passes, the workflow closes as timed_out (a
`WorkflowTimedOut` event), or with `timeout_grace` is first asked to cancel, so that its
compensations run. The deadline is a timer in the store: it holds with no worker running.

Real stores in temporary directories, real workers in threads; durations are short, and the
tests wait for outcomes, never for a time.
"""

from __future__ import annotations

import datetime as dt

import pytest

import durable
from durable import _ops
from durable._backend import open_store
from tests.conftest import worker_thread
from tests.fault._util import wait_until
from tests.wfs import basic

TIMEOUT = 20


@durable.activity
def book(x: str) -> str:
    return f"booked {x}"


@durable.activity
def unbook(x: str) -> str:
    return f"unbooked {x}"


@durable.workflow
async def forever() -> None:
    await durable.sleep(3600)


@durable.workflow
async def booking(x: str) -> str:
    async with durable.saga() as saga:
        await book(x)
        saga.add_compensation(unbook, x)
        await durable.sleep(3600)  # waits here until the timeout's cancellation
    return "never"


@durable.workflow
async def restless(n: int) -> None:
    """Continues as new forever, each run short: only an execution timeout stops it."""
    await durable.sleep(0.05)
    durable.continue_as_new(n + 1)


WORKFLOWS = [forever, booking, restless, basic.three_steps]


def serving(data: str) -> object:
    return worker_thread(data, WORKFLOWS, [book, unbook, basic.add_one, basic.double])


def outcome(h: durable.WorkflowHandle) -> durable.WorkflowFailed:
    with pytest.raises(durable.WorkflowFailed) as info:
        h.result(timeout=TIMEOUT)
    return info.value


def test_a_run_timeout_closes_the_workflow_as_timed_out(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        h = client.start(forever, id="f", run_timeout=0.3)
        d = h.describe()
        assert d.run_deadline is not None and d.execution_deadline is None
        err = outcome(h)
    assert err.status == "timed_out" and "run timeout" in str(err)
    last = h.history()[-1]
    assert (last["kind"], last["timeout"]) == ("WorkflowTimedOut", "run")
    assert h.describe().status == "timed_out"
    assert client.count(status="timed_out") == 1
    assert durable.replay(forever, h.export_history()) == len(h.history())


def test_the_execution_timeout_spans_continue_as_new(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        h = client.start(restless, 0, id="r", execution_timeout=2.0)
        deadline = h.describe().execution_deadline
        err = outcome(h)
    assert err.status == "timed_out" and "execution timeout" in str(err)
    runs = client.list(all_runs=True)
    assert len(runs) > 1  # it continued, and kept its deadline
    assert runs[0].status == "timed_out" and {r.status for r in runs[1:]} == {"continued_as_new"}
    assert {r.execution_deadline for r in runs} == {deadline}


def test_with_a_grace_the_compensations_run_first(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        h = client.start(booking, "room", id="b", execution_timeout=1.0, timeout_grace=30)
        err = outcome(h)
    assert err.status == "timed_out"
    kinds = [(e["kind"], e.get("name")) for e in h.history()]
    assert ("CancelRequested", None) in kinds
    assert [n for k, n in kinds if k == "ActivityScheduled"] == ["book", "unbook"]
    assert kinds[-1] == ("WorkflowCancelled", None)
    assert h.describe().status == "timed_out"


def test_a_grace_ends_at_its_deadline_if_the_workflow_does_not(data_dir: str) -> None:
    @durable.workflow
    async def stubborn() -> None:
        with durable.CancelScope(shield=True):
            await durable.sleep(3600)

    client = durable.Client(data_dir)
    with worker_thread(data_dir, [stubborn], []):
        h = client.start(stubborn, id="s", run_timeout=0.2, timeout_grace=0.3)
        err = outcome(h)
    assert err.status == "timed_out"
    kinds = [e["kind"] for e in h.history()]
    assert "CancelRequested" in kinds and kinds[-1] == "WorkflowTimedOut"


def test_the_deadline_holds_with_no_worker_running(data_dir: str) -> None:
    client = durable.Client(data_dir)
    h = client.start(forever, id="n", execution_timeout=dt.timedelta(milliseconds=200))
    store = open_store(data_dir)
    wait_until(lambda: store.read(lambda t: _ops.next_due(t)) is not None
               and store.read(lambda t: _ops.next_due(t)) <= store.clock.now_ns(), what="the deadline to pass")
    assert h.describe().status == "running"  # nobody has looked yet
    with serving(data_dir):  # the first worker's clock fires it
        err = outcome(h)
    assert err.status == "timed_out"
    # the workflow's code never ran: the timeout closed it first, or right after its first task
    assert h.history()[-1]["kind"] == "WorkflowTimedOut"


def test_a_workflow_that_ends_in_time_leaves_no_timer(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir):
        h = client.start(basic.three_steps, 1, id="ok", execution_timeout=3600, run_timeout=3600)
        assert h.result(timeout=TIMEOUT) == 5
    store = open_store(data_dir)
    assert store.read(lambda t: _ops.next_due(t)) is None


@pytest.mark.parametrize("options, message", [
    ({"execution_timeout": -1}, "execution_timeout"),
    ({"run_timeout": "10"}, "run_timeout"),
    ({"timeout_grace": 5}, "timeout_grace needs execution_timeout or run_timeout"),
    ({"run_timeout": 5, "timeout_grace": float("nan")}, "timeout_grace"),
])
def test_bad_timeouts_are_refused_before_anything_is_written(data_dir: str, options: dict[str, object],
                                                             message: str) -> None:
    client = durable.Client(data_dir)
    with pytest.raises(durable.InvalidArgument, match=message):
        client.start(forever, id="bad", **options)  # type: ignore[arg-type]
    assert client.count() == 0
