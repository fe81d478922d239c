"""kill -9 with continue-as-new: an entity workflow takes a stream of signals from several
senders and continues as new every few of them, while its worker processes are killed with
SIGKILL at random moments (in the middle of workflow tasks and of the commits that close one run
and start the next) and replaced. Every signal a sender had acknowledged is applied exactly
once, in each sender's order, across all runs: none is lost at a continue-as-new (F13).
"""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest

import durable
from examples import account
from tests.conftest import start_worker_process, stop_worker_process
from tests.fault._util import wait_until

MODULE = "examples.account"


def torture(data_dir: str, seed: int, kills: int, senders: int, per_sender: int, every: int) -> None:
    rng = random.Random(seed)
    client = durable.Client(data_dir)
    # one worker with its fast paths, one without: with them, an idle worker runs a task before
    # claiming it, and a signal that comes meanwhile makes it run again instead of landing in
    # the inbox; without them, signals land in the inbox of the final task and are carried over
    envs = [None, {"DURABLE_FAST_PATHS": "0"}]
    workers = [start_worker_process(data_dir, MODULE, lease=1.0, env=env) for env in envs]
    try:
        h = client.start("Account", 0, every, id="acct")
        sent: list[list[int]] = [[] for _ in range(senders)]
        errors: list[BaseException] = []

        def send(k: int) -> None:
            try:
                for i in range(per_sender):
                    value = k * 100_000 + i
                    h.signal("deposit", value)
                    sent[k].append(value)  # acknowledged: committed to the store
                    time.sleep(rng.uniform(0, 0.02))  # spread over the kills: more tasks, more continues
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
        for thread in threads:
            thread.start()
        for _ in range(kills):
            time.sleep(rng.uniform(0.05, 0.3))
            victim = rng.randrange(len(workers))
            assert stop_worker_process(workers[victim], signal.SIGKILL) == -signal.SIGKILL
            workers[victim] = start_worker_process(data_dir, MODULE, lease=1.0, env=envs[victim])
        for thread in threads:
            thread.join()
        assert errors == []
        expected = sum(sum(values) for values in sent)
        wait_until(lambda: h.query("current_balance", timeout=30) == expected, timeout=120,
                   what=f"every deposit applied (seed {seed})")
        h.signal("close_account")
        assert h.result(timeout=120) == expected
    finally:
        for w in workers:
            stop_worker_process(w, signal.SIGKILL)
    runs = client.list(all_runs=True)
    assert runs[0].status == "completed" and all(r.status == "continued_as_new" for r in runs[1:])
    assert len(runs) > kills, "too few continues: the kills could not fall on one"
    received = [e["input"][0] for r in reversed(runs) for e in client.get_handle("acct", run_id=r.run_id).history()
                if e["kind"] == "SignalReceived" and e["name"] == "deposit"]
    assert sorted(received) == sorted(v for values in sent for v in values), f"seed {seed}: lost or doubled"
    for k in range(senders):
        assert [v for v in received if v // 100_000 == k] == sent[k], f"seed {seed}: sender {k} out of order"
    for r in runs:
        assert durable.replay(account.Account,
                              client.get_handle("acct", run_id=r.run_id).export_history()) > 0


def test_kill_9_loses_no_signal_across_continue_as_new(data_dir: str) -> None:
    torture(data_dir, seed=16, kills=5, senders=3, per_sender=150, every=5)


@pytest.mark.slow
def test_kill_9_loses_no_signal_across_continue_as_new_long(data_dir: str) -> None:
    for seed in range(3):
        torture(data_dir + f"-{seed}", seed=seed, kills=15, senders=4, per_sender=500, every=7)
