"""`_ops.idle_until`, what the test environment's time skipping stands on (`durable.testing`):
step by step on a real store with a hand-driven clock, the ops playing the worker's part.

Idle means that nothing can happen but by time passing: every pending piece of work is
claimable now, held under a lease, or scheduled for later. The next thing is the earliest due
time or visible task, but never the retry of a workflow task that failed or of an activity no
worker has (time jumping to those would only make the same failure again).
"""

from __future__ import annotations

from typing import Any

import durable
from durable import _ops
from durable._codec import Converter
from durable._defs import ActivityOptions
from durable._backend import open_store
from tests.worker.test_store_fencing import LEASE, NS, ManualClock

PLAIN = Converter()


@durable.workflow
async def one_step() -> int:
    return 0  # never run here: the test writes the workflow's commands itself


def test_idle_until_follows_claims_leases_timers_and_retries(data_dir: str) -> None:
    clock = ManualClock()
    store = open_store(data_dir, clock=clock)
    client = durable.Client(data_dir)

    def idle() -> tuple[bool, int | None]:
        return store.read(lambda t: _ops.idle_until(t, "default"))

    def write(fn: Any) -> Any:
        return store.write(fn)

    t0 = clock.ns
    assert idle() == (True, None)  # nothing at all
    client.start(one_step, id="wf")
    assert idle()[0] is False  # its first workflow task is claimable now
    [wft] = write(lambda t: _ops.claim(t, "default", "A", LEASE, 1, 0, 0))
    assert idle()[0] is False  # it runs, under a lease
    opts = ActivityOptions(retry=durable.RetryPolicy(initial_interval=3600, max_interval=3600)).to_record()
    commands = [{"k": "TimerStarted", "seq": 1, "dur": 60 * NS},
                {"k": "ActivityScheduled", "seq": 2, "name": "step", "in": PLAIN.to_payload([], "input"), "opts": opts}]
    assert write(lambda t: _ops.complete_workflow_task(t, wft["num"], wft["token"], commands)) == "ok"
    assert idle()[0] is False  # the activity is claimable now
    [act] = write(lambda t: _ops.claim(t, "default", "A", LEASE, 0, 1, 0))
    assert idle()[0] is False  # its attempt runs, under a lease
    err = {"type": "RuntimeError", "msg": "boom"}
    assert write(lambda t: _ops.fail_activity(t, act["num"], 2, act["token"], err, True, False))
    assert idle() == (True, t0 + 60 * NS)  # the timer comes before the retry's backoff (an hour)
    clock.advance(60)
    assert idle() == (False, t0 + 60 * NS)  # the timer is due: the worker's clock fires it
    assert write(lambda t: _ops.fire_due(t, 100)) == 1
    assert idle()[0] is False  # the task the timer made is claimable
    [wft2] = write(lambda t: _ops.claim(t, "default", "A", LEASE, 1, 0, 0))
    assert write(lambda t: _ops.fail_workflow_task(t, wft2["num"], wft2["token"], "KeyError: 'x'"))
    # the failed task is retried in 0.1 s, but that is not a reason for time to jump: the retry
    # of the activity is the next thing
    assert idle() == (True, t0 + 3600 * NS)
    clock.advance(3600)
    assert idle()[0] is False


def test_a_refused_activity_is_not_a_next_thing(data_dir: str) -> None:
    clock = ManualClock()
    store = open_store(data_dir, clock=clock)
    durable.Client(data_dir).start(one_step, id="wf")
    [wft] = store.write(lambda t: _ops.claim(t, "default", "A", LEASE, 1, 0, 0))
    opts = ActivityOptions().to_record()
    command = {"k": "ActivityScheduled", "seq": 1, "name": "nobody_has_it", "in": PLAIN.to_payload([], "input"), "opts": opts}
    assert store.write(lambda t: _ops.complete_workflow_task(t, wft["num"], wft["token"], [command])) == "ok"
    [act] = store.write(lambda t: _ops.claim(t, "default", "A", LEASE, 0, 1, 0))
    assert store.write(lambda t: _ops.refuse_activity(t, act["num"], 1, act["token"], "not registered"))
    assert store.read(lambda t: _ops.idle_until(t, "default")) == (True, None)
