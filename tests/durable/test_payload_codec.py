"""The payload codec hook (issue 4, point 7): given to `Client(codec=...)` and `Worker(codec=...)`,
it is applied to every payload written and read, so no payload is ever in the store in clear.

One workflow sends a marker string down every payload path: its input, an activity's arguments
and result, heartbeat details (written by the worker, read back by the retry), a signal, a
query's arguments and its answer, and the workflow's result. The codec records what it encodes
and decodes, so each path is seen to go through it; afterwards neither the live records nor the
raw bytes of ``data.mdb`` (freed pages included) hold the marker. The same run without a codec
is the control: there the marker is found, so the scan would see a payload that slipped by.

The command line takes the codec as ``--codec MODULE:NAME`` (or ``$DURABLE_CODEC``), from the
operator, never from the store; a worker process started so encodes what it writes.

Not payloads, and so in clear by design (as in Temporal): workflow ids, names of workflows,
activities, signals and queries, cancel/terminate reasons, and the type names of errors. Error
messages and stack traces are encoded too, unless a worker is given ``encode_failures=False``
(tests/worker/test_codec_per_worker.py).

Bytes a codec made are marked as such in the store, so that a reader without the codec, or with
another, says so instead of failing to decode them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest
from click.testing import CliRunner

import durable
from durable import _codec
from durable.cli import main
from tests.conftest import ROOT, worker_process, worker_thread
from tests.fault._util import store_snapshot
from tests.wfs.codecs import WrongKeyXorCodec

MARKER = "PLAIN-7f3a9c"
SUFFIXES = ["-input", "-arg", "-arg-echoed", "-beat", "-beat-returned", "-signal", "-query", "-answered",
            "-result"]


class RecordingXorCodec:
    """A reversible codec with a header (as encryption would have); keeps what passed through."""

    HEADER = b"XOR1"
    TABLE = bytes(b ^ 0x5A for b in range(256))

    def __init__(self) -> None:
        self.encoded: list[bytes] = []  # the plain CBOR given to encode
        self.decoded: list[bytes] = []  # the plain CBOR returned by decode
        self._lock = threading.Lock()

    def encode(self, data: bytes) -> bytes:
        with self._lock:
            self.encoded.append(data)
        return self.HEADER + data.translate(self.TABLE)

    def decode(self, data: bytes) -> bytes:
        if not data.startswith(self.HEADER):
            raise ValueError("not an XOR1 payload")
        plain = data[len(self.HEADER):].translate(self.TABLE)
        with self._lock:
            self.decoded.append(plain)
        return plain


@durable.activity
def echo(text: str) -> str:
    return text + "-echoed"


@durable.activity(heartbeat=0.5, retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.05))
def beating(text: str) -> str:
    info = durable.activity_info()
    if info.attempt == 1:
        durable.heartbeat(text + "-beat")
        time.sleep(0.6)  # the worker sends the details with a heartbeat meanwhile (every 1/3 of 0.5 s)
        raise RuntimeError("the first attempt fails, so that the second reads the details back")
    return f"{info.heartbeat_details}-returned"


@durable.workflow
class Probe:
    """Sends its input down every payload path."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.done = False

    async def run(self, secret: str) -> dict[str, Any]:
        base = secret.removesuffix("-input")
        echoed = await echo(base + "-arg")
        beat = await beating(base)
        await durable.wait_condition(lambda: self.done)
        return {"result": base + "-result", "echoed": echoed, "beat": beat, "signals": self.items}

    @durable.signal
    def add(self, item: str) -> None:
        self.items.append(item)

    @durable.signal
    def finish(self) -> None:
        self.done = True

    @durable.query
    def peek(self, asked: str) -> list[str]:
        return [*self.items, asked.replace("-query", "-answered")]

    @durable.query
    def fail(self, text: str) -> None:
        raise ValueError(text)  # the answer is an error: encoded as failures are


def run_probe(data_dir: str, codec: RecordingXorCodec | None) -> durable.Client:
    client = durable.Client(data_dir, codec=codec)
    with worker_thread(data_dir, [Probe], [echo, beating], codec=codec):
        handle = client.start(Probe, MARKER + "-input", id="probe")
        handle.signal("add", MARKER + "-signal")
        deadline = time.monotonic() + 20
        while handle.describe().activities_scheduled < 2 or handle.describe().activity_attempts < 2:
            assert time.monotonic() < deadline, "the activities did not run"
            time.sleep(0.05)
        answer = handle.query("peek", MARKER + "-query", timeout=20)
        assert answer == [MARKER + "-signal", MARKER + "-answered"]
        with pytest.raises(durable.QueryFailed, match=f"ValueError: {MARKER}-query-failed"):
            handle.query("fail", MARKER + "-query-failed", timeout=20)
        handle.signal("finish")
        assert handle.result(timeout=20) == {
            "result": MARKER + "-result", "echoed": MARKER + "-arg-echoed",
            "beat": MARKER + "-beat-returned", "signals": [MARKER + "-signal"],
        }
        history = handle.history()  # readable history decodes every payload through the codec
        assert history[0]["input"] == [MARKER + "-input"] and history[-1]["result"]["result"] == MARKER + "-result"
    return client


def stored_bytes(data_dir: str, client: durable.Client) -> bytes:
    """Everything the store holds: LMDB's data file, freed pages included; on PostgreSQL, every
    row of the store's tables."""
    if "://" not in data_dir:
        return (Path(data_dir) / "data.mdb").read_bytes()
    return b"".join(k + v for items in store_snapshot(client).values() for k, v in items)


def found_in_store(client: durable.Client) -> set[str]:
    """Suffixes of the marker present in any live key or value, or anywhere in data.mdb."""
    raw = stored_bytes(client.data_dir, client)
    live = b"\x00".join(k + b"\x00" + v for items in store_snapshot(client).values() for k, v in items)
    found = {s for s in SUFFIXES if (MARKER + s).encode() in raw or (MARKER + s).encode() in live}
    if MARKER.encode() in raw or MARKER.encode() in live:
        found.add("")
    return found


def test_every_payload_goes_through_the_codec_and_none_is_stored_in_clear(data_dir: str) -> None:
    codec = RecordingXorCodec()
    client = run_probe(data_dir, codec)
    assert found_in_store(client) == set()

    def passed(plain: list[bytes], suffix: str) -> bool:
        # whole strings only: "-beat" must not be counted for "-beat-returned"
        return any(_holds(cbor2.loads(p), MARKER + suffix) for p in plain)

    not_encoded = [s for s in SUFFIXES if not passed(codec.encoded, s)]
    not_decoded = [s for s in SUFFIXES if not passed(codec.decoded, s)]
    assert (not_encoded, not_decoded) == ([], [])
    # every payload field of every event is in the codec's frame
    handle = client.get_handle("probe")
    num = int(handle.describe().run_id, 16)
    for event in handle._store.read(lambda t: durable._ops.read_history(t, num)):
        for key in ("in", "out"):
            if key in event:
                assert event[key].startswith(_codec._ENCODED + RecordingXorCodec.HEADER), event


def test_control_without_a_codec_the_scan_finds_every_payload(data_dir: str) -> None:
    client = run_probe(data_dir, None)
    # the paths recorded in history (heartbeat details reach it through the activity's result)
    assert found_in_store(client) >= {"", "-input", "-arg", "-arg-echoed", "-beat-returned", "-signal", "-result"}


def test_a_payload_written_with_one_codec_is_not_read_without_it(data_dir: str) -> None:
    encoded = _codec.Converter(RecordingXorCodec()).to_payload([MARKER], "x")
    assert MARKER.encode() not in encoded
    with pytest.raises(durable.DecodeError, match=r"^x: payloads are encoded: pass --codec \(or codec=\.\.\.\)$"):
        _codec.Converter().from_payload(encoded, "x")
    with pytest.raises(durable.DecodeError, match=r"^x: this codec cannot decode the payload: wrong codec or key\?"):
        _codec.Converter(WrongKeyXorCodec()).from_payload(encoded, "x")  # garbage CBOR
    with pytest.raises(durable.DecodeError, match=r"^x: this codec cannot decode the payload: wrong codec or key\? "
                                                  r"\(ValueError: not an XOR1 payload\)"):
        _codec.Converter(RecordingXorCodec()).from_payload(encoded[:4] + b"????" + encoded[8:], "x")
    with pytest.raises(durable.DecodeError, match="not marked as encoded .written without a codec.., and the payload "
                                                  "codec could not decode it"):
        _codec.Converter(RecordingXorCodec()).from_payload(_codec.Converter().to_payload([MARKER], "x"))
    # bytes a codec made before they were marked are still read with it
    assert _codec.Converter(RecordingXorCodec()).from_payload(encoded[len(_codec._ENCODED):]) == [MARKER]


def _holds(value: Any, text: str) -> bool:
    if value == text:
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds(v, text) for v in value)
    if isinstance(value, dict):
        return any(_holds(v, text) for v in value.values())
    return False


# --- the command line: --codec / $DURABLE_CODEC, with a real worker process -------------------------


def test_the_command_line_and_a_worker_process_use_the_codec_named_by_the_operator(data_dir: str) -> None:
    spec = "tests.wfs.codecs:XorCodec"
    run = CliRunner().invoke
    started = run(main, ["--data", data_dir, "--codec", spec, "start", "wrapped", "-i", json.dumps(MARKER), "--id", "w"])
    assert started.exit_code == 0, started.output
    with worker_process(data_dir, "tests.wfs.codecs", env={"DURABLE_CODEC": spec}):
        result = run(main, ["--data", data_dir, "--codec", spec, "result", "w", "--timeout", "20"])
        assert (result.exit_code, result.stdout) == (0, json.dumps(f"<{MARKER}-arg>") + "\n"), result.output
    history = run(main, ["--data", data_dir, "--codec", spec, "history", "w", "--json"])
    assert json.loads(history.stdout.splitlines()[0])["input"] == [MARKER]
    replayed = run(main, ["--data", data_dir, "--codec", spec, "replay", "w", "tests.wfs.codecs"])
    assert replayed.exit_code == 0 and "the code matches the history" in replayed.stdout, replayed.output
    assert MARKER.encode() not in stored_bytes(data_dir, durable.Client(data_dir))
    # without the codec (a fresh process), payloads stay unreadable, and it says why
    plain = subprocess.run([sys.executable, "-m", "durable", "--data", data_dir, "result", "w"], cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
    assert plain.returncode == 1 and plain.stdout == "" and MARKER not in plain.stderr
    assert plain.stderr == "error: workflow result: payloads are encoded: pass --codec (or codec=...)\n"


@pytest.mark.parametrize("spec, message", [
    ("tests.wfs.codecs", "--codec must be MODULE:NAME"),
    ("tests.wfs.codecs:Nope", "has no attribute 'Nope'"),
    ("no_such_module_zz:X", "cannot import module 'no_such_module_zz'"),
    ("tests.wfs.codecs:wrapped", "could not be created"),
    ("tests.wfs.codecs:MARKER_FREE", "has no attribute"),
    ("json:dumps", "could not be created"),
])
def test_a_bad_codec_option_is_one_clear_error(data_dir: str, spec: str, message: str) -> None:
    result = CliRunner().invoke(main, ["--data", data_dir, "--codec", spec, "list"])
    assert result.exit_code == 1 and result.stdout == "" and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_each_client_and_worker_keeps_its_own_codec(data_dir: str) -> None:
    """Clients in one process share the store but not a codec: before, the last `Client(codec=...)`
    replaced the codec of everything in the process, a running worker's included."""
    codec = RecordingXorCodec()
    with worker_thread(data_dir, [Probe], [echo, beating], codec=codec):
        client = durable.Client(data_dir, codec=codec)
        client.start(Probe, MARKER + "-input", id="one").signal("finish")
        assert client.get_handle("one").result(timeout=20)["result"] == MARKER + "-result"
        plain = durable.Client(data_dir)  # no codec: it does not borrow the other client's
        with pytest.raises(durable.DecodeError):
            plain.get_handle("one").result(timeout=1)
        durable.Client(data_dir, codec=RecordingXorCodec())  # another codec: the worker keeps its own
        client.start(Probe, MARKER + "-input", id="two").signal("finish")
        assert client.get_handle("two").result(timeout=20)["result"] == MARKER + "-result"


# --- failures: encoded with the payloads, all but their type -------------------------------------


def test_failures_and_error_texts_are_encoded_all_but_their_type() -> None:
    codec = RecordingXorCodec()
    converter = _codec.Converter(codec)
    try:
        raise durable.ApplicationError(MARKER + "-declined", type="CardDeclined", non_retryable=True)
    except durable.ApplicationError as exc:
        rec = converter.failure(exc)
    assert set(rec) == {"type", "nr", "enc"} and rec["type"] == "CardDeclined" and rec["nr"] is True
    assert MARKER.encode() not in _codec.encode(rec)
    assert converter.decode_failure(rec)["msg"] == MARKER + "-declined"
    text = converter.encode_text(f"KeyError: {MARKER}")
    assert isinstance(text, bytes) and MARKER.encode() not in text
    assert converter.readable_text(text) == f"KeyError: {MARKER}"
    plain, wrong = _codec.Converter(), _codec.Converter(WrongKeyXorCodec())
    assert plain.readable_failure(rec) == {"type": "CardDeclined", "msg": "<encoded: pass --codec>"}
    assert plain.readable_text(text) == "<encoded: pass --codec>"
    assert wrong.readable_text(text) == "<encoded: this codec cannot decode it: wrong codec or key?>"
    with pytest.raises(durable.DecodeError, match="^failure of x: payloads are encoded: pass --codec"):
        plain.decode_failure(rec, "failure of x")
    # records written in clear (by older workers, or made by the store) read as they are
    assert converter.decode_failure({"type": "StartToCloseTimeout", "msg": "late"})["msg"] == "late"
    # asked not to, or without a codec, failures stay as they are
    record = {"type": "ValueError", "msg": MARKER}
    for keeps in (_codec.Converter(codec, encode_failures=False), plain):
        assert keeps.encode_failure(record) is record and keeps.encode_text(MARKER) == MARKER


def test_a_failure_the_codec_cannot_encode_is_not_written_in_clear() -> None:
    class Failing:
        def encode(self, data: bytes) -> bytes:
            raise RuntimeError("no key")

        def decode(self, data: bytes) -> bytes:
            return data

    converter = _codec.Converter(Failing())
    rec = converter.encode_failure({"type": "ValueError", "msg": MARKER})
    assert MARKER not in repr(rec) and "no key" in rec["msg"] and rec["type"] == "ValueError"
    assert MARKER not in converter.encode_text(MARKER)
