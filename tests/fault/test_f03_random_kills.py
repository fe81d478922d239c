"""F03: kill -9 worker processes at random points, restart them, and compare.

Workflows run chains of steps whose "external effect" (a file) is keyed by the step's
idempotency key. Worker processes are killed with SIGKILL at random moments (in the middle of
steps, of workflow tasks, of commits) and replaced. In the end every workflow has the right result,
every completed step appears exactly once in its history, and every run of a step, on whatever
process and attempt, used the same idempotency key.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

import durable
from tests.conftest import start_worker_process, stop_worker_process
from tests.fault._util import assert_each_step_recorded_once, final_events_by_seq, history
from tests.wfs import faults

MODULE = "tests.wfs.faults"


def chaos(data_dir: str, marker_dir: Path, seed: int, kills: int, n_workflows: int, steps: int,
          seconds: float) -> None:
    rng = random.Random(seed)
    client = durable.Client(data_dir)
    workers = [start_worker_process(data_dir, MODULE, lease=1.0) for _ in range(2)]
    try:
        handles = {
            f"c{i}": client.start(faults.effect_chain, str(marker_dir), 100 * i, steps, seconds, id=f"c{i}")
            for i in range(n_workflows)
        }
        for _ in range(kills):
            time.sleep(rng.uniform(0.02, 0.4))
            victim = rng.randrange(len(workers))
            assert stop_worker_process(workers[victim], signal.SIGKILL) == -signal.SIGKILL
            workers[victim] = start_worker_process(data_dir, MODULE, lease=1.0)
        results = {wid: h.result(timeout=120) for wid, h in handles.items()}
    finally:
        for w in workers:
            stop_worker_process(w, signal.SIGKILL)
    keys_by_step: dict[tuple[str, int], set[str]] = defaultdict(set)
    for name in os.listdir(marker_dir):
        if name.endswith(".tmp"):
            continue  # a run killed before its effect was complete
        key = (marker_dir / name).read_text()
        wid, _run, seq = key.split("/")
        keys_by_step[(wid, int(seq))].add(key)
    for i, (wid, result) in enumerate(results.items()):
        assert result == 100 * i + steps, (wid, result, f"seed {seed}")
        events = history(client, wid)
        assert_each_step_recorded_once(events, f"{wid} (seed {seed})")
        finals = final_events_by_seq(events)
        assert sorted(finals) == list(range(1, steps + 1))
        assert all(e["kind"] == "ActivityCompleted" for [e] in finals.values())
        for seq in range(1, steps + 1):  # every run of a step carried the same key
            assert len(keys_by_step[(wid, seq)]) == 1, (wid, seq, keys_by_step[(wid, seq)])
        desc = client.get_handle(wid).describe()
        assert desc.status == "completed" and desc.activity_attempts >= steps
    assert client.list(status="running") == []
    runs = len([n for n in os.listdir(marker_dir) if not n.endswith(".tmp")])
    assert runs > n_workflows * steps, "no kill hit a running step: the test proved nothing"


def test_f03_random_kill_9_never_duplicates_a_step(data_dir: str, tmp_path: Path) -> None:
    markers = tmp_path / "effects"
    markers.mkdir()
    chaos(data_dir, markers, seed=1234, kills=6, n_workflows=20, steps=6, seconds=0.3)


@pytest.mark.slow
def test_f03_random_kill_9_never_duplicates_a_step_long(data_dir: str, tmp_path: Path) -> None:
    markers = tmp_path / "effects"
    markers.mkdir()
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    chaos(data_dir, markers, seed=seed, kills=40, n_workflows=100, steps=10, seconds=0.3)
