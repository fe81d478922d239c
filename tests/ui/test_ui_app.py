"""The UI's ASGI app over a real store and a real worker: the list, a workflow page with its
timeline, pending activities, a query, and the actions with their confirmation."""

from __future__ import annotations

import re

import durable
from tests.fault._util import wait_until
from tests.ui import wfs
from tests.ui._util import csrf_of, serving, text_of, ui_client


def serve(data: str):  # type: ignore[no-untyped-def]
    return serving(data, wfs.WORKFLOWS, wfs.ACTIVITIES)


def waiting_for_approval(client: durable.Client, wid: str) -> bool:
    return client.get_handle(wid).query("status") == "waiting for approval"


async def test_the_list_shows_workflows_newest_first_and_filters_them(data_dir: str) -> None:
    async with serve(data_dir):
        client = durable.Client(data_dir)
        client.start(wfs.Order, "apples", id="order-1")
        client.start(wfs.Order, "pears", id="order-2")
        done = client.start(wfs.billing, "n", id="bill-1")
        wait_until(lambda: waiting_for_approval(client, "order-2"), what="order-2 to wait")
        client.get_handle("bill-1").terminate("test")
        async with ui_client(client) as ui:
            page = await ui.get("/")
            assert page.status_code == 200
            text = text_of(page.text)
            assert "3 workflows" in text
            ids = re.findall(r'<tr data-id="([^"]+)"', page.text)
            assert ids == ["bill-1", "order-2", "order-1"]  # newest first
            assert 'href="/workflow?id=order-1"' in page.text

            running = await ui.get("/", params={"status": "running"})
            assert re.findall(r'<tr data-id="([^"]+)"', running.text) == ["order-2", "order-1"]
            assert "2 workflows" in text_of(running.text)
            typed = await ui.get("/", params={"type": "billing"})
            assert re.findall(r'<tr data-id="([^"]+)"', typed.text) == ["bill-1"]
            search = await ui.get("/", params={"q": "der-"})
            assert re.findall(r'<tr data-id="([^"]+)"', search.text) == ["order-2", "order-1"]
            assert "2 matching" in text_of(search.text)
            none = await ui.get("/", params={"q": "zzz"})
            assert "No workflow matches" in none.text

            # the live part: the same table as JSON, and the filter's bad value refused clearly
            live = (await ui.get("/api/list", params={"status": "terminated"})).json()
            assert re.findall(r'<tr data-id="([^"]+)"', live["html"]) == [done.id]
            bad = await ui.get("/", params={"status": "sleeping"})
            assert bad.status_code == 400 and "unknown status 'sleeping'" in text_of(bad.text)


async def test_a_workflow_page_shows_its_timeline_a_query_and_takes_a_signal(data_dir: str) -> None:
    async with serve(data_dir):
        client = durable.Client(data_dir)
        handle = client.start(wfs.Order, "apples", id="order-1")
        wait_until(lambda: waiting_for_approval(client, "order-1"), what="the order to wait for approval")
        async with ui_client(client) as ui:
            page = await ui.get("/workflow", params={"id": "order-1"})
            assert page.status_code == 200
            assert '<svg id="timeline"' in page.text
            # the activity that took three attempts is a completed bar marked x3; the timer is a bar
            reserve = re.search(r'<g class="bar activity completed" data-label="reserve #\d+">(.*?)</g>', page.text, re.S)
            assert reserve and "\u00d73" in reserve.group(1) and "3 attempts" in reserve.group(1)
            assert re.search(r'<g class="bar timer fired"', page.text)
            text = text_of(page.text)
            assert "running" in text and "Order" in text and "ActivityScheduled" in text and "TimerFired" in text

            # the query form knows the type's query; running it shows the answer
            assert 'id="query-form"' in page.text and '<option value="status">' in page.text
            assert '<option value="approve">' in page.text  # and the signal form its signal
            csrf = csrf_of(page.text)
            answer = await ui.post("/query", data={"csrf": csrf, "id": "order-1", "name": "status", "args": "[]"})
            assert answer.status_code == 200
            assert re.search(r'id="query-answer".*"waiting for approval"', html_unescaped(answer.text), re.S)

            # a signal is confirmed on a page of its own, then sent
            form = {"csrf": csrf, "id": "order-1", "action": "signal", "name": "approve", "args": '["ops"]'}
            confirm = await ui.post("/action", data=form)
            assert confirm.status_code == 200
            assert "Send signal 'approve' with arguments [\"ops\"] to workflow 'order-1'?" in text_of(confirm.text)
            assert [e["kind"] for e in handle.history()].count("SignalReceived") == 0  # nothing sent yet
            sent = await ui.post("/action", data={**form, "confirm": "yes"})
            assert sent.status_code == 303 and sent.headers["location"] == "/workflow?id=order-1&done=signal"
            assert handle.result(timeout=20) == "apples approved by ops"

            after = await ui.get(sent.headers["location"])
            assert "Signal sent" in text_of(after.text)
            assert re.search(r'<g class="point signal">.*?approve', after.text)
            assert "completed" in text_of(after.text) and "apples approved by ops" in text_of(after.text)
            assert 'id="signal-form"' not in after.text  # a closed run takes no signal


def html_unescaped(text: str) -> str:
    import html

    return html.unescape(text)


async def test_pending_activities_show_their_attempt_last_failure_and_next_retry(data_dir: str) -> None:
    async with serve(data_dir):
        client = durable.Client(data_dir)
        client.start(wfs.billing, "insufficient funds", id="bill-1")

        def backing_off() -> bool:
            pending = client.get_handle("bill-1").describe().pending_activities
            return bool(pending) and pending[0].state == "backing_off"

        wait_until(backing_off, what="the charge to back off")
        async with ui_client(client) as ui:
            page = await ui.get("/workflow", params={"id": "bill-1"})
            pending = re.search(r'<section id="pending">(.*?)</section>', page.text, re.S)
            assert pending, "no pending activities section"
            row = text_of(pending.group(1))
            assert "charge" in row and "backing off" in row
            assert "RuntimeError: card declined: insufficient funds" in row
            assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC", row)  # the next attempt's time
            assert re.search(r'<g class="bar activity backing_off open"', page.text)
            assert 'class="mark retry"' in page.text  # when the next attempt starts, on its bar
            # a type the workers registered with no signal or query: no forms, a word instead
            text = text_of(page.text)
            assert "Workflow type billing has no queries." in text and "Workflow type billing has no signals." in text


async def test_cancel_and_terminate_are_confirmed_then_done(data_dir: str) -> None:
    async with serve(data_dir):
        client = durable.Client(data_dir)
        client.start(wfs.Order, "a", id="order-c")
        client.start(wfs.Order, "b", id="order-t")
        wait_until(lambda: waiting_for_approval(client, "order-c") and waiting_for_approval(client, "order-t"),
                   what="both orders to wait")
        async with ui_client(client) as ui:
            csrf = csrf_of((await ui.get("/workflow", params={"id": "order-c"})).text)
            form = {"csrf": csrf, "id": "order-c", "action": "cancel", "reason": "customer asked"}
            confirm = await ui.post("/action", data=form)
            assert "Ask workflow 'order-c' to cancel, with the reason 'customer asked'?" in text_of(confirm.text)
            assert client.get_handle("order-c").describe().cancel_requested is False
            done = await ui.post("/action", data={**form, "confirm": "yes"})
            assert done.status_code == 303
            wait_until(lambda: client.get_handle("order-c").describe().status == "cancelled", what="the cancel")

            form = {"csrf": csrf, "id": "order-t", "action": "terminate", "reason": "duplicate"}
            assert "Terminate workflow 'order-t' at once" in text_of((await ui.post("/action", data=form)).text)
            done = await ui.post("/action", data={**form, "confirm": "yes"})
            assert done.status_code == 303
            assert client.get_handle("order-t").describe().status == "terminated"
            page = await ui.get(done.headers["location"])
            assert "Terminated: duplicate" in text_of(page.text) and "Workflow terminated." in text_of(page.text)

            # acting on a closed run is a clear error page, not a traceback
            again = await ui.post("/action", data={**form, "confirm": "yes"})
            assert again.status_code == 409 and "order-t" in text_of(again.text)
            assert "Traceback" not in again.text


async def test_bad_input_is_a_clear_error_and_changes_nothing(data_dir: str) -> None:
    async with serve(data_dir):
        client = durable.Client(data_dir)
        handle = client.start(wfs.Order, "a", id="order-1")
        wait_until(lambda: waiting_for_approval(client, "order-1"), what="the order to wait")
        before = len(handle.history())
        async with ui_client(client) as ui:
            csrf = csrf_of((await ui.get("/workflow", params={"id": "order-1"})).text)
            base = {"csrf": csrf, "id": "order-1", "action": "signal", "name": "approve", "confirm": "yes"}
            cases = [
                ({**base, "args": "[oops"}, 400, "the signal's arguments are not valid JSON"),
                ({**base, "args": '"ops"'}, 400, "must be a JSON array"),
                ({**base, "name": "nope", "args": "[]"}, 400, "has no signal 'nope' (signals: approve)"),
                ({**base, "args": "[1, 2, 3]"}, 400, "signal 'approve'"),
                ({**base, "id": "no-such"}, 404, "no workflow with id 'no-such'"),
                ({**base, "action": "explode"}, 400, "unknown action 'explode'"),
            ]
            for form, status, message in cases:
                response = await ui.post("/action", data=form)
                assert response.status_code == status, (form, response.text)
                assert message in text_of(response.text), (message, text_of(response.text))
            missing = await ui.get("/workflow", params={"id": "no-such"})
            assert missing.status_code == 404 and "no workflow with id 'no-such'" in text_of(missing.text)
            bad_run = await ui.get("/workflow", params={"id": "order-1", "run": "zz"})
            assert bad_run.status_code == 400 and "a run id must be" in text_of(bad_run.text)
            assert (await ui.get("/nowhere")).status_code == 404
        assert len(handle.history()) == before


async def test_the_live_document_says_unchanged_until_the_workflow_changes(data_dir: str) -> None:
    async with serve(data_dir):
        client = durable.Client(data_dir)
        handle = client.start(wfs.Order, "a", id="order-1")
        wait_until(lambda: waiting_for_approval(client, "order-1"), what="the order to wait")
        async with ui_client(client) as ui:
            page = (await ui.get("/workflow", params={"id": "order-1"})).text
            version = re.search(r'data-version="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            same = (await ui.get("/api/workflow", params={"id": "order-1", "v": version})).json()
            assert same == {"version": version, "changed": False}
            handle.signal("approve", "ops")
            handle.result(timeout=20)
            changed = (await ui.get("/api/workflow", params={"id": "order-1", "v": version})).json()
            assert changed["changed"] and changed["status"] == "completed" and not changed["running"]
            assert '<svg id="timeline"' in changed["parts"]["part-top"]
            assert "WorkflowCompleted" in changed["parts"]["part-events"]


async def test_static_assets_are_served_from_the_package(data_dir: str) -> None:
    client = durable.Client(data_dir)
    async with ui_client(client) as ui:
        js = await ui.get("/static/app.js")
        css = await ui.get("/static/app.css")
        assert js.status_code == css.status_code == 200
        assert js.headers["content-type"].startswith("text/javascript")
        assert "setInterval" in js.text and "svg.timeline" in css.text
        page = (await ui.get("/")).text
        # nothing is loaded from elsewhere: the UI works offline
        assert not re.search(r'(src|href)="(https?:)?//', page)
        assert (await ui.get("/static/../_app.py")).status_code == 404


async def test_the_workers_page_lists_the_workers(data_dir: str) -> None:
    async with serve(data_dir):
        client = durable.Client(data_dir)
        [worker] = client.workers()
        async with ui_client(client) as ui:
            page = await ui.get("/workers")
            text = text_of(page.text)
            assert worker.identity in text and "serving" in text and "Order" in text and "reserve" in text


async def test_every_run_of_an_id_is_listed_and_each_has_its_page(data_dir: str) -> None:
    client = durable.Client(data_dir)
    first = client.start("Order", "a", id="order-r")  # no worker needed: runs are records
    client.get_handle("order-r").terminate("replaced")
    second = client.start("Order", "b", id="order-r")
    async with ui_client(client) as ui:
        latest = await ui.get("/", params={"q": "order-r"})
        assert re.findall(r'data-run="([^"]+)"', latest.text) == [second.run_id]
        runs = await ui.get("/", params={"q": "order-r", "all": "1"})
        assert re.findall(r'data-run="([^"]+)"', runs.text) == [second.run_id, first.run_id]
        link = f'href="/workflow?id=order-r&amp;run={first.run_id}"'
        assert link in runs.text
        earlier = await ui.get("/workflow", params={"id": "order-r", "run": first.run_id})
        assert "Terminated: replaced" in text_of(earlier.text) and 'id="signal-form"' not in earlier.text
        current = await ui.get("/workflow", params={"id": "order-r"})
        assert 'id="signal-form"' in current.text and "every run of this id" in text_of(current.text)


async def test_a_failure_and_a_failing_workflow_task_are_shown(data_dir: str) -> None:
    async with serve(data_dir):
        client = durable.Client(data_dir)
        failed = client.start(wfs.doomed, "<b>no</b>", id="doomed-1")
        client.start(wfs.buggy, "missing-key", id="buggy-1")
        wait_until(lambda: failed.describe().status == "failed", what="the workflow to fail")
        wait_until(lambda: client.get_handle("buggy-1").describe().task_error, what="the task to fail")
        async with ui_client(client) as ui:
            listed = await ui.get("/")
            assert re.search(r'data-id="doomed-1".*?s-failed', listed.text)
            assert re.search(r'data-id="buggy-1".*?class="task-error"', listed.text)
            page = await ui.get("/workflow", params={"id": "doomed-1"})
            failure = re.search(r'<div class="problem" id="failure">(.*?)</div>', page.text, re.S)
            assert failure and "ApplicationError: refused: <b>no</b>" in text_of(failure.group(1))
            assert "<b>no</b>" not in page.text
            page = await ui.get("/workflow", params={"id": "buggy-1"})
            problem = re.search(r'<div class="problem" id="task-error">(.*?)</div>', page.text, re.S)
            assert problem and "KeyError" in text_of(problem.group(1)) and "it is retried" in problem.group(1)


async def test_payloads_are_read_with_the_clients_codec(data_dir: str) -> None:
    from tests.wfs.codecs import XorCodec

    with_codec = durable.Client(data_dir, codec=XorCodec())
    with_codec.start("Order", "secret apples", id="order-x")  # no worker needed
    async with ui_client(with_codec) as ui:
        page = await ui.get("/workflow", params={"id": "order-x"})
        assert 'input=["secret apples"]' in text_of(page.text)
    async with ui_client(durable.Client(data_dir)) as ui:
        page = await ui.get("/workflow", params={"id": "order-x"})
        assert page.status_code == 200
        assert "secret apples" not in page.text and "<encoded: pass --codec>" in text_of(page.text)
