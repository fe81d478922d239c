"""A stateful model of the task queue, leases, timers and signals (issue 4, point 4).

A hypothesis `RuleBasedStateMachine` plays several workers against a real LMDB store with a
hand-driven clock, calling the store's domain operations (`durable._ops`) directly, as the
worker does, and keeps a small in-memory model of what the store must hold. Rules: start a
workflow; claim workflow tasks and activity attempts (several simulated workers); complete a
workflow task (scheduling activities and timers) or fail it (a bug in workflow code); complete or
fail an activity attempt, with a current or a stale token; heartbeat; move the clock; fire what
is due; a worker dies (it stops heartbeating and forgets its claims; the store learns only when
the lease expires); replay old tokens; signal.

Checked after every step, against the store read in one transaction:

- the store agrees with the model: each workflow task's state, token and inbox; each activity's
  state, attempt and token; each workflow's pending timers; the final events in each history;
- at most one claim of any task is accepted now (one current, unexpired lease per task);
- a finished activity is never claimable (no record, no queued task) and has exactly one final
  event; every scheduled activity is queued (with its task in the queue), running (with its
  deadline in the clock index), or has its final event: no task disappears;
- every queued workflow task is in the queue; every running one has its lease expiry due.

Checked in the rules: tokens strictly increase; a claim returns exactly the tasks the model says
are claimable (as many as asked for); a refused result, heartbeat or workflow-task outcome
(stale token, lease expired) leaves every byte of the store as it was.

Default: 500 examples of up to 50 steps; ``--slow``: 3,000 examples of up to 80 steps.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import durable
from durable import _ops
from durable._defs import ActivityOptions
from durable._codec import Converter, decode
from durable._store import Clock, Store, Txn, u64, u64x2

NS = 1_000_000_000
LEASE = 2 * NS
QUEUE = "default"
POLICY = durable.RetryPolicy(max_attempts=3, initial_interval=1.0, backoff=2.0, max_interval=4.0)
OPTS = ActivityOptions(retry=POLICY).to_record()
FINAL = ("ActivityCompleted", "ActivityFailed")

PLAIN = Converter()


class ManualClock(Clock):
    def __init__(self) -> None:
        self.ns = 1_800_000_000 * NS

    def now_ns(self) -> int:
        return self.ns


@dataclass
class MAct:
    state: str = "q"  # q (queued) | r (running) | done
    attempt: int = 0
    token: int | None = None
    exp: int = 0
    visible: int = 0
    final: str | None = None


@dataclass
class MWf:
    wid: str
    num: int
    wft: str = "queued"  # none | queued | running
    wtok: int | None = None
    wdue: int = 0
    visible: int = 0
    inbox: int = 0
    tfail: int = 0
    next_seq: int = 1
    acts: dict[int, MAct] = field(default_factory=dict)
    timers: dict[int, int] = field(default_factory=dict)  # seq -> due (ns)


def snapshot(store: Store) -> dict[str, list[tuple[bytes, bytes]]]:
    with store.env.begin() as txn:
        return {name: list(txn.cursor(db=db)) for name, db in store._dbs.items()}


class QueueModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="durable-model-")
        self.clock = ManualClock()
        self.store = Store.open(f"{self.dir}/store", clock=self.clock)
        self.wfs: dict[int, MWf] = {}
        self.alive: list[str] = ["W0", "W1", "W2"]
        self.names = itertools.count(3)
        #: what each simulated worker believes it holds: key -> token; key ("act", num, seq) | ("wft", num)
        self.held: dict[str, dict[tuple[Any, ...], int]] = {w: {} for w in self.alive}
        self.issued: list[tuple[tuple[Any, ...], int]] = []  # every (key, token) ever handed out
        self.last_token = 0
        self.payload = PLAIN.to_payload([1], "input")

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers --------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self.clock.ns

    def write(self, fn: Any) -> Any:
        return self.store.write(fn)

    def act_valid(self, wf: MWf, seq: int, token: int) -> bool:
        a = wf.acts.get(seq)
        return a is not None and a.state == "r" and a.token == token and self.now < a.exp

    def wft_valid(self, wf: MWf, token: int) -> bool:
        # a workflow task's lease ends when the clock processes its expiry (fire_due), not before
        return wf.wft == "running" and wf.wtok == token

    def deliver(self, wf: MWf) -> None:
        """An input event reaches the workflow (store: _deliver)."""
        if wf.wft == "running":
            wf.inbox += 1
        elif wf.wft == "none":
            wf.wft, wf.visible = "queued", self.now

    def refused_unchanged(self, op: Any) -> Any:
        before = snapshot(self.store)
        result = self.write(op)
        assert snapshot(self.store) == before, "a refused operation changed the store"
        return result

    def new_token(self, token: int) -> None:
        assert token > self.last_token, f"token {token} after {self.last_token}: tokens must strictly increase"
        self.last_token = token

    def fail_act_model(self, wf: MWf, a: MAct) -> None:
        if a.attempt < POLICY.max_attempts:
            a.state, a.token = "q", None
            a.visible = self.now + int(POLICY.delay(a.attempt) * NS)
        else:
            a.state, a.token, a.final = "done", None, "ActivityFailed"
            self.deliver(wf)

    # --- rules ----------------------------------------------------------------------------------

    @initialize()
    def start_first(self) -> None:
        self.start()

    @precondition(lambda self: len(self.wfs) < 4)
    @rule()
    def start(self) -> None:
        wid = f"wf{len(self.wfs)}"
        payload = PLAIN.to_payload([], "input")
        num, created = self.write(lambda t: _ops.start_workflow(t, wid, "model", QUEUE, payload, False, True))
        assert created and num not in self.wfs
        self.wfs[num] = MWf(wid, num, visible=self.now)

    @rule(w=st.integers(0, 2), n_wft=st.integers(0, 2), n_act=st.integers(1, 3))
    def claim(self, w: int, n_wft: int, n_act: int) -> None:
        owner = self.alive[w]
        claimable_w = {("wft", n) for n, wf in self.wfs.items() if wf.wft == "queued" and wf.visible <= self.now}
        claimable_a = {("act", n, s) for n, wf in self.wfs.items() for s, a in wf.acts.items()
                       if a.state == "q" and a.visible <= self.now}
        items = self.write(lambda t: _ops.claim(t, QUEUE, owner, LEASE, n_wft, n_act, 0))
        got_w = [("wft", i["num"]) for i in items if i["kind"] == "wft"]
        got_a = [("act", i["num"], i["seq"]) for i in items if i["kind"] == "act"]
        assert len(got_w) == len(set(got_w)) and len(got_a) == len(set(got_a))
        assert set(got_w) <= claimable_w and len(got_w) == min(n_wft, len(claimable_w)), (got_w, claimable_w)
        assert set(got_a) <= claimable_a and len(got_a) == min(n_act, len(claimable_a)), (got_a, claimable_a)
        for item in items:
            self.new_token(item["token"])
            wf = self.wfs[item["num"]]
            if item["kind"] == "wft":
                key: tuple[Any, ...] = ("wft", wf.num)
                wf.wft, wf.wtok, wf.wdue = "running", item["token"], self.now + LEASE
            else:
                key = ("act", wf.num, item["seq"])
                a = wf.acts[item["seq"]]
                a.state, a.token, a.exp = "r", item["token"], self.now + LEASE
                a.attempt += 1
                assert item["attempt"] == a.attempt
            self.held[owner][key] = item["token"]
            self.issued.append((key, item["token"]))

    def pick(self, data: st.DataObject, kind: str) -> tuple[str, tuple[Any, ...], int] | None:
        """One claim of `kind` that a live worker holds (and now uses: it leaves the worker)."""
        held = sorted((owner, key) for owner in self.alive for key in self.held[owner] if key[0] == kind)
        if not held:
            return None
        owner, key = data.draw(st.sampled_from(held))
        return owner, key, self.held[owner].pop(key)

    @rule(data=st.data(), n_acts=st.integers(0, 3), timer=st.sampled_from([None, None, 0, 1, 3]),
          bug=st.sampled_from([False, False, False, True]))
    def complete_wft(self, data: st.DataObject, n_acts: int, timer: int | None, bug: bool) -> None:
        """A workflow task ends: its commands are recorded, or (a bug in the code) it fails."""
        picked = self.pick(data, "wft")
        if picked is None:
            return
        if bug:
            self.fail_wft(picked)
            return
        _, (_, num), token = picked
        wf = self.wfs[num]
        seq0 = wf.next_seq
        commands: list[dict[str, Any]] = [
            {"k": "ActivityScheduled", "seq": seq0 + i, "name": "step", "in": self.payload, "opts": OPTS}
            for i in range(n_acts)
        ]
        if timer is not None:
            commands.append({"k": "TimerStarted", "seq": seq0 + n_acts, "dur": timer * NS})
        op = lambda t: _ops.complete_workflow_task(t, num, token, commands)  # noqa: E731
        if not self.wft_valid(wf, token):
            assert self.refused_unchanged(op) == "lost"
            return
        assert self.write(op) == "ok"
        wf.next_seq += len(commands)
        for i in range(n_acts):
            wf.acts[seq0 + i] = MAct(visible=self.now)
        if timer is not None:
            wf.timers[seq0 + n_acts] = self.now + timer * NS
        wf.wtok, wf.tfail = None, 0
        if wf.inbox:
            wf.wft, wf.visible, wf.inbox = "queued", self.now, 0
        else:
            wf.wft = "none"

    def fail_wft(self, picked: tuple[str, tuple[Any, ...], int]) -> None:
        _, (_, num), token = picked
        wf = self.wfs[num]
        op = lambda t: _ops.fail_workflow_task(t, num, token, "TypeError: a bug in workflow code")  # noqa: E731
        if not self.wft_valid(wf, token):
            assert self.refused_unchanged(op) is False
            return
        assert self.write(op) is True
        wf.tfail += 1
        delay = min(0.1 * 2 ** min(wf.tfail - 1, 20), 10.0)
        wf.wft, wf.wtok, wf.inbox, wf.visible = "queued", None, 0, self.now + int(delay * NS)

    @rule(data=st.data(), ok=st.booleans())
    def finish_activity(self, data: st.DataObject, ok: bool) -> None:
        picked = self.pick(data, "act")
        if picked is None:
            return
        _, (_, num, seq), token = picked
        wf = self.wfs[num]
        if ok:
            op = lambda t: _ops.complete_activity(t, num, seq, token, self.payload)  # noqa: E731
        else:
            err = {"type": "RuntimeError", "msg": "boom"}
            op = lambda t: _ops.fail_activity(t, num, seq, token, err, True, False)  # noqa: E731
        if not self.act_valid(wf, seq, token):
            assert self.refused_unchanged(op) is False
            return
        assert self.write(op) is True
        a = wf.acts[seq]
        if ok:
            a.state, a.token, a.final = "done", None, "ActivityCompleted"
            self.deliver(wf)
        else:
            self.fail_act_model(wf, a)

    @rule(w=st.integers(0, 2))
    def heartbeat(self, w: int) -> None:
        owner = self.alive[w]
        keys = sorted(self.held[owner])
        if not keys:
            return
        items: list[tuple[Any, ...]] = []
        expected = []
        for key in keys:
            token = self.held[owner][key]
            wf = self.wfs[key[1]]
            if key[0] == "act":
                items.append(("act", key[1], key[2], token, None))
                expected.append("ok" if self.act_valid(wf, key[2], token) else "lost")
            else:
                items.append(("wft", key[1], token))
                expected.append("ok" if self.wft_valid(wf, token) else "lost")
        op = lambda t: _ops.heartbeat(t, owner, LEASE, items)  # noqa: E731
        if "ok" not in expected:
            assert self.refused_unchanged(op) == expected
        else:
            assert self.write(op) == expected
        for key, status in zip(keys, expected):
            wf = self.wfs[key[1]]
            if status == "lost":
                del self.held[owner][key]
            elif key[0] == "act":
                wf.acts[key[2]].exp = self.now + LEASE
            else:
                wf.wdue = self.now + LEASE

    @rule(seconds=st.sampled_from([0.1, 0.2, 0.5, 1.0, 2.5]))
    def advance(self, seconds: float) -> None:
        self.clock.ns += int(seconds * NS)

    @rule()
    def fire_due(self) -> None:
        now = self.now
        n = self.write(lambda t: _ops.fire_due(t, 100_000))
        expected = 0
        for wf in self.wfs.values():
            for seq, due in sorted(wf.timers.items()):
                if due <= now:
                    expected += 1
                    del wf.timers[seq]
                    self.deliver(wf)
            for a in wf.acts.values():
                if a.state == "r" and a.exp <= now:
                    expected += 1
                    self.fail_act_model(wf, a)  # the worker was lost: the attempt counts as failed
            if wf.wft == "running" and wf.wdue <= now:
                expected += 1
                wf.wft, wf.wtok, wf.inbox, wf.visible = "queued", None, 0, now
        assert n == expected

    @precondition(lambda self: len(self.wfs) > 0)
    @rule(data=st.data(), name=st.sampled_from(["a", "b"]))
    def signal(self, data: st.DataObject, name: str) -> None:
        num = data.draw(st.sampled_from(sorted(self.wfs)))
        wf = self.wfs[num]
        self.write(lambda t: _ops.signal(t, wf.wid, name, self.payload))
        self.deliver(wf)

    @precondition(lambda self: any(self.held[w] for w in self.alive))
    @rule(data=st.data())
    def worker_dies(self, data: st.DataObject) -> None:
        """A worker holding claims stops (no more heartbeats, its claims forgotten); a new one
        takes its place."""
        w = data.draw(st.sampled_from([i for i, name in enumerate(self.alive) if self.held[name]]))
        dead = self.alive[w]
        new = f"W{next(self.names)}"
        self.alive[w] = new
        self.held[new] = {}
        del self.held[dead]

    @precondition(lambda self: len(self.issued) > 0)
    @rule(data=st.data(), what=st.sampled_from(["complete", "fail", "heartbeat"]))
    def replay_old_token(self, data: st.DataObject, what: str) -> None:
        """A token handed out earlier (perhaps long ago, perhaps to a dead worker) is used again."""
        key, token = data.draw(st.sampled_from(self.issued))
        wf = self.wfs[key[1]]
        if key[0] == "wft":
            if self.wft_valid(wf, token):
                return
            if what == "heartbeat":
                assert self.refused_unchanged(lambda t: _ops.heartbeat(t, "ghost", LEASE, [("wft", key[1], token)])) == ["lost"]
            else:
                assert self.refused_unchanged(lambda t: _ops.complete_workflow_task(t, key[1], token, [])) == "lost"
            return
        num, seq = key[1], key[2]
        if self.act_valid(wf, seq, token):
            return
        if what == "heartbeat":
            ops = lambda t: _ops.heartbeat(t, "ghost", LEASE, [("act", num, seq, token, self.payload)])  # noqa: E731
            assert self.refused_unchanged(ops) == ["lost"]
        elif what == "complete":
            assert self.refused_unchanged(lambda t: _ops.complete_activity(t, num, seq, token, self.payload)) is False
        else:
            err = {"type": "RuntimeError", "msg": "late"}
            assert self.refused_unchanged(lambda t: _ops.fail_activity(t, num, seq, token, err, True, False)) is False

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def store_agrees_with_model(self) -> None:
        self.store.read(self._check)

    def _check(self, t: Txn) -> None:
        tasks = {k for k, _ in t.scan("tasks", b"")}
        dues = {k for k, _ in t.scan("due", b"")}
        for num, wf in self.wfs.items():
            rec = _ops.load_wf(t, wf.wid)
            assert rec["status"] == "running"
            assert rec["wft"] == {"none": _ops.WFT_NONE, "queued": _ops.WFT_QUEUED, "running": _ops.WFT_RUNNING}[wf.wft]
            assert rec["ilen"] == wf.inbox
            assert sum(1 for _ in t.scan("inbox", u64(num))) == wf.inbox
            if wf.wft == "queued":
                assert rec["wtkey"] in tasks, "a queued workflow task is missing from the queue"
            if wf.wft == "running":
                assert rec["wtok"] == wf.wtok and rec["wdue"] in dues, "a running workflow task has no lease expiry"
            assert sorted(rec["timers"]) == sorted(wf.timers)
            finals: dict[int, list[str]] = {}
            inbox = [decode(raw, what="inbox event") for _, raw in t.scan("inbox", u64(num))]
            for e in _ops.read_history(t, num) + inbox:  # an input event waits in the inbox while a task runs
                if e["k"] in FINAL:
                    finals.setdefault(e["seq"], []).append(e["k"])
            for seq, a in wf.acts.items():
                st_ = t.get_rec("act", u64x2(num, seq))
                if a.state == "done":
                    assert st_ is None, "a finished activity still has a record: it could be claimed again"
                    assert finals.get(seq) == [a.final], (seq, finals.get(seq), a.final)
                    continue
                assert seq not in finals, f"activity {seq} has a final event but is still {a.state}"
                assert st_ is not None, f"activity {seq} disappeared: no record and no final event"
                assert (st_["st"], st_["attempt"]) == (a.state, a.attempt)
                if a.state == "q":
                    assert st_["tkey"] in tasks, f"queued activity {seq} is missing from the queue"
                else:
                    assert st_["tok"] == a.token and st_["exp"] == a.exp and st_["due"] in dues
            assert set(finals) <= set(wf.acts)
        # at most one claim of any task is accepted now: one current, unexpired lease per task
        accepted: dict[tuple[Any, ...], int] = {}
        for key, token in self.issued:
            if key[0] == "act":
                ok = _ops._fenced_act(t, key[1], key[2], token) is not None
            else:
                ok = _ops._fenced_wft(t, key[1], token) is not None
            accepted[key] = accepted.get(key, 0) + ok
        assert all(n <= 1 for n in accepted.values()), accepted


SLOW = {"max_examples": 3000, "stateful_step_count": 80}
FAST = {"max_examples": 500, "stateful_step_count": 50}


def _run(cfg: dict[str, int]) -> None:
    QueueModel.TestCase.settings = settings(
        deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], **cfg,
    )
    QueueModel.TestCase().runTest()


def test_queue_leases_timers_signals_model() -> None:
    _run(FAST)


@pytest.mark.slow
def test_queue_leases_timers_signals_model_long() -> None:
    _run(SLOW)
