"""Schedules under a clock the test moves by hand: slots, overlap policies, catch-up after
downtime, jitter, pause, trigger, backfill, delete, listing what a schedule started, bad input,
and the migration of a store of format 2 (which had no schedules).

Real stores in temporary directories. No worker runs here: the test fires due entries with
`_ops.fire_due`, the op a worker's timer loop runs, after moving the clock (tests/worker and
tests/fault run schedules with real workers).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import lmdb
import pytest

import durable
from durable import _ops, _schedules
from durable._limits import SCHEDULE_FIRE_BATCH
from durable._backend import open_store
from durable._store import FORMAT_VERSION, Clock, Store, u64
from tests.wfs import basic

NS = 1_000_000_000
#: 2027-01-15T08:00:00Z, a whole hour
T0 = 1_800_000_000 * NS - (1_800_000_000 % 3600) * NS
UTC = dt.timezone.utc


class ManualClock(Clock):
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.ns = T0

    def now_ns(self) -> int:
        return self.ns


@pytest.fixture
def clocked(data_dir: str) -> tuple[durable.Client, ManualClock]:
    clock = ManualClock()
    store = open_store(data_dir, clock=clock)
    client = durable.Client(data_dir)
    assert client._store is store
    return client, clock


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(T0 / NS + seconds, tz=UTC)


def tick(client: durable.Client, clock: ManualClock, seconds: float) -> None:
    """Move the clock to T0 + `seconds` and fire what is due there, as a worker's timer loop does."""
    clock.ns = T0 + int(seconds * NS)
    while client._store.write(lambda t: _ops.fire_due(t, 256)):
        pass


def started(client: durable.Client, sid: str) -> list[str]:
    """Ids of the workflows schedule `sid` started, oldest first."""
    return [d.workflow_id for d in reversed(client.list(schedule=sid))]


def wid(sid: str, seconds: float) -> str:
    return f"{sid}-{at(seconds).isoformat().replace('+00:00', 'Z')}"


def every_minute(client: durable.Client, sid: str = "s", **options: object) -> durable.ScheduleHandle:
    return client.create_schedule(sid, basic.Collector, every=60, **options)  # type: ignore[arg-type]


# --- slots ----------------------------------------------------------------------------------------


def test_each_slot_starts_one_workflow_named_by_its_time(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    clock.ns = T0 + 10 * NS
    h = every_minute(client, overlap="allow_all")
    assert h.describe().next_action_times[:2] == (at(60), at(120))
    tick(client, clock, 59.9)
    assert started(client, "s") == []
    tick(client, clock, 60)
    assert started(client, "s") == [wid("s", 60)]
    tick(client, clock, 60)  # firing again at the same time starts nothing more
    tick(client, clock, 119)
    assert started(client, "s") == [wid("s", 60)]
    tick(client, clock, 120)
    assert started(client, "s") == [wid("s", 60), wid("s", 120)]
    desc = client.get_handle(wid("s", 60)).describe()
    assert (desc.schedule_id, desc.workflow_type, desc.status) == ("s", "Collector", "running")
    sd = h.describe()
    assert sd.actions_started == 2 and sd.running == wid("s", 120)
    assert [(a.scheduled_at, a.workflow_id, a.kind) for a in sd.recent_actions] == [
        (at(60), wid("s", 60), "scheduled"), (at(120), wid("s", 120), "scheduled")]
    assert sd.next_action_times[0] == at(180)


def test_cron_is_evaluated_in_utc_without_daylight_saving(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    # the night Europe and the US do not share: 2027-03-28 (EU) and 2027-03-14 (US) change clocks
    clock.ns = int(dt.datetime(2027, 3, 12, tzinfo=UTC).timestamp()) * NS
    h = client.create_schedule("nightly", basic.Collector, cron="30 2 * * *")
    times = h.describe().next_action_times
    assert times[0] == dt.datetime(2027, 3, 12, 2, 30, tzinfo=UTC)
    assert all(b - a == dt.timedelta(days=1) for a, b in zip(times, times[1:]))
    h2 = client.create_schedule("hourly", basic.Collector, cron="@hourly")
    assert h2.describe().next_action_times[:2] == (dt.datetime(2027, 3, 12, 1, tzinfo=UTC),
                                                    dt.datetime(2027, 3, 12, 2, tzinfo=UTC))
    assert h2.describe().cron == "0 * * * *"


def test_cron_slots_fire(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    client.create_schedule("q", basic.Collector, cron="*/15 * * * *", overlap="allow_all")
    for minute in range(0, 61, 5):
        tick(client, clock, minute * 60)
    assert started(client, "q") == [wid("q", m * 60) for m in (15, 30, 45, 60)]


# --- overlap policies -----------------------------------------------------------------------------


def test_skip_starts_nothing_while_the_last_one_runs(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    h = every_minute(client)  # skip is the default
    tick(client, clock, 60)
    tick(client, clock, 120)
    assert started(client, "s") == [wid("s", 60)]
    assert h.describe().actions_skipped == 1
    client.get_handle(wid("s", 60)).terminate("done")
    tick(client, clock, 180)
    assert started(client, "s") == [wid("s", 60), wid("s", 180)]
    assert (h.describe().actions_started, h.describe().actions_skipped) == (2, 1)


def test_buffer_one_starts_the_first_buffered_slot_when_the_running_one_closes(
        clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    h = every_minute(client, overlap="buffer_one")
    tick(client, clock, 60)
    tick(client, clock, 120)
    tick(client, clock, 180)
    assert started(client, "s") == [wid("s", 60)]
    sd = h.describe()
    assert sd.buffered == at(120) and sd.actions_skipped == 1
    clock.ns = T0 + 200 * NS
    client.get_handle(wid("s", 60)).terminate("done")  # the close starts the buffered slot, at once
    assert started(client, "s") == [wid("s", 60), wid("s", 120)]
    sd = h.describe()
    assert sd.buffered is None and sd.running == wid("s", 120)
    assert sd.recent_actions[-1].started_at == at(200)
    # a close with nothing buffered starts nothing
    client.get_handle(wid("s", 120)).terminate("done")
    assert started(client, "s") == [wid("s", 60), wid("s", 120)]


def test_allow_all_starts_every_slot(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    every_minute(client, overlap="allow_all")
    for minute in (1, 2, 3):
        tick(client, clock, minute * 60)
    assert started(client, "s") == [wid("s", 60), wid("s", 120), wid("s", 180)]
    assert {client.get_handle(w).describe().status for w in started(client, "s")} == {"running"}


def test_cancel_other_cancels_the_running_one_and_starts_once_it_closed(
        clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    h = every_minute(client, overlap="cancel_other")
    tick(client, clock, 60)
    tick(client, clock, 120)
    first = client.get_handle(wid("s", 60))
    assert first.describe().cancel_requested
    assert started(client, "s") == [wid("s", 60)] and h.describe().buffered == at(120)
    tick(client, clock, 180)  # still not closed: the newest slot waits instead
    assert h.describe().buffered == at(180) and h.describe().actions_skipped == 1
    first.terminate("cancelled at last")
    assert started(client, "s") == [wid("s", 60), wid("s", 180)]
    assert not client.get_handle(wid("s", 180)).describe().cancel_requested


# --- downtime: catch-up ---------------------------------------------------------------------------


def test_missed_slots_within_the_catchup_window_fire_each_older_ones_are_missed(
        clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    h = every_minute(client, overlap="allow_all", catchup_window=300)
    tick(client, clock, 60)
    # no worker for 16 minutes: the slots of minutes 2..17; those older than 5 minutes are missed
    tick(client, clock, 17 * 60 + 30)
    assert started(client, "s") == [wid("s", 60)] + [wid("s", m * 60) for m in range(13, 18)]
    sd = h.describe()
    assert sd.actions_missed == 11 and sd.actions_started == 6
    assert sd.next_action_times[0] == at(18 * 60)


def test_cron_slots_missed_past_the_catchup_window_are_counted(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    h = client.create_schedule("c", basic.Collector, cron="*/10 * * * *", overlap="allow_all",
                               catchup_window=dt.timedelta(minutes=25))
    tick(client, clock, 3600 + 60)  # slots at 10, 20, ..., 60 minutes; those before 36 min are missed
    assert started(client, "c") == [wid("c", 40 * 60), wid("c", 50 * 60), wid("c", 3600)]
    assert h.describe().actions_missed == 3


def test_a_damaged_schedule_record_does_not_stop_other_timers(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    every_minute(client, "bad")
    every_minute(client, "good", overlap="allow_all")
    client._store.write(lambda t: t.put("sched", b"sbad", b"\xff\xff"))
    tick(client, clock, 120)
    assert started(client, "good") == [wid("good", 60), wid("good", 120)]
    with pytest.raises(durable.DecodeError):
        client.get_schedule_handle("bad").describe()


def test_catch_up_under_skip_starts_one(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    h = every_minute(client)  # skip, and the default catch-up window of a year
    tick(client, clock, 10 * 60)
    assert started(client, "s") == [wid("s", 60)]
    assert (h.describe().actions_skipped, h.describe().actions_missed) == (9, 0)


def test_a_long_catch_up_goes_on_over_several_transactions(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    n = 2 * SCHEDULE_FIRE_BATCH + 5
    every_minute(client, overlap="allow_all")
    clock.ns = T0 + n * 60 * NS
    fired = client._store.write(lambda t: _ops.fire_due(t, 256))
    assert fired == 1 and len(started(client, "s")) == SCHEDULE_FIRE_BATCH  # one transaction, one batch
    tick(client, clock, n * 60)
    assert started(client, "s") == [wid("s", m * 60) for m in range(1, n + 1)]


# --- jitter, pause, trigger, backfill, delete -----------------------------------------------------


def test_jitter_delays_each_slot_by_the_same_amount_in_every_process(
        clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    h = every_minute(client, jitter=30, overlap="allow_all")
    rec = client._store.read(lambda t: _schedules.load(t, "s"))
    delays = [_schedules._jitter(rec, m * 60 * NS + T0) for m in range(1, 6)]
    assert all(0 <= d < 30 * NS for d in delays) and len(set(delays)) > 1
    assert delays == [_schedules._jitter(dict(rec), m * 60 * NS + T0) for m in range(1, 6)]
    for m, delay in enumerate(delays, start=1):
        tick(client, clock, m * 60 + (delay - 1) / NS)
        assert len(started(client, "s")) == m - 1
        tick(client, clock, m * 60 + delay / NS)
        assert started(client, "s")[-1] == wid("s", m * 60)  # named by its slot, not its start
    assert h.describe().recent_actions[0].started_at == _schedules.to_datetime(T0 + 60 * NS + delays[0])


def test_paused_schedules_take_no_action_and_do_not_catch_up(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    h = every_minute(client, overlap="allow_all")
    tick(client, clock, 60)
    h.pause("maintenance")
    sd = h.describe()
    assert sd.paused and sd.note == "maintenance" and sd.next_action_times == ()
    assert not client._store.read(lambda t: [k for k, _ in t.scan("due", b"") if k[8:9] == b"S"])
    tick(client, clock, 5 * 60)
    assert started(client, "s") == [wid("s", 60)]
    h.unpause("back")
    assert h.describe().next_action_times[0] == at(6 * 60)
    tick(client, clock, 6 * 60)
    assert started(client, "s") == [wid("s", 60), wid("s", 360)]


def test_trigger_starts_now_under_the_overlap_policy(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    h = every_minute(client)
    clock.ns = T0 + 30 * NS
    h.trigger()
    assert started(client, "s") == [wid("s", 30)]
    h.trigger()  # skip: the triggered one still runs
    assert started(client, "s") == [wid("s", 30)] and h.describe().actions_skipped == 1
    assert h.describe().recent_actions[0].kind == "trigger"
    h.pause()
    client.get_handle(wid("s", 30)).terminate()
    clock.ns = T0 + 40 * NS
    h.trigger()  # paused or not
    assert started(client, "s") == [wid("s", 30), wid("s", 40)]


def test_backfill_starts_each_slot_of_the_range_once(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    clock.ns = T0 + 3600 * NS
    h = every_minute(client)
    assert h.backfill(at(600), at(900)) == 5
    backfilled = [wid("s", m * 60) for m in range(10, 15)]
    assert started(client, "s") == backfilled
    assert h.backfill(at(600), at(960)) == 6  # the slots done already are not started again
    assert started(client, "s") == backfilled + [wid("s", 900)]
    assert client.count(all_runs=True) == 6
    assert {a.kind for a in h.describe().recent_actions} == {"backfill"}
    with pytest.raises(durable.InvalidArgument, match="end .* must be after start"):
        h.backfill(at(900), at(600))


def test_delete_stops_the_schedule_and_keeps_its_workflows(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    h = every_minute(client)
    tick(client, clock, 60)
    h.delete()
    assert not client._store.read(lambda t: [k for k, _ in t.scan("due", b"") if k[8:9] == b"S"])
    tick(client, clock, 10 * 60)
    assert client.count() == 1 and client.get_handle(wid("s", 60)).describe().schedule_id == "s"
    with pytest.raises(durable.ScheduleNotFound, match="no schedule with id 's'"):
        h.describe()
    with pytest.raises(durable.ScheduleNotFound):
        client.list(schedule="s")
    every_minute(client, pause_on_failure=True)  # the id is free again
    assert client.list_schedules()[0].actions_started == 0
    # a workflow of the deleted schedule that fails does not pause the new one of the same id
    fail_workflow(client, wid("s", 60))
    assert not client.get_schedule_handle("s").describe().paused


def test_list_by_schedule_and_list_schedules(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    every_minute(client, "a", overlap="allow_all")
    client.create_schedule("b", basic.three_steps, 1, every=120)
    client.start(basic.Collector, id="by-hand")
    tick(client, clock, 120)
    assert started(client, "a") == [wid("a", 60), wid("a", 120)]
    assert started(client, "b") == [wid("b", 120)]
    assert [d.workflow_id for d in client.list(schedule="a", limit=1)] == [wid("a", 120)]
    client.get_handle(wid("a", 60)).terminate()
    assert [d.workflow_id for d in client.list(schedule="a", status="terminated")] == [wid("a", 60)]
    assert [s.schedule_id for s in client.list_schedules()] == ["a", "b"]
    assert client.get_schedule_handle("b").list_workflows()[0].workflow_type == "three_steps"


# --- pause on failure (the close hook) -------------------------------------------------------------


def fail_workflow(client: durable.Client, workflow_id: str) -> None:
    """Record a workflow task of `workflow_id` that fails the workflow, as a worker does (tests
    under tests/worker fail one with a real worker)."""
    num = int(client.get_handle(workflow_id).describe().run_id, 16)

    def fail(t: object) -> None:
        item = _ops.claim_workflow_task(t, num, "default", "w", 10 * NS)  # type: ignore[arg-type]
        assert item is not None
        err = {"type": "ValueError", "msg": "boom"}
        assert _ops.complete_workflow_task(t, num, item["token"], [{"k": "WorkflowFailed", "err": err}]) == "ok"  # type: ignore[arg-type]

    client._store.write(fail)
    assert client.get_handle(workflow_id).describe().status == "failed"



def test_pause_on_failure_pauses_when_a_started_workflow_fails(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    h = every_minute(client, pause_on_failure=True, overlap="allow_all")
    tick(client, clock, 60)
    tick(client, clock, 120)
    # the first ends terminated: not a failure
    client.get_handle(wid("s", 60)).terminate()
    assert not h.describe().paused
    fail_workflow(client, wid("s", 120))
    assert client.get_handle(wid("s", 120)).describe().status == "failed"
    sd = h.describe()
    assert sd.paused and wid("s", 120) in sd.note and sd.next_action_times == ()
    tick(client, clock, 600)
    assert len(started(client, "s")) == 2


# --- bad input ------------------------------------------------------------------------------------


def test_bad_schedules_are_refused_with_what_is_wrong(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, _ = clocked
    with pytest.raises(durable.InvalidArgument, match="cron expression '61 \\* \\* \\* \\*': bad minute"):
        client.create_schedule("x", basic.Collector, cron="61 * * * *")
    with pytest.raises(durable.InvalidArgument, match="bad day-of-week"):
        client.create_schedule("x", basic.Collector, cron="0 0 * * 9")
    with pytest.raises(durable.InvalidArgument, match="wrong number of fields"):
        client.create_schedule("x", basic.Collector, cron="0 0 *")
    with pytest.raises(durable.InvalidArgument, match="exactly one of cron= .* and every="):
        client.create_schedule("x", basic.Collector)
    with pytest.raises(durable.InvalidArgument, match="exactly one of"):
        client.create_schedule("x", basic.Collector, cron="* * * * *", every=60)
    with pytest.raises(durable.InvalidArgument, match="every must be"):
        client.create_schedule("x", basic.Collector, every=0)
    with pytest.raises(durable.InvalidArgument, match="overlap must be one of 'skip', 'buffer_one'"):
        client.create_schedule("x", basic.Collector, every=60, overlap="buffer_all")
    with pytest.raises(durable.InvalidArgument, match="catchup_window must be at least 1 second"):
        client.create_schedule("x", basic.Collector, every=60, catchup_window=0)
    with pytest.raises(durable.InvalidArgument, match="schedule id must be"):
        client.create_schedule("x" * 161, basic.Collector, every=60)
    with pytest.raises(durable.InvalidArgument, match="workflow .three_steps. takes 1 argument"):
        client.create_schedule("x", basic.three_steps, every=60)
    assert client.list_schedules() == []  # nothing was written
    every_minute(client, "x")
    with pytest.raises(durable.ScheduleAlreadyExists, match="a schedule with id 'x' already exists"):
        every_minute(client, "x")


# --- a store of format 2 ------------------------------------------------------------------------


def test_a_store_of_format_2_gets_the_schedules_table(tmp_path: Path) -> None:
    path = tmp_path / "v2"
    client = durable.Client(path)
    client.start(basic.Collector, id="old")
    client._store.close()
    # make it as format 2 left it: no "sched" database, format marker 2
    env = lmdb.open(str(path), max_dbs=32, map_size=1 << 30)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"sched", txn=txn), delete=True)
        txn.put(b"format", u64(2), db=env.open_db(b"meta", txn=txn))
    with env.begin() as txn:
        assert txn.get(b"sched") is None
    env.close()
    assert FORMAT_VERSION == 3
    clock = ManualClock()
    store = Store.open(path, create=False, clock=clock)
    client = durable.Client(path, create=False)
    assert store.read(lambda t: t.get("meta", b"format")) == u64(3)
    assert client.get_handle("old").describe().status == "running"
    every_minute(client, overlap="allow_all")
    tick(client, clock, 60)
    assert started(client, "s") == [wid("s", 60)]
