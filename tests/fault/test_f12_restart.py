"""F12: stopping every worker process in the middle of running workflows loses nothing.

Real `durable worker` processes on a real store. Slow activities, a durable timer and a workflow
waiting for a signal are all in flight when every worker is stopped (SIGTERM, or SIGKILL with no
chance to clean up). While no worker runs, the timer falls due and a signal is sent. New worker
processes then finish everything, with the right results and each step recorded once.
"""

from __future__ import annotations

import signal
import time

import pytest

import durable
from tests.conftest import start_worker_process, stop_worker_process
from tests.fault._util import assert_each_step_recorded_once, history, kinds, wait_until
from tests.wfs import faults

MODULE = "tests.wfs.faults"
STEPS = 5
TIMER_SECONDS = 4.0


def completed_steps(client: durable.Client, wid: str) -> int:
    return kinds(history(client, wid)).count("ActivityCompleted")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_f12_stop_every_worker_mid_flight_then_restart(data_dir: str, sig: signal.Signals) -> None:
    client = durable.Client(data_dir)
    # Killed workers' leases must expire soon; a graceful stop ends its attempts itself, and a
    # longer lease keeps a slow heartbeat (PostgreSQL on a loaded machine) from adding a retry.
    lease = 1.0 if sig == signal.SIGKILL else 5.0
    workers = [start_worker_process(data_dir, MODULE, lease=lease) for _ in range(2)]
    try:
        chains = {f"chain-{i}": 10 * i for i in range(4)}
        for wid, x in chains.items():
            client.start(faults.inc_chain, x, STEPS, 0.25, id=wid)
        # Long enough that a slow store (PostgreSQL on a loaded machine) reaches mid-flight first.
        client.start(faults.timer_then_inc, TIMER_SECONDS, 100, id="timer")
        client.start(faults.Gate, id="gate")

        def mid_flight() -> bool:
            steps = [completed_steps(client, wid) for wid in chains]
            return (
                all(1 <= n < STEPS for n in steps)
                and "TimerStarted" in kinds(history(client, "timer"))
                and "TimerFired" not in kinds(history(client, "timer"))
                and len(history(client, "gate")) >= 2
            )

        wait_until(mid_flight, timeout=20, what="every workflow to be in the middle of its work")
    finally:
        codes = [stop_worker_process(w, sig) for w in workers]
    assert codes == ([0, 0] if sig == signal.SIGTERM else [-signal.SIGKILL] * 2)

    # nothing of the running work is lost while no process serves the store
    running = {d.workflow_id for d in client.list(status="running")}
    assert running == set(chains) | {"timer", "gate"}
    gate = client.get_handle("gate")
    gate.signal("open", "sent while no worker ran")
    [started] = [e for e in history(client, "timer") if e["kind"] == "TimerStarted"]
    due = started["time"].timestamp() + started["duration_ns"] / 1e9
    wait_until(lambda: time.time() > due + 0.1, timeout=TIMER_SECONDS + 5, what="the timer to fall due while no worker runs")
    assert "TimerFired" not in kinds(history(client, "timer"))

    workers = [start_worker_process(data_dir, MODULE, lease=lease) for _ in range(2)]
    try:
        for wid, x in chains.items():
            assert client.get_handle(wid).result(timeout=30) == x + STEPS
        assert client.get_handle("timer").result(timeout=30) == 101
        assert gate.result(timeout=30) == "sent while no worker ran"
    finally:
        for w in workers:
            assert stop_worker_process(w) == 0
    for wid in [*chains, "timer", "gate"]:
        events = history(client, wid)
        assert_each_step_recorded_once(events, wid)
        assert client.get_handle(wid).describe().status == "completed"
    assert [e["name"] for e in history(client, "gate") if e["kind"] == "SignalReceived"] == ["open"]
    if sig == signal.SIGTERM:  # a graceful stop lets running steps finish: no attempt is lost
        for wid in chains:
            desc = client.get_handle(wid).describe()
            assert (desc.activities_scheduled, desc.activity_attempts) == (STEPS, STEPS), [
                {k: v for k, v in e.items() if k not in ("time", "result", "input")} for e in history(client, wid)]
