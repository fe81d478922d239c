"""Schedules with real workers on the real clock: any worker of the store fires them (whatever
its queue), the workflows they start run on their own queue's workers, a start buffered by
buffer_one starts when the running one ends, and a failure pauses a schedule that asks for it."""

from __future__ import annotations

import durable
from examples import hello
from tests.conftest import worker_thread
from tests.fault._util import wait_until


@durable.workflow
async def boom() -> None:
    raise durable.ApplicationError("boom", non_retryable=True)


def statuses(client: durable.Client, sid: str) -> list[str]:
    return [d.status for d in reversed(client.list(schedule=sid))]


def test_a_worker_of_any_queue_fires_schedules_and_their_workflows_run_on_theirs(data_dir: str) -> None:
    client = durable.Client(data_dir)
    h = client.create_schedule("fast", hello.three_steps, 1, every=0.25, overlap="allow_all")
    # no worker: nothing fires, the next fire time waits in the store
    assert client.list(schedule="fast") == [] and h.describe().next_action_times
    with worker_thread(data_dir, [hello.Approval], [], queue="elsewhere"):
        wait_until(lambda: len(statuses(client, "fast")) >= 3, what="three slots fired by the other queue's worker")
        assert set(statuses(client, "fast")) == {"running"}  # no worker serves "default" yet
        with worker_thread(data_dir, [hello.three_steps], [hello.add_one, hello.double]):
            wait_until(lambda: statuses(client, "fast")[:3] == ["completed"] * 3, what="the started ones to run")
        h.pause()
    done = client.list(schedule="fast")
    assert {client.get_handle(d.workflow_id).result(timeout=10) for d in done if d.status == "completed"} == {5}
    # each slot once: ids are the slots' times, one run each, every one a slot of the interval
    assert client.count(all_runs=True) == client.count() == len(done) == h.describe().actions_started
    slots = sorted(d.workflow_id.removeprefix("fast-") for d in done)
    assert len(set(slots)) == len(slots)


def test_buffer_one_starts_the_buffered_slot_when_the_running_workflow_ends(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [hello.Approval], []):
        h = client.create_schedule("ap", hello.Approval, {"amount": 1}, every=0.2, overlap="buffer_one")
        wait_until(lambda: h.describe().buffered is not None, what="a slot buffered behind the running one")
        first = client.list(schedule="ap")
        assert len(first) == 1
        client.get_handle(first[0].workflow_id).signal("decide", "yes")
        wait_until(lambda: len(statuses(client, "ap")) == 2, what="the buffered slot to start")
        assert statuses(client, "ap")[0] == "completed"
        h.delete()


def test_a_failed_workflow_pauses_a_schedule_with_pause_on_failure(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [boom], []):
        h = client.create_schedule("b", boom, every=0.2, pause_on_failure=True)
        wait_until(lambda: h.describe().paused, what="the schedule to pause")
    desc = h.describe()
    assert statuses(client, "b") == ["failed"] and "failed (pause_on_failure)" in desc.note
    assert desc.next_action_times == ()



@durable.workflow
class ContinuesThen:
    """Continues as new `runs_left` times, then waits for the signal "go" and ends by `outcome`."""

    def __init__(self) -> None:
        self.go = False

    async def run(self, runs_left: int, outcome: str) -> str:
        if runs_left:
            durable.continue_as_new(runs_left - 1, outcome)
        await durable.wait_condition(lambda: self.go)
        if outcome == "fail":
            raise durable.ApplicationError("the last run failed", non_retryable=True)
        return outcome

    @durable.signal
    def go_on(self) -> None:
        self.go = True


def test_a_workflow_that_continues_as_new_still_runs_for_its_schedule(data_dir: str) -> None:
    """A run closed by continue-as-new is not the end of what the schedule started: buffer_one
    waits for the chain's last run, and that run's failure pauses a pause_on_failure schedule."""
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [ContinuesThen], []):
        h = client.create_schedule("chain", ContinuesThen, 2, "fail", every=0.2, overlap="buffer_one",
                                   pause_on_failure=True)
        [first] = wait_until(lambda: client.list(schedule="chain") or None, what="the first slot")
        handle = client.get_handle(first.workflow_id)
        wait_until(lambda: len(client.list(all_runs=True, workflow="ContinuesThen")) == 3, what="two continues")
        wait_until(lambda: h.describe().buffered is not None, what="a slot buffered behind the chain")
        assert len(client.list(schedule="chain")) == 1  # the continued run did not free the slot
        assert h.describe().running == first.workflow_id
        handle.signal("go_on")
        wait_until(lambda: h.describe().paused, what="the chain's failure to pause the schedule")
        assert client.get_handle(first.workflow_id).describe().status == "failed"
        assert client.get_handle(first.workflow_id).describe().schedule_id == "chain"
