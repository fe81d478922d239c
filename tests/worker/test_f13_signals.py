"""F13: many concurrent signal senders; the workflow sees every signal exactly once, in the order
of its history.

The workflow runs in a real worker process. Senders are threads of this process (one store
handle, writes serialised in-process) and separate processes (each with its own LMDB handle,
serialised by LMDB's writer lock).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter

import durable
from tests.conftest import ROOT, worker_process
from tests.fault._util import history, wait_until
from tests.wfs import basic

SENDER = """
import sys, durable
handle = durable.Client(sys.argv[1]).get_handle(sys.argv[2])
base, count = int(sys.argv[3]), int(sys.argv[4])
for i in range(count):
    handle.signal("add", base + i)
"""


def signals_in_history(client: durable.Client, wid: str) -> list[int]:
    return [e["input"][0] for e in history(client, wid) if e["kind"] == "SignalReceived" and e["name"] == "add"]


def assert_sender_order(received: list[int], bases: list[int], count: int) -> None:
    for base in bases:
        mine = [v for v in received if base <= v < base + count]
        assert mine == sorted(mine), f"sender {base}'s signals were reordered"


def test_f13_concurrent_senders_every_signal_once_in_history_order(data_dir: str) -> None:
    client = durable.Client(data_dir)
    threads_n, procs_n, count = 8, 3, 25
    with worker_process(data_dir, "tests.wfs.basic"):
        handle = client.start(basic.Collector, id="collector")
        wait_until(lambda: len(history(client, "collector")) >= 2, what="the workflow to start")
        proc_bases = [1000 * (threads_n + p) for p in range(procs_n)]
        procs = [
            subprocess.Popen([sys.executable, "-c", SENDER, data_dir, "collector", str(base), str(count)],
                             cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
            for base in proc_bases
        ]
        errors: list[BaseException] = []

        def send(base: int) -> None:
            try:
                for i in range(count):
                    handle.signal("add", base + i)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread_bases = [1000 * t for t in range(threads_n)]
        threads = [threading.Thread(target=send, args=(base,)) for base in thread_bases]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert [p.wait(60) for p in procs] == [0] * procs_n
        assert not errors
        handle.signal("finish")
        result = handle.result(timeout=30)
    expected = {base + i for base in thread_bases + proc_bases for i in range(count)}
    assert len(result) == len(expected) == (threads_n + procs_n) * count
    assert Counter(result) == Counter(expected)  # every signal exactly once
    assert result == signals_in_history(client, "collector")  # in the order of the history
    assert_sender_order(result, thread_bases + proc_bases, count)


def test_f13_signals_racing_the_workflow_closing_are_never_lost(data_dir: str) -> None:
    """Senders go on until the workflow has closed: every signal that was accepted (no error)
    is in the result, and every refused one got `WorkflowClosed`."""
    client = durable.Client(data_dir)
    accepted: dict[int, list[int]] = {t: [] for t in range(4)}
    refused: list[BaseException] = []
    with worker_process(data_dir, "tests.wfs.basic"):
        handle = client.start(basic.Collector, id="racing")

        def send(t: int) -> None:
            for i in range(100_000):
                try:
                    handle.signal("add", t * 1_000_000 + i)
                except durable.WorkflowClosed as exc:
                    refused.append(exc)
                    return
                accepted[t].append(t * 1_000_000 + i)

        threads = [threading.Thread(target=send, args=(t,)) for t in accepted]
        for t in threads:
            t.start()
        wait_until(lambda: all(len(v) >= 20 for v in accepted.values()), what="signals to flow")
        handle.signal("finish")
        result = handle.result(timeout=30)
        for t in threads:
            t.join(60)
    assert len(refused) == len(accepted)
    sent = [v for values in accepted.values() for v in values]
    assert sorted(result) == sorted(sent)
    assert result == signals_in_history(client, "racing")
    names = [e["name"] for e in history(client, "racing") if e["kind"] == "SignalReceived"]
    assert names.count("finish") == 1
