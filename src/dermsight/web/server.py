"""Run the app under uvicorn with connection-level limits, and decide who may be served.

uvicorn times out idle keep-alive connections (``timeout_keep_alive``) but has no timeout for a
request's *headers*: a client that sends one header byte every few seconds (slowloris) holds its
connection, and a slot of the connection limit, forever. ``HeaderTimeoutProtocol`` (uvicorn's
h11 protocol plus one timer) closes a connection whose request headers are not complete within
``Settings.header_timeout_s`` of its first byte (or of the connection opening). The request body
has its own deadline (``Settings.upload_timeout_s``, in ``upload.py``).

The connection limit (``Settings.max_connections``: open connections, the new one included) is
uvicorn's ``limit_concurrency`` check made answerable by the app: uvicorn's own answers a
plain-text 503 without ``Retry-After`` before any middleware runs, so the protocol instead marks a
request that arrives at the limit (``middleware.OVER_CONNECTION_LIMIT``) and
``middleware.BusyMiddleware`` answers it, and requests over the same number running at once, with
the API's JSON 503 and ``Retry-After``. A request h11 cannot parse (bad request line, header or
Content-Length; request line and headers still unfinished after 16 KiB) never reaches the app:
``send_400_response`` answers it with a JSON 400 too (``{"detail": ...}``, but without the app's
headers such as ``X-Request-ID``).

``limit_malloc_arenas`` caps glibc's malloc arenas (``serve`` calls it before any worker thread
exists): with the default (8 per core) the resident memory of a clinic server crept by 1.4-1.9 MB
per 1,000 visits, with 2 it stayed flat (benchmarks/results/clinic-long*.json).

``configure_logging`` gives the server's log one format (``OneLineFormatter``) for dermsight's,
uvicorn's and Alembic's loggers, and ``serve_app`` hands uvicorn the same configuration: one line
per record, ``<UTC time, ISO 8601 with offset> <LEVEL> <logger>: <message>``.

``bind_refusal`` keeps an unauthenticated API on loopback unless the operator says otherwise.
``serve_app`` runs the app's lifespan (the model load) *before* uvicorn binds the port, so that a
start-up error (an unusable bundle) reaches the command as an exception: one line, no traceback.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import json
import logging
import logging.config
import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from dermsight.web.middleware import CSP, OVER_CONNECTION_LIMIT
from dermsight.web.settings import SERVE_LOGGER, Settings

log = logging.getLogger("dermsight.web")

#: glibc's mallopt parameter for the arena limit (malloc.h) and the limit ``serve`` sets
M_ARENA_MAX = -8
MALLOC_ARENAS = 2

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

#: the answer to a request h11 cannot parse (uvicorn's own is ``text/plain``)
INVALID_HTTP_DETAIL = (
    "invalid HTTP request: the request line, a header or the body's framing (Content-Length, "
    "Transfer-Encoding) could not be parsed, or the headers went on past 16 KiB"
)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also ``[::1]``) and ``localhost``; False for anything else,
    including ``0.0.0.0`` / ``::`` (all interfaces) and host names that may resolve elsewhere."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Limit glibc's malloc to ``arenas`` arenas (``mallopt(M_ARENA_MAX)``); True when set.

    Call it before threads start allocating (arenas already created stay). A no-op, logged at
    debug level, when the C library is not glibc or when the operator set ``MALLOC_ARENA_MAX``
    (glibc has applied theirs already)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        log.debug("malloc arenas: MALLOC_ARENA_MAX=%s from the environment",
                  os.environ["MALLOC_ARENA_MAX"])
        return False
    if platform.libc_ver()[0] != "glibc":
        log.debug("malloc arenas: not glibc, left as they are")
        return False
    try:
        done = ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas) == 1
    except (OSError, AttributeError):
        done = False
    log.debug("malloc arenas: limited to %d" if done else "malloc arenas: mallopt(%d) failed",
              arenas)
    return done


class OneLineFormatter(logging.Formatter):
    """``2026-12-07T09:43:27.821+00:00 INFO dermsight.web: ...``: the time in UTC (ISO 8601,
    milliseconds, offset), and one line per record: a line break in the message or in a
    traceback is written as ``\\n`` (``\\r`` likewise), so a log collector never splits one
    record into several."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord,
                   datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        # a captured warning's text ends in a line break: dropped, not written as a final "\\n"
        text = super().format(record).rstrip("\r\n")
        return text.replace("\r", "\\r").replace("\n", "\\n")




def logging_config(level: str) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of ``dermsight serve`` (a new dict on each call:
    ``dictConfig`` may change the one it is given): every record at ``level`` or above through
    ``OneLineFormatter`` to stderr, uvicorn's and Alembic's loggers included (uvicorn's own
    configuration gives them handlers and formats of their own); ``SERVE_LOGGER``'s start-up
    lines to stdout at any level."""
    upper = level.upper()
    to_root = {"level": upper, "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"one_line": {"()": f"{__name__}.OneLineFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "one_line",
                       "stream": "ext://sys.stderr"},
            "stdout": {"class": "logging.StreamHandler", "formatter": "one_line",
                       "stream": "ext://sys.stdout"},
        },
        "root": {"level": upper, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": dict(to_root), "uvicorn.error": dict(to_root),
            "uvicorn.access": dict(to_root),
            "alembic": {"handlers": [], "propagate": True},
            "python_multipart": {"level": "ERROR"},
            SERVE_LOGGER: {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }


def configure_logging(level: str) -> None:
    """Set up ``logging_config(level)`` in this process; Python's warnings are logged too
    (``py.warnings``), in the same format, instead of their own two lines on stderr."""
    logging.config.dictConfig(logging_config(level))
    logging.captureWarnings(True)


def bind_refusal(host: str, token: str | None, insecure_no_auth: bool) -> str | None:
    """Why ``serve`` must not start on ``host`` (one line), or None when it may."""
    if token or insecure_no_auth or is_loopback(host):
        return None
    return (
        f"refusing to serve on {host!r} without an API token: set DERMSIGHT_API_TOKEN, bind to "
        "127.0.0.1, or pass --insecure-no-auth to expose the API to the network unauthenticated"
    )


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol that closes connections whose request headers arrive too slowly.

    The timer is armed when the connection opens and when the first byte of each further
    request arrives; it is cancelled once h11 has parsed the request line and all headers
    (a new request cycle exists). Idle keep-alive connections are closed by uvicorn itself.
    """

    header_timeout_s: float = 10.0
    #: open connections (this one included) at which a request is marked busy; None: no limit
    max_connections: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self.limit_concurrency = None  # uvicorn's plain-text 503: replaced by the marking below
        self.app = self._marking_busy(self.app)

    def _marking_busy(self, app: ASGIApp) -> ASGIApp:
        """``app``, with requests that arrive while ``max_connections`` connections are open
        (this one included, as uvicorn counts them) marked for ``BusyMiddleware``'s 503."""

        async def marked(scope: Scope, receive: Receive, send: Send) -> None:
            limit = self.max_connections
            if limit is not None and len(self.connections) >= limit:
                scope[OVER_CONNECTION_LIMIT] = True
            await app(scope, receive, send)

        return marked

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse: a JSON 400 like the app's errors (uvicorn's is plain
        text), then the connection is closed. The app never sees the request."""
        body = json.dumps({"detail": INVALID_HTTP_DETAIL}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"content-security-policy", CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"cache-control", b"no-store"),
        ]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=body), h11.EndOfMessage()):
            output = self.conn.send(event)
            if output:
                self.transport.write(output)
        self.transport.close()

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s,
                                                      self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            log.info("closed a connection whose request headers took over %g s",
                     self.header_timeout_s)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_headers():
            self._arm_header_timer()
        super().data_received(data)
        if not self._waiting_for_headers():
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # between requests uvicorn's keep-alive timer applies; ours restarts with the next byte
        self._cancel_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)


def protocol_for(settings: Settings) -> type[HeaderTimeoutProtocol]:
    """A protocol class carrying this server's header timeout and connection limit (uvicorn
    instantiates it)."""
    return type("DermsightHTTPProtocol", (HeaderTimeoutProtocol,),
                {"header_timeout_s": settings.header_timeout_s,
                 "max_connections": settings.max_connections})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments for ``uvicorn.run`` that enforce the connection-level limits (the
    connection limit through ``protocol_for``, answered by the app: no ``limit_concurrency``)."""
    return {
        "http": protocol_for(settings),
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 16 * 1024,  # request line + headers
        "access_log": False,
        "server_header": False,
    }


def serve_app(app: FastAPI, host: str, port: int, settings: Settings,
              on_ready: Callable[[], None] = lambda: None) -> None:
    """Serve ``app`` until interrupted: its lifespan runs first (errors propagate before the port
    is bound), ``on_ready`` once it has started, then uvicorn with ``uvicorn_options``."""
    config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level,
                            log_config=logging_config(settings.log_level), lifespan="off",
                            **uvicorn_options(settings))
    server = uvicorn.Server(config)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            on_ready()
            await server.serve()

    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(main())
    except KeyboardInterrupt:  # a second Ctrl-C, or the one uvicorn re-raises after shutdown
        pass
