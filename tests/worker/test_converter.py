"""Typed values through a real store and worker (issue 18, point 1: "a dataclass argument is
refused"): start, activity arguments and results, signals, queries and the workflow's result
cross as plain CBOR maps and arrays, and each side builds them again by its annotations.

The workflows and activities (tests/wfs/typed.py) check the types they receive and fail the
workflow otherwise, so equal results at the end prove every crossing on the way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable
from durable.cli import main as cli
from tests.conftest import worker_process, worker_thread
from tests.fault._util import wait_until
from tests.wfs import typed
from tests.wfs.typed import Item, Money, Order, Point, Priority, Status

zones = st.builds(dt.timezone, st.integers(-23 * 60, 23 * 60).map(lambda m: dt.timedelta(minutes=m)))
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-(10**6), max_value=10**6)
items = st.builds(Item, st.text(max_size=5), st.integers(0, 10**6), decimals)
orders = st.builds(
    Order, st.uuids(), st.lists(items, max_size=3), st.sampled_from(Status), st.datetimes(timezones=zones),
    st.dates(), st.times(), st.timedeltas(), st.frozensets(st.text(max_size=3), max_size=3),
    st.builds(Point, st.integers(), st.integers()), st.dictionaries(st.text(max_size=3), st.sampled_from(Status), max_size=2),
    st.lists(st.integers(), max_size=3).map(tuple), st.sampled_from(Priority), st.none() | items,
)


def an_order(**changes: Any) -> Order:
    fields = dict(
        id=uuid.UUID(int=5), items=[Item("a", 2, Decimal("1.25"))], status=Status.NEW,
        placed=dt.datetime(2026, 12, 6, 22, 0, tzinfo=dt.timezone.utc), due=dt.date(2026, 12, 24),
        cutoff=dt.time(17, 30), window=dt.timedelta(hours=36), tags=frozenset({"gift", "eu"}),
        where=Point(3, 4), notes={"desk": Status.PAID}, sizes=(38, 40), priority=Priority.HIGH, gift=None,
    )
    fields.update(changes)
    return Order(**fields)  # type: ignore[arg-type]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(orders, min_size=1, max_size=4))
def test_arbitrary_orders_round_trip_through_start_activities_signals_queries_and_results(
        tmp_path_factory: pytest.TempPathFactory, batch: list[Order]) -> None:
    data = str(tmp_path_factory.mktemp("store"))
    client = durable.Client(data)
    # each example has its own store, outside the test's tmp_path: close it once the worker stopped
    with contextlib.closing(client._store), worker_thread(data, typed.WORKFLOWS, typed.ACTIVITIES):
        handles = [client.start(typed.process, order) for order in batch]
        for order, handle in zip(batch, handles):
            echoed, amount = handle.result(timeout=30)
            assert echoed == order and type(echoed) is Order
            assert amount == sum((i.price * i.qty for i in order.items), Decimal(0)) and type(amount) is Decimal
        inbox = client.start(typed.Inbox, len(batch))
        assert inbox.query("last", Status.SHIPPED, timeout=30) is Status.SHIPPED
        for order in batch:
            inbox.signal("add", order)
        assert inbox.result(timeout=30) == batch
        assert client.get_handle(inbox.id, workflow=typed.Inbox).query("last", Status.NEW, timeout=30) == batch[-1]
        # replay builds the same values from the recorded plain data: the same commands, no error
        for handle in handles:
            assert durable.replay(typed.process, handle.export_history()) > 0
        assert durable.replay(typed.Inbox, inbox.export_history()) > 0


def test_a_handle_by_name_gets_plain_data_and_a_handle_given_the_workflow_gets_the_types(data_dir: str) -> None:
    order = an_order()
    with worker_thread(data_dir, typed.WORKFLOWS, typed.ACTIVITIES):
        client = durable.Client(data_dir)
        client.start(typed.process, order, id="p").result(timeout=30)
        plain, total = client.get_handle("p").result(timeout=30)
        assert total == "2.50" and plain["where"] == {"x": 3, "y": 4} and plain["window"] == 129600
        assert plain["tags"] == ["eu", "gift"] and plain["status"] == "new" and plain["priority"] == 2
        assert client.get_handle("p", workflow=typed.process).result(timeout=30) == (order, Decimal("2.50"))
        # a signal sent by name is made plain by its value's own type: the handler builds it again
        inbox = client.start("Inbox", 1, id="by-name")
        client.get_handle("by-name").signal("add", order)
        assert client.get_handle("by-name", workflow=typed.Inbox).result(timeout=30) == [order]


def test_a_dataclass_given_to_an_unannotated_activity_crosses_as_a_map(data_dir: str) -> None:
    with worker_thread(data_dir, typed.WORKFLOWS, typed.ACTIVITIES):
        client = durable.Client(data_dir)
        got = client.start(typed.plain_out, an_order(gift=Item("g", 1, Decimal("0")))).result(timeout=30)
    assert got["got"]["gift"] == {"sku": "g", "qty": 1, "price": "0"}
    assert got["got"]["placed"] == dt.datetime(2026, 12, 6, 22, 0, tzinfo=dt.timezone.utc)


def test_pydantic_models_cross_start_activities_and_results(data_dir: str) -> None:
    pytest.importorskip("pydantic")
    from tests.wfs import typed_pydantic as tp

    cart = tp.Cart(owner="ann", lines=[tp.Line(sku="a", price=Decimal("1.10")), tp.Line(sku="b", price=Decimal("2"))],
                   saved=dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc), tags={"x"})
    with worker_thread(data_dir, [tp.checkout], [tp.price]):
        client = durable.Client(data_dir)
        handle = client.start(tp.checkout, cart, id="cart")
        assert handle.result(timeout=30) == (cart, tp.Line(sku="total", price=Decimal("3.10")))
        assert handle.history()[0]["input"][0]["lines"] == [{"sku": "a", "price": "1.10"}, {"sku": "b", "price": "2"}]


def test_continue_as_new_carries_typed_arguments_to_the_next_run(data_dir: str) -> None:
    with worker_thread(data_dir, typed.WORKFLOWS, typed.ACTIVITIES):
        client = durable.Client(data_dir)
        assert client.start(typed.countdown, Money(7, "NOK"), 2, id="countdown").result(timeout=30) == Money(7, "NOK")
    assert len(client.list(all_runs=True)) == 3


def test_a_child_workflow_gets_typed_arguments_and_its_parent_a_typed_result(data_dir: str) -> None:
    order = an_order()
    with worker_thread(data_dir, typed.WORKFLOWS, typed.ACTIVITIES):
        client = durable.Client(data_dir)
        got = client.start(typed.parent_of_process, order, id="parent").result(timeout=30)
    assert got == (order, Decimal("2.50"))
    # in the parent's history the child's input is plain data (a map), readable by the CLI
    [initiated] = [e for e in client.get_handle("parent").history() if e["kind"] == "ChildWorkflowInitiated"]
    assert initiated["input"][0]["id"] == str(order.id)


def test_an_update_gets_typed_arguments_and_its_caller_a_typed_result(data_dir: str) -> None:
    order = an_order()
    with worker_thread(data_dir, typed.WORKFLOWS, typed.ACTIVITIES):
        client = durable.Client(data_dir)
        client.start(typed.Inbox, 3, id="updated")
        typed_handle = client.get_handle("updated", workflow=typed.Inbox)
        assert typed_handle.update("add_and_count", order, timeout=30) == (order, Decimal("2.50"))
        # by name: the caller gets the plain form, the handler still its types
        plain = client.get_handle("updated").update("add_and_count", order, timeout=30)
        assert plain[0]["id"] == str(order.id) and plain[1] == "2.50"
        # an argument that does not fit the handler's annotation is refused, nothing recorded
        events = len(typed_handle.history())
        with pytest.raises(durable.UpdateRejected, match="update 'add_and_count'.*PayloadError"):
            client.get_handle("updated").update("add_and_count", {"id": "not a uuid"}, timeout=30)
        assert len(typed_handle.history()) == events
        typed_handle.signal("add", order)
        assert typed_handle.result(timeout=30) == [order, order, order]


def test_the_async_client_converts_as_the_client_does(data_dir: str) -> None:
    import trio

    order = an_order()

    async def main() -> None:
        client = durable.AsyncClient(data_dir)
        handle = await client.start(typed.process, order, id="async")
        assert await handle.result(timeout=30) == (order, Decimal("2.50"))
        assert await client.get_handle("async", workflow=typed.process).result(timeout=30) == (order, Decimal("2.50"))
        inbox = await client.start(typed.Inbox, 1)
        await inbox.signal("add", order)
        assert await inbox.result(timeout=30) == [order]

    with worker_thread(data_dir, typed.WORKFLOWS, typed.ACTIVITIES):
        trio.run(main)


def test_a_schedule_starts_its_workflow_with_typed_arguments(data_dir: str) -> None:
    with worker_thread(data_dir, typed.WORKFLOWS, typed.ACTIVITIES):
        client = durable.Client(data_dir)
        # Money converts by its annotation only: without it, the schedule could not store it
        schedule = client.create_schedule("nightly", typed.charge, Money(5, "EUR"), every=3600, paused=True)
        schedule.trigger()
        [started] = wait_until(lambda: schedule.list_workflows(), what="the scheduled workflow")
        assert client.get_handle(started.workflow_id, workflow=typed.charge).result(timeout=30) == Money(6, "EUR")


def test_the_test_environment_and_its_mocks_get_typed_values() -> None:
    import durable.testing

    seen: list[Any] = []

    @durable.testing.mock_activity(typed.echo_order)
    def fake_echo(order):  # type: ignore[no-untyped-def]  # no annotation: the activity's plan applies
        seen.append(order)
        return order

    order = an_order()
    with durable.testing.SyncEnvironment(workflows=[typed.process], activities=[fake_echo, typed.total]) as env:
        assert env.execute(typed.process, order) == (order, Decimal("2.50"))
        assert env.client.start(typed.process, order, id="env").result(timeout=30) == (order, Decimal("2.50"))
    assert seen == [order, order] and all(type(o) is Order for o in seen)


def test_a_sagas_compensation_gets_typed_arguments(data_dir: str) -> None:
    with worker_thread(data_dir, typed.WORKFLOWS, typed.ACTIVITIES):
        client = durable.Client(data_dir)
        assert client.start(typed.refunded, an_order()).result(timeout=30) == "compensated"


def test_a_users_own_type_crosses_by_its_convert_hook(data_dir: str) -> None:
    with worker_thread(data_dir, typed.WORKFLOWS, typed.ACTIVITIES):
        client = durable.Client(data_dir)
        handle = client.start(typed.charge, Money(500, "EUR"), id="charge")
        assert handle.result(timeout=30) == Money(501, "EUR")
        history = handle.history()
    assert history[0]["input"] == ["500 EUR"]  # readable by the CLI and by other languages
    assert [e["result"] for e in history if e["kind"] == "ActivityCompleted"] == ["501 EUR"]


def test_input_that_does_not_fit_fails_the_task_not_the_workflow_and_a_fix_lets_it_go_on(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, typed.WORKFLOWS, typed.ACTIVITIES):
        handle = client.start("strict", "not a date", id="strict")  # by name: the client cannot know
        error = wait_until(lambda: handle.describe().task_error, what="the task error")
        assert error.startswith("PayloadError: input of workflow 'strict': parameter 'when': cannot make date of "
                                "str 'not a date'"), error
        assert handle.describe().status == "running"

    @durable.workflow(name="strict")
    async def fixed(when: str) -> str:  # the fix deployed: it takes a str
        return when

    with worker_thread(data_dir, [fixed], []):
        assert handle.result(timeout=30) == "not a date"


def test_a_typed_client_refuses_a_value_that_does_not_fit_before_anything_is_written(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with pytest.raises(durable.PayloadError, match=r"^input of workflow 'process': parameter 'order' at \.items\[0\]: "
                                                   r"expected Item, got dict"):
        client.start(typed.process, an_order(items=[{"sku": "a"}]), id="bad")
    with pytest.raises(durable.PayloadError, match=r"naive datetime \(give it a tzinfo"):
        client.start(typed.process, an_order(placed=dt.datetime(2026, 1, 1)), id="bad")
    assert client.list() == []


def test_a_signal_that_does_not_fit_its_handler_is_dropped_with_a_warning(data_dir: str,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    with worker_thread(data_dir, typed.WORKFLOWS, typed.ACTIVITIES):
        client = durable.Client(data_dir)
        inbox = client.start(typed.Inbox, 1, id="inbox")
        client.get_handle("inbox").signal("add", {"id": "not a uuid"})
        wait_until(lambda: "signal 'add' dropped" in caplog.text, what="the warning")
        inbox.signal("add", an_order())
        assert inbox.result(timeout=30) == [an_order()]
    assert "parameter 'order'" in caplog.text


def test_durable_result_on_the_command_line_prints_the_plain_form(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_process(data_dir, "tests.wfs.typed"):
        client.start(typed.process, an_order(), id="cli").result(timeout=30)
    out = CliRunner().invoke(cli, ["--data", data_dir, "result", "cli"])
    assert out.exit_code == 0, out.output
    order, total = json.loads(out.output)
    assert total == "2.50" and order["id"] == "00000000-0000-0000-0000-000000000005"
    assert order["items"] == [{"sku": "a", "qty": 2, "price": "1.25"}] and order["due"] == "2026-12-24"


def test_the_readme_example_of_typed_payloads_runs_as_written(data_dir: str, tmp_path: Any) -> None:
    import importlib.util
    import re
    import sys

    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    [block] = [b for b in re.findall(r"^```python\n(.*?)^```", readme, flags=re.S | re.M)
               if b.startswith("# typed payloads")]
    path = tmp_path / "readme_typed.py"
    path.write_text(block)
    spec = importlib.util.spec_from_file_location("readme_typed", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_typed"] = module  # its hints are read from its module, as any module's
    try:
        spec.loader.exec_module(module)
        order = module.Order("o-1", Decimal("12.30"), module.Status.NEW, dt.date(2026, 12, 24), ("a", "b"))
        with worker_thread(data_dir, [module.checkout], [module.pay]):
            client = durable.Client(data_dir)
            paid = client.start(module.checkout, order, id="readme").result(timeout=30)
            assert paid == module.Order("o-1", Decimal("12.30"), module.Status.PAID, dt.date(2026, 12, 24), ("a", "b"))
            assert client.get_handle("readme").result(timeout=30) == {
                "order_id": "o-1", "amount": "12.30", "status": "paid", "due": "2026-12-24", "lines": ["a", "b"]}
    finally:
        del sys.modules["readme_typed"]
