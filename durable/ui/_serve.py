"""Serving the UI with hypercorn on trio, as `durable ui` does."""

from __future__ import annotations

import ipaddress
import re
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from durable._errors import DurableError

if TYPE_CHECKING:
    import durable

#: What `durable ui` says when the server is not installed.
INSTALL_HINT = "durable ui needs the web server hypercorn: pip install 'durable-workflows[ui]'"

#: A token given with --token: URL- and cookie-safe characters, long enough not to be guessed.
_TOKEN = re.compile(r"[A-Za-z0-9_.~-]{16,200}")


class UIUnavailable(DurableError):
    """The UI cannot be served: its server is not installed, or an option is wrong."""


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine's loopback only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_token(token: str) -> str:
    """A token given by the operator, checked."""
    if not _TOKEN.fullmatch(token):
        raise UIUnavailable("--token must be 16 to 200 characters among letters, digits and - _ . ~")
    return token


def token_for(host: str, token: str | None) -> str | None:
    """The token the UI requires on `host`: the one given (checked); off the loopback address,
    a random one if none is given; on it, none (then the Host header is checked instead)."""
    if token is not None:
        return check_token(token)
    if is_loopback(host):
        return None
    from ._http import new_secret

    return new_secret()


async def serve(client: durable.Client, *, host: str = "127.0.0.1", port: int = 8233, token: str | None = None,
                announce: Callable[[str], None] | None = None,
                task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the UI over `client` on `host`:`port` until cancelled (or SIGINT/SIGTERM, in the
    main thread). Off the loopback address a token is required on every request: `token`, or
    a random one. `announce` is given the URL to open (with the token); `task_status` too."""
    try:
        from hypercorn.config import Config
        from hypercorn.trio import serve as hypercorn_serve
    except ImportError:
        raise UIUnavailable(INSTALL_HINT) from None
    from ._app import UIApp

    token = token_for(host, token)
    app = UIApp(client, token=token, loopback_only=token is None)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"  # a bug of the UI's own is logged on stderr (the page says 500)
    config.loglevel = "WARNING"
    config.graceful_timeout = 2.0
    config.keep_alive_timeout = 30.0

    stop = trio.Event()

    async def shutdown_trigger() -> None:
        await stop.wait()

    try:
        async with trio.open_nursery() as nursery:
            asgi: Any = app  # an ASGI app; hypercorn's type names its scopes' TypedDicts
            bound = await nursery.start(lambda task_status: hypercorn_serve(
                asgi, config, shutdown_trigger=shutdown_trigger, task_status=task_status))
            base = _browser_url(bound[0], host)
            url = base + "/" + (f"?token={token}" if token is not None else "")
            if announce is not None:
                announce(url)
            task_status.started(url)
            if _main_thread():
                nursery.start_soon(_stop_on_signals, stop)
            await stop.wait()  # or cancelled from outside
            nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout + 1
    except BaseExceptionGroup as group:
        taken = _only(group, OSError)  # the address is taken, or not one of this machine's
        if taken is None:
            raise
        reason = taken.strerror or str(taken)
        raise UIUnavailable(f"cannot listen on {config.bind[0]}: {reason} (choose another --port or --host)") \
            from None


def _only(group: BaseExceptionGroup, kind: type[OSError]) -> OSError | None:
    """The first exception of `group` if all of them are `kind`, else None."""
    match, rest = group.split(kind)
    if match is None or rest is not None:
        return None
    leaf: BaseException = match
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf if isinstance(leaf, kind) else None


async def _stop_on_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()
            return


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _browser_url(bound: str, host: str) -> str:
    """The URL a browser opens: hypercorn's bound address, with a wildcard replaced by a name
    this machine answers to."""
    if host in ("0.0.0.0", "::", "[::]"):
        import socket

        scheme, _, rest = bound.partition("://")
        port = rest.rsplit(":", 1)[1]
        return f"{scheme}://{socket.gethostname()}:{port}"
    return bound


def serve_sync(client: durable.Client, *, host: str = "127.0.0.1", port: int = 8233, token: str | None = None,
               announce: Callable[[str], None] | None = None) -> None:
    """`serve` in its own trio loop, until SIGINT or SIGTERM: what `durable ui` runs."""
    try:
        import hypercorn  # noqa: F401
    except ImportError:
        raise UIUnavailable(INSTALL_HINT) from None
    trio.run(lambda: serve(client, host=host, port=port, token=token, announce=announce))
    print("durable ui stopped", file=sys.stderr)
