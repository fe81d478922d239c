"""The UI's ASGI application: a small router over the public client API.

Every read and action goes through `durable.Client` (list, count, describe, history, workers,
signal, cancel, terminate, query), in a worker thread (the client is synchronous), so the UI
works on any store the client opens. The UI does nothing between requests: pages refresh by
polling small JSON documents, which answer "unchanged" unless the workflow's description
changed, and hold no wake-up socket open (every committing worker would have to notify it).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

import trio

import durable
from durable import _ops
from durable._limits import MAX_ID_BYTES

from . import _pages
from ._format import to_json
from ._http import BadRequest, Guard, Receive, Request, Response, Scope, Send

T = TypeVar("T")

#: The workflows a list page shows at most, and looks through for an id search.
LIST_LIMIT = 200
SEARCH_LIMIT = 1000
#: How long a query from the UI waits for a worker's answer, in seconds.
QUERY_TIMEOUT = 5.0
#: Static files served, by name (from the package's static/ folder).
STATIC = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}
ACTIONS = ("signal", "cancel", "terminate")


class UIApp:
    """The ASGI application of `durable ui` over `client`.

    With a `token`, every request must carry it (in the URL once, then as a cookie). With
    `loopback_only`, only requests addressed to 127.0.0.1 or localhost are served.
    """

    def __init__(self, client: durable.Client, *, token: str | None = None, loopback_only: bool = True) -> None:
        self.client = client
        self.guard = Guard(token, loopback_only)
        self.store = client.data_dir
        # a few reads at once: the store serves them in parallel; more would only queue in threads
        self._limiter = trio.CapacityLimiter(4)
        # queries wait for a worker's answer (seconds, at worst): they must not hold up the pages
        self._query_limiter = trio.CapacityLimiter(4)
        self._static = {name: (resources.files("durable.ui") / "static" / name).read_bytes() for name in STATIC}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request: Request | None = None
        try:
            request = await Request.read(scope, receive)
            response = self.guard.check(request) or await self._route(request)
        except BadRequest as exc:
            response = self._error(exc.status, exc.message, request)
        except durable.DurableError as exc:  # the store could not be read, an encoded payload...
            response = self._error(500, f"{type(exc).__name__}: {exc}", request)
        if request is not None and request.method == "HEAD":
            response.body = b""
        await response.send(send)

    # --- plumbing ------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a (blocking) client call in a thread."""
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self._limiter)

    async def _call_query(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self._query_limiter)

    def _error(self, status: int, message: str, request: Request | None) -> Response:
        if request is not None and request.path.startswith("/api/"):
            return Response.json({"error": message}, status)
        back = None
        if request is not None and request.method == "POST" and "id" in request.form:
            back = _pages.workflow_url(request.form["id"], request.form.get("run") or None)
        return Response.html(_pages.error_page(status, message, self.store, back), status)

    def _page(self, request: Request, render: Callable[[str], str], status: int = 200) -> Response:
        """An HTML page whose forms carry the CSRF token (set as a cookie if the browser has none)."""
        csrf, new = self.guard.csrf_token(request)
        response = Response.html(render(csrf), status)
        if new:
            response.set_cookie(self.guard.csrf_cookie(request), csrf)
        return response

    async def _route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if method == "POST":
            if path == "/action":
                return await self._action(request)
            if path == "/query":
                return await self._query(request)
            raise BadRequest(404, f"nothing to post to at {path}")
        if path == "/":
            view = await self._list_view(request.query, with_types=True)
            return self._page(request, lambda csrf: _pages.list_page(view, self.store))
        if path == "/api/list":
            view = await self._list_view(request.query)
            fragment = _pages.list_fragment(view)
            return Response.json({"version": _digest(fragment), "html": fragment})
        if path == "/workflow":
            return await self._workflow(request)
        if path == "/api/workflow":
            return await self._workflow_json(request)
        if path == "/workers":
            found = await self._call(self.client.workers, include_gone=True)
            return self._page(request, lambda csrf: _pages.workers_page(found, self.store, _now()))
        if path.startswith("/static/") and path[len("/static/"):] in STATIC:
            name = path[len("/static/"):]
            return Response(200, self._static[name], STATIC[name])
        raise BadRequest(404, f"no page at {path}")

    # --- the list ------------------------------------------------------------------------------

    async def _list_view(self, query: dict[str, str], with_types: bool = False) -> _pages.ListView:
        """The list's rows for the filters of `query` (`with_types`: and the known workflow types,
        for the full page's type field)."""
        status = query.get("status") or ""
        if status and status not in _ops.STATUSES:
            raise BadRequest(400, f"unknown status {status!r} (one of: {', '.join(_ops.STATUSES)})")
        wtype = query.get("type", "").strip()
        search = query.get("q", "").strip()
        all_runs = query.get("all") == "1"
        filters: dict[str, Any] = {"status": status or None, "workflow": wtype or None, "all_runs": all_runs}
        try:
            types = await self._call(self._known_types) if with_types else []
            if not search:
                rows = await self._call(self.client.list, limit=LIST_LIMIT, **filters)
                total = await self._call(self.client.count, **filters)
                return _pages.ListView(status, wtype, search, rows, total, LIST_LIMIT, types, all_runs=all_runs)
            rows = await self._call(self.client.list, limit=SEARCH_LIMIT, **filters)
        except durable.InvalidArgument as exc:
            raise BadRequest(400, str(exc)) from None
        searched = len(rows) if len(rows) >= SEARCH_LIMIT else 0
        matches = [r for r in rows if search in r.workflow_id]
        if not all_runs and len(search.encode()) <= MAX_ID_BYTES and not any(r.workflow_id == search for r in matches):
            exact = await self._call(self._describe_or_none, search)
            if exact is not None and (not status or exact.status == status) and (not wtype or exact.workflow_type == wtype):
                matches.insert(0, exact)
        return _pages.ListView(status, wtype, search, matches[:LIST_LIMIT], len(matches), LIST_LIMIT, types, searched,
                               all_runs)

    def _known_types(self) -> list[str]:
        return sorted({name for w in self.client.workers(include_gone=True) for name in w.workflows})

    def _describe_or_none(self, workflow_id: str) -> durable.WorkflowDescription | None:
        try:
            return self.client.get_handle(workflow_id).describe()
        except (durable.WorkflowNotFound, durable.InvalidArgument):
            return None

    # --- one workflow --------------------------------------------------------------------------

    def _handle(self, fields: dict[str, str]) -> durable.WorkflowHandle[Any]:
        workflow_id = fields.get("id", "")
        if not workflow_id:
            raise BadRequest(400, "which workflow? (no id given)")
        try:
            return self.client.get_handle(workflow_id, run_id=fields.get("run") or None)
        except durable.InvalidArgument as exc:
            raise BadRequest(400, str(exc)) from None

    def _read(self, handle: durable.WorkflowHandle[Any]) -> tuple[durable.WorkflowDescription, list[dict[str, Any]]]:
        """The description and history of one run, read so that they agree: a history read after
        a description that says the run is running may already hold its end, never the reverse."""
        desc = handle.describe()
        events = handle.history()
        return desc, events

    async def _load(self, fields: dict[str, str]) -> tuple[durable.WorkflowHandle[Any], durable.WorkflowDescription]:
        handle = self._handle(fields)
        try:
            desc = await self._call(handle.describe)
        except durable.WorkflowNotFound as exc:
            raise BadRequest(404, str(exc)) from None
        return handle, desc

    async def _view(self, fields: dict[str, str], **extra: Any) -> tuple[_pages.WorkflowView, str]:
        """A workflow page's data (its forms' CSRF token is set when it is rendered), and its version."""
        handle = self._handle(fields)
        try:
            desc, events = await self._call(self._read, handle)
        except durable.WorkflowNotFound as exc:
            raise BadRequest(404, str(exc)) from None
        view = _pages.WorkflowView(desc, events, _now(), fields.get("run") or None, "", **extra)
        return view, _version(desc)

    async def _workflow(self, request: Request) -> Response:
        view, version = await self._view(request.query, done=request.query.get("done"))
        return self._page(request, lambda token: _pages.workflow_page(_with_csrf(view, token), version, self.store))

    async def _workflow_json(self, request: Request) -> Response:
        handle = self._handle(request.query)
        try:
            desc = await self._call(handle.describe)
        except durable.WorkflowNotFound as exc:
            raise BadRequest(404, str(exc)) from None
        version = _version(desc)
        if request.query.get("v") == version:
            return Response.json({"version": version, "changed": False})
        view, version = await self._view(request.query)
        top, events = _pages.workflow_fragments(view)
        return Response.json({"version": version, "changed": True, "running": view.desc.status == "running",
                              "status": view.desc.status, "parts": {"part-top": top, "part-events": events}})

    # --- actions -------------------------------------------------------------------------------

    async def _action(self, request: Request) -> Response:
        form = request.form
        action = form.get("action", "")
        if action not in ACTIONS:
            raise BadRequest(400, f"unknown action {action!r} (one of: {', '.join(ACTIONS)})")
        handle, desc = await self._load(form)
        fields: dict[str, str] = {}
        if action == "signal":
            name = form.get("name", "").strip()
            if not name:
                raise BadRequest(400, "which signal? (no name given)")
            args = _json_args(form.get("args", ""), "the signal's arguments")
            fields = {"name": name, "args": form.get("args", "")}
            what = f"Send signal {name!r} with arguments {to_json(args)} to workflow {desc.workflow_id!r}?"
            run: Callable[[], None] = lambda: handle.signal(name, *args)
        else:
            reason = form.get("reason", "")
            fields = {"reason": reason}
            verb = "Ask workflow {!r} to cancel" if action == "cancel" else "Terminate workflow {!r} at once"
            what = verb.format(desc.workflow_id) + (f", with the reason {reason!r}?" if reason else "?")
            run = (lambda: handle.cancel(reason)) if action == "cancel" else (lambda: handle.terminate(reason))
        if form.get("confirm") != "yes":
            return self._page(request, lambda csrf: _pages.confirm_page(
                action, desc.workflow_id, form.get("run") or None, fields, what, csrf, self.store))
        try:
            await self._call(run)
        except durable.DurableError as exc:
            raise BadRequest(409 if isinstance(exc, durable.WorkflowClosed) else 400, str(exc)) from None
        return Response.redirect(_pages.workflow_url(desc.workflow_id, form.get("run") or None, done=action))

    async def _query(self, request: Request) -> Response:
        form = request.form
        name = form.get("name", "").strip()
        if not name:
            raise BadRequest(400, "which query? (no name given)")
        args = _json_args(form.get("args", ""), "the query's arguments")
        handle = self._handle(form)
        answer = error = None
        try:
            result = await self._call_query(handle.query, name, *args, timeout=QUERY_TIMEOUT)
            answer = json.dumps(result, default=str, ensure_ascii=False, indent=2)
        except durable.WorkflowNotFound as exc:
            raise BadRequest(404, str(exc)) from None
        except durable.DurableError as exc:
            error = str(exc)
        view, version = await self._view(form, query_name=name, query_args=form.get("args", ""),
                                         query_answer=answer, query_error=error)
        return self._page(request, lambda token: _pages.workflow_page(_with_csrf(view, token), version, self.store))


def _with_csrf(view: _pages.WorkflowView, csrf: str) -> _pages.WorkflowView:
    view.csrf = csrf
    return view


def _json_args(text: str, what: str) -> list[Any]:
    """A form's arguments: a JSON array (empty: none)."""
    text = text.strip()
    if not text:
        return []
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(400, f"{what} are not valid JSON ({exc}): give a JSON array, e.g. [\"approved\"]") from None
    if not isinstance(value, list):
        raise BadRequest(400, f"{what} must be a JSON array (one element per argument), e.g. [{text}]")
    return value


def _version(desc: durable.WorkflowDescription) -> str:
    """A short digest of a workflow's description: its page is redrawn only when this changes."""
    return _digest(json.dumps(desc.to_json(), sort_keys=True, default=str))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)
