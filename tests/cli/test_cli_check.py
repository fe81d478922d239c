"""`durable check MODULES`: which running workflows would the code in MODULES break?

A real store holds `stepper` workflows (tests/wfs/stepper_a.py) parked before each of their
four steps, one on another queue, one completed; stepper_b.py changes step 2. The check finds
exactly the workflows that had reached step 2, in this process or in spawned ones, and leaves
the store byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable
from durable import _events as ev
from durable import _ops, _store
from durable.cli import main
from tests.conftest import ON_POSTGRES, worker_thread
from tests.fault._util import store_snapshot
from tests.durable.test_check import recorded_histories, would_break
from tests.wfs import codecs, stepper_a
from tests.wfs.flow_versions import VERSIONS, Version

RIGHT = "tests.wfs.codecs:XorCodec"


def cli(data: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--data", data, *args], prog_name="durable")


def wait_parked(handle: durable.WorkflowHandle[Any], steps: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        kinds = [e["kind"] for e in handle.history()]
        if kinds.count("ActivityCompleted") == steps and kinds[-1] == "TaskCompleted":
            return
        assert time.monotonic() < deadline, f"{handle.id} did not park: {kinds}"
        time.sleep(0.02)


def digest(data: str) -> str:
    """The content of the store's data file (on PostgreSQL: of every row of every table)."""
    if ON_POSTGRES and not os.path.isdir(data):
        return hashlib.sha256(repr(store_snapshot(durable.Client(data))).encode()).hexdigest()
    return hashlib.sha256(Path(data, "data.mdb").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """p0..p3 parked before step 0..3, p4 completed (queue default); q3 parked before step 3
    on queue "other"."""
    data = str(tmp_path_factory.mktemp("check") / "store")
    client = durable.Client(data)
    flows, acts = [stepper_a.Stepper], [stepper_a.step]
    with worker_thread(data, flows, acts), worker_thread(data, flows, acts, queue="other"):
        for k in range(5):
            client.start(stepper_a.Stepper, k, id=f"p{k}")
        client.start(stepper_a.Stepper, 3, id="q3", queue="other")
        for k in range(4):
            wait_parked(client.get_handle(f"p{k}"), k)
        wait_parked(client.get_handle("q3"), 3)
        assert client.get_handle("p4").result(timeout=20) == [0, 1, 2, 3]
    yield data
    _store.Store.open(data).close()


def broken(result: Result) -> list[str]:
    """The ids of the workflows a text report says would break."""
    return sorted(line.split(" ")[0] for line in result.stdout.splitlines() if " would break: " in line)


def test_the_changed_code_breaks_exactly_the_workflows_that_reached_the_changed_step(store: str) -> None:
    before = digest(store)
    result = cli(store, "check", "tests.wfs.stepper_b", "--jobs", "1")
    assert result.exit_code == 1, result.output
    assert broken(result) == ["p3", "q3"]
    lines = result.stdout.splitlines()
    assert lines[-1] == "checked 5 workflows: 3 match, 2 would break"
    [p3] = [line for line in lines if line.startswith("p3 ")]
    assert p3.startswith("p3 (run ") and ", stepper) would break: NondeterminismError: workflow 'p3' (stepper), event " in p3
    assert "the history has ActivityScheduled('step', seq=3) but the code now does TimerStarted(0.01 s, seq=3)" in p3
    assert digest(store) == before


def test_the_same_code_matches_every_workflow(store: str) -> None:
    result = cli(store, "check", "tests.wfs.stepper_a")
    assert result.exit_code == 0, result.output
    assert result.stdout == "checked 5 workflows: 5 match, 0 would break\n"


def test_queue_and_a_sample_of_closed_runs(store: str) -> None:
    other = cli(store, "check", "tests.wfs.stepper_b", "--queue", "other")
    assert other.exit_code == 1 and broken(other) == ["q3"]
    assert other.stdout.endswith("checked 1 workflow: 0 match, 1 would break\n")
    default = cli(store, "check", "tests.wfs.stepper_b", "--queue", "default", "--closed", "3")
    assert default.exit_code == 1 and broken(default) == ["p3", "p4"]  # p4 completed after step 2
    assert default.stdout.endswith("checked 5 workflows: 3 match, 2 would break\n")
    nobody = cli(store, "check", "tests.wfs.stepper_b", "--queue", "nobody")
    assert nobody.exit_code == 0 and nobody.stdout == "checked 0 workflows: 0 match, 0 would break\n"


def test_json_one_object_per_workflow_the_same_from_spawned_processes(store: str) -> None:
    before = digest(store)
    here = cli(store, "check", "tests.wfs.stepper_b", "--closed", "9", "--json", "--jobs", "1")
    there = cli(store, "check", "tests/wfs/stepper_b.py", "--closed", "9", "--json", "--jobs", "2")  # a file too
    assert here.exit_code == there.exit_code == 1, (here.output, there.output)
    rows = [json.loads(line) for line in here.stdout.splitlines()]
    assert [json.loads(line) for line in there.stdout.splitlines()] == rows
    assert {row["id"]: row["ok"] for row in rows} == {
        "p0": True, "p1": True, "p2": True, "p3": False, "q3": False, "p4": False,
    }
    assert all(set(row) == {"id", "run_id", "type", "ok", "error"} for row in rows)
    assert all(row["type"] == "stepper" and (row["error"] is None) == row["ok"] for row in rows)
    assert here.stderr == "checked 6 workflows: 3 match, 3 would break\n"
    assert digest(store) == before


def test_each_check_process_imports_the_modules_itself(store: str, tmp_path: Path) -> None:
    """--jobs 2: two spawned processes besides this one import MODULES (each once)."""
    pids = tmp_path / "pids"
    result = CliRunner().invoke(main, ["--data", store, "check", "tests.wfs.stepper_pids", "--jobs", "2"],
                                env={"DURABLE_TEST_PIDS": str(pids)})
    assert result.exit_code == 1 and broken(result) == ["p3", "q3"]
    seen = pids.read_text().split()
    assert len(seen) == len(set(seen)) == 3 and str(os.getpid()) in seen


def test_a_workflow_type_missing_from_the_modules_would_break(store: str) -> None:
    result = cli(store, "check", "tests.wfs.basic", "--queue", "other")
    assert result.exit_code == 1
    [line] = [line for line in result.stdout.splitlines() if " would break: " in line]
    assert ("would break: NotRegistered: workflow type 'stepper' is not registered in MODULES (tests.wfs.basic); "
            "registered: ") in line


@pytest.mark.parametrize(("args", "message"), [
    (["check"], "Missing argument 'MODULES...'"),
    (["check", "tests.wfs.stepper_b", "--jobs", "0"], "Invalid value for '--jobs'"),
    (["check", "tests.wfs.stepper_b", "--closed", "-1"], "Invalid value for '--closed'"),
    (["check", "tests.wfs.no_such_module"], "cannot import module 'tests.wfs.no_such_module'"),
    (["check", "json"], "no workflows found in json"),
    (["check", "tests.wfs.stepper_b", "--codec", "tests.wfs.codecs:Nothing"], "has no attribute 'Nothing'"),
])
def test_usage_errors_exit_with_2(store: str, args: list[str], message: str) -> None:
    result = cli(store, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_no_store_exits_with_2(tmp_path: Path) -> None:
    result = cli(str(tmp_path / "none"), "check", "tests.wfs.stepper_a")
    assert result.exit_code == 2 and result.stderr.startswith("error: no durable store at ")
    assert not (tmp_path / "none").exists()


def test_encoded_payloads_are_read_with_the_codec_in_every_process(data_dir: str) -> None:
    with worker_thread(data_dir, [codecs.wrapped], [codecs.wrap], codec=codecs.XorCodec()):
        client = durable.Client(data_dir, codec=codecs.XorCodec())
        for i in range(3):
            client.start(codecs.wrapped, f"t{i}", id=f"c{i}").result(timeout=20)
    before = digest(data_dir)
    plain = cli(data_dir, "check", "tests.wfs.codecs", "--closed", "3", "--jobs", "2")
    assert plain.exit_code == 1 and broken(plain) == ["c0", "c1", "c2"]
    assert "payloads are encoded: pass --codec" in plain.stdout
    with_codec = cli(data_dir, "--codec", RIGHT, "check", "tests.wfs.codecs", "--closed", "3", "--jobs", "2")
    assert with_codec.exit_code == 0, with_codec.output
    assert with_codec.stdout == "checked 3 workflows: 3 match, 0 would break\n"
    assert digest(data_dir) == before


def test_as_a_real_process(store: str) -> None:
    """The `durable` script itself, with its default of one process per CPU."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = subprocess.run([sys.executable, "-m", "durable", "check", "tests.wfs.stepper_b", "--data", store],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 1, out.stderr
    assert out.stdout.splitlines()[-1] == "checked 5 workflows: 3 match, 2 would break"


# --- random histories in a real store ------------------------------------------------------


def put_history(t: Any, history: list[dict[str, Any]]) -> None:
    """Write a recorded history into the store as its workflow's (closed if it ends so)."""
    first = history[0]
    _ops.start_workflow(t, first["id"], first["type"], first["queue"], first["in"], False, False)
    rec = _ops.load_wf(t, first["id"])
    for event in history[1:]:
        _ops._append(t, rec, dict(event))
    last = history[-1]["k"]
    if last in ev.CLOSING_KINDS:
        _ops._close(t, rec, ev.CLOSING_STATUS[last])
        _ops._save_wf(t, rec, _ops.RUNNING)
    else:
        _ops._save_wf(t, rec)


@st.composite
def stores(draw: Any) -> tuple[Version, list[tuple[Version, list[dict[str, Any]]]]]:
    checked = draw(st.sampled_from(sorted(VERSIONS)))
    return checked, [draw(recorded_histories(f"wf-{i}")) for i in range(draw(st.integers(1, 8)))]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=stores())
def test_durable_check_finds_exactly_the_workflows_that_break(case: Any) -> None:
    """Random histories (tests/durable/test_check.py) in a real store, checked against a random
    version of the code by the command: exactly those the model says break, open and closed."""
    checked, recorded = case
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "store")
        store = _store.Store.open(data)
        try:
            store.write(lambda t: [put_history(t, history) for _, history in recorded])
            sys.modules.pop("tests.wfs.flow_versions", None)  # it reads the version when imported
            result = CliRunner().invoke(
                main, ["--data", data, "check", "tests.wfs.flow_versions", "--closed", "100", "--json", "--jobs", "1"],
                env={"DURABLE_TEST_FLOW_VERSION": f"{checked[0]}:{checked[1]}"},
            )
        finally:
            store.close()
    rows = {row["id"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert sorted(rows) == sorted(f"wf-{i}" for i in range(len(recorded)))
    expected = {f"wf-{i}" for i, (version, history) in enumerate(recorded) if would_break(version, checked, history)}
    assert {wid for wid, row in rows.items() if not row["ok"]} == expected
    assert result.exit_code == (1 if expected else 0), result.output
