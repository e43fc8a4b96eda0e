"""Pure-ASGI middleware: security headers, metrics, request-body cap, request log + catch-all 500.

Order (outermost first): SecurityHeaders -> Metrics -> [CORS] -> BodyLimit -> RequestLog ->
FastAPI's ExceptionMiddleware -> routes. Every response, error responses included, passes through
SecurityHeaders, and is counted by Metrics (also the 400 / 413 / 503 BodyLimit sends itself).
RequestLog turns any exception that escapes a route into a generic JSON 500 and logs only the
exception's type and a request id (never its message or traceback, which can quote upload
contents), so a client never sees a traceback and the log never holds PHI.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dermsight.web.settings import SMALL_BODY_BYTES, small_reserve, too_large_detail

log = logging.getLogger("dermsight.web")

#: CSP for the app and the API (the brief's policy; the UI shows heatmaps from data: URIs).
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'"
)
#: Swagger UI (served from the package, started by an external script): scripts from 'self' only.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'"
)


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

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [
                    (b"content-security-policy", csp),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if no_store:
                    extra.append((b"cache-control", b"no-store"))
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
    """The path templates of an app's routes (``paths``: e.g. the OpenAPI document's), compiled
    on first use, to name the route a request was for when it was answered before routing."""

    def __init__(self, paths: Callable[[], Iterable[str]]) -> None:
        self._paths = paths
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None

    def match(self, path: str) -> str:
        if self._compiled is None:
            self._compiled = [(compile_path(p)[0], p) for p in self._paths()]
        return next((template for rx, template in self._compiled if rx.match(path)), UNMATCHED)


def route_label(scope: Scope, templates: PathTemplates) -> str:
    """The template of the route that served the request (``/api/v1/reference/{image_id}.webp``;
    the web UI's mount: ``/{path}``), never the raw path. The router leaves the route in the
    scope; a request answered before routing (BodyLimit's 400 / 413 / 503) gets the template its
    path matches."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path_format", "") or UNMATCHED)
    return templates.match(str(scope.get("path", "")))


class MetricsMiddleware:
    """Times each HTTP request and hands (method, route template, status, seconds) to ``observe``
    once its response is sent. Labels hold no raw path, query, header or body: an unknown method
    is "other", a path no route matches is "unmatched"."""

    def __init__(self, app: ASGIApp, observe: Observer, templates: PathTemplates) -> None:
        self.app = app
        self.observe = observe
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status: int | None = None

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, status_send)
        finally:
            method = scope.get("method", "")
            self.observe(method if method in METHODS else "other",
                         route_label(scope, self.templates), status, time.perf_counter() - t0)


class PayloadTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail=too_large_detail(limit),
        )


class ServerBusy(HTTPException):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            status_code=503,
            detail="server busy: too many uploads in progress, retry in a few seconds",
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
    """Refuse bodies over ``max_bytes`` (413) and bodies the in-flight ``budget`` cannot hold
    (503 + Retry-After): from Content-Length before reading anything, else while the body streams
    in (chunked uploads); the body is never buffered here."""

    def __init__(self, app: ASGIApp, max_bytes: int, image_limit: int | None = None,
                 budget: InflightBudget | None = None, retry_after_s: int = 10) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.image_limit = image_limit or max_bytes
        self.budget = budget
        self.retry_after_s = retry_after_s

    # ruff noqa below: request log + the catch-all 500 in one ASGI call.
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: C901
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = Headers(scope=scope).get("content-length")
        if raw is not None:
            try:
                length = int(raw)
                if length < 0:
                    raise ValueError(raw)
            except ValueError:
                await send_json(send, 400, "invalid Content-Length header", close=True)
                return
            if length > self.max_bytes:
                await send_json(send, 413, PayloadTooLarge(self.image_limit).detail, close=True)
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
                if seen > self.max_bytes:
                    raise PayloadTooLarge(self.image_limit)
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


class RequestLogMiddleware:
    """One log line per request (method, path, status, time: no query, no body, no form data)
    and the catch-all for real bugs: a generic JSON 500, the traceback only in the server log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 0

        async def logging_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        method, path = scope.get("method", "?"), scope.get("path", "?")
        try:
            await self.app(scope, receive, logging_send)
        except ClientDisconnect:
            log.info("%s %s: client went away before the request was complete", method, path)
            return
        except Exception as exc:  # noqa: BLE001 - the catch-all 500
            # Only the exception's type and a request id: its message and traceback can hold
            # values from the upload (e.g. DICOM tags: PHI), and logs must never hold those.
            rid = uuid.uuid4().hex[:12]
            log.error("unhandled %s on %s %s (request %s)", type(exc).__name__, method, path, rid)
            if status == 0:
                status = 500
                await send_json(send, 500, f"internal server error (request {rid})")
            return
        finally:
            if log.isEnabledFor(logging.INFO):
                ms = (time.perf_counter() - t0) * 1000.0
                log.info("%s %s %s %.1f ms", method, path, status or "-", ms)
