"""Examples are tests: each program in examples/ runs against a real worker in a fresh store, and
every history it leaves is replayed afterwards through the same code without a
`NondeterminismError`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import durable
from durable._defs import Registry
from examples import account, hello, order_saga
from tests.conftest import worker_process, worker_thread

TIMEOUT = 20


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def serving(module: Any, data: str, **options: Any) -> Any:
    """A worker thread serving every workflow and activity of an example module."""
    registry = Registry.from_modules([module])
    return worker_thread(data, list(w.target for w in registry.workflows.values()),
                         list(registry.activities.values()), **options)


def assert_replays(handle: durable.WorkflowHandle, workflow: Any) -> None:
    """The finished history replays through `workflow`'s code, every event of it."""
    assert handle.describe().status != "running"
    events = handle.history()
    assert durable.replay(workflow, handle.export_history()) == len(events)


def scheduled(handle: durable.WorkflowHandle) -> list[str]:
    """Names of the activities the workflow scheduled, in history order."""
    return [e["name"] for e in handle.history() if e["kind"] == "ActivityScheduled"]


# --- examples/hello.py ---------------------------------------------------------------------


def run_hello(client: durable.Client) -> None:
    h = client.start(hello.three_steps, 1, id="wf-1")
    assert h.result(timeout=TIMEOUT) == 5
    assert scheduled(h) == ["add_one", "double", "add_one"]

    a = client.start("Approval", {"amount": 10}, id="ap-1")
    assert a.query("status", timeout=TIMEOUT) == "pending"
    a.signal("decide", "approved")
    assert a.query("status", timeout=TIMEOUT) == "approved"  # it sees the signal sent before it
    assert a.result(timeout=TIMEOUT) == "approved"
    assert a.query("status", timeout=TIMEOUT) == "approved"  # a closed workflow still answers

    assert_replays(h, hello.three_steps)
    assert_replays(a, hello.Approval)


def test_hello_with_worker_thread(data_dir: str) -> None:
    with serving(hello, data_dir):
        run_hello(durable.Client(data_dir))


def test_hello_with_worker_process(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_process(data_dir, "examples.hello"):
        run_hello(client)


# --- examples/order_saga.py -----------------------------------------------------------------

STEPS = ["reserve_inventory", "charge_payment", "ship_order"]


@pytest.fixture
def saga_client(data_dir: str) -> Any:
    # a short lease: heartbeats (lease / 3) carry cancel requests to running activities
    with serving(order_saga, data_dir, lease=1.0):
        yield durable.Client(data_dir)


def test_saga_happy_path(saga_client: durable.Client) -> None:
    h = saga_client.start(order_saga.order_saga, {"order_id": "o-1"}, id="o-1")
    result = h.result(timeout=TIMEOUT)
    assert result["status"] == "shipped" and result["order_id"] == "o-1"
    assert result["payment"] == "pay-o-1/1/2"  # carries the charge's idempotency key
    assert scheduled(h) == STEPS
    assert_replays(h, order_saga.order_saga)


@pytest.mark.parametrize(
    ("fail_at", "failed_step", "compensations"),
    [
        ("reserve", "reserve_inventory", []),
        ("charge", "charge_payment", ["release_inventory"]),
        ("ship", "ship_order", ["refund_payment", "release_inventory"]),
    ],
)
def test_saga_failure_compensates_in_reverse_order(
    saga_client: durable.Client, fail_at: str, failed_step: str, compensations: list[str]
) -> None:
    h = saga_client.start("order_saga", {"order_id": "o-2", "fail_at": fail_at}, id=f"o-{fail_at}")
    with pytest.raises(durable.WorkflowFailed) as info:
        h.result(timeout=TIMEOUT)
    assert info.value.status == "failed"
    assert str(info.value).splitlines()[0] == (
        f"workflow 'o-{fail_at}' failed: OrderFailed: order o-2 failed at {failed_step}; "
        f"compensated: {', '.join(compensations) or 'nothing'}"
    )
    assert scheduled(h) == STEPS[: STEPS.index(failed_step) + 1] + compensations
    # every compensation completed, and started only after the failed step had ended
    events = h.history()
    kinds = [e["kind"] for e in events]
    assert kinds.count("ActivityFailed") == 1 and kinds[-1] == "WorkflowFailed"
    assert kinds.count("ActivityCompleted") == STEPS.index(failed_step) + len(compensations)
    failed_at = kinds.index("ActivityFailed")
    assert all(i > failed_at for i, e in enumerate(events)
               if e["kind"] == "ActivityScheduled" and e["name"] in compensations)
    assert_replays(h, order_saga.order_saga)


def test_saga_cancelled_while_shipping_still_compensates(saga_client: durable.Client) -> None:
    h = saga_client.start("order_saga", {"order_id": "o-3", "ship_delay": 60}, id="o-3")
    wait_for(lambda: "ship_order" in scheduled(h), "the saga to start shipping")
    h.cancel("customer changed their mind")
    with pytest.raises(durable.WorkflowFailed) as info:
        h.result(timeout=TIMEOUT)
    assert info.value.status == "cancelled"
    assert scheduled(h) == STEPS + ["refund_payment", "release_inventory"]
    events = h.history()
    kinds = [e["kind"] for e in events]
    # the shipping step reached its final state before the first compensation started (F05)
    refund = next(i for i, e in enumerate(events) if e.get("name") == "refund_payment")
    assert "ActivityCancelled" in kinds[:refund]
    assert kinds.count("ActivityCompleted") == 4 and kinds[-1] == "WorkflowCancelled"
    assert_replays(h, order_saga.order_saga)


@durable.workflow(name="order_saga")
async def saga_compensating_in_forward_order(order: dict[str, Any]) -> dict[str, Any]:
    """A broken edit of the saga: its compensations run first-to-last."""
    undo = []
    try:
        undo.append((order_saga.release_inventory, await order_saga.reserve_inventory(order)))
        undo.append((order_saga.refund_payment, await order_saga.charge_payment(order)))
        await order_saga.ship_order(order)
    except durable.ActivityError:
        for compensate, arg in undo:
            await compensate(arg)
        raise
    return {}


def test_saga_replay_detects_compensations_in_the_wrong_order(saga_client: durable.Client) -> None:
    """The replay check above has teeth: the same history through reordered code is refused."""
    h = saga_client.start("order_saga", {"order_id": "o-4", "fail_at": "ship"}, id="o-4")
    with pytest.raises(durable.WorkflowFailed):
        h.result(timeout=TIMEOUT)
    with pytest.raises(durable.NondeterminismError, match="ActivityScheduled\\('refund_payment'"):
        durable.replay(saga_compensating_in_forward_order, h.export_history())


# --- examples/account.py --------------------------------------------------------------------


def test_account_continues_as_new_and_answers_queries_meanwhile(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(account, data_dir):
        h = client.start(account.Account, 0, 3, id="acct-1")
        for i in range(1, 11):
            h.signal("deposit", i)
            # every deposit shows at once, whichever run of the chain answers
            wait_for(lambda i=i: h.query("current_balance", timeout=TIMEOUT) == i * (i + 1) // 2, "the deposit")
        assert h.query("run_info", timeout=TIMEOUT)["continued_from"] is not None
        h.signal("close_account")
        assert h.result(timeout=TIMEOUT) == 55
    runs = client.list(all_runs=True)
    assert len(runs) == 4 and [r.status for r in runs] == ["completed"] + ["continued_as_new"] * 3
    for r in runs:
        assert_replays(client.get_handle("acct-1", run_id=r.run_id), account.Account)
