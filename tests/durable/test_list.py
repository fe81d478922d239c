"""`Client.list` and `Client.count`: newest first by start time, from an index scanned backwards
from the newest entry (never a full scan sorted in memory), filtered by status, type and start
time; and the migration of a store of format 1, whose index had no start times, when it is opened.

Real stores in temporary directories; time comes from a clock the test moves.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import lmdb
import pytest

import durable
from durable._codec import Converter
from durable import _codec, _ops
from durable import _events as ev
from durable._backend import open_store
from durable._store import FORMAT_VERSION, Clock, Store, u64, u64x2
from tests.conftest import lmdb_only
from tests.fault._util import store_snapshot
from tests.wfs import basic

NS = 1_000_000_000
T0 = 1_800_000_000 * NS
UTC = dt.timezone.utc


class ManualClock(Clock):
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.ns = T0

    def now_ns(self) -> int:
        return self.ns


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp((T0 + int(seconds * NS)) / NS, tz=UTC)


@pytest.fixture
def clocked(data_dir: str) -> tuple[durable.Client, ManualClock]:
    clock = ManualClock()
    store = open_store(data_dir, clock=clock)
    client = durable.Client(data_dir)
    assert client._store is store
    return client, clock


def start_at(client: durable.Client, clock: ManualClock, seconds: float, wid: str, workflow: object = None) -> durable.WorkflowHandle:
    clock.ns = T0 + int(seconds * NS)
    workflow = workflow or basic.Collector
    return client.start(workflow, *([1] if workflow is basic.three_steps else []), id=wid)


def ids(descs: list[durable.WorkflowDescription]) -> list[str]:
    return [d.workflow_id for d in descs]


def test_newest_first_by_start_time_whatever_the_ids(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    # ids in no particular order; started at 1, 2, ..., 6 s
    for i, wid in enumerate(["m", "b", "z", "a", "k", "c"], start=1):
        start_at(client, clock, i, wid, basic.three_steps if wid in "bk" else basic.Collector)
    clock.ns = T0 + 10 * NS
    client.get_handle("z").terminate("x")
    client.get_handle("m").terminate("x")
    assert ids(client.list()) == ["c", "k", "a", "z", "b", "m"]
    assert ids(client.list(limit=2)) == ["c", "k"]
    assert ids(client.list(status="terminated")) == ["z", "m"]
    assert ids(client.list(status="running")) == ["c", "k", "a", "b"]
    assert ids(client.list(status="running", limit=1)) == ["c"]
    assert ids(client.list(workflow="three_steps")) == ["k", "b"]
    assert ids(client.list(status="completed")) == []
    # start time, not the time of the last change, decides
    assert [d.created_at for d in client.list()] == [at(s) for s in (6, 5, 4, 3, 2, 1)]


def test_workflows_started_in_one_transaction_keep_their_start_order(data_dir: str) -> None:
    client = durable.Client(data_dir)
    store = client._store
    payload = Converter().to_payload([], "input")
    wids = ["q", "a", "x", "b"]
    store.write_batch([
        (lambda t, wid=wid: _ops.start_workflow(t, wid, "Collector", "default", payload, False, False))
        for wid in wids
    ])
    descs = client.list()
    assert len({d.created_at for d in descs}) == 1  # one transaction: one time
    assert ids(descs) == wids[::-1]


def test_since_and_until(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    for i in range(1, 7):
        start_at(client, clock, i, f"w{i}")
    client.get_handle("w3").terminate()
    assert ids(client.list(since=at(3))) == ["w6", "w5", "w4", "w3"]  # since: at or after
    assert ids(client.list(until=at(3))) == ["w2", "w1"]  # until: before
    assert ids(client.list(since=at(2), until=at(5))) == ["w4", "w3", "w2"]
    assert ids(client.list(since=at(2.5), until=at(4.5), limit=1)) == ["w4"]
    assert ids(client.list(since=at(2), until=at(5), status="terminated")) == ["w3"]
    assert ids(client.list(since=at(4), status="terminated")) == []
    assert ids(client.list(since=at(5), until=at(2))) == []
    assert ids(client.list(since=at(100))) == [] and ids(client.list(until=at(-100))) == []
    # a naive datetime is UTC; any other offset is converted
    naive = at(4).replace(tzinfo=None)
    assert ids(client.list(since=naive)) == ["w6", "w5", "w4"]
    plus_two = at(4).astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert ids(client.list(until=plus_two)) == ["w3", "w2", "w1"]
    for bad in ("2026-01-01", 17, dt.date(2026, 1, 1)):
        with pytest.raises(durable.InvalidArgument, match="since must be a datetime"):
            client.list(since=bad)  # type: ignore[arg-type]
        with pytest.raises(durable.InvalidArgument, match="until must be a datetime"):
            client.count(until=bad)  # type: ignore[arg-type]


def test_count(clocked: tuple[durable.Client, ManualClock]) -> None:
    client, clock = clocked
    assert client.count() == 0
    for i in range(1, 6):
        start_at(client, clock, i, f"c{i}", basic.three_steps if i % 2 else basic.Collector)
    client.get_handle("c2").terminate()
    assert client.count() == 5
    assert client.count(status="running") == 4 and client.count(status="terminated") == 1
    assert client.count(status="completed") == 0
    assert client.count(workflow="three_steps") == 3
    assert client.count(workflow="Collector", status="running") == 1
    assert client.count(since=at(2), until=at(4)) == 2
    client.start(basic.Collector, id="c2")  # a new run of c2
    assert client.count() == 5 and client.count(all_runs=True) == 6
    assert client.count(status="terminated") == 0 and client.count(status="terminated", all_runs=True) == 1
    with pytest.raises(durable.InvalidArgument, match="unknown status 'nope'"):
        client.count(status="nope")
    with pytest.raises(durable.InvalidArgument, match="workflow name"):
        client.count(workflow="")


def test_list_reads_the_newest_entries_only(clocked: tuple[durable.Client, ManualClock]) -> None:
    """The index is scanned from the newest entry and the scan stops at the limit: a list of the
    newest never reads the records of older workflows (here, made unreadable)."""
    client, clock = clocked
    for i in range(1, 21):
        start_at(client, clock, i, f"w{i:02}")
    client.get_handle("w20").terminate()
    store = client._store
    store.write(lambda t: [t.put("wf", f"w{i:02}".encode(), b"\xff not cbor") for i in range(1, 15)])
    assert ids(client.list(limit=5)) == ["w20", "w19", "w18", "w17", "w16"]
    assert ids(client.list(status="running", limit=3)) == ["w19", "w18", "w17"]
    assert ids(client.list(status="terminated")) == ["w20"]
    assert ids(client.list(since=at(15))) == ["w20", "w19", "w18", "w17", "w16", "w15"]
    assert client.count() == 20  # counted from the index alone
    with pytest.raises(durable.DecodeError):
        client.list()


def test_limits_are_checked(data_dir: str) -> None:
    client = durable.Client(data_dir)
    for bad in (0, -1, 1.5, "10", True):
        with pytest.raises(durable.InvalidArgument, match="limit must be a positive integer"):
            client.list(limit=bad)  # type: ignore[arg-type]
    with pytest.raises(durable.InvalidArgument, match="unknown status 'nope'"):
        client.list(status="nope")


# --- a store of format 1 ------------------------------------------------------------------------


V1_DBS = (b"meta", b"wf", b"num", b"hist", b"inbox", b"act", b"tasks", b"due", b"idx", b"types", b"query")


def v1_record(num: int, wid: str, wtype: str, status: str, created: int, hlen: int) -> dict[str, object]:
    return {
        "num": num, "id": wid, "type": wtype, "queue": "default", "status": status,
        "created": created, "updated": created + NS, "closed": None if status == "running" else created + NS,
        "hlen": hlen, "ilen": 0, "wft": 1 if status == "running" else 0, "timers": {}, "cancel": False,
        "n_act": 0, "n_att": 0, "n_retry": 0,
    }


def make_v1_store(path: Path) -> dict[str, tuple[int, str]]:
    """A store as durable wrote it with format 1: the status index keyed by status and id alone.
    Returns each workflow's (start time, status)."""
    path.mkdir(mode=0o700)
    env = lmdb.open(str(path), max_dbs=20, mode=0o600, map_size=1 << 24)
    dbs = {name: env.open_db(name) for name in V1_DBS}
    payload = _codec.encode([1])  # a payload with no codec
    made = {}
    # ids whose order is neither the start order nor its reverse
    plan = [("b", "completed", 3), ("d", "running", 1), ("a", "terminated", 4), ("c", "running", 2)]
    with env.begin(write=True) as txn:
        txn.put(b"format", u64(1), db=dbs[b"meta"])
        for num, (wid, status, second) in enumerate(plan, start=1):
            created = T0 + second * NS
            events = [{"k": ev.WORKFLOW_STARTED, "t": created, "type": "three_steps", "in": payload,
                       "seed": 1, "id": wid, "queue": "default"}]
            if status == "completed":
                events.append({"k": ev.WORKFLOW_COMPLETED, "t": created + NS, "out": _codec.encode(5)})
            elif status == "terminated":
                events.append({"k": ev.WORKFLOW_TERMINATED, "t": created + NS, "reason": "old"})
            for i, event in enumerate(events):
                txn.put(u64x2(num, i), _codec.encode(event), db=dbs[b"hist"])
            txn.put(wid.encode(), _codec.encode(v1_record(num, wid, "three_steps", status, created, len(events))),
                    db=dbs[b"wf"])
            txn.put(u64(num), wid.encode(), db=dbs[b"num"])
            txn.put(b"s" + status.encode() + b"\x00" + wid.encode(), b"", db=dbs[b"idx"])
            made[wid] = (created, status)
        txn.put(b"runnum", u64(len(plan)), db=dbs[b"meta"])
    env.close()
    return made


@lmdb_only  # a store of LMDB's format 1, written by hand
def test_a_store_of_format_1_is_migrated_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "v1"
    made = make_v1_store(path)
    assert FORMAT_VERSION >= 2  # migrated through every later format too
    clock = ManualClock()
    clock.ns = T0 + 10 * NS
    store = Store.open(path, create=False, clock=clock)
    client = durable.Client(path, create=False)
    assert client._store is store
    assert store.read(lambda t: t.get("meta", b"format")) == u64(FORMAT_VERSION)
    # the old keys are gone, the new index holds every workflow by its start time
    idx = store_snapshot(client)["idx"]
    assert not [k for k, _ in idx if k.endswith((b"\x00a", b"\x00b", b"\x00c", b"\x00d"))]
    assert ids(client.list()) == ["a", "b", "c", "d"]  # started at 4, 3, 2, 1 s
    assert ids(client.list(status="running")) == ["c", "d"]
    assert ids(client.list(status="completed")) == ["b"] and ids(client.list(status="terminated")) == ["a"]
    assert ids(client.list(since=at(2), until=at(4))) == ["b", "c"]
    assert client.count() == 4 and client.count(status="running") == 2
    for wid, (created, status) in made.items():
        desc = client.get_handle(wid).describe()
        assert (desc.status, desc.created_at) == (status, at((created - T0) / NS))
    assert client.get_handle("b").result(timeout=1) == 5
    # the store works on: a closed id starts a new run, a running one is refused
    h = client.start("three_steps", 2, id="a")
    assert ids(client.list()) == ["a", "b", "c", "d"] and client.count(all_runs=True) == 5
    assert client.get_handle("a", run_id="3").describe().status == "terminated"
    assert h.describe().status == "running"
    with pytest.raises(durable.WorkflowAlreadyExists):
        client.start("three_steps", 2, id="c")
    # opening it again (another process, a restart) changes nothing more
    before = store_snapshot(client)
    store.close()
    again = durable.Client(path, create=False)
    assert store_snapshot(again) == before
