"""Helpers of the UI's tests: the ASGI app under an httpx client, and pages' text."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import trio

import durable
from durable.ui import make_app
from tests.conftest import worker_thread

#: The UI's address as the tests' requests name it (a loopback Host passes its Host check).
BASE = "http://127.0.0.1:8233"


def ui_client(client: durable.Client, **options: Any) -> httpx.AsyncClient:
    """An httpx client of the UI's ASGI app over `client` (cookies kept, redirects not followed)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(client, **options)), base_url=BASE)


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def text_of(page: str) -> str:
    """A page's text as a reader sees it (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


@contextlib.asynccontextmanager
async def serving(data: str, workflows: Any, activities: Any) -> AsyncIterator[None]:
    """A worker in a background thread (its own trio loop) while an async test runs (conftest's
    `worker_thread`, entered and left off this test's trio thread)."""
    cm = worker_thread(data, workflows, activities)
    await trio.to_thread.run_sync(cm.__enter__)
    try:
        yield
    finally:
        await trio.to_thread.run_sync(cm.__exit__, None, None, None)
