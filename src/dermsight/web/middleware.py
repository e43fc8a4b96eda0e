"""Pure-ASGI middleware: security headers, metrics, request-body cap, request log + catch-all 500,
the busy limit.

Order (outermost first): SecurityHeaders -> Metrics -> [CORS] -> RequestLog -> BodyLimit -> Busy
-> FastAPI's ExceptionMiddleware -> routes. Every response, error responses included, passes
through SecurityHeaders, and is counted by Metrics and logged by RequestLog (also the 400 / 413 /
503 BodyLimit and Busy send themselves; a CORS preflight is answered before RequestLog).
A request is timed once (``RequestClock``, started by Metrics): the log line and the metrics
report the same status and the same duration. The clock also holds the request's id
(``X-Request-ID``: the client's when it sent a usable one, else a new one), which every response
carries, the request's log line names and a 500's body quotes.
RequestLog turns any exception that escapes a route into a generic JSON 500 and logs only the
exception's type and the request id (never its message or traceback, which can quote upload
contents), so a client never sees a traceback and the log never holds PHI. A failure of the clinic
storage (``storage_failure``: the database cannot be reached or written, the image store's files
cannot be read or written) is a JSON 503 with ``Retry-After`` instead, logged with its class and
error code only; a write whose row a concurrent request deleted after it was read
(``deleted_meanwhile``: SQLAlchemy's ``StaleDataError``) is a JSON 404. The log line names the
route's template, never the raw path (``logged_path``: only whole-number path parameters, the
record ids, are filled in).
Busy answers a JSON 503 with ``Retry-After`` when too many requests run at once, or when the
server (``server.HeaderTimeoutProtocol``) marked the request as arriving over the connection
limit: both ``Settings.max_connections``.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from fastapi.routing import RouteContext, iter_route_contexts
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dermsight.web.settings import SMALL_BODY_BYTES, small_reserve, too_large_detail

log = logging.getLogger("dermsight.web")

#: CSP for the app and the API (the brief's policy; the UI shows heatmaps from data: URIs).
#: ``base-uri``, ``form-action`` and ``object-src`` do not fall back to ``default-src``: no
#: ``<base>`` may move relative URLs elsewhere, no form may post off the site, no plugins.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
#: Swagger UI (served from the package, started by an external script): scripts from 'self' only.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)

#: browser features the app does not use are denied to every origin; the camera only to the
#: app's own pages (the UI's "Take photo" file input, ``capture="environment"``)
PERMISSIONS_POLICY = (
    "camera=(self), microphone=(), geolocation=(), payment=(), usb=(), serial=(), hid=(), "
    "bluetooth=(), midi=(), display-capture=(), fullscreen=(), accelerometer=(), gyroscope=(), "
    "magnetometer=()"
)
#: HSTS, sent only on a request that arrived over HTTPS (``arrived_over_https``): a browser
#: then uses https only for this host for a year
HSTS = "max-age=31536000"


def arrived_over_https(scope: Scope) -> bool:
    """Whether the request arrived over HTTPS: its scheme is ``https`` (TLS to this server, or
    a proxy the server trusts said so: uvicorn's proxy headers) or it carries
    ``X-Forwarded-Proto: https``. The same rule as the clinic session cookie's ``Secure`` flag
    (``web.clinic.auth``)."""
    if scope.get("scheme") == "https":
        return True
    return Headers(scope=scope).get("x-forwarded-proto", "").lower() == "https"


def json_body(detail: str) -> bytes:
    return json.dumps({"detail": detail}).encode()


async def send_json(send: Send, status: int, detail: str, close: bool = False) -> None:
    body = json_body(detail)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, docs_path: str = "/api/v1/docs") -> None:
        self.app = app
        self.docs_path = docs_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        csp = (DOCS_CSP if path.startswith(self.docs_path) else CSP).encode()
        no_store = path.startswith("/api/") and not path.startswith(
            ("/api/v1/examples/", "/api/v1/model/plots/")
        )
        https = arrived_over_https(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [
                    (b"content-security-policy", csp),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"permissions-policy", PERMISSIONS_POLICY.encode()),
                ]
                if no_store:
                    extra.append((b"cache-control", b"no-store"))
                if https:  # never over plain http
                    extra.append((b"strict-transport-security", HSTS.encode()))
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: the HTTP methods a metrics label may name; any other method a client sends is "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: route label of a request no route matches (a 404 outside the UI)
UNMATCHED = "unmatched"
#: what ``MetricsMiddleware`` reports per request: method, route template, status (None: no
#: response was sent), seconds
Observer = Callable[[str, str, int | None, float], None]


class PathTemplates:
    """The routes of an app (``routes``: ``app.router.routes``, expanded on first use, when the
    app is complete), each with its full path template: a router included with a prefix (the
    clinic API) keeps its routes' own paths, and the template the client addressed is the
    prefixed one (``fastapi.routing.iter_route_contexts``, what the OpenAPI document is made
    from). Every route counts, also those left out of the document (the docs, the UI's mount)."""

    def __init__(self, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self._routes = routes
        self._contexts: list[RouteContext] | None = None
        self._templates: dict[int, str] = {}

    def contexts(self) -> list[RouteContext]:
        if self._contexts is None:
            self._contexts = list(iter_route_contexts(self._routes()))
            by_route: dict[int, set[str]] = {}
            for ctx in self._contexts:
                by_route.setdefault(id(ctx.original_route), set()).add(template(ctx))
            # a route included twice (two prefixes) is named by matching the path instead
            self._templates = {key: next(iter(t)) for key, t in by_route.items() if len(t) == 1}
        return self._contexts

    def of(self, route: BaseRoute, scope: Scope) -> str:
        """The full template of ``route``, the route the router picked for ``scope``."""
        self.contexts()
        found = self._templates.get(id(route))
        return found if found is not None else self.match(scope)

    def match(self, scope: Scope) -> str:
        """The template of the route the router would pick for ``scope``: the first that matches
        it fully, else the first that matches its path but not its method (the router's 405)."""
        partial: RouteContext | None = None
        for ctx in self.contexts():
            found, _ = ctx.matches(scope)
            if found is Match.FULL:
                return template(ctx)
            if found is Match.PARTIAL and partial is None:
                partial = ctx
        return template(partial) if partial is not None else UNMATCHED


def template(route: BaseRoute | RouteContext) -> str:
    """A route's path template (a mount's: ``/{path}`` below its prefix)."""
    return str(getattr(route, "path_format", "") or UNMATCHED)


def route_label(scope: Scope, templates: PathTemplates) -> str:
    """The template of the route that served the request (``/api/v1/reference/{image_id}.webp``,
    ``/api/v1/patients/{patient_id}``; the web UI's mount: ``/{path}``), never the raw path.
    The router leaves the route in the scope; a request answered before routing (BodyLimit's
    400 / 413 / 503) gets the template of the route the router would have picked."""
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        return templates.of(route, scope)
    return templates.match(scope)


#: where a request's ``RequestClock`` is kept in its ASGI scope
CLOCK_KEY = "dermsight.clock"
#: the header that carries a request's id, both ways
REQUEST_ID_HEADER = "x-request-id"
#: a client's request id is used when it is 1-128 visible ASCII characters (no space, no
#: control character: it goes into the log line as it is); otherwise the server makes one
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


def loggable(text: str) -> str:
    """``text`` for one log line: control characters (a decoded ``%0A`` in a path) and anything
    outside ASCII written as Python escapes, so a client cannot start a forged line."""
    return text.encode("unicode_escape").decode("ascii")


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def request_id_of(scope: Scope) -> str:
    """The client's ``X-Request-ID`` when it is usable (``REQUEST_ID``; the first one when
    several were sent), else a new id."""
    for name, value in scope.get("headers", ()):
        if name.lower() == REQUEST_ID_HEADER.encode():
            text = value.decode("latin-1").strip()
            return text if REQUEST_ID.fullmatch(text) else new_request_id()
    return new_request_id()


@dataclass
class RequestClock:
    """The one measurement of a request: its start, the status of its response (None: none sent
    yet) and, once ``stop`` is called, its duration. Whoever stops it first fixes the duration;
    later calls return the same value, so the log line and the metrics never disagree.
    ``request_id``: the id its response carries (``X-Request-ID``) and its log line names."""

    start: float = field(default_factory=time.perf_counter)
    status: int | None = None
    seconds: float | None = None
    request_id: str = field(default_factory=new_request_id)

    def stop(self) -> float:
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.start
        return self.seconds


def request_clock(scope: Scope, send: Send) -> tuple[RequestClock, Send]:
    """The request's clock and the ``send`` to pass on. The first middleware that asks starts the
    clock and gets a ``send`` that records the response's status and adds the request's id
    (``X-Request-ID``) to it; a middleware further in gets the same clock and its ``send``
    unchanged (one timer, one wrapper per request)."""
    clock = scope.get(CLOCK_KEY)
    if isinstance(clock, RequestClock):
        return clock, send
    clock = scope[CLOCK_KEY] = RequestClock(request_id=request_id_of(scope))
    id_header = (REQUEST_ID_HEADER.encode(), clock.request_id.encode("ascii"))

    async def status_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            clock.status = int(message["status"])
            headers = [(k, v) for k, v in message.get("headers", [])
                       if k.lower() != id_header[0]]
            message = {**message, "headers": [*headers, id_header]}
        await send(message)

    return clock, status_send


class MetricsMiddleware:
    """Starts each HTTP request's ``RequestClock`` and hands (method, route template, status,
    seconds) to ``observe`` once its response is sent. Labels hold no raw path, query, header or
    body: an unknown method is "other", a path no route matches is "unmatched"."""

    def __init__(self, app: ASGIApp, observe: Observer, templates: PathTemplates) -> None:
        self.app = app
        self.observe = observe
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        clock, send = request_clock(scope, send)
        try:
            await self.app(scope, receive, send)
        finally:
            method = scope.get("method", "")
            self.observe(method if method in METHODS else "other",
                         route_label(scope, self.templates), clock.status, clock.stop())


class PayloadTooLarge(HTTPException):
    def __init__(self, limit: int, detail: str | None = None) -> None:
        super().__init__(
            status_code=413,
            detail=too_large_detail(limit) if detail is None else detail,
        )


#: the largest request body that is not a ``multipart/form-data`` upload (the JSON bodies of the
#: clinic API: the largest, a 2,000-character note, is at most 24 kB even with every character
#: written as a JSON escape of a surrogate pair). Larger ones are refused (413) before anything
#: parses them: FastAPI reads and decodes a JSON body whole, on the event loop.
MAX_SMALL_BODY_BYTES = 64 * 1024


def small_body_too_large(limit: int) -> str:
    """The 413 of a body over the cap for bodies that are not multipart (``limit`` bytes)."""
    size = f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"
    return ("request body too large: a request that is not an image upload "
            f"(multipart/form-data) may send at most {size}")


#: bodies that are a file sent the wrong way (not in a multipart form): they keep the image cap,
#: so that the upload routes answer their 415 "send the image as multipart/form-data" rather
#: than a 413 about a size that is not the problem; nothing decodes them as JSON
FILE_TYPES = ("image/", "application/octet-stream", "application/dicom")


def takes_image_cap(scope: Scope) -> bool:
    """Whether the request says its body is an image upload (``multipart/form-data``) or a file
    sent as the whole body (``FILE_TYPES``), not JSON or a form: the image cap, not the small
    one."""
    ctype = Headers(scope=scope).get("content-type", "").split(";", 1)[0].strip().lower()
    return ctype == "multipart/form-data" or ctype.startswith(FILE_TYPES)


UPLOADS_BUSY = "server busy: too many uploads in progress, retry in a few seconds"
REQUESTS_BUSY = "server busy: too many connections or requests at once, retry in a few seconds"


class ServerBusy(HTTPException):
    def __init__(self, retry_after_s: int, detail: str = UPLOADS_BUSY) -> None:
        super().__init__(
            status_code=503,
            detail=detail,
            headers={"Retry-After": str(retry_after_s), "Connection": "close"},
        )


class InflightBudget:
    """Request-body bytes held by all requests together (one event loop: no lock needed).

    ``used`` counts the body bytes requests have actually received and still hold; they are
    released when the request ends (response sent). A request is refused up front when its
    declared size (Content-Length) would take ``used`` over its room, and while streaming as soon
    as ``used`` goes over it (several admitted uploads arriving at once). Counting received bytes,
    not declared ones, means a client that declares 20 MB and then trickles holds no budget.
    Bodies over ``small_bytes`` may only fill ``limit - small_reserve``, so ordinary photos still
    get through while large uploads fill the budget.
    """

    def __init__(self, limit: int, small_bytes: int = SMALL_BODY_BYTES,
                 reserve: int | None = None) -> None:
        self.limit = limit
        self.small_bytes = small_bytes
        self.small_reserve = small_reserve(limit) if reserve is None else reserve
        self.used = 0

    def room_for(self, size: int) -> int:
        """Bytes a body of ``size`` bytes may take in total right now."""
        return self.limit - (0 if size <= self.small_bytes else self.small_reserve)

    def admits(self, size: int) -> bool:
        return self.used + size <= self.room_for(size)


class BodyLimitMiddleware:
    """Refuse bodies over the cap (413) and bodies the in-flight ``budget`` cannot hold
    (503 + Retry-After): from Content-Length before reading anything, else while the body streams
    in (chunked uploads); the body is never buffered here. The cap is ``max_bytes`` for a
    ``multipart/form-data`` body (an image upload) or a file sent as the whole body (``FILE_TYPES``:
    the route's 415 says how to send it), ``small_max_bytes`` for any other (JSON:
    ``MAX_SMALL_BODY_BYTES``)."""

    def __init__(self, app: ASGIApp, max_bytes: int, image_limit: int | None = None,
                 budget: InflightBudget | None = None, retry_after_s: int = 10,
                 small_max_bytes: int = MAX_SMALL_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.image_limit = image_limit or max_bytes
        self.small_max_bytes = small_max_bytes
        self.budget = budget
        self.retry_after_s = retry_after_s

    def _too_large(self, multipart: bool) -> PayloadTooLarge:
        if multipart:
            return PayloadTooLarge(self.image_limit)
        return PayloadTooLarge(self.small_max_bytes, small_body_too_large(self.small_max_bytes))

    # ruff noqa below: request log + the catch-all 500 in one ASGI call.
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: C901
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = Headers(scope=scope).get("content-length")
        multipart = takes_image_cap(scope)
        cap = self.max_bytes if multipart else self.small_max_bytes
        if raw is not None:
            try:
                length = int(raw)
                if length < 0:
                    raise ValueError(raw)
            except ValueError:
                await send_json(send, 400, "invalid Content-Length header", close=True)
                return
            if length > cap:
                await send_json(send, 413, self._too_large(multipart).detail, close=True)
                return
        else:
            length = 0
        budget = self.budget
        if budget is not None and not budget.admits(length):
            log.warning("in-flight upload budget full (%d MB held): 503 for a %d kB body",
                        budget.used // (1024 * 1024), length // 1024)
            busy = ServerBusy(self.retry_after_s)
            await send_busy(send, busy)
            return
        seen = held = 0

        async def counting_receive() -> Message:
            nonlocal seen, held
            message = await receive()
            if message["type"] == "http.request":
                n = len(message.get("body", b""))
                seen += n
                if budget is not None and n:
                    budget.used += n
                    held += n
                if seen > cap:
                    raise self._too_large(multipart)
                if budget is not None and n and budget.used > budget.room_for(max(length, seen)):
                    raise ServerBusy(self.retry_after_s)
            return message

        try:
            await self.app(scope, counting_receive, send)
        finally:
            if budget is not None:
                budget.used -= held


async def send_busy(send: Send, busy: ServerBusy) -> None:
    body = json_body(str(busy.detail))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (busy.headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


#: the ASGI scope key the server's protocol (``server.HeaderTimeoutProtocol``) sets on a request
#: that arrived while its connections were at the limit; ``BusyMiddleware`` answers it
OVER_CONNECTION_LIMIT = "dermsight.over_connection_limit"


class BusyMiddleware:
    """The busy limit: a JSON 503 with ``Retry-After`` (``{"detail": ...}``, like every other
    error) for a request that arrives while ``max_requests`` requests are already running here,
    or that the server marked as arriving over its connection limit (``OVER_CONNECTION_LIMIT``).
    It replaces uvicorn's ``limit_concurrency``, which answered a plain-text 503 without
    ``Retry-After`` before any middleware; the limits are the same (``Settings.max_connections``:
    open connections, the new one included, or running requests). Health checks count too."""

    def __init__(self, app: ASGIApp, max_requests: int, retry_after_s: int = 5) -> None:
        self.app = app
        self.max_requests = max_requests
        self.retry_after_s = retry_after_s
        self.running = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        over_connections = bool(scope.get(OVER_CONNECTION_LIMIT))
        if over_connections or self.running >= self.max_requests:
            log.warning("busy (%s): 503", "connection limit reached" if over_connections
                        else f"{self.running} requests running")
            await send_busy(send, ServerBusy(self.retry_after_s, REQUESTS_BUSY))
            return
        self.running += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.running -= 1


#: seconds a client is asked to wait (``Retry-After``) after a clinic storage failure
STORAGE_RETRY_AFTER_S = 30
STORAGE_DETAILS = {
    "database": "clinic storage unavailable: the database cannot be reached or written, "
                "retry later",
    "image store": "clinic storage unavailable: the image store cannot be read or written, "
                   "retry later",
}
#: the module whose ``OSError`` is an image-store failure (the files of clinic storage)
IMAGESTORE_MODULE = "dermsight.clinic.imagestore"


def _raised_in(tb: TracebackType | None, module: str) -> bool:
    """Whether a frame of ``tb`` runs code of ``module`` (or a module below it)."""
    while tb is not None:
        name = str(tb.tb_frame.f_globals.get("__name__", ""))
        if name == module or name.startswith(module + "."):
            return True
        tb = tb.tb_next
    return False


#: SQLite result codes (``sqlite_errorname``, extended codes by their primary part) of an outage:
#: the database file busy, locked, full, unreadable, read-only, missing or damaged. Any other
#: (``SQLITE_ERROR``: a syntax error, no such table or column, ...) is a bug, as on PostgreSQL.
SQLITE_OUTAGES = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR",
                            "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_CORRUPT",
                            "SQLITE_NOTADB", "SQLITE_PERM"})


def _sqlite_outage(code: str) -> bool:
    """Whether a SQLite ``sqlite_errorname`` (``SQLITE_IOERR_WRITE``: its primary part) is an
    outage (``SQLITE_OUTAGES``)."""
    primary = "_".join(code.split("_")[:2])
    return primary in SQLITE_OUTAGES


def _database_failure(exc: BaseException) -> str | None:
    """The log text of a database outage (connection refused or lost, pool exhausted, a file the
    database cannot write), or None; on SQLite only the codes of ``SQLITE_OUTAGES`` (an SQL bug,
    ``SQLITE_ERROR``, stays a 500 as on PostgreSQL). SQLAlchemy is only looked at when it is
    loaded (clinic storage on). Only error classes and codes: a DB-API message can quote the
    SQL's values."""
    if "sqlalchemy.exc" not in sys.modules:
        return None
    from sqlalchemy import exc as sa

    if not isinstance(exc, (sa.OperationalError, sa.InterfaceError, sa.TimeoutError)) and not (
            isinstance(exc, sa.DBAPIError) and exc.connection_invalidated):
        return None
    orig = getattr(exc, "orig", None)
    sqlite_code = getattr(orig, "sqlite_errorname", None)
    if isinstance(orig, sqlite3.Error) and isinstance(sqlite_code, str) and not (
            _sqlite_outage(sqlite_code) or getattr(exc, "connection_invalidated", False)):
        return None  # SQLITE_ERROR (syntax error, no such table or column, ...): a bug, a 500
    code = getattr(orig, "sqlstate", None) or sqlite_code
    cause = f" ({type(orig).__name__}{f' {code}' if code else ''})" if orig is not None else ""
    return f"{type(exc).__name__}{cause}"


def _imagestore_failure(exc: BaseException) -> str | None:
    """The log text of an image-store failure: an ``OSError`` raised from the image store's code
    (read-only or removed folder, full disk, ...; its own wrapper's cause included), or None.
    An ``OSError`` from anywhere else stays a bug (500)."""
    for err in (exc, exc.__cause__):
        if not isinstance(err, OSError):
            continue
        if _raised_in(err.__traceback__, IMAGESTORE_MODULE) or (
                err is not exc and _raised_in(exc.__traceback__, IMAGESTORE_MODULE)):
            return (f"{type(err).__name__} errno {err.errno if err.errno is not None else '-'}"
                    f" ({err.strerror or 'no reason given'})")
    return None


#: the answer (404) to a write whose row another request deleted between its read and its write
DELETED_MEANWHILE = ("the record was deleted meanwhile (by another request), so nothing was "
                     "changed: reload the page")


def deleted_meanwhile(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is SQLAlchemy's ``StaleDataError``: an ORM UPDATE or
    DELETE matched no row, because a concurrent request deleted the row after this one read it
    (no model has a version counter, so that is the only way). Its transaction is rolled back:
    a 404, never a 500. Only looked at when SQLAlchemy is loaded (clinic storage on)."""
    if "sqlalchemy.orm.exc" not in sys.modules:
        return False
    from sqlalchemy.orm.exc import StaleDataError

    return any(isinstance(err, StaleDataError) for err in (exc, exc.__cause__))


def storage_failure(exc: BaseException) -> tuple[str, str] | None:
    """(which store, log text) when ``exc`` is a clinic storage outage, else None."""
    for err in (exc, exc.__cause__):
        if err is not None and (found := _database_failure(err)) is not None:
            return "database", found
    found = _imagestore_failure(exc)
    return ("image store", found) if found is not None else None


PLACEHOLDER = re.compile(r"\{(\w+)(?::\w+)?\}")
#: a path parameter written into the log as it is: a record id (digits only, at most
#: ``MAX_RECORD_ID``); a longer number (a personal identity number typed as an id) is not
RECORD_ID = re.compile(r"[0-9]{1,10}")
#: the largest record id (``ObjectId`` in ``dermsight.web.clinic.deps``)
MAX_RECORD_ID = 2_147_483_647


def logged_path(scope: Scope, templates: PathTemplates | None) -> str:
    """What the request log names for the request: the template of the route that served it
    (``route_label``), its whole-number parameters (record ids) filled in, any other left as
    its placeholder (``/api/v1/patients/{patient_id}`` for ``/api/v1/patients/SmithJohn``):
    a raw path can hold a name typed by mistake."""
    if templates is not None:
        label = route_label(scope, templates)
    else:
        route = scope.get("route")
        label = template(route) if isinstance(route, BaseRoute) else UNMATCHED
    params = scope.get("path_params") or {}

    def fill(m: re.Match[str]) -> str:
        value = params.get(m.group(1))
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_RECORD_ID:
            return str(value)
        if isinstance(value, str) and RECORD_ID.fullmatch(value) and int(value) <= MAX_RECORD_ID:
            return value
        return "{" + m.group(1) + "}"

    return loggable(PLACEHOLDER.sub(fill, label))


#: the request log line: method, route (``logged_path``), status, milliseconds, request id
LOG_LINE = "%s %s %s %.1f ms (request %s)"


class RequestLogMiddleware:
    """One log line per request (method, route template with record ids, status, time, request
    id: no raw path, no query, no body, no form data) and the catch-all for real bugs: a generic
    JSON 500 naming the request id, the exception's type only in the server log; a clinic
    storage outage is a JSON 503 with ``Retry-After`` (``storage_failure``). Status, time and id
    are the request's ``RequestClock`` (Metrics' when it runs outside). ``templates``: the
    app's routes (``PathTemplates``) for the full template of a route under a prefix."""

    def __init__(self, app: ASGIApp, templates: PathTemplates | None = None) -> None:
        self.app = app
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        clock, send = request_clock(scope, send)
        method = scope.get("method", "?")
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            log.info("%s %s: client went away before the request was complete (request %s)",
                     method, logged_path(scope, self.templates), clock.request_id)
            return
        except Exception as exc:  # noqa: BLE001 - the catch-all 500
            # Only the exception's type (and a storage error's code) and the request id: its
            # message and traceback can hold values from the upload (e.g. DICOM tags: PHI), and
            # logs must never hold those.
            rid, path = clock.request_id, logged_path(scope, self.templates)
            storage = storage_failure(exc)
            if storage is not None:
                which, what = storage
                log.error("clinic storage unavailable (%s): %s on %s %s (request %s)",
                          which, what, method, path, rid)
                if clock.status is None:
                    await send_busy(send, ServerBusy(STORAGE_RETRY_AFTER_S,
                                                     STORAGE_DETAILS[which]))
                return
            if deleted_meanwhile(exc):
                log.info("%s %s: the row was deleted meanwhile: 404 (request %s)",
                         method, path, rid)
                if clock.status is None:
                    await send_json(send, 404, DELETED_MEANWHILE)
                return
            log.error("unhandled %s on %s %s (request %s)", type(exc).__name__, method, path, rid)
            if clock.status is None:
                await send_json(send, 500, f"internal server error (request {rid})")
            return
        finally:
            seconds = clock.stop()
            if log.isEnabledFor(logging.INFO):
                log.info(LOG_LINE, method, logged_path(scope, self.templates),
                         clock.status or "-", seconds * 1000.0, clock.request_id)
