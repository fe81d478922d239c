"""Replay speed: events per second through `durable.replay` on a long, really recorded history.

The history comes from running `bench.workloads.replay_wf` on a worker: ``steps`` activities,
``width`` at a time (two events each, plus a `TaskCompleted` for each activation that scheduled
nothing), about ``events`` events in all. Running the activities in batches records the history
in seconds where one at a time would take minutes (each step is three synced commits); the replay
itself goes through every event either way. Then ``handle.export_history()`` and ``repeats``
timed calls of ``durable.replay(replay_wf, history)``: the best and the median. To show where the
time goes, each repeat also times decoding the bytes alone (`decode_best_s`) and the replay of the
decoded list of events, which `durable.replay` accepts too (`decoded_best_s`).
"""

from __future__ import annotations

import time
from typing import Any

import durable
from durable._limits import MAX_HISTORY_EVENTS
from durable._replay import decode_history

from . import workloads
from ._util import median


def steps_for(events: int) -> int:
    """Activities to run for a history of about `events` events (start and end take two)."""
    return max(1, (events - 2) // 2)


def measure(client: durable.Client, *, events: int = 10_000, width: int = 100, repeats: int = 5,
            tag: str = "replay") -> dict[str, Any]:
    """Record a history of about `events` events, then time its replay; return the JSON record."""
    if events > MAX_HISTORY_EVENTS:
        raise ValueError(f"a history holds at most {MAX_HISTORY_EVENTS} events (MAX_HISTORY_EVENTS)")
    steps = steps_for(events)
    t0 = time.perf_counter()
    handle = client.start(workloads.replay_wf, steps, width, id=f"{tag}-{steps}x{width}")
    assert handle.result(timeout=max(120, steps / 10)) == steps
    record_s = time.perf_counter() - t0
    history = handle.export_history()
    length = handle.describe().history_length
    decode_times, replay_times, decoded_times = [], [], []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        replayed = durable.replay(workloads.replay_wf, history)
        replay_times.append(time.perf_counter() - t0)
        assert replayed == length, (replayed, length)
        t0 = time.perf_counter()
        events = decode_history(history)
        decode_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        durable.replay(workloads.replay_wf, events)
        decoded_times.append(time.perf_counter() - t0)
    best, med = min(replay_times), median(replay_times)
    return {
        "system": "durable", "workload": "replay", "activities": steps, "width": width,
        "events": length, "history_kb": round(len(history) / 1024, 1), "record_s": round(record_s, 3),
        "repeats": len(replay_times), "best_s": round(best, 4), "median_s": round(med, 4),
        "events_per_s": round(length / best), "events_per_s_median": round(length / med),
        "us_per_event": round(1e6 * best / length, 2), "decode_best_s": round(min(decode_times), 4),
        "decoded_best_s": round(min(decoded_times), 4),
    }
