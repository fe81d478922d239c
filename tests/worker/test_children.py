"""Child workflows and requests to other workflows, with a real worker on a real store.

Shaped after Temporal's features repo (child_workflows/: result, signal, cancel, throws_on_
execute, parent_close_policy...), adapted to durable's API.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import durable
from durable.cli._main import main
from tests.conftest import worker_process, worker_thread
from tests.fault._util import wait_until
from tests.wfs import children as c


def serve(data_dir: str):  # type: ignore[no-untyped-def]
    return worker_thread(data_dir, c.WORKFLOWS, c.ACTIVITIES)


def kinds(client: durable.Client, wid: str) -> list[str]:
    return [e["kind"] for e in client.get_handle(wid).history()]


def test_execute_child_returns_the_childs_result_with_a_deterministic_id(data_dir: str) -> None:
    with serve(data_dir):
        client = durable.Client(data_dir)
        assert client.start(c.parent_sum, 3, id="sum").result(timeout=20) == 0 + 2 + 4
        history = client.get_handle("sum").history()
        started = [e for e in history if e["kind"] == "ChildWorkflowInitiated"]
        assert [e["id"] for e in started] == ["sum/child-1", "sum/child-2", "sum/child-3"]
        assert [e["input"] for e in started] == [[0], [1], [2]]
        child = client.get_handle("sum/child-2").describe()
        assert child.status == "completed" and child.parent_id == "sum"
        assert child.parent_run_id == client.get_handle("sum").describe().run_id
        done = [e for e in history if e["kind"] == "ChildWorkflowCompleted"]
        assert [e["result"] for e in done] == [0, 2, 4]


def test_children_per_line_in_a_nursery(data_dir: str) -> None:
    with serve(data_dir):
        client = durable.Client(data_dir)
        assert client.start(c.parent_fan_out, 4, id="fan").result(timeout=20) == [0, 2, 4, 6]
        for i in range(4):
            assert client.get_handle(f"fan/line-{i}").describe().parent_id == "fan"


def test_a_childs_failure_reaches_the_parent_as_child_workflow_error_with_its_cause(data_dir: str) -> None:
    with serve(data_dir):
        client = durable.Client(data_dir)
        assert client.start(c.parent_of_failure, "no stock", id="pf").result(timeout=20) == (
            "failed: ChildBroke: no stock")
        with pytest.raises(durable.WorkflowFailed) as info:
            client.start(c.parent_fails_through, "no stock", id="pft").result(timeout=20)
        cause = info.value.__cause__
        assert isinstance(cause, durable.ApplicationError) and cause.type == "durable.ChildWorkflowError"
        assert "ChildBroke: no stock" in cause.message
        failed = [e for e in client.get_handle("pft").history() if e["kind"] == "ChildWorkflowFailed"]
        assert len(failed) == 1 and failed[0]["why"] == "failed"


def test_a_child_id_taken_by_a_running_workflow_fails_the_start_clearly(data_dir: str) -> None:
    with serve(data_dir):
        client = durable.Client(data_dir)
        client.start(c.Mailbox, id="taken")
        assert client.start(c.parent_with_id, "taken", id="p").result(timeout=20) == (
            "start_failed: durable.WorkflowAlreadyExists: a workflow with id 'taken' is already running "
            f"(type 'Mailbox', run {client.get_handle('taken').describe().run_id})")
        assert "ChildWorkflowStartFailed" in kinds(client, "p")
        assert client.get_handle("taken").describe().status == "running"  # untouched
        # a closed id is started again (the default id reuse policy), and that run is the child
        client.get_handle("taken").signal("stop")
        client.get_handle("taken").result(timeout=20)
        assert client.start(c.parent_with_id, "taken", id="p2").result(timeout=20) == "42"
        assert client.get_handle("taken").describe().parent_id == "p2"


def test_the_parents_own_id_is_refused_for_a_child(data_dir: str) -> None:
    with serve(data_dir):
        client = durable.Client(data_dir)
        out = client.start(c.parent_with_id, "self", id="self").result(timeout=20)
        assert out.startswith("start_failed: durable.WorkflowAlreadyExists: a child workflow cannot take its parent's id")


def test_a_cancelled_scope_waits_for_its_child_to_close_before_going_on(data_dir: str, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with serve(data_dir):
        client = durable.Client(data_dir)
        assert client.start(c.parent_cancels_scope, log, id="sc").result(timeout=20) == "moved on"
        # the child's cleanup ran, and only then the parent's compensation
        assert Path(log).read_text().splitlines() == ["sleepy-child cleanup", "compensate"]
        k = kinds(client, "sc")
        assert k.index("ChildWorkflowCancelRequested") < k.index("ChildWorkflowCancelled") < k.index("ActivityScheduled")
        assert client.get_handle("sleepy-child").describe().status == "cancelled"


def test_a_handle_cancels_its_child(data_dir: str, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with serve(data_dir):
        client = durable.Client(data_dir)
        assert client.start(c.parent_with_handle, log, id="hc").result(timeout=20) == "cancelled"
        assert Path(log).read_text().splitlines() == ["started handled-child", "handled-child cleanup"]


def test_cancelling_the_parent_cancels_its_children_and_waits_for_them(data_dir: str, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with serve(data_dir):
        client = durable.Client(data_dir)
        h = client.start(c.parent_waits, log, id="pc")  # its child sleeps an hour
        wait_until(lambda: Path(log).exists(), what="the child to start")
        assert h.describe().pending_children == ("pc-kid",)
        shown = CliRunner().invoke(main, ["--data", data_dir, "describe", "pc"]).output
        assert "pending children: pc-kid" in shown and "parent_id" not in shown
        h.cancel()
        with pytest.raises(durable.WorkflowFailed):
            h.result(timeout=20)
        assert h.describe().status == "cancelled"
        assert client.get_handle("pc-kid").describe().status == "cancelled"
        assert Path(log).read_text().splitlines() == ["started pc-kid", "pc-kid cleanup"]
        k = kinds(client, "pc")
        assert k[-2:] == ["ChildWorkflowCancelled", "WorkflowCancelled"]


@pytest.mark.parametrize(("policy", "status"), [("terminate", "terminated"), ("request_cancel", "cancelled"),
                                                ("abandon", "running")])
def test_parent_close_policy(data_dir: str, policy: str, status: str) -> None:
    with serve(data_dir):
        client = durable.Client(data_dir)
        assert client.start(c.parent_leaves, policy, "kid", id="leaving").result(timeout=20) == "left"
        if policy == "request_cancel":
            wait_until(lambda: client.get_handle("kid").describe().status != "running", what="the child to close")
        assert client.get_handle("kid").describe().status == status
        if policy == "terminate":
            # applied in the parent's closing transaction: the child's history says why
            assert client.get_handle("kid").history()[-1]["reason"] == "its parent 'leaving' has completed"
        if policy == "abandon":
            client.get_handle("kid").cancel()
            wait_until(lambda: client.get_handle("kid").describe().status == "cancelled", what="the child to close")
            assert kinds(client, "leaving")[-1] == "WorkflowCompleted"  # the closed parent is not told


def test_signal_and_cancel_another_workflow_exactly_once(data_dir: str) -> None:
    with serve(data_dir):
        client = durable.Client(data_dir)
        box = client.start(c.Mailbox, id="box")
        assert client.start(c.sender, "box", 3, id="snd").result(timeout=20) == "sent"
        assert box.result(timeout=20) == [0, 1, 2]
        signals = [e for e in box.history() if e["kind"] == "SignalReceived"]
        assert [(e["name"], e["input"]) for e in signals] == [("put", [0]), ("put", [1]), ("put", [2]), ("stop", [])]
        k = kinds(client, "snd")
        assert k.count("ExternalSignalRequested") == 4 and k.count("ExternalRequestCompleted") == 4

        box2 = client.start(c.Mailbox, id="box2")
        assert client.start(c.canceller, "box2", id="can").result(timeout=20) == "cancel sent"
        with pytest.raises(durable.WorkflowFailed):
            box2.result(timeout=20)
        assert box2.describe().status == "cancelled"
        # a closed workflow cannot be cancelled: the request fails, clearly
        assert client.start(c.canceller, "box2", id="can2").result(timeout=20) == (
            "not delivered: durable.WorkflowClosed: cannot cancel workflow 'box2': it was cancelled")


def test_a_signal_to_a_missing_workflow_or_signal_fails_clearly(data_dir: str) -> None:
    with serve(data_dir):
        client = durable.Client(data_dir)
        assert client.start(c.signals_missing, "nobody", id="m1").result(timeout=20) == (
            "not delivered: durable.WorkflowNotFound: no workflow with id 'nobody'")
        client.start(c.double, 1, id="no-handlers").result(timeout=20)
        client.start(c.Mailbox, id="running-box")
        assert client.start(c.signals_missing, "running-box", id="m2").result(timeout=20) == "sent"
        assert client.start(c.signals_missing, "running-box", "nope", id="m4").result(timeout=20) == (
            "not delivered: durable.NotRegistered: workflow type 'Mailbox' has no signal 'nope' (signals: put, stop)")
        assert client.start(c.signals_missing, "running-box", "put", 1, 2, id="m5").result(timeout=20) == (
            "not delivered: durable.InvalidArgument: signal 'put' of workflow type 'Mailbox' takes 1 argument, not 2")
        # the box got the valid signal only
        assert kinds(client, "running-box").count("SignalReceived") == 1
        assert client.start(c.signals_missing, "m2", id="m3").result(timeout=20).startswith(
            "not delivered: durable.WorkflowClosed")


def test_a_parent_signals_its_child_through_the_handle(data_dir: str) -> None:
    with serve(data_dir):
        client = durable.Client(data_dir)
        assert client.start(c.parent_signals_child, id="ps").result(timeout=20) == ["a", "b"]


def test_cli_history_shows_child_events(data_dir: str) -> None:
    with serve(data_dir):
        client = durable.Client(data_dir)
        client.start(c.parent_of_failure, "bad", id="cli-p").result(timeout=20)
    out = CliRunner().invoke(main, ["--data", data_dir, "history", "cli-p"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    initiated = next(line for line in lines if "ChildWorkflowInitiated" in line)
    assert 'name="fails"' in initiated and 'id="cli-p/child-1"' in initiated
    assert 'input=["bad"]' in initiated and 'parent_close_policy="terminate"' in initiated
    started = next(line for line in lines if "ChildWorkflowStarted" in line)
    run = client.get_handle("cli-p/child-1").describe().run_id
    assert f"run={run}" in started
    failed = lines.index(next(line for line in lines if "ChildWorkflowFailed" in line))
    assert "ChildBroke: bad" in lines[failed + 1]
    out = CliRunner().invoke(main, ["--data", data_dir, "describe", "cli-p/child-1"])
    assert "parent_id: cli-p" in out.output


def test_children_with_a_worker_process(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_process(data_dir, "tests.wfs.children"):
        assert client.start("parent_fan_out", 3, id="proc").result(timeout=30) == [0, 2, 4]
    assert client.get_handle("proc").describe().pending_children == ()


def test_child_payloads_and_failures_go_through_the_workers_codec(data_dir: str) -> None:
    """The child's input, result and failure, and a signal's input, are encoded as activity
    payloads are: nothing of them is in the store in clear."""
    from tests.wfs.codecs import XorCodec

    codec = XorCodec()
    with worker_thread(data_dir, c.WORKFLOWS, c.ACTIVITIES, codec=codec):
        client = durable.Client(data_dir, codec=codec)
        assert client.start(c.parent_of_failure, "secret-reason-77", id="enc").result(timeout=20) == (
            "failed: ChildBroke: secret-reason-77")
        box = client.start(c.Mailbox, id="enc-box")
        assert client.start(c.sender, "enc-box", 1, id="enc-snd").result(timeout=20) == "sent"
        assert box.result(timeout=20) == [0]
        events = client.get_handle("enc").history()
        initiated = next(e for e in events if e["kind"] == "ChildWorkflowInitiated")
        assert initiated["input"] == ["secret-reason-77"]  # readable through the client's codec
    from tests.fault._util import store_snapshot

    raw = b"".join(k + v for pairs in store_snapshot(durable.Client(data_dir)).values() for k, v in pairs)
    assert b"secret-reason-77" not in raw


def test_a_child_on_another_queue_runs_on_that_queues_workers(data_dir: str) -> None:
    with serve(data_dir), worker_thread(data_dir, [c.double], [], queue="kids"):
        client = durable.Client(data_dir)
        assert client.start(c.parent_elsewhere, "kids", "double", id="q").result(timeout=20) == 10
        assert client.get_handle("q/child-1").describe().queue == "kids"
        # a type the queue's workers do not have: the start fails, clearly
        assert client.start(c.parent_elsewhere, "kids", "fails", id="q2").result(timeout=20) == (
            "start_failed: durable.NotRegistered: unknown workflow 'fails' on queue 'kids' (registered: double)")


def test_cli_history_shows_requests_to_other_workflows(data_dir: str) -> None:
    with serve(data_dir):
        client = durable.Client(data_dir)
        client.start(c.Mailbox, id="cli-box")
        client.start(c.sender, "cli-box", 1, id="cli-snd").result(timeout=20)
        client.start(c.signals_missing, "nobody", id="cli-miss").result(timeout=20)
    out = CliRunner().invoke(main, ["--data", data_dir, "history", "cli-snd"])
    assert out.exit_code == 0, out.output
    sent = [line for line in out.output.splitlines() if "ExternalSignalRequested" in line]
    assert len(sent) == 2
    assert 'id="cli-box"' in sent[0] and 'name="put"' in sent[0] and "input=[0]" in sent[0]
    assert "run=" not in sent[0]  # the current run: no run to name
    out = CliRunner().invoke(main, ["--data", data_dir, "history", "cli-miss"])
    lines = out.output.splitlines()
    failed = lines.index(next(line for line in lines if "ExternalRequestFailed" in line))
    assert "durable.WorkflowNotFound: no workflow with id 'nobody'" in lines[failed + 1]
