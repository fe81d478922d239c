"""Oversized input is refused when it is written, with the limit named, and nothing is written.

Start, signal and query arguments over `MAX_PAYLOAD_BYTES` (counted after the payload codec, as
stored) are refused by the client before the store is touched; a query answer over the limit is
refused by the worker and reported to the asker; a history is bounded too: signals past the hard
limit are refused, and a workflow whose next commands would pass `MAX_HISTORY_EVENTS` fails with
`HistoryLimitError` instead of growing without end. Cancel and terminate reasons, kept in the
history as they are, must be text of at most `MAX_REASON_BYTES`.
"""

from __future__ import annotations

import pytest

import durable
from durable import _ops
from durable._codec import Converter
from durable._limits import MAX_PAYLOAD_BYTES, MAX_REASON_BYTES
from tests.conftest import worker_thread
from tests.fault._util import store_snapshot

LIMIT = MAX_PAYLOAD_BYTES
#: `[b"x" * n]` encodes to 1 + 5 + n bytes (list header, bytes header with a 4-byte length)
FITS = b"x" * (LIMIT - 6)
TOO_BIG = b"x" * (LIMIT - 5)
OVER = f"{LIMIT + 1} bytes encoded, over the payload limit of {LIMIT} bytes \\(MAX_PAYLOAD_BYTES\\)"


def test_the_boundary_is_exact() -> None:
    assert len(Converter().to_payload([FITS], "x")) == LIMIT
    with pytest.raises(durable.PayloadError, match=OVER):
        Converter().to_payload([TOO_BIG], "x")


def test_start_arguments_over_the_limit_are_refused_and_nothing_is_written(data_dir: str) -> None:
    client = durable.Client(data_dir)
    before = store_snapshot(client)
    with pytest.raises(durable.PayloadError, match="input of workflow 'anything' is " + OVER):
        client.start("anything", TOO_BIG, id="big", queue="q")
    with pytest.raises(durable.PayloadError, match="over the payload limit"):  # several arguments add up
        client.start("anything", FITS[: LIMIT // 2], FITS[: LIMIT // 2], id="big", queue="q")
    assert store_snapshot(client) == before
    with pytest.raises(durable.WorkflowNotFound):
        client.get_handle("big").describe()
    client.start("anything", FITS, id="fits", queue="q")  # exactly at the limit: accepted
    assert client.get_handle("fits").describe().status == "running"


def test_signal_and_query_arguments_over_the_limit_are_refused_and_nothing_is_written(data_dir: str) -> None:
    client = durable.Client(data_dir)
    handle = client.start("anything", 1, id="w", queue="q")
    before = store_snapshot(client)
    with pytest.raises(durable.PayloadError, match="signal 'add' is " + OVER):
        handle.signal("add", TOO_BIG)
    with pytest.raises(durable.PayloadError, match="query 'count' is " + OVER):
        handle.query("count", TOO_BIG, timeout=0.1)
    assert store_snapshot(client) == before
    handle.signal("add", FITS)
    assert handle.describe().history_length == 2


def test_the_limit_applies_to_what_the_codec_makes_of_a_payload(data_dir: str) -> None:
    class Padding:
        def encode(self, data: bytes) -> bytes:
            return b"PAD-" + data

        def decode(self, data: bytes) -> bytes:
            return data[4:]

    client = durable.Client(data_dir, codec=Padding())
    before = store_snapshot(client)
    with pytest.raises(durable.PayloadError, match=f"{LIMIT + 4} bytes once encoded by the payload codec, over the payload limit of {LIMIT}"):
        client.start("anything", FITS, queue="q")
    assert store_snapshot(client) == before


@durable.workflow
class Big:
    """Answers a query with as many bytes as it is asked for."""

    def __init__(self) -> None:
        self.done = False

    async def run(self) -> str:
        await durable.wait_condition(lambda: self.done)
        return "done"

    @durable.query
    def blob(self, size: int) -> bytes:
        return b"x" * size

    @durable.signal
    def finish(self) -> None:
        self.done = True


def test_a_query_answer_over_the_limit_is_refused_with_the_limit_named(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [Big]):
        handle = client.start(Big, id="big")
        # an answer is the value itself: bytes of n encode to 5 + n bytes
        assert len(handle.query("blob", LIMIT - 5, timeout=20)) == LIMIT - 5
        with pytest.raises(durable.QueryFailed, match=f"answer to query 'blob' is {LIMIT + 1} bytes encoded, over the payload limit of {LIMIT}"):
            handle.query("blob", LIMIT - 4, timeout=20)
        handle.signal("finish")  # the workflow is unharmed
        assert handle.result(timeout=20) == "done"


# --- histories -----------------------------------------------------------------------------


def test_signals_past_the_history_limit_are_refused_and_nothing_is_written(data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ops, "MAX_HISTORY_EVENTS", 10)
    client = durable.Client(data_dir)
    handle = client.start("anything", id="w", queue="q")
    sent = 0
    while True:
        before = store_snapshot(client)
        try:
            handle.signal("s", sent)
        except durable.HistoryLimitError as exc:
            assert "its history reached the limit of 10 events" in str(exc)
            break
        sent += 1
        assert sent < 1000
    assert store_snapshot(client) == before
    assert handle.describe().history_length == 1 + sent == 10 + 100  # 100 events of slack to close


@durable.activity
def step(i: int) -> int:
    return i


@durable.workflow
async def many_steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += await step(i)
    return total


def test_a_workflow_whose_history_would_pass_the_limit_fails_with_the_limit_named(
        data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ops, "MAX_HISTORY_EVENTS", 20)
    client = durable.Client(data_dir)
    with worker_thread(data_dir, [many_steps], [step]):
        assert client.start(many_steps, 3).result(timeout=20) == 3
        handle = client.start(many_steps, 1000, id="long")
        with pytest.raises(durable.WorkflowFailed, match="its history would pass the limit of 20 events"):
            handle.result(timeout=20)
    desc = handle.describe()
    assert desc.status == "failed" and desc.history_length <= 20 + 100  # the hard limit, inputs included


# --- reasons: kept in the history as they are --------------------------------------------------


@pytest.mark.parametrize("reason", ["x" * (MAX_REASON_BYTES + 1), "é" * (MAX_REASON_BYTES // 2 + 1), None, 5,
                                    b"bytes", "\udcff"], ids=["long", "long-utf8", "None", "int", "bytes", "surrogate"])
def test_a_bad_cancel_or_terminate_reason_is_refused_and_nothing_is_written(data_dir: str, reason: object) -> None:
    # before the fix, a 3 MB reason made the history unreadable (over the record limit) and a
    # reason of another type failed the event check: the workflow was stuck for good
    client = durable.Client(data_dir)
    handle = client.start("anything", id="w", queue="q")
    before = store_snapshot(client)
    for action in (handle.cancel, handle.terminate):
        with pytest.raises(durable.InvalidArgument, match=f"at most {MAX_REASON_BYTES} bytes \\(MAX_REASON_BYTES\\)"):
            action(reason)  # type: ignore[arg-type]
    assert store_snapshot(client) == before
    handle.terminate("é" * (MAX_REASON_BYTES // 2))  # the longest reason is fine
    assert handle.history()[-1]["reason"] == "é" * (MAX_REASON_BYTES // 2)
