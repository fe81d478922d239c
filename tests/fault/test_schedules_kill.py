"""Schedules fire each slot exactly once however worker processes die.

Firing a slot is one transaction (the workflow started, the action recorded, the next due entry
set), so a worker killed before its commit leaves the slot due for another worker, and one killed
after it leaves the slot done. Real `durable worker` processes, real SIGKILL: at a crash point
inside the firing transaction, and at random moments while several workers race to fire.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time

import durable
from durable import _schedules
from tests.conftest import start_worker_process, stop_worker_process
from tests.fault._util import wait_until
from tests.wfs import basic

MODULE = "tests.wfs.basic"
NS = 1_000_000_000


def slots_started(client: durable.Client, sid: str) -> list[int]:
    """The slot times (ns) of the workflows `sid` started, checked to be one run per id."""
    descs = client.list(schedule=sid, all_runs=True)
    by_id = [d.workflow_id for d in descs]
    assert len(by_id) == len(set(by_id)), f"a slot's workflow has two runs: {sorted(by_id)}"
    slots = []
    for d in descs:
        rec = client._store.read(lambda t, wid=d.workflow_id: durable._ops.load_wf(t, wid))
        assert rec["sched"] == sid and _schedules.slot_workflow_id(sid, rec["slot"]) == d.workflow_id
        slots.append(rec["slot"])
    return sorted(slots)


def assert_each_slot_once(slots: list[int], every_ns: int) -> None:
    """Every slot from the first to the last started, each exactly once."""
    assert slots, "no slot fired"
    assert slots == list(range(slots[0], slots[-1] + every_ns, every_ns)), "a slot was missed or started twice"


def test_a_worker_killed_inside_the_firing_transaction_leaves_the_slot_to_another(data_dir: str) -> None:
    client = durable.Client(data_dir)
    proc = start_worker_process(data_dir, MODULE, lease=1.0, env={"DURABLE_CRASHPOINT": "schedule-before-commit:2"})
    try:
        h = client.create_schedule("s", basic.three_steps, 1, every=0.3, overlap="allow_all")
        second = h.describe().next_action_times[1]  # the worker dies while it fires this slot
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        stop_worker_process(proc)
    assert "crash point schedule-before-commit reached (hit 2)" in "".join(proc.log_lines)  # type: ignore[attr-defined]
    dying = f"s-{second.isoformat().replace('+00:00', 'Z')}"
    assert dying not in [d.workflow_id for d in client.list(all_runs=True)]  # not committed
    proc = start_worker_process(data_dir, MODULE, lease=1.0)
    try:
        wait_until(lambda: len(slots_started(client, "s")) >= 4, what="more slots after the restart")
        h.pause()
    finally:
        assert stop_worker_process(proc) == 0
    assert [d.workflow_id for d in client.list(all_runs=True)].count(dying) == 1  # fired once, by the next worker
    assert_each_slot_once(slots_started(client, "s"), int(0.3 * NS))


def test_kill_9_while_several_workers_race_to_fire(data_dir: str) -> None:
    client = durable.Client(data_dir)
    every = 0.2
    h = client.create_schedule("race", basic.three_steps, 1, every=every, jitter=0.1, overlap="allow_all")
    rng = random.Random(17)
    workers: list[subprocess.Popen[str]] = [start_worker_process(data_dir, MODULE, lease=1.0) for _ in range(3)]
    kills = 0
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.05, 0.6))
            victim = workers.pop(rng.randrange(len(workers)))
            victim.send_signal(signal.SIGKILL)
            assert stop_worker_process(victim) == -signal.SIGKILL
            kills += 1
            workers.append(start_worker_process(data_dir, MODULE, lease=1.0))
        h.pause()
        # every workflow the schedule started runs to its end on the survivors
        wait_until(lambda: client.count(status="running") == 0, timeout=60, what="the started workflows to end")
    finally:
        for w in workers:
            stop_worker_process(w, signal.SIGKILL)
    slots = slots_started(client, "race")
    assert kills >= 5 and len(slots) >= 10
    assert_each_slot_once(slots, int(every * NS))
    assert h.describe().actions_started == len(slots)
    assert {d.status for d in client.list(schedule="race")} == {"completed"}
    assert {client.get_handle(d.workflow_id).result(timeout=5) for d in client.list(schedule="race")} == {5}
