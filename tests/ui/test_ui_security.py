"""The UI's guards: the token, the Host check, Origin and CSRF on actions, security headers, and
text from the store shown as text (never as markup or script)."""

from __future__ import annotations

import re

import pytest

import durable
from durable.ui._serve import UIUnavailable, check_token, is_loopback, token_for
from tests.fault._util import wait_until
from tests.ui import wfs
from tests.ui._util import BASE, csrf_of, serving, text_of, ui_client

TOKEN = "s3cret-token-for-tests-0123456789"
HOSTILE_ID = "<script>alert(1)</script>"
HOSTILE_TEXT = '"><img src=x onerror=alert(2)>'


async def test_with_a_token_every_request_needs_it(data_dir: str) -> None:
    client = durable.Client(data_dir)
    async with ui_client(client, token=TOKEN, loopback_only=False) as ui:
        for path in ("/", "/workflow?id=x", "/api/list", "/static/app.js", "/workers"):
            refused = await ui.get(path)
            assert refused.status_code == 403, path
            assert "needs its token" in text_of(refused.text) or "needs its token" in refused.text
        wrong = await ui.get("/", params={"token": TOKEN + "x"})
        assert wrong.status_code == 403 and "wrong token" in text_of(wrong.text)
        assert "set-cookie" not in wrong.headers

        # the token in the URL once: a cookie, and the same page without the token in its URL
        opened = await ui.get("/", params={"token": TOKEN, "status": "running"})
        assert opened.status_code == 303 and opened.headers["location"] == "/?status=running"
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith(f"durable_ui_8233_token={TOKEN};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert (await ui.get("/")).status_code == 200  # the cookie from now on
        assert (await ui.get("/static/app.js")).status_code == 200

    # another browser (no cookie) is still refused
    async with ui_client(client, token=TOKEN, loopback_only=False) as other:
        assert (await other.get("/")).status_code == 403


async def test_on_the_loopback_address_a_foreign_host_header_is_refused(data_dir: str) -> None:
    """A page of another site whose name was made to resolve to 127.0.0.1 (DNS rebinding)."""
    client = durable.Client(data_dir)
    async with ui_client(client) as ui:
        assert (await ui.get("/")).status_code == 200
        for host in ("localhost:8233", "[::1]:8233", "127.0.0.1"):
            assert (await ui.get("/", headers={"host": host})).status_code == 200, host
        for host in ("evil.example:8233", "127.0.0.1.evil.example", ""):
            refused = await ui.get("/", headers={"host": host})
            assert refused.status_code == 421, host
            assert "127.0.0.1 or localhost only" in text_of(refused.text)


async def test_actions_need_the_pages_csrf_token_and_their_own_origin(data_dir: str) -> None:
    async with serving(data_dir, wfs.WORKFLOWS, wfs.ACTIVITIES):
        client = durable.Client(data_dir)
        handle = client.start(wfs.Order, "a", id="order-1")
        wait_until(lambda: handle.query("status") == "waiting for approval", what="the order to wait")
        before = len(handle.history())
        async with ui_client(client) as ui:
            page = await ui.get("/workflow", params={"id": "order-1"})
            csrf = csrf_of(page.text)
            cookie = page.headers["set-cookie"]
            assert cookie.startswith(f"durable_ui_8233_csrf={csrf};") and "SameSite=Strict" in cookie
            form = {"id": "order-1", "action": "terminate", "reason": "x", "confirm": "yes"}
            # no token, a wrong one, or a cookie-less browser: refused
            for data, cookies in (
                (form, None),
                ({**form, "csrf": "x" * 43}, None),
                ({**form, "csrf": csrf}, {}),
            ):
                if cookies is not None:
                    ui.cookies.clear()
                response = await ui.post("/action", data=data)
                assert response.status_code == 403, data
                assert "did not come from this UI" in text_of(response.text)
                ui.cookies.set("durable_ui_8233_csrf", csrf)
            # posted from another site (its Origin, or without one its Referer): refused
            for headers in ({"origin": "http://evil.example"}, {"origin": "null"},
                            {"referer": "http://evil.example/page"}, {"origin": "http://127.0.0.1:9999"}):
                response = await ui.post("/action", data={**form, "csrf": csrf}, headers=headers)
                assert response.status_code == 403, headers
                assert "another site" in text_of(response.text)
            assert len(handle.history()) == before and handle.describe().status == "running"
            # from the UI's own page: done
            done = await ui.post("/action", data={**form, "csrf": csrf}, headers={"origin": BASE})
            assert done.status_code == 303 and handle.describe().status == "terminated"
            # the query form is guarded as well (it writes a query record)
            assert (await ui.post("/query", data={"id": "order-1", "name": "status"})).status_code == 403


async def test_every_response_carries_the_security_headers(data_dir: str) -> None:
    client = durable.Client(data_dir)
    async with ui_client(client) as ui:
        for path in ("/", "/api/list", "/static/app.css", "/nowhere"):
            response = await ui.get(path)
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
            assert response.headers["x-content-type-options"] == "nosniff"
        assert (await ui.request("PUT", "/")).status_code == 405


async def test_text_from_the_store_is_shown_as_text(data_dir: str) -> None:
    """Ids, payloads, signal arguments, error messages and reasons are user data."""
    async with serving(data_dir, wfs.WORKFLOWS, wfs.ACTIVITIES):
        client = durable.Client(data_dir)
        order = client.start(wfs.Order, HOSTILE_TEXT, id=HOSTILE_ID)
        wait_until(lambda: order.query("status") == "waiting for approval", what="the order to wait")
        bill = client.start(wfs.billing, HOSTILE_TEXT, id=HOSTILE_ID + "-bill")
        wait_until(lambda: any(p.last_failure_message for p in bill.describe().pending_activities),
                   what="the charge to fail once")
        order.signal("approve", HOSTILE_TEXT)
        order.result(timeout=20)
        async with ui_client(client) as ui:
            pages = {
                "bill running": (await ui.get("/workflow", params={"id": HOSTILE_ID + "-bill"})).text,
                "bill json": "".join((await ui.get("/api/workflow", params={"id": HOSTILE_ID + "-bill"}))
                                     .json()["parts"].values()),
            }
            bill.terminate(HOSTILE_TEXT)
            pages |= {
                "list": (await ui.get("/")).text,
                "search": (await ui.get("/", params={"q": HOSTILE_ID})).text,
                "list json": (await ui.get("/api/list")).json()["html"],
                "order": (await ui.get("/workflow", params={"id": HOSTILE_ID})).text,
                "bill": (await ui.get("/workflow", params={"id": HOSTILE_ID + "-bill"})).text,
                "missing": (await ui.get("/workflow", params={"id": HOSTILE_ID + "x"})).text,
            }
        for name, page in pages.items():
            assert "<script>alert" not in page and "<img src=x" not in page, name
            assert not re.search(r"<script(?![^>]*src=\"/static/app\.js\")", page), name
        # shown, as text
        assert HOSTILE_ID in text_of(pages["list"]) and HOSTILE_ID in text_of(pages["search"])
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["order"]
        assert HOSTILE_TEXT in text_of(pages["order"])  # the input, the signal and the result
        assert f"card declined: {HOSTILE_TEXT}" in text_of(pages["bill running"])  # the last failure
        assert f"Terminated: {HOSTILE_TEXT}" in text_of(pages["bill"])
        assert f"card declined: {HOSTILE_TEXT}" in text_of(pages["bill json"])


def test_only_the_loopback_address_goes_without_a_token() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.org", ""):
        assert not is_loopback(host), host
    assert check_token(TOKEN) == TOKEN
    # off the loopback address a token is always required: a random one unless given
    made = {token_for("0.0.0.0", None) for _ in range(3)}
    assert len(made) == 3 and all(t is not None and len(t) >= 40 for t in made)
    assert token_for("0.0.0.0", TOKEN) == TOKEN and token_for("127.0.0.1", TOKEN) == TOKEN
    assert token_for("127.0.0.1", None) is None and token_for("localhost", None) is None
    for bad in ("short", "x" * 15, "has space in it!", "a;b=c-xxxxxxxxxxxxxxx"):
        with pytest.raises(UIUnavailable, match="--token must be"):
            check_token(bad)
