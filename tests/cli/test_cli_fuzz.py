"""The `durable` command fed random arguments (R9): hypothesis builds command lines from the real
commands and flags, workflow ids that exist, random text and unicode (with the lone surrogates
that undecodable bytes in argv become), huge and odd numbers, broken and deeply nested JSON and
missing or unusable store directories; each runs through click's test runner against a store
holding finished and running workflows.

Whatever the input: the exit code is 0, 1 or 2, nothing but `SystemExit` escapes, no traceback
is printed, and an error is one line (``error: ...`` for exit 1, click's ``Error: ...`` for
exit 2). Modules named on the command line are imported by `worker` and `replay` (that is their
job), so those two only ever see names from a fixed list that cannot start a worker. Waiting
commands always get a short ``--timeout``.

CI: ~5,000 command lines; ``--slow``: ~50,000.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable
from durable.cli import main
from tests.conftest import close_stores_under, worker_thread
from tests.wfs import basic

COMMANDS = ["worker", "start", "signal", "query", "update", "result", "cancel", "terminate", "list", "count", "describe",
            "history", "replay"]
FLAGS = ["--queue", "--concurrency", "--lease", "--cache", "--input", "-i", "--id", "--wait", "--timeout",
         "--reason", "--status", "--workflow", "--type", "--limit", "--json", "--help", "--version", "--data", "--",
         "-", "--input=1", "--id=", "--status=running", "--limit=0", "--nope", "-x", "-h", "--since", "--until",
         "--all-runs", "--run", "--run=1", "--id-reuse-policy", "--id-conflict-policy=use_existing",
         "--since=2026-12-03", "--update-id", "--update-id=u1"]
TIMES = ["2026-12-03", "2026-12-03T05:21:00", "2026-12-03T05:21:00Z", "2026-12-03T05:21:00+01:00", "2026-13-01",
         "0001-01-01", "9999-12-31T23:59:59.999999", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00+14:00", "now"]
GROUP_FLAGS = ["--data", "--help", "--version", "--debug-not", "--", "-", "--data=", "--codec",
               "--codec=tests.wfs.codecs:XorCodec", "--codec=no_such_module_zz:X", "--codec=json:dumps",
               "--codec=tests.wfs.codecs"]
NUMBERS = ["0", "-1", "1", "0.0001", "1e400", "-1e400", "nan", "inf", "-inf", "1e-400", str(2**64),
           str(2**200), "9" * 5000, "0x10", "1_000", " 1", "١٢", "½", "1,5", "", "100001", "3601"]
JSON_TEXTS = ['"text"', "[1, 2]", '{"a": 1}', "null", "true", "1e999", "NaN", "-Infinity", "[" * 10_000,
              "{" * 100, '"\\ud800"', '"\\u0000"', "1" * 5000, '{"a": 1, "a": 2}', "[1, 2", "'single'",
              '"' + "x" * 3_000_000 + '"', "[" + ",".join(["[]"] * 300_000) + "]", ""]
#: Imported by `worker` and `replay`: none of them holds a workflow, except tests.wfs.basic
#: (given to `replay` only, which replays without running anything).
SAFE_MODULES = ["no_such_module_zz", "tests.wfs.no_such_module", "", " ", ".", "..", "a..b", "tests.wfs",
                "json", "os.path", "tests.wfs.basic:three_steps", "é", "\udcff", "x\x00y", "/tmp", "-"]
MODULE_COMMANDS = ("worker", "replay")
WAITING = {"start": "--timeout", "result": "--timeout", "query": "--timeout", "update": "--timeout"}

CI_EXAMPLES = 5_000
SLOW_EXAMPLES = 50_000


@dataclass
class Store:
    data: str
    done_run: str
    ids: list[str]
    missing: str
    a_file: str
    unsafe: str


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A store with a completed, a failed-to-start and a running workflow; no worker after setup."""
    root = tmp_path_factory.mktemp("clifuzz")
    data = str(root / "store")
    client = durable.Client(data)
    with worker_thread(data, [basic.three_steps, basic.Collector], [basic.add_one, basic.double]):
        done = client.start(basic.three_steps, 1, id="done")
        done.result(timeout=20)
        client.start(basic.Collector, id="open").signal("add", 3)
    client.start("sleeper", 1, id="other-queue", queue="elsewhere")
    (root / "a_file").write_text("not a store")
    unsafe = root / "unsafe"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    yield Store(data, str(done.run_id), ["done", "open", "other-queue"], str(root / "missing" / "deeper"), str(root / "a_file"),
                str(unsafe))
    close_stores_under(root)  # this store, and those the commands made (under `missing`)


def tokens(s: Store) -> st.SearchStrategy[str]:
    text = st.text(max_size=40)
    unicode = st.text(st.characters(min_codepoint=0x80), max_size=20) | st.sampled_from(
        ["\udcff", "a\udc80b", "\u202e", "\ufeff", "日本語", "🙂" * 50, "x" * 300, "\x00", "\n", "\t\r"])
    return st.one_of(
        st.sampled_from(FLAGS), st.sampled_from(COMMANDS), st.sampled_from(s.ids), st.sampled_from(NUMBERS),
        st.sampled_from(JSON_TEXTS), text, unicode, st.integers().map(str), st.floats().map(str),
        st.sampled_from([s.missing, s.a_file, s.unsafe, s.data, "three_steps", "Collector", "add", "count",
                         "sleeper", "running", "elsewhere", "default"]),
    )


def _shaped(draw: st.DrawFn, s: Store, command: str) -> list[str]:
    """Arguments in the shape `command` expects, with random values: these get past the parser."""
    value = tokens(s)
    some_id = st.sampled_from(s.ids) | value
    time = st.sampled_from(TIMES) | value
    run = st.sampled_from([s.done_run, "1", "2", "ff", "0", "01", "x"]) | value
    name = st.sampled_from(["three_steps", "Collector", "sleeper", "add", "finish", "count"]) | value
    json_text = st.sampled_from(JSON_TEXTS) | st.sampled_from(NUMBERS) | value
    filters = [["--status", value | st.sampled_from(["running", "completed", "terminated"])], ["--workflow", name],
               ["--type", name], ["--since", time], ["--until", time], ["--all-runs"]]
    options = {
        "start": [["--input", json_text], ["-i", json_text], ["--id", some_id], ["--queue", value], ["--wait"],
                  ["--id-reuse-policy", st.sampled_from(["allow_duplicate", "allow_duplicate_failed_only",
                                                         "reject_duplicate"]) | value],
                  ["--id-conflict-policy", st.sampled_from(["fail", "use_existing"]) | value]],
        "signal": [], "query": [], "result": [], "describe": [["--json"], ["--run", run]],
        "update": [["--update-id", value | st.sampled_from(["u1", "u2"])]],
        "history": [["--json"], ["--run", run]],
        "cancel": [["--reason", value]], "terminate": [["--reason", value]],
        "list": filters + [["--limit", st.sampled_from(NUMBERS)], ["--json"]],
        "count": filters,
    }[command]
    args = {
        "start": [name], "signal": [some_id, name, json_text], "query": [some_id, name, json_text],
        "update": [some_id, name, json_text],
        "result": [some_id], "describe": [some_id], "history": [some_id], "cancel": [some_id],
        "terminate": [some_id], "list": [], "count": [],
    }[command]
    out = [draw(a) for a in args[:draw(st.integers(max(len(args) - 1, 0), len(args)))]]
    for option in draw(st.lists(st.sampled_from(options), max_size=3)) if options else []:
        out += [option[0], *(draw(v) for v in option[1:])]
    return out


@st.composite
def command_lines(draw: st.DrawFn, s: Store) -> list[str]:
    """A `durable` command line: group options, maybe a command, and a jumble of its arguments
    (half the time in the shape the command expects)."""
    args: list[str] = []
    if draw(st.integers(0, 9)) == 0:
        args += draw(st.lists(st.sampled_from(GROUP_FLAGS), max_size=2))
    data = draw(st.sampled_from([s.data] * 6 + [s.missing, s.a_file, s.unsafe, "", "rel\udcffdir", "a\x00b"]))
    args[:0] = ["--data", data]
    if draw(st.integers(0, 19)):
        command = draw(st.sampled_from(COMMANDS))
        args.append(command)
        if command not in MODULE_COMMANDS and command != "worker" and draw(st.booleans()):
            rest = _shaped(draw, s, command)
        else:
            rest = draw(st.lists(tokens(s), max_size=8))
        if command in MODULE_COMMANDS:
            modules = SAFE_MODULES + (["tests.wfs.basic"] if command == "replay" else [])
            rest = [t if t in FLAGS or t in s.ids else draw(st.sampled_from(modules)) for t in rest]
            rest += draw(st.lists(st.sampled_from(modules), max_size=2))
        if command in WAITING:
            rest = _without(rest, WAITING[command])
            args += [WAITING[command], "0.05"]  # before the rest: a later "--" cannot hide it
        args += rest
    return args


def _without(args: list[str], option: str) -> list[str]:
    """`args` with every occurrence of `option` (and its value) removed."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


@dataclass
class Figures:
    runs: int = 0
    by_code: dict[int, int] | None = None
    slowest: float = 0.0
    slowest_args: tuple[str, ...] = ()

    def line(self) -> str:
        return (f"cli fuzz: {self.runs} command lines, exit codes {dict(sorted((self.by_code or {}).items()))}, "
                f"0 tracebacks; slowest {self.slowest * 1000:.0f} ms: {self.slowest_args}")


def check(result: Result, args: list[str]) -> None:
    """Exit code 0, 1 or 2; only SystemExit; no traceback; an error is one line."""
    shown = [a[:60] for a in args]
    assert result.exit_code in (0, 1, 2), (result.exit_code, shown, result.output[-500:], result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        shown, repr(result.exception), result.output[-500:])
    assert "Traceback" not in result.output, (shown, result.output[-2000:])
    if result.exit_code == 1:  # (no workflow here fails, so no error tree of several lines)
        # a start may warn first (no worker serves the queue), each warning one line too
        lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
        assert len(lines) == 1 and lines[0].startswith("error: "), (shown, result.stderr[-2000:])
        assert "unexpected" not in lines[0], (shown, lines[0])  # the catch-all: an error nobody foresaw
    elif result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), (shown, result.stderr[-1000:])


def fuzz(s: Store, n: int, request: pytest.FixtureRequest) -> Figures:
    runner = CliRunner()
    figures = Figures(by_code={})

    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(command_lines(s))
    def run(args: list[str]) -> None:
        t0 = time.perf_counter()
        result = runner.invoke(main, args, prog_name="durable", env={"DURABLE_DATA": s.data})
        seconds = time.perf_counter() - t0
        if seconds > figures.slowest:
            figures.slowest = seconds
            figures.slowest_args = tuple(a[:40] for a in args[2:])
        figures.runs += 1
        figures.by_code[result.exit_code] = figures.by_code.get(result.exit_code, 0) + 1  # type: ignore[index]
        check(result, args)

    run()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(figures.line())
    return figures


@pytest.mark.parametrize("n", [pytest.param(CI_EXAMPLES, id="ci"),
                               pytest.param(SLOW_EXAMPLES, id="slow", marks=pytest.mark.slow)])
def test_random_command_lines(store: Store, n: int, tmp_path: Path, request: pytest.FixtureRequest,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative directories named on the command line are made here
    figures = fuzz(store, n, request)
    assert figures.runs >= n // 2
    assert figures.by_code and set(figures.by_code) <= {0, 1, 2}
    # the store is still a store, and what was there is still there
    client = durable.Client(store.data, create=False)
    assert client.get_handle("done", run_id=store.done_run).result(timeout=1) == 5
    assert os.stat(store.unsafe).st_mode & 0o777 == 0o777 and os.listdir(store.unsafe) == []


# --- inputs the fuzzer found, kept as plain tests ------------------------------------------------


def cli(store: Store, *args: str) -> Result:
    return CliRunner().invoke(main, ["--data", store.data, *args], prog_name="durable")


def one_error_line(result: Result, code: int, pattern: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    line = [x for x in result.stderr.splitlines() if x.lower().startswith("error: ")][-1]
    assert re.search(pattern, line), line
    assert "unexpected" not in line, line  # an error we foresaw, not the catch-all


@pytest.mark.parametrize("args, pattern", [
    (["start", "three_steps", "-i", "[" * 100_000], r"--input 1 is not valid JSON"),
    (["start", "three_steps", "-i", "1" * 5000], r"--input 1 is not valid JSON"),
    (["signal", "open", "add", "[" * 100_000], r"argument 1 is not valid JSON"),
    (["query", "open", "count", "9" * 5000, "--timeout", "0.05"], r"argument 1 is not valid JSON"),
])
def test_json_that_python_cannot_parse_is_a_usage_error(store: Store, args: list[str], pattern: str) -> None:
    one_error_line(cli(store, *args), 2, pattern)


@pytest.mark.parametrize("args, pattern", [
    (["start", "three\udcff", "--queue", "q"], r"workflow name .* is invalid"),
    (["start", "three_steps", "--id", "id\udcff", "--queue", "q"], r"workflow id must be"),
    (["start", "three_steps", "--queue", "q\udcff"], r"queue .* is invalid"),
    (["describe", "\udcff"], r"workflow id must be"),
    (["signal", "open", "ad\udcffd", "1"], r"signal name .* is invalid"),
    (["query", "open", "co\udcffunt", "--timeout", "0.05"], r"query name .* is invalid"),
    (["update", "--timeout", "0.05", "done", "\ud800"], r"update name .* is invalid"),  # a lone surrogate
    (["update", "open", "poke", "--update-id", "\ud800"], r"update id must be"),
    (["list", "--workflow", "x\udcff"], r"workflow name .* is invalid"),
    (["count", "--type", "x\udcff"], r"workflow name .* is invalid"),
    (["describe", "done", "--run", "\udcff"], r"a run id must be"),
    (["cancel", "open", "--reason", "\udcff"], r"a reason must be Unicode text"),
    (["terminate", "open", "--reason", "x" * 10_000], r"a reason must be .* at most 8192 bytes"),
])
def test_undecodable_bytes_in_names_are_refused_clearly(store: Store, args: list[str], pattern: str) -> None:
    one_error_line(cli(store, *args), 1, pattern)


@pytest.mark.parametrize("data", ["a\x00b", "\x00"])
def test_a_data_directory_with_a_nul_is_refused_clearly(data: str) -> None:
    result = CliRunner().invoke(main, ["--data", data, "list"], prog_name="durable")
    one_error_line(result, 1, r"not a valid directory name|NUL")


def test_json_output_of_odd_values_is_valid_json(store: Store) -> None:
    out = cli(store, "history", "done", "--json")
    assert out.exit_code == 0
    for line in out.stdout.splitlines():
        json.loads(line)
