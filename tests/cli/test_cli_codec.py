"""The command line reads encoded payloads and failures only with the codec they were written
with (issue 14, point 8): `result` without it, or with the wrong one, is one clear line on stderr
and exit code 1; `describe` and `history` still show the workflow, with ``<encoded: pass --codec>``
where a payload or a failure's text cannot be read, and everything decoded with the right codec.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

import durable
from durable.cli import main
from tests.conftest import worker_thread
from tests.wfs import codecs

RIGHT = "tests.wfs.codecs:XorCodec"
WRONG = "tests.wfs.codecs:WrongKeyXorCodec"
MARK = "PLAIN-cli-3d9e"


@pytest.fixture
def data(data_dir: str) -> str:
    """A store with two workflows run by a worker with `XorCodec`: 'ok' completed, 'bad' failed."""
    client = durable.Client(data_dir, codec=codecs.XorCodec())
    with worker_thread(data_dir, [codecs.wrapped, codecs.broken], [codecs.wrap], codec=codecs.XorCodec()):
        assert client.start(codecs.wrapped, MARK, id="ok").result(timeout=20) == f"<{MARK}-arg>"
        with pytest.raises(durable.WorkflowFailed):
            client.start(codecs.broken, MARK, id="bad").result(timeout=20)
    return data_dir


def cli(data: str, *args: str, codec: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--data", data, *(["--codec", codec] if codec else []), *args])


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1 and result.stdout == "" and "Traceback" not in result.output, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_result_without_the_codec_or_with_the_wrong_one_is_one_clear_line(data: str) -> None:
    assert one_error_line(cli(data, "result", "ok")) == (
        "error: workflow result: payloads are encoded: pass --codec (or codec=...)\n")
    assert one_error_line(cli(data, "result", "ok", codec=WRONG)).startswith(
        "error: workflow result: this codec cannot decode the payload: wrong codec or key?")
    right = cli(data, "result", "ok", codec=RIGHT)
    assert (right.exit_code, right.stdout) == (0, json.dumps(f"<{MARK}-arg>") + "\n"), right.output


def test_describe_and_history_show_encoded_failures_without_the_codec_and_decode_them_with_it(data: str) -> None:
    plain = cli(data, "describe", "bad")
    assert plain.exit_code == 0, plain.output
    assert "status: failed" in plain.stdout and "error:\n  RuntimeError: <encoded: pass --codec>\n" in plain.stdout
    assert MARK not in plain.stdout
    right = cli(data, "describe", "bad", codec=RIGHT)
    assert f"error:\n  RuntimeError: {MARK}-failed\n" in right.stdout, right.stdout
    wrong = cli(data, "describe", "bad", codec=WRONG)
    assert "RuntimeError: <encoded: this codec cannot decode it: wrong codec or key?>" in wrong.stdout, wrong.stdout

    history = cli(data, "history", "bad")
    assert history.exit_code == 0, history.output
    lines = history.stdout.splitlines()
    assert 'input="<encoded: pass --codec>"' in lines[0], lines[0]
    assert lines[-1].strip() == "RuntimeError: <encoded: pass --codec>", lines
    events = [json.loads(line) for line in cli(data, "history", "bad", "--json", codec=RIGHT).stdout.splitlines()]
    assert events[0]["input"] == [MARK]
    assert events[-1]["error"]["msg"] == f"{MARK}-failed" and events[-1]["error"]["type"] == "RuntimeError"
