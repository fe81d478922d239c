"""`durable ui`: a local web UI over a store, for operators.

A workflow list with filters and live updates; a workflow page with its description, its
pending activities, its history as a timeline and as events; forms to query, signal, cancel
and terminate it (confirmed, CSRF-protected). It reads and acts through the public client API
only. It needs the web server hypercorn: ``pip install 'durable-workflows[ui]'``.

Importing this package does not import the server, so that a missing one is a clear error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._serve import UIUnavailable, serve, serve_sync

if TYPE_CHECKING:
    import durable

    from ._app import UIApp

__all__ = ["UIUnavailable", "make_app", "serve", "serve_sync"]


def make_app(client: durable.Client, *, token: str | None = None, loopback_only: bool = True) -> UIApp:
    """The UI's ASGI application over `client`: with a `token`, every request must carry it;
    with `loopback_only`, only requests addressed to 127.0.0.1 or localhost are served."""
    from ._app import UIApp

    return UIApp(client, token=token, loopback_only=loopback_only)
