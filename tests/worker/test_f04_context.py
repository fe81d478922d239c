"""F04: workflow and activity context is bound to the task that runs it."""

from __future__ import annotations

import durable
from tests.conftest import worker_thread
from tests.wfs import context


def test_f04_concurrent_workflows_never_see_each_others_context(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [context.report_context], [context.whoami_async, context.whoami_sync],
                       max_concurrent_activities=64):
        handles = [client.start(context.report_context, id=f"wf-{i}") for i in range(500)]
        keys: set[str] = set()
        for h in handles:
            seen = h.result(timeout=60)
            assert len(seen) == 4
            for expected, actual, key in seen:
                assert expected == h.id and actual == h.id
                if key:
                    assert key.startswith(f"{h.id}/")
                    keys.add(key)
        assert len(keys) == 1000  # one idempotency key per activity, none shared
