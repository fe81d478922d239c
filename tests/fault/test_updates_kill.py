"""kill -9 of worker processes while updates are in flight: every update id is accepted and
completed exactly once in the history, its effect on the workflow's state counted once, and
every caller (and a caller who retries with the same update id, as after a client crash)
gets its outcome once a worker runs again.

Real `durable worker` processes with a 1 s lease, killed with SIGKILL while callers in threads
wait on their updates; the handlers run an activity each (an effect outside the store)."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import durable
from tests.conftest import start_worker_process, stop_worker_process
from tests.fault._util import assert_each_step_recorded_once, history, wait_until
from tests.wfs import updates as u

MODULE = "tests.wfs.updates"
N = 12
TIMEOUT = 90


def test_kill_9_with_updates_in_flight_each_update_exactly_once(data_dir: str, tmp_path: Path) -> None:
    client = durable.Client(data_dir)
    effects = tmp_path / "effects.txt"
    effects.touch()
    handle = client.start(u.Counter, str(effects), id="counter")
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            results[i] = handle.update("add_recorded", i, f"tag{i}", update_id=f"u{i}", timeout=TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(1, N + 1)]
    victims = []
    survivor = None

    def effect_lines() -> list[str]:
        return effects.read_text().split()

    try:
        for th in threads:  # requests wait in the store: no worker yet
            th.start()
        victim = start_worker_process(data_dir, MODULE, lease=1.0)
        victims.append(victim)
        # kill the first worker while updates are accepted and their activities run (held)
        wait_until(lambda: len(effect_lines()) >= 3, timeout=30, what="updates' activities to run")
        assert any(e["kind"] == "UpdateAccepted" for e in history(client, "counter"))
        assert stop_worker_process(victim, signal.SIGKILL) == -signal.SIGKILL
        # a second worker takes the steps over once the leases expire; killed mid-step too
        seen = len(effect_lines())
        victim = start_worker_process(data_dir, MODULE, lease=1.0)
        victims.append(victim)
        wait_until(lambda: len(effect_lines()) > seen, timeout=30, what="the second worker to retry a step")
        assert stop_worker_process(victim, signal.SIGKILL) == -signal.SIGKILL
        assert not results and not errors  # every caller still waits
        Path(str(effects) + ".go").touch()
        survivor = start_worker_process(data_dir, MODULE, lease=1.0)
        for th in threads:
            th.join(TIMEOUT + 10)
        # a caller retrying with the same update id (its first call lost) gets the same outcome
        retried = {i: handle.update("add_recorded", i, f"tag{i}", update_id=f"u{i}", timeout=TIMEOUT)
                   for i in range(1, N + 1)}
        total = handle.update("finish", timeout=TIMEOUT)
        assert handle.result(TIMEOUT) == total
    finally:
        for proc in victims:
            if proc.poll() is None:
                stop_worker_process(proc, signal.SIGKILL)
        if survivor is not None:
            assert stop_worker_process(survivor) == 0
    assert not errors, errors
    assert retried == results
    assert total == sum(range(1, N + 1))  # each handler's effect on the state counted once
    events = history(client, "counter")
    assert_each_step_recorded_once(events, "counter")
    accepted = Counter(e["uid"] for e in events if e["kind"] == "UpdateAccepted")
    completed = Counter(e["uid"] for e in events if e["kind"] == "UpdateCompleted")
    ids = {f"u{i}" for i in range(1, N + 1)}
    assert {k: v for k, v in accepted.items() if k in ids} == {k: 1 for k in ids}
    assert {k: v for k, v in completed.items() if k in ids} == {k: 1 for k in ids}
    # each result is the total right after that update: all distinct, the largest the sum
    assert sorted(results.values()) == sorted(set(results.values()))
    assert max(results.values()) == total
    # the activity (at least once) ran for every update; a kill may have repeated one
    lines = effects.read_text().split()
    assert set(lines) == {f"tag{i}" for i in range(1, N + 1)}
    assert len(lines) > N  # the kills did interrupt steps, which ran again


def test_kill_9_at_random_moments_every_update_once(data_dir: str) -> None:
    """Many small updates (a sync handler) from callers that keep sending, one after the other,
    while the worker is killed again and again: acceptance and completion are recorded with
    their task or not at all, so each update id is applied to the state once."""
    client = durable.Client(data_dir)
    handle = client.start(u.Counter, id="counter")
    senders, each = 8, 8
    n = senders * each
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def send(s: int) -> None:
        try:
            for k in range(each):
                i = s * each + k + 1
                results[i] = handle.update("add", i, update_id=f"r{i}", timeout=TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(s,)) for s in range(senders)]
    procs = []
    done_at_kill = []
    try:
        for th in threads:
            th.start()
        for _ in range(4):
            proc = start_worker_process(data_dir, MODULE, lease=1.0)
            procs.append(proc)
            threshold = min(len(results) + n // 8, n)  # each worker gets some done, then dies
            wait_until(lambda: len(results) >= threshold, timeout=30, what=f"{threshold} updates done")
            stop_worker_process(proc, signal.SIGKILL)
            done_at_kill.append(len(results))
        procs.append(start_worker_process(data_dir, MODULE, lease=1.0))
        for th in threads:
            th.join(TIMEOUT + 10)
        retried = {i: handle.update("add", i, update_id=f"r{i}", timeout=TIMEOUT) for i in range(1, n + 1)}
        total = handle.update("finish", timeout=TIMEOUT)
    finally:
        for proc in procs[:-1]:
            if proc.poll() is None:
                stop_worker_process(proc, signal.SIGKILL)
        if procs:
            assert stop_worker_process(procs[-1]) == 0
    assert not errors, errors
    assert min(done_at_kill) < n  # the kills came while updates were still being sent
    assert retried == results and len(results) == n
    assert total == sum(range(1, n + 1))
    events = history(client, "counter")
    for kind in ("UpdateAccepted", "UpdateCompleted"):
        counted = Counter(e["uid"] for e in events if e["kind"] == kind and e["uid"].startswith("r"))
        assert counted == {f"r{i}": 1 for i in range(1, n + 1)}, kind
    assert sorted(results.values()) == sorted(set(results.values()))  # each saw its own total


CALLER = """
import sys, durable
handle = durable.Client(sys.argv[1]).get_handle("counter")
print(handle.update("add_recorded", 5, "from-the-dead-caller", update_id="crash-1", timeout=90), flush=True)
"""


def test_a_caller_killed_while_waiting_retries_with_the_same_id(data_dir: str, tmp_path: Path) -> None:
    """The client process dies (kill -9) while its update runs; a new process asks again with
    the same update id and gets the outcome of the one update, whose handler ran once."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    client = durable.Client(data_dir)
    effects = tmp_path / "effects.txt"
    effects.touch()
    handle = client.start(u.Counter, str(effects), id="counter")
    worker = start_worker_process(data_dir, MODULE, lease=1.0)
    try:
        caller = subprocess.Popen([sys.executable, "-c", CALLER, data_dir], cwd=ROOT,
                                  env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)
        wait_until(lambda: effects.read_text().split() == ["from-the-dead-caller"], timeout=30,
                   what="the update's activity to run")
        caller.kill()
        caller.wait(30)
        assert caller.stdout is not None
        caller.stdout.close()
        Path(str(effects) + ".go").touch()
        assert handle.update("add_recorded", 5, "from-the-dead-caller", update_id="crash-1", timeout=TIMEOUT) == 5
        assert handle.update("finish", timeout=TIMEOUT) == 5
    finally:
        assert stop_worker_process(worker) == 0
    assert effects.read_text().split() == ["from-the-dead-caller"]  # the handler ran once
    assert [e["kind"] for e in history(client, "counter")].count("UpdateAccepted") == 2  # crash-1, finish
