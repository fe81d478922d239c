"""What a type checker sees of durable's public API: checked by ``mypy --strict`` in
tests/typing/test_typing.py, never run.

Each `assert_type` is a claim about an inferred type (mypy fails when the type differs). Each
``reveal_type(x)  # revealed: T`` claims that mypy shows T, parameter names included (the test
compares). Each ``# type: ignore[code]`` marks a line that must be an error: with
--warn-unused-ignores (part of --strict), mypy fails if that error ever goes away.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable
from typing import Any, assert_type, reveal_type

import durable
import durable.testing

# --- activities ----------------------------------------------------------------------------


@durable.activity
def sync_plain(x: int, tag: str = "") -> int:
    return x


@durable.activity
async def async_plain(x: int) -> str:
    return str(x)


@durable.activity(start_to_close=5, retry=durable.RetryPolicy(max_attempts=3))
def sync_options(items: list[str]) -> dict[str, int]:
    return {item: len(item) for item in items}


@durable.activity(name="renamed", cancellation="try")
async def async_options(x: float) -> bytes:
    return b""


@durable.activity()
async def async_empty_options() -> None:
    return None


# an activity keeps the function's parameters, and its result type (awaited, for async ones)
reveal_type(sync_plain)  # revealed: durable._defs.Activity[[x: int, tag: str =], int]
reveal_type(async_plain)  # revealed: durable._defs.Activity[[x: int], str]
reveal_type(sync_options)  # revealed: durable._defs.Activity[[items: list[str]], dict[str, int]]
reveal_type(async_options)  # revealed: durable._defs.Activity[[x: float], bytes]
reveal_type(async_empty_options)  # revealed: durable._defs.Activity[[], None]
reveal_type(sync_plain.with_options(queue="q"))  # revealed: durable._defs.Activity[[x: int, tag: str =], int]
as_declared: durable.Activity[[int, str], int] = sync_plain
assert_type(sync_plain.fn(1), Any)  # the function itself, outside workflows
sync_plain.with_options(queu="q")  # type: ignore[call-arg]
sync_plain.with_options(cancellation="sometimes")  # type: ignore[arg-type]
sync_plain.with_options(start_to_close="5 s")  # type: ignore[arg-type]
durable.activity(start_to_close="5 s")  # type: ignore[call-overload]


async def calls_activities() -> None:
    """Inside workflow code an activity call is an awaitable of the function's (awaited) result."""
    assert_type(sync_plain(1), Awaitable[int])
    assert_type(sync_plain(1, "t"), Awaitable[int])
    assert_type(async_plain(1), Awaitable[str])
    assert_type(await async_plain(1), str)
    assert_type(await sync_options(["a"]), dict[str, int])
    assert_type(await async_options(1.5), bytes)
    assert_type(await async_empty_options(), None)
    await async_plain("1")  # type: ignore[arg-type]
    await sync_plain()  # type: ignore[call-arg]


# --- workflows -----------------------------------------------------------------------------


@durable.workflow
async def wf_function(x: int, scale: float = 1.0) -> list[float]:
    return [x * scale, await sync_plain(x)]


@durable.workflow(name="renamed_wf", failure_exceptions=(KeyError,))
async def wf_function_options(order: dict[str, int]) -> str:
    return await async_plain(len(order))


@durable.workflow
async def wf_no_args() -> None:
    return None


@durable.workflow
class WfClass:
    def __init__(self) -> None:
        self.decision: str | None = None

    async def run(self, request: dict[str, Any], urgent: bool = False) -> str:
        await durable.wait_condition(lambda: self.decision is not None, timeout=3600)
        return self.decision or ""

    @durable.signal
    def decide(self, decision: str) -> None:
        self.decision = decision

    @durable.query
    def status(self) -> str:
        return self.decision or "pending"


@durable.workflow(name="renamed_class")
class WfClassOptions:
    async def run(self) -> int:
        return 1

    @durable.signal(name="stop")
    async def halt(self, why: str) -> None:
        pass

    @durable.query(name="progress")
    def done(self) -> float:
        return 0.5


# the decorators give back the object's own type: a class stays a class, a function a function
assert_type(WfClass, type[WfClass])
assert_type(WfClass().status(), str)
assert_type(WfClassOptions, type[WfClassOptions])
# signal and query handlers keep their types
reveal_type(WfClass.decide)  # revealed: def (self: check_api.WfClass, decision: str)
reveal_type(WfClassOptions().halt)  # revealed: def (why: str) -> typing.Coroutine[Any, Any, None]
assert_type(WfClassOptions().done(), float)


@durable.workflow  # type: ignore[type-var]
def not_async(x: int) -> int:
    return x


@durable.workflow
class NoRun:  # type: ignore[type-var]
    pass


@durable.workflow
class SyncRun:  # type: ignore[type-var]
    def run(self) -> int:
        return 1


# --- starting and results ------------------------------------------------------------------

client = durable.Client("./.durable-typing-never-run")

handle = client.start(wf_function, 1, id="w1")
assert_type(handle, durable.WorkflowHandle[list[float]])
assert_type(handle.result(timeout=10), list[float])
assert_type(client.start(wf_function, 1, 2.5, queue="q").result(), list[float])
assert_type(client.start(wf_function_options, {"a": 1}).result(), str)
assert_type(client.start(wf_no_args).result(), None)
assert_type(client.start(WfClass, {"amount": 10}).result(), str)
assert_type(client.start(WfClass, {}, True, id="c1", id_conflict_policy="use_existing"), durable.WorkflowHandle[str])
assert_type(client.start(WfClassOptions).result(), int)

# by name: anything goes, checked at run time against what the workers published
assert_type(client.start("wf_function", "not an int", id="w2"), durable.WorkflowHandle[Any])
assert_type(client.get_handle("w1"), durable.WorkflowHandle[Any])
assert_type(client.get_handle("w1").result(), Any)
assert_type(client.get_handle("w1").describe().signals, tuple[str, ...] | None)
# given the workflow, the handle's result is typed (and converted by its return annotation)
assert_type(client.get_handle("w1", workflow=wf_function).result(), list[float])
assert_type(client.get_handle("c1", workflow=WfClass).result(), str)

# a handle of a narrower result type is a handle of a wider one (covariant)
wider: durable.WorkflowHandle[object] = handle

# arguments that do not fit the workflow's parameters are errors
client.start(wf_function, "1")  # type: ignore[arg-type]
client.start(wf_function, 1, "2")  # type: ignore[call-arg, arg-type]
client.start(wf_function)  # type: ignore[call-arg, arg-type]
client.start(wf_function, 1, 2.0, 3)  # type: ignore[call-arg, arg-type]
client.start(wf_no_args, 1)  # type: ignore[arg-type]
client.start(WfClass, "not a dict")  # type: ignore[arg-type]
client.start(WfClassOptions, 1)  # type: ignore[arg-type]
client.start(wf_function, 1, idd="w3")  # type: ignore[call-overload]
# a result used as the wrong type is an error
text: str = client.start(wf_function, 1).result()  # type: ignore[assignment]

# --- the async client: the same types, awaited --------------------------------------------------


async def uses_async_client() -> None:
    aclient = durable.AsyncClient("./.durable-typing-never-run")
    ahandle = await aclient.start(wf_function, 1, id="a1")
    assert_type(ahandle, durable.AsyncWorkflowHandle[list[float]])
    assert_type(await ahandle.result(timeout=10), list[float])
    assert_type(await (await aclient.start(WfClass, {"amount": 10})).result(), str)
    assert_type(await (await aclient.start("wf_function", 1)).result(), Any)
    assert_type(aclient.get_handle("a1"), durable.AsyncWorkflowHandle[Any])
    assert_type(ahandle.sync, durable.WorkflowHandle[list[float]])
    assert_type(await aclient.count(), int)
    asched = await aclient.create_schedule("as1", wf_function, 1, 2.5, every=60)
    assert_type(asched, durable.AsyncScheduleHandle)
    assert_type(await asched.describe(), durable.ScheduleDescription)
    await aclient.create_schedule("as2", wf_function, "1", every=60)  # type: ignore[arg-type]
    async for event in ahandle.follow_history(timeout=5):
        assert_type(event, dict[str, Any])
    awider: durable.AsyncWorkflowHandle[object] = ahandle  # covariant, as WorkflowHandle is
    await aclient.start(wf_function, "1")  # type: ignore[arg-type]
    atext: str = await ahandle.result()  # type: ignore[assignment]


# an async activity declared to run on asyncio keeps its types; a loop is "trio" or "asyncio"
@durable.activity(loop="asyncio", start_to_close=5)
async def on_asyncio(url: str) -> bytes:
    return url.encode()


reveal_type(on_asyncio)  # revealed: durable._defs.Activity[[url: str], bytes]
durable.activity(loop="uvloop")  # type: ignore[call-overload]

# --- schedules: their arguments are checked as start's ----------------------------------------

sched = client.create_schedule("s1", wf_function, 1, 2.5, every=60, overlap="buffer_one")
assert_type(sched, durable.ScheduleHandle)
assert_type(client.create_schedule("s2", WfClass, {"amount": 1}, cron="@hourly"), durable.ScheduleHandle)
assert_type(client.create_schedule("s3", "wf_function", "anything", every=60), durable.ScheduleHandle)
assert_type(sched.describe(), durable.ScheduleDescription)
assert_type(sched.describe().next_action_times, tuple[datetime.datetime, ...])
assert_type(sched.describe().recent_actions, tuple[durable.ScheduleAction, ...])
assert_type(sched.backfill(datetime.datetime(2026, 1, 1), datetime.datetime(2026, 1, 2)), int)
assert_type(client.list_schedules(), list[durable.ScheduleDescription])
assert_type(client.list(schedule="s1"), list[durable.WorkflowDescription])
client.create_schedule("s4", wf_function, "1", every=60)  # type: ignore[arg-type]
client.create_schedule("s5", wf_no_args, 1, cron="@daily")  # type: ignore[arg-type]

# --- patching and the pre-deploy check --------------------------------------------------------


@durable.workflow
async def wf_patched(x: int) -> str:
    if durable.patched("fix-refund"):
        return await async_plain(x)
    durable.deprecate_patch("other")
    return ""


assert_type(durable.patched("p"), bool)
assert_type(durable.deprecate_patch("p"), None)
results = durable.check_histories(workflows=[wf_patched, WfClass], histories=[handle.export_history()])
assert_type(results, list[durable.CheckResult])
assert_type(results[0].ok, bool)
assert_type(results[0].error, str | None)
durable.check_histories(workflows=[wf_patched], histories=["not bytes"])  # type: ignore[list-item]


# --- child workflows (inside workflow code) ------------------------------------------------


@durable.workflow
async def wf_parent(n: int) -> float:
    values = await durable.execute_child(wf_function, n)
    assert_type(values, list[float])
    assert_type(await durable.execute_child(WfClass, {"amount": 1}, id="c"), str)
    assert_type(await durable.execute_child("wf_function", n), Any)
    child = await durable.start_child(wf_function, n, 2.0, parent_close_policy="abandon", run_timeout=60)
    assert_type(child, durable.ChildWorkflowHandle[list[float]])
    assert_type(await child.result(), list[float])
    await child.signal("add", 1)
    child.cancel()
    await durable.get_external_handle("other").signal(WfClass.decide, "yes")
    await durable.get_external_handle("other", run_id="1f").cancel()
    await durable.execute_child(wf_function, "1")  # type: ignore[arg-type]
    return values[0]
# --- the test environment -----------------------------------------------------------------------



def sync_test() -> None:
    with durable.testing.SyncEnvironment(workflows=[wf_function], activities=[sync_plain]) as env:
        assert_type(env.execute(wf_function, 1), list[float])
        assert_type(env.start(wf_function, 1), durable.WorkflowHandle[list[float]])
        assert_type(env.result(env.start(wf_function, 1)), list[float])
        assert_type(env.now(), datetime.datetime)
        assert_type(env.replay(wf_function, env.start(wf_function, 1)), int)
        env.execute(wf_function, "1")  # type: ignore[arg-type]
        env.sleep(3600)


async def trio_test() -> None:
    async with durable.testing.Environment(workflows=[wf_function], mock_activities={"sync_plain": len}) as env:
        assert_type(await env.execute(wf_function, 1), list[float])
        assert_type(await env.result(env.start(wf_function, 1), timeout=5), list[float])
        await env.sleep(3600)


assert_type(durable.testing.mock_activity(sync_plain)(lambda x, tag="": x), durable.Activity[Any, Any])
