"""examples/order_lines.py: an order with a child workflow per line item, in a nursery; run
against a real worker (thread and process), every history (parent and children) replayed."""

from __future__ import annotations

from typing import Any

import pytest

import durable
from examples import order_lines
from tests.conftest import worker_process
from tests.test_examples import TIMEOUT, assert_replays, scheduled, serving


def kinds(handle: durable.WorkflowHandle[Any]) -> list[str]:
    return [e["kind"] for e in handle.history()]


def run_happy(client: durable.Client) -> None:
    lines = [{"sku": "tea", "qty": 2}, {"sku": "cup", "qty": 1}, {"sku": "pot", "qty": 1}]
    h = client.start("order", {"order_id": "o-1", "lines": lines}, id="o-1")
    assert h.result(timeout=TIMEOUT) == {"order_id": "o-1", "packages": ["pkg-o-1-tea", "pkg-o-1-cup", "pkg-o-1-pot"]}
    assert kinds(h).count("ChildWorkflowCompleted") == 3
    assert_replays(h, order_lines.order)
    for i in range(3):
        child = client.get_handle(f"o-1/line-{i}")
        assert child.describe().parent_id == "o-1"
        assert scheduled(child) == ["reserve_stock", "pack"]
        assert_replays(child, order_lines.line_item)


def test_order_lines_with_worker_thread(data_dir: str) -> None:
    with serving(order_lines, data_dir):
        run_happy(durable.Client(data_dir))


def test_order_lines_with_worker_process(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_process(data_dir, "examples.order_lines"):
        run_happy(client)


def test_a_failed_line_cancels_the_others_and_they_release_before_the_order_fails(data_dir: str) -> None:
    with serving(order_lines, data_dir, lease=1.0):
        client = durable.Client(data_dir)
        request = {"order_id": "o-2", "lines": [{"sku": "tea", "qty": 2}, {"sku": "cup", "qty": 9}],
                   "stock": {"tea": 5, "cup": 1}, "pack_delay": 60}
        h = client.start(order_lines.order, request, id="o-2")
        with pytest.raises(durable.WorkflowFailed) as info:
            h.result(timeout=TIMEOUT)
        assert str(info.value).splitlines()[0] == (
            "workflow 'o-2' failed: OrderFailed: order o-2 failed: OutOfStock: cup: only 1 in stock")
        tea = client.get_handle("o-2/line-0")
        assert tea.describe().status == "cancelled"
        # the tea line reserved, maybe began to pack (if the cup line failed later), and released
        assert scheduled(tea) in (["reserve_stock", "pack", "release_stock"], ["reserve_stock", "release_stock"])
        # the order closed only after the cancelled line had released its stock and closed
        k = kinds(h)
        assert k.count("ChildWorkflowCancelRequested") == 1
        assert k.index("ChildWorkflowCancelled") < k.index("WorkflowFailed")
        assert_replays(h, order_lines.order)
        assert_replays(tea, order_lines.line_item)
