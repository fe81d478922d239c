"""The UI in a real headless browser (Debian's chromium, driven by playwright): a real worker
process, `durable ui` as a real process; load the list, see it update, open a workflow, see its
timeline, send a signal through the form and its confirmation, see the workflow complete on the
page (its live refresh). Screenshots go to $DURABLE_TEST_ARTIFACTS (default tests/artifacts/).

CI (.ci/run) installs chromium and sets DURABLE_TEST_BROWSER=1: a missing browser is then an
error. Elsewhere, without chromium or playwright, the test is skipped and says why.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import durable
from tests.conftest import ROOT, start_worker_process, stop_worker_process
from tests.fault._util import wait_until
from tests.ui._proc import ui_process

CHROMIUM = os.environ.get("DURABLE_TEST_CHROMIUM", "/usr/bin/chromium")
#: What keeps the browser to itself: no GPU, no first-run, no calls home, no updates, no sync.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


def _artifacts() -> Path:
    path = Path(os.environ.get("DURABLE_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _browser_or_skip() -> Any:
    """playwright's sync API, if it and chromium are here; else a skip (an error in CI)."""
    missing = None
    try:
        from playwright import sync_api
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if missing is None and not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        missing = f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/browser does it in CI)"
    if missing is not None:
        if os.environ.get("DURABLE_TEST_BROWSER") == "1":
            pytest.fail(f"the browser test must run here (DURABLE_TEST_BROWSER=1): {missing}")
        pytest.skip(missing)
    return sync_api


def test_the_ui_in_a_real_browser(data_dir: str, tmp_path: Path) -> None:
    sync_api = _browser_or_skip()
    client = durable.Client(data_dir)
    worker = start_worker_process(data_dir, "tests.ui.wfs")
    try:
        order = client.start("Order", "apples", id="order-browser")
        wait_until(lambda: order.query("status") == "waiting for approval", what="the order to wait")
        with ui_process(data_dir) as (url, _), sync_api.sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": 1280, "height": 900})
            try:
                page = context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

                # the list, and a workflow started meanwhile appearing in it by itself
                page.goto(url)
                row = page.locator('tr[data-id="order-browser"]')
                row.wait_for()
                assert "running" in row.inner_text()
                client.start("billing", "no funds", id="billing-browser")
                page.locator('tr[data-id="billing-browser"]').wait_for(timeout=20_000)
                page.screenshot(path=str(_artifacts() / "ui-list.png"), full_page=True)

                # the workflow: its timeline, with the activity that took three attempts
                row.locator("a").click()
                page.wait_for_url("**/workflow?id=order-browser")
                page.locator("#timeline").wait_for()
                bars = page.locator("#timeline g.bar.activity")
                assert bars.count() == 1 and "reserve" in (bars.first.get_attribute("data-label") or "")
                assert "\u00d73" in bars.first.inner_html()
                assert page.locator("#timeline g.bar.timer").count() == 1

                # a query, then a signal through its form and the confirmation
                page.fill("#query-name", "status")
                page.click("#query-submit")
                page.locator("#query-answer").wait_for()
                assert "waiting for approval" in page.locator("#query-answer").inner_text()
                page.fill("#signal-name", "approve")
                page.fill("#signal-args", '["the browser"]')
                page.click("#signal-submit")
                page.locator("#confirm-what").wait_for()
                assert "Send signal 'approve'" in page.locator("#confirm-what").inner_text()
                page.click("#confirm")
                page.locator("#flash").wait_for()
                assert order.result(timeout=30) == "apples approved by the browser"
                # the page follows by itself: the status, the signal on the timeline, the result
                page.locator("#workflow-status .s-completed").wait_for(timeout=20_000)
                page.locator("#timeline g.point.signal").wait_for()
                page.locator("#result").wait_for()
                assert "apples approved by the browser" in page.locator("#result").inner_text()
                page.screenshot(path=str(_artifacts() / "ui-workflow.png"), full_page=True)

                # a workflow whose step keeps failing: its pending activity with the last failure
                page.goto(url + "workflow?id=billing-browser")
                page.locator("#pending").wait_for()
                wait_until(lambda: "card declined: no funds" in page.locator("#pending").inner_text(),
                           what="the page to show the charge's last failure")
                page.screenshot(path=str(_artifacts() / "ui-pending.png"), full_page=True)
                assert errors == [], errors
            except BaseException:
                for p in context.pages:  # what the browser showed when it failed, for the artifacts
                    p.screenshot(path=str(_artifacts() / "ui-failure.png"), full_page=True)
                    (_artifacts() / "ui-failure.html").write_text(p.content())
                raise
            finally:
                context.close()
    finally:
        stop_worker_process(worker)
