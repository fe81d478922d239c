"""Each worker keeps its own payload codec, and failures are encoded too (issue 14, point 8).

The store object is shared by everything in a process that opens the same directory; it used to
carry the codec (`Store.open(..., codec=...)`), so two workers with different codecs in one
process both took the last one given. Here two workers run in one process, on two queues of one
store, with two codecs: each workflow's payloads and failures (an activity's error kept for its
retry, an activity's final failure, the workflow's failure, the error of a workflow task kept in
the workflow record) are found in the store encoded by its worker's codec, and read back right by
a client with that codec. No marker is anywhere in ``data.mdb`` in clear; with
``encode_failures=False`` (the control) the failure texts are, so the scan would see one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import durable
from durable import _ops
from tests.conftest import worker_thread
from tests.fault._util import store_snapshot, wait_until


class KeyedXor:
    """A reversible codec with a header and a key (not encryption!)."""

    def __init__(self, header: bytes, key: int) -> None:
        self.header = header
        self.table = bytes(b ^ key for b in range(256))

    def encode(self, data: bytes) -> bytes:
        return self.header + data.translate(self.table)

    def decode(self, data: bytes) -> bytes:
        if not data.startswith(self.header):
            raise ValueError(f"not a {self.header.decode()} payload")
        return data[len(self.header):].translate(self.table)


@durable.activity(retry=durable.RetryPolicy(max_attempts=2, initial_interval=0.01))
def flaky(text: str) -> str:
    if durable.activity_info().attempt == 1:
        raise RuntimeError(text + "-retried")  # kept with the activity until its retry
    return text + "-echoed"


@durable.activity(retry=durable.RetryPolicy(max_attempts=1))
def refuses(text: str) -> None:
    raise ValueError(text + "-refused")  # the activity's final failure, in history


@durable.workflow(failure_exceptions=(RuntimeError,))  # "fail" below fails the workflow on purpose
async def probe(text: str, how: str) -> Any:
    echoed = await flaky(text + "-arg")
    try:
        await refuses(text)
    except durable.ActivityError as exc:
        caught = str(exc.__cause__)
    if how == "fail":
        raise RuntimeError(text + "-failed")  # the workflow's failure, in history
    if how == "bad result":
        return {text + "-task": 1j}  # refused where it is made: the task error in the record
    return {"echoed": echoed, "caught": caught}


MARKERS = {"qa": "PLAIN-qa-51c2", "qb": "PLAIN-qb-8e07"}


def run_two_workers(data_dir: str, encode_failures: bool = True) -> dict[str, durable.Client]:
    codecs = {"qa": KeyedXor(b"QA1", 0x5A), "qb": KeyedXor(b"QB1", 0x33)}
    clients = {q: durable.Client(data_dir, codec=c) for q, c in codecs.items()}
    options: dict[str, Any] = {} if encode_failures else {"encode_failures": False}  # on by default
    with (worker_thread(data_dir, [probe], [flaky, refuses], queue="qa", codec=codecs["qa"], **options),
          worker_thread(data_dir, [probe], [flaky, refuses], queue="qb", codec=codecs["qb"], **options)):
        for queue, client in clients.items():
            mark = MARKERS[queue]
            ok = client.start(probe, mark, "ok", id=f"{queue}-ok", queue=queue)
            failing = client.start(probe, mark, "fail", id=f"{queue}-fail", queue=queue)
            bad = client.start(probe, mark, "bad result", id=f"{queue}-bad", queue=queue)
            assert ok.result(timeout=20) == {"echoed": f"{mark}-arg-echoed", "caught": f"ValueError: {mark}-refused"}
            with pytest.raises(durable.WorkflowFailed, match=f"RuntimeError: {mark}-failed"):
                failing.result(timeout=20)
            error = wait_until(lambda: bad.describe().task_error, what="the task error")
            assert error.startswith(f'PayloadError: workflow result cannot be stored: ["{mark}-task"]: complex'), error
    return clients


def _stored_bytes(data_dir: str, client: durable.Client) -> bytes:
    """Everything the store holds: LMDB's data file, stale pages included; on PostgreSQL, every
    row of the store's tables."""
    if "://" not in data_dir:
        return (Path(data_dir) / "data.mdb").read_bytes()
    return b"".join(k + v for items in store_snapshot(client).values() for k, v in items)


def test_two_workers_in_one_process_each_encode_with_their_own_codec(data_dir: str) -> None:
    clients = run_two_workers(data_dir)
    raw = _stored_bytes(data_dir, clients["qa"])
    live = b"".join(k + v for items in store_snapshot(clients["qa"]).values() for k, v in items)
    for queue, mark in MARKERS.items():
        assert mark.encode() not in raw and mark.encode() not in live, queue
    for queue, client in clients.items():
        other = clients["qb" if queue == "qa" else "qa"]
        handle = client.get_handle(f"{queue}-fail")
        events = handle.history()
        assert events[0]["input"] == [MARKERS[queue], "fail"]
        failures = [e["error"] for e in events if "error" in e]
        assert [f["msg"] for f in failures] == [f"{MARKERS[queue]}-refused", f"{MARKERS[queue]}-failed"]
        assert "in refuses" in failures[0]["stack"]
        # the raw events: payloads and failures in the frame of this queue's codec
        num = int(handle.describe().run_id, 16)
        for event in client._store.read(lambda t: _ops.read_history(t, num)):
            for key in ("in", "out"):
                if key in event:
                    assert b"Q" + queue[1].upper().encode() + b"1" in event[key], event
            if "err" in event:
                assert set(event["err"]) <= {"type", "nr", "enc"}, event  # the type stays in clear
        # the other worker's client cannot read them, and says why
        with pytest.raises(durable.DecodeError, match="this codec cannot decode the payload: wrong codec or key?"):
            other.get_handle(f"{queue}-ok").result(timeout=1)


def test_control_with_failures_not_encoded_their_texts_are_in_the_store(data_dir: str) -> None:
    clients = run_two_workers(data_dir, encode_failures=False)
    raw = _stored_bytes(data_dir, clients["qa"])
    live = b"".join(k + v for items in store_snapshot(clients["qa"]).values() for k, v in items)
    for mark in MARKERS.values():
        # (the retried attempt's error is kept only until the retry: its page may be reused since)
        for suffix in ("-refused", "-failed", "-task"):
            assert f"{mark}{suffix}".encode() in raw, (mark, suffix)
        # payloads are still encoded. Checked in the live records, not the file: a freed page's
        # stale copy of "-arg-retried" may be cut short by a newer record written over its tail.
        assert re.search(re.escape(mark).encode() + rb"-arg(?!-retried)", live) is None
    assert clients["qa"].get_handle("qa-ok").result(timeout=1)["echoed"] == f"{MARKERS['qa']}-arg-echoed"


def test_reading_without_the_codec_or_with_another_says_so(data_dir: str) -> None:
    run_two_workers(data_dir)
    plain = durable.Client(data_dir)
    with pytest.raises(durable.DecodeError, match=r"^workflow result: payloads are encoded: pass --codec \(or codec=\.\.\.\)$"):
        plain.get_handle("qa-ok").result(timeout=1)
    with pytest.raises(durable.WorkflowFailed, match=r"failed: RuntimeError: <encoded: pass --codec>"):
        plain.get_handle("qa-fail").result(timeout=1)
    assert plain.get_handle("qa-bad").describe().task_error == "<encoded: pass --codec>"
    events = plain.get_handle("qa-fail").history()
    assert events[0]["input"] == "<encoded: pass --codec>"
    assert [e["error"] for e in events if "error" in e] == [
        {"type": "ValueError", "msg": "<encoded: pass --codec>"},
        {"type": "RuntimeError", "msg": "<encoded: pass --codec>"},
    ]
    wrong = durable.Client(data_dir, codec=KeyedXor(b"QA1", 0x77))  # the right format, the wrong key
    with pytest.raises(durable.DecodeError, match=r"^workflow result: this codec cannot decode the payload: wrong codec or key\?"):
        wrong.get_handle("qa-ok").result(timeout=1)
    events = wrong.get_handle("qa-fail").history()
    assert events[0]["input"] == "<encoded: this codec cannot decode it: wrong codec or key?>"
    assert events[-1]["error"]["msg"] == "<encoded: this codec cannot decode it: wrong codec or key?>"


def test_the_store_carries_no_codec(data_dir: str) -> None:
    with pytest.raises(TypeError):
        durable._store.Store.open(data_dir, codec=KeyedXor(b"QA1", 1))  # type: ignore[call-arg]
    store = durable._backend.open_store(data_dir)
    assert not hasattr(store, "converter")
