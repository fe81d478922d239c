"""Every workflow ends (issue 4, point 8; F10).

- Retry delays of any valid policy, for any attempt number, are finite, never negative and never
  above `max_interval`, and the whole schedule of a policy is bounded (property test); a policy
  record read back from a store with out-of-range values is refused, not obeyed.
- A workflow whose *task* keeps failing because of a bug in its code (here: it returns a value
  that cannot be stored, so the task fails each time it runs, the workflow does not) is visible
  as such in `describe` and `list` (running, with the error and a growing failure count) and its
  history is left as it was; deployed fixed code then finishes it by itself, with its step run
  once. (The deploy that breaks replay, NondeterminismError, is tests/worker/test_nondeterminism_deploy.py.)
"""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
from hypothesis import example, given, settings

import durable
from durable._limits import MAX_ATTEMPTS_CAP, MAX_BACKOFF_SECONDS
from tests.conftest import start_worker_process, stop_worker_process
from tests.fault._util import assert_each_step_recorded_once, kinds, wait_until

policies = st.builds(
    durable.RetryPolicy,
    max_attempts=st.integers(1, MAX_ATTEMPTS_CAP),
    initial_interval=st.floats(0, MAX_BACKOFF_SECONDS),
    backoff=st.floats(1.0, 100.0),
    max_interval=st.floats(0, MAX_BACKOFF_SECONDS),
)


@settings(max_examples=3000, deadline=None)
# two overflows this test found: an attempt number past float range with backoff 1, and
# max_interval / a subnormal initial_interval overflowing to inf (so the cap was never taken)
@example(policy=durable.RetryPolicy(max_attempts=1, initial_interval=1.0, backoff=1.0, max_interval=0.0), attempt=2**2000)
@example(policy=durable.RetryPolicy(initial_interval=1.1125369292536007e-308, backoff=42.0, max_interval=2.0), attempt=191)
@given(policy=policies, attempt=st.one_of(st.integers(-5, 200), st.integers(0, 2**4096)))
def test_retry_delay_is_finite_non_negative_and_capped(policy: durable.RetryPolicy, attempt: int) -> None:
    delay = policy.delay(attempt)
    assert isinstance(delay, float) and math.isfinite(delay)
    assert 0.0 <= delay <= max(policy.max_interval, 0.0)
    # the whole retry schedule is bounded: max_attempts delays of at most max_interval each
    assert policy.max_attempts * policy.max_interval <= MAX_ATTEMPTS_CAP * MAX_BACKOFF_SECONDS
    # and the store can hold the time it becomes visible (u64 nanoseconds)
    assert int(delay * 1e9) < 2**63


@pytest.mark.parametrize("bad", [
    {"max": 0}, {"max": -1}, {"max": 10**30}, {"init": float("inf")}, {"init": -1.0},
    {"back": float("nan")}, {"back": 0.0}, {"maxi": 1e300}, {"max": "many"},
])
def test_a_retry_policy_read_back_out_of_range_is_refused(bad: dict[str, object]) -> None:
    rec = {**durable.RetryPolicy().to_record(), **bad}
    with pytest.raises(durable.InvalidArgument):
        durable.RetryPolicy.from_record(rec)


def test_a_bug_that_fails_the_task_is_visible_and_fixed_code_resumes_it(data_dir: str) -> None:
    client = durable.Client(data_dir)
    buggy = start_worker_process(data_dir, "tests.wfs.buggy_a", lease=1.0)
    try:
        handle = client.start("buggy", 21, id="bug-1")
        desc = wait_until(lambda: (d := handle.describe()).task_failures >= 2 and d, timeout=30,
                          what="the workflow task to fail twice")
        assert desc.status == "running"
        assert desc.task_error is not None and desc.task_error.startswith("PayloadError: "), desc.task_error
        assert "workflow result" in desc.task_error
        [listed] = [d for d in client.list(status="running") if d.workflow_id == "bug-1"]
        assert listed.task_error == desc.task_error and listed.task_failures >= 2
        events = handle.history()
        assert kinds(events).count("ActivityCompleted") == 1  # the step ran, once
        assert not any(k.startswith("Workflow") and k != "WorkflowStarted" for k in kinds(events))
        failures = desc.task_failures
        wait_until(lambda: handle.describe().task_failures > failures, timeout=30,
                   what="the task to be tried again (it keeps failing, it does not end)")
    finally:
        assert stop_worker_process(buggy) == 0
    assert handle.history()[: len(events)] == events  # the failing tries wrote nothing to the history

    fixed = start_worker_process(data_dir, "tests.wfs.buggy_b", lease=1.0)
    try:
        assert handle.result(timeout=30) == [21, 42]
    finally:
        assert stop_worker_process(fixed) == 0
    desc = handle.describe()
    assert desc.status == "completed" and desc.task_error is None
    events = handle.history()
    assert_each_step_recorded_once(events, "bug-1")
    assert kinds(events).count("ActivityCompleted") == 1 and kinds(events)[-1] == "WorkflowCompleted"
    assert desc.activity_attempts == 1
