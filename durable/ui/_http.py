"""Requests and responses of the UI's small ASGI app, and the guards every request passes.

The guards, in order (`Guard.check`):

- the Host header, when the UI listens on the loopback address only: a page from another site
  whose name was made to resolve to 127.0.0.1 (DNS rebinding) comes with its own name as Host;
- the token, when the UI needs one (bound to another address, or given ``--token``): in the URL
  once (``?token=...``), answered with a cookie and a redirect to the same URL without it, then
  the cookie on every request;
- for a POST, its Origin (or, without one, its Referer) must be the UI's own, and its form must
  carry the CSRF token of the page it came from (a double-submit cookie: a page of another
  origin can neither read the cookie nor the page that holds the token).
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

#: The largest request body read (the forms are small; a signal's arguments fit many times over).
MAX_BODY_BYTES = 256 * 1024
#: Form fields beyond this many are refused (parse_qs's own guard against a flood of fields).
MAX_FIELDS = 50

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Loopback names a browser may put in the Host header of a page the UI served.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

#: Served with every response: scripts and styles from the UI itself only (no inline script can
#: run, even if some text from the store escaped), no framing, forms posted to the UI only.
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
     b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make form posts say "Origin: null"
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class BadRequest(Exception):
    """A request the UI refuses: its status and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    """One HTTP request: its method, path, query, headers, cookies and (for a POST) form."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    cookies: dict[str, str]
    form: dict[str, str]
    scheme: str
    port: int

    @classmethod
    async def read(cls, scope: Scope, receive: Receive) -> Request:
        """Read a request from its ASGI scope and body (refused past `MAX_BODY_BYTES`)."""
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}; {text}" if key == "cookie" and key in headers else text
        body = b""
        if scope["method"] == "POST":
            while True:
                message = await receive()
                body += message.get("body", b"")
                if len(body) > MAX_BODY_BYTES:
                    raise BadRequest(413, f"the request is over {MAX_BODY_BYTES} bytes")
                if not message.get("more_body"):
                    break
        server = scope.get("server") or ("", 0)
        return cls(
            method=scope["method"], path=scope.get("path", "/"),
            query=_fields(scope.get("query_string", b"").decode("latin-1")),
            headers=headers, cookies=_cookies(headers.get("cookie", "")),
            form=_fields(body.decode("utf-8", errors="replace")) if body else {},
            scheme=scope.get("scheme", "http"), port=int(server[1] or 0),
        )

    @property
    def host_name(self) -> str:
        """The name in the Host header, without its port (and without an IPv6 address's brackets)."""
        host = self.headers.get("host", "")
        if host.startswith("["):
            return host[1:].partition("]")[0]
        return host.rpartition(":")[0] if host.count(":") == 1 else host

    @property
    def origin(self) -> str:
        """This UI's origin as the browser sees it (scheme and Host)."""
        return f"{self.scheme}://{self.headers.get('host', '')}"

    def url_without(self, name: str) -> str:
        """This request's path and query, without the query parameter `name`."""
        rest = {k: v for k, v in self.query.items() if k != name}
        return self.path + (f"?{urlencode(rest)}" if rest else "")


def _fields(text: str) -> dict[str, str]:
    try:
        parsed = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise BadRequest(400, f"more than {MAX_FIELDS} fields") from None
    return {key: values[-1] for key, values in parsed.items()}


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    out: dict[str, str] = {}
    for part in header.split(";"):  # one bad cookie (of another site on localhost) spoils no other
        try:
            jar.load(part)
        except CookieError:
            continue
    for name, morsel in jar.items():
        out[name] = morsel.value
    return out


@dataclass
class Response:
    """An HTTP response to send."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        """An HTML page."""
        return cls(status, text.encode())

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        """A JSON document."""
        return cls(status, json.dumps(value, ensure_ascii=False).encode(), "application/json")

    @classmethod
    def redirect(cls, location: str) -> Response:
        """A redirect (303: the browser then GETs `location`, also after a POST)."""
        return cls(303, b"", "text/plain", [(b"location", location.encode())])

    def set_cookie(self, name: str, value: str) -> None:
        """A cookie for this UI only, out of scripts' reach, never sent with another site's request."""
        self.headers.append((b"set-cookie", f"{name}={value}; Path=/; HttpOnly; SameSite=Strict".encode()))

    async def send(self, send: Send) -> None:
        """Send it over ASGI."""
        headers = [(b"content-type", self.content_type.encode()), (b"content-length", str(len(self.body)).encode()),
                   *SECURITY_HEADERS, *self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def new_secret() -> str:
    """A random token for URLs and cookies (256 bits)."""
    return secrets.token_urlsafe(32)


class Guard:
    """The checks every request passes before it is served (see the module's docstring)."""

    def __init__(self, token: str | None, loopback_only: bool) -> None:
        self.token = token
        self.loopback_only = loopback_only

    @staticmethod
    def token_cookie(request: Request) -> str:
        # per port: two UIs on one machine (cookies ignore ports) keep their own
        return f"durable_ui_{request.port}_token"

    @staticmethod
    def csrf_cookie(request: Request) -> str:
        return f"durable_ui_{request.port}_csrf"

    def check(self, request: Request) -> Response | None:
        """None if the request may be served; else the response that refuses it (or, for a
        token in the URL, the redirect that sets its cookie)."""
        if self.loopback_only and request.host_name not in LOOPBACK_NAMES:
            raise BadRequest(421, f"this UI answers requests for 127.0.0.1 or localhost only, not for "
                                  f"{request.headers.get('host', '(no Host header)')!r}")
        if self.token is not None:
            given = request.query.get("token")
            if given is not None:
                if not _same(given, self.token):
                    raise BadRequest(403, "wrong token: open the URL that `durable ui` printed")
                response = Response.redirect(request.url_without("token"))
                response.set_cookie(self.token_cookie(request), self.token)
                return response
            if not _same(request.cookies.get(self.token_cookie(request), ""), self.token):
                raise BadRequest(403, "this UI needs its token: open the URL that `durable ui` printed "
                                      "(it ends with ?token=...)")
        if request.method == "POST":
            self._check_post(request)
        elif request.method not in ("GET", "HEAD"):
            raise BadRequest(405, f"method {request.method} is not allowed")
        return None

    def _check_post(self, request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is None and "referer" in request.headers:
            parts = urlsplit(request.headers["referer"])
            origin = f"{parts.scheme}://{parts.netloc}"
        if origin is not None and origin != request.origin:
            raise BadRequest(403, f"a form posted from another site ({origin}) is refused")
        cookie = request.cookies.get(self.csrf_cookie(request), "")
        if not cookie or not _same(request.form.get("csrf", ""), cookie):
            raise BadRequest(403, "this form has expired or did not come from this UI: reload the page and "
                                  "try again")

    def csrf_token(self, request: Request) -> tuple[str, bool]:
        """The CSRF token for the forms of a page: the browser's cookie, or a new one (True: to
        be set as a cookie with the response)."""
        token = request.cookies.get(self.csrf_cookie(request), "")
        if len(token) >= 32:
            return token, False
        return new_secret(), True


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
