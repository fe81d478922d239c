"""`AsyncClient` from trio (``trio.run``) and from asyncio (``asyncio.run``), against a real
store and a real worker in a thread.

A handle's ``await result()`` must leave the loop free: the tests send the signal that ends the
workflow from another task of the same loop *while* result() waits, so a result() that blocked
the loop would never see its workflow end.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from typing import Any

import pytest
import trio

import durable
from tests.conftest import worker_thread
from tests.wfs import basic

WORKFLOWS = [basic.three_steps, basic.Collector, basic.sleeper]
ACTIVITIES = [basic.add_one, basic.double]


# --- the same methods as Client and WorkflowHandle ------------------------------------------


def _public(cls: type) -> dict[str, Any]:
    return {name: value for name, value in vars(cls).items() if not name.startswith("_")}


def _signatures(fn: Any) -> list[str]:
    """The signatures of `fn` and of its overloads, async types named as their sync ones."""
    overloads = typing.get_overloads(fn) or [fn]
    return [str(inspect.signature(f)).replace("AsyncWorkflowHandle", "WorkflowHandle").replace(
        "AsyncScheduleHandle", "ScheduleHandle").replace("AsyncUpdateHandle", "UpdateHandle").replace("AsyncIterator", "Iterator") for f in overloads]


@pytest.mark.parametrize(("sync", "aio"), [(durable.Client, durable.AsyncClient),
                                           (durable.WorkflowHandle, durable.AsyncWorkflowHandle),
                                           (durable.ScheduleHandle, durable.AsyncScheduleHandle),
                                           (durable.UpdateHandle, durable.AsyncUpdateHandle)])
def test_the_async_classes_have_the_methods_of_the_sync_ones_with_the_same_signatures(sync: type, aio: type) -> None:
    sync_names, async_names = _public(sync), _public(aio)
    handle_attributes = {"id", "run_id", "warning"}  # set in WorkflowHandle.__init__, properties here
    missing = set(sync_names) - set(async_names)
    assert missing == set(), f"{aio.__name__} lacks {sorted(missing)}"
    assert set(async_names) - set(sync_names) <= handle_attributes
    for name, fn in sync_names.items():
        afn = async_names[name]
        if isinstance(fn, property):
            assert isinstance(afn, property), name
            continue
        assert _signatures(fn) == _signatures(afn), name
        # what does I/O is awaited; a generator is an async generator
        if inspect.isgeneratorfunction(fn):
            assert inspect.isasyncgenfunction(afn), name
        elif name in ("get_handle", "get_schedule_handle"):  # no I/O: a handle is checked when used
            assert not inspect.iscoroutinefunction(afn)
        else:
            assert inspect.iscoroutinefunction(afn), name
    if sync is durable.Client:  # made alike
        assert _signatures(sync.__init__) == _signatures(aio.__init__)
    if sync is durable.WorkflowHandle:  # its instance attributes are read-only properties here
        for name in handle_attributes:
            assert isinstance(async_names[name], property) and async_names[name].__doc__, name


def test_the_parity_check_sees_a_missing_or_different_method() -> None:
    class Lacking:
        def start(self, workflow: Any) -> None: ...

    assert set(_public(durable.Client)) - set(_public(Lacking))
    assert _signatures(durable.Client.start) != _signatures(Lacking.start)
    assert len(_signatures(durable.Client.start)) == 3  # its overloads are compared


# --- from trio ---------------------------------------------------------------------------------


def test_from_trio_result_waits_without_blocking_the_loop(data_dir: str) -> None:
    async def main() -> None:
        client = durable.AsyncClient(data_dir)
        handle = await client.start(basic.Collector, id="collect")
        assert handle.id == "collect" and handle.run_id is not None and handle.warning is None

        async def feed() -> None:
            await handle.signal("add", 4)
            while await handle.query("count") < 1:
                await trio.sleep(0.01)
            await handle.signal("finish")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            assert await handle.result(timeout=30) == [4]
        assert await (await client.start(basic.three_steps, 1)).result(timeout=30) == 5
        described = await handle.describe()
        assert described.status == "completed" and described.workflow_type == "Collector"
        assert [e["kind"] for e in await handle.history()][-1] == "WorkflowCompleted"
        followed = [e["kind"] async for e in handle.follow_history(timeout=10)]
        assert followed == [e["kind"] for e in await handle.history()]
        assert await handle.export_history() == handle.sync.export_history()
        assert [d.workflow_id for d in await client.list(workflow="Collector")] == ["collect"]
        assert await client.count(status="completed") == 2
        [worker] = await client.workers()
        assert "Collector" in worker.workflows

    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES):
        trio.run(main)


def test_schedules_from_asyncio(data_dir: str) -> None:
    async def main() -> None:
        client = durable.AsyncClient(data_dir)
        sched = await client.create_schedule("every-hour", basic.three_steps, 1, every=3600, paused=True)
        assert sched.id == "every-hour" and sched.sync.id == "every-hour"
        assert (await sched.describe()).paused
        await sched.trigger()  # one action now, paused or not
        [started] = await sched.list_workflows()
        assert started.workflow_id.startswith("every-hour-")
        assert await client.get_handle(started.workflow_id).result(timeout=30) == 5
        await sched.unpause()
        assert not (await sched.describe()).paused
        assert [d.schedule_id for d in await client.list_schedules()] == ["every-hour"]
        assert [d.workflow_id for d in await client.list(schedule="every-hour")] == [started.workflow_id]
        await client.get_schedule_handle("every-hour").delete()
        assert await client.list_schedules() == []

    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES):
        asyncio.run(main())


def test_from_trio_result_can_be_cancelled_and_times_out(data_dir: str) -> None:
    async def main() -> None:
        client = durable.AsyncClient(data_dir)
        handle = await client.start(basic.Collector, id="never-ends")
        with trio.move_on_after(0.3) as scope:
            await handle.result()
        assert scope.cancelled_caught
        with pytest.raises(durable.WaitTimeout, match="still running"):
            await handle.result(timeout=0.2)
        await handle.cancel("no more")
        with pytest.raises(durable.WorkflowFailed) as info:
            await client.get_handle("never-ends").result(timeout=30)
        assert info.value.status == "cancelled"

    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES):
        trio.run(main)


def test_follow_history_gives_events_as_they_are_recorded(data_dir: str) -> None:
    async def main() -> None:
        client = durable.AsyncClient(data_dir)
        handle = await client.start(basic.Collector, id="followed")
        kinds = []
        async for event in handle.follow_history(timeout=30):
            kinds.append(event["kind"])
            if event["kind"] == "WorkflowStarted" or (event["kind"] == "WorkflowTaskCompleted" and len(kinds) < 5):
                await handle.signal("finish")  # recorded after the stream began: it must still come
        assert kinds[-1] == "WorkflowCompleted" and "SignalReceived" in kinds, kinds

    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES):
        trio.run(main)


async def test_errors_come_as_from_client(data_dir: str) -> None:
    client = durable.AsyncClient(data_dir)
    with pytest.raises(durable.InvalidArgument, match="workflow id"):
        await client.start(basic.three_steps, 1, id="")
    with pytest.raises(durable.WorkflowNotFound):
        await client.get_handle("nobody").describe()
    with pytest.raises(durable.InvalidArgument, match="start"):
        [e async for e in client.get_handle("nobody").follow_history(-1)]
    with pytest.raises(durable.WorkflowNotFound):
        await client.get_handle("nobody").terminate("why")


def test_outside_a_loop_it_says_to_use_client(data_dir: str) -> None:
    client = durable.AsyncClient(data_dir)
    coro = client.count()
    with pytest.raises(durable.DurableError, match="use durable.Client"):
        coro.send(None)
    coro.close()


# --- from asyncio ------------------------------------------------------------------------------


def test_from_asyncio_result_waits_without_blocking_the_loop_and_can_be_cancelled(data_dir: str) -> None:
    async def main() -> tuple[Any, ...]:
        client = durable.AsyncClient(data_dir)
        handle = await client.start(basic.Collector, id="collect")

        async def feed() -> None:
            await handle.signal("add", 7)
            while await handle.query("count") < 1:
                await asyncio.sleep(0.01)
            await handle.signal("finish")

        feeding = asyncio.create_task(feed())
        result = await handle.result(timeout=30)
        await feeding
        other = await client.start(basic.Collector, id="never-ends")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(other.result(), 0.3)
        with pytest.raises(durable.WaitTimeout):
            await other.result(timeout=0.2)
        await other.terminate("done testing")
        kinds = [e["kind"] async for e in handle.follow_history(timeout=10)]
        three = await (await client.start(basic.three_steps, 2)).result(timeout=30)
        return result, kinds[-1], three, await client.count(), (await other.describe()).status

    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES):
        out = asyncio.run(main())
    assert out == ([7], "WorkflowCompleted", 7, 3, "terminated")


def test_the_sync_client_waiting_in_async_code_says_to_use_async_client(
    data_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "durable.client" and "AsyncClient" in r.getMessage()]

    with worker_thread(data_dir, WORKFLOWS, ACTIVITIES):
        plain = durable.Client(data_dir)
        assert plain.start(basic.three_steps, 1, id="plain").result(timeout=30) == 5
        plain.start(basic.Collector, id="c")
        assert plain.get_handle("c").query("count", timeout=30) == 0
        assert warnings() == []  # plain code: nothing to say

        async def blocking() -> None:
            handle = plain.start(basic.three_steps, 1)
            assert handle.result(timeout=30) == 5
            assert handle.result(timeout=30) == 5  # said once per client

        async def awaiting() -> None:
            handle = await durable.AsyncClient(data_dir).start(basic.three_steps, 1)
            assert await handle.result(timeout=30) == 5
            assert await durable.AsyncClient(data_dir).get_handle("c").query("count", timeout=30) == 0

        async def querying() -> None:
            assert durable.Client(data_dir).get_handle("c").query("count", timeout=30) == 0

        asyncio.run(blocking())
        [said] = warnings()
        assert "result() blocks the asyncio event loop" in said and "await handle.result()" in said
        asyncio.run(awaiting())  # its waits run in worker threads: nothing to say
        assert len(warnings()) == 1
        trio.run(querying)
        assert "query() blocks the trio event loop" in warnings()[-1] and len(warnings()) == 2
