"""The HTTP service: ``create_app(settings)`` wires the API around one model bundle.

``create_app`` only assembles: the routers (``routes/``), the exception handlers, the middleware
and the web UI. The model is loaded once, at start, by the lifespan (``lifespan.py``); routes get
it, the settings and the inference workers through the dependencies in ``deps.py``.

Routes (all JSON errors are ``{"detail": "human-readable sentence"}``):

* ``POST /api/v1/predict`` multipart ``image`` (+ optional ``age``, ``sex``, ``site``);
  query ``heatmap`` (default true), ``tta`` (default false). DICOM uploads are accepted; their
  tags fill the metadata fields the form leaves empty.
* ``GET /api/v1/model`` (the model card), ``/api/v1/model/report`` (the bundle's HTML evaluation
  report), ``/api/v1/model/plots`` + ``/api/v1/model/plots/{name}.png``, ``/api/v1/classes``,
  ``/api/v1/health``, ``/api/v1/examples`` + ``/api/v1/examples/{file}``,
  ``/api/v1/reference/{image_id}.webp`` (a similar case's thumbnail), ``/api/v1/metrics``
  (Prometheus text format; ``routes/metrics.py``).
* ``/api/v1/openapi.json`` and ``/api/v1/docs``; the built web UI at ``/``. The UI's pages are
  hash routes (``/#/learn``); a browser asking for ``/learn`` is redirected there, and any other
  missing page gets an HTML "page not found" (``browser_not_found``) instead of JSON.
* With clinic storage on (``serve --database``): the clinic API under ``/api/v1`` (patients,
  lesions, visits, dashboard, exports, accounts; ``web/clinic/``, ``docs/clinic.md``).

Status codes a client can cause: 400 malformed HTTP (from the server's protocol, before the
app) / multipart / Content-Length, 401 token (only with ``DERMSIGHT_API_TOKEN``), 403 TTA not
allowed, 404, 405 method not allowed, 408 upload timeout, 413 too large (an upload over the image
cap, any other body over ``middleware.MAX_SMALL_BODY_BYTES``, 64 KiB), 415 not an image or not
multipart, 422 bad metadata / missing or repeated image / an image in an accepted format that
cannot be used (truncated, corrupt, too many pixels) / a JSON body that cannot be read
(``unreadable_json``), 503 busy (in-flight upload budget /
connection or request limit, with ``Retry-After``). A 500 only ever means a bug; it carries no
details but the request id (the server log gets the exception type and the same id). Every
response the app sends carries ``X-Request-ID`` (the client's, when usable, else a new one).

Uploaded bytes stay in memory (see ``upload.py``) and are never written to disk or logged.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from dermsight import __version__
from dermsight.web.deps import require_token
from dermsight.web.docs import docs_router
from dermsight.web.lifespan import lifespan
from dermsight.web.middleware import (
    BodyLimitMiddleware,
    BusyMiddleware,
    InflightBudget,
    MetricsMiddleware,
    PathTemplates,
    RequestLogMiddleware,
    SecurityHeadersMiddleware,
)
from dermsight.web.routes import API, examples, health, metrics, model, predict, reference
from dermsight.web.schemas import error_responses, honest_error_schemas
from dermsight.web.settings import Settings
from dermsight.web.validation import validation_message

DESCRIPTION = """\
Decision support for dermoscopic skin-lesion images. **Not a diagnosis**: a dermatologist must
examine any lesion that worries you or the patient.

Errors are JSON `{"detail": "..."}`: 400 malformed multipart body or malformed HTTP (a request
line, header or `Content-Length` the server cannot parse: answered by the HTTP layer before the
API, so without `X-Request-ID`), 401 missing/wrong bearer token (only when the operator sets
`DERMSIGHT_API_TOKEN`), 403 `?tta=true` on a server that does not allow it
(`DERMSIGHT_ALLOW_TTA`), 404, 405 a method the route does not take (`Allow` lists those it does),
408 upload too slow, 413 upload over the size cap (a body that is not `multipart/form-data`:
over 64 KiB), 415 not an image (or not
`multipart/form-data`), 422 bad metadata, a missing or repeated image, or an image in an accepted
format that cannot be used (truncated, corrupt, too many pixels), 503 server busy (retry after
`Retry-After` seconds; any route, `/health` included). Every response carries `X-Request-ID`: the
client's own when it sent one of 1-128 visible ASCII characters, else one the server made; the
server's log line for the request names it. Uploaded images are processed in memory and never
stored.
"""

UI_MISSING_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dermsight</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>dermsight</h1>
<p>The web UI is not built. Build it with <code>cd frontend &amp;&amp; npm ci &amp;&amp;
npm run build</code>, or use the API: <a href="/api/v1/docs">/api/v1/docs</a>.</p>
</body></html>
"""


# --- routers -----------------------------------------------------------------------------------


def protected_routers(settings: Settings) -> list[APIRouter]:
    """The routers behind the API token (when one is set), in the order they are matched.

    Routers listed here get the token check and the 401 response in the OpenAPI document from
    ``create_app``; a public router goes in ``create_app`` beside ``health`` instead. The clinic
    (case storage) API, ``web/clinic/``, is not listed: it authenticates its own users (sessions,
    per-user tokens) and ``create_app`` adds it when ``dermsight serve --database URL`` is given
    (the lifespan opens and closes its database).
    """
    return [predict.router, model.router, examples.router, reference.router, metrics.router]


# --- errors ------------------------------------------------------------------------------------


#: The web UI's pages (hash routes, ``frontend/src/App.tsx`` and ``clinic/format.ts``): a browser
#: asking for ``/learn`` (a typed or shared address without the ``#``) is sent to ``/#/learn``.
UI_PAGES = frozenset({"learn", "model", "clinic", "clinic/dashboard", "clinic/admin"})

NOT_FOUND_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Page not found · dermsight</title></head>
<body>
<h1>Page not found</h1>
<p>dermsight has no page at <code>{path}</code>.</p>
<p><a href="/">Assess a lesion</a> · <a href="/#/learn">Learn</a>
· <a href="/#/model">Model card</a> · <a href="/api/v1/docs">API documentation</a></p>
</body></html>
"""


def browser_not_found(request: Request) -> Response | None:
    """For a browser's GET of a missing page (not ``/api/...``, HTML accepted): a redirect to the
    UI page it names, or an HTML "page not found". None for API clients: they keep JSON."""
    path = request.url.path
    accepts_html = "text/html" in request.headers.get("accept", "")
    if (request.method not in ("GET", "HEAD") or not accepts_html
            or path == "/api" or path.startswith("/api/")):
        return None
    page = path.strip("/")
    if page in UI_PAGES:
        return RedirectResponse(f"/#/{page}", status_code=302)
    return HTMLResponse(NOT_FOUND_HTML.format(path=html.escape(path)), status_code=404)


#: FastAPI's 400 for a JSON body its ``json.loads`` raised on with something other than a
#: ``JSONDecodeError`` (those are already a 422: ``validation.validation_message``)
FASTAPI_BODY_ERROR = "There was an error parsing the body"


def unreadable_json(exc: HTTPException) -> str | None:
    """The 422 sentence for FastAPI's vague 400 (``FASTAPI_BODY_ERROR``) when its cause is a
    JSON body that cannot be read: not UTF-8 (``UnicodeDecodeError``), nested too deeply
    (``RecursionError``), an integer longer than Python converts (``ValueError``, 4,300 digits);
    None for any other 400 (a client that went away while sending, ...)."""
    if exc.status_code != 400 or exc.detail != FASTAPI_BODY_ERROR:
        return None
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return "the request body is not valid JSON (it is not UTF-8 text)"
    if isinstance(cause, RecursionError):
        return "the request body cannot be read as JSON (it is nested too deeply)"
    if isinstance(cause, ValueError):
        if "digits" in str(cause):
            return "the request body cannot be read as JSON (a number in it has too many digits)"
        return "the request body cannot be read as JSON"
    return None


async def http_error(request: Request, exc: HTTPException) -> Response:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code in (204, 304):  # pragma: no cover - no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    if (unreadable := unreadable_json(exc)) is not None:
        return JSONResponse({"detail": unreadable}, status_code=422)
    if exc.status_code == 404 and (page := browser_not_found(request)) is not None:
        return page
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    return JSONResponse({"detail": validation_message(exc)}, status_code=422)


# --- the web UI --------------------------------------------------------------------------------


class UIMount(Mount):
    """The web UI at ``/``: never answers for ``/api/...`` (those keep their JSON 404/405)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path: str = scope.get("path", "")
        if path == "/api" or path.startswith("/api/"):
            return Match.NONE, {}
        return super().matches(scope)


async def ui_missing() -> HTMLResponse:
    return HTMLResponse(UI_MISSING_HTML)


def add_ui(app: FastAPI, static: Path) -> None:
    """The built front end at ``/``, or a page that says how to build it."""
    if (static / "index.html").is_file():
        app.router.routes.append(UIMount("/", app=StaticFiles(directory=static, html=True),
                                         name="ui"))
    else:
        app.add_api_route("/", ui_missing, methods=["GET"], include_in_schema=False)


# --- the app -----------------------------------------------------------------------------------

#: CORS (only with ``DERMSIGHT_CORS_ORIGINS``): the methods and request headers a preflight may
#: ask for (Starlette's middleware also allows the CORS-safelisted ones: Accept,
#: Accept-Language, Content-Language, Content-Type), and the response headers a page may read
#: beyond the safelisted ones. A preflight asking for another origin, method or header gets a
#: plain-text 400 ("Disallowed CORS origin / method / headers").
CORS_METHODS = ("GET", "POST")
CORS_HEADERS = ("Authorization", "Content-Type", "X-Request-ID")
CORS_EXPOSED = ("X-Request-ID", "Retry-After")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service for ``settings`` (default: ``Settings.from_env()``). Nothing is loaded
    here: the lifespan loads the model when the app starts (``BundleError`` then)."""
    settings = settings or Settings.from_env()
    app = FastAPI(
        title="dermsight API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=f"{API}/openapi.json",
        docs_url=None,  # served from the package below (no CDN)
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    # this app's own registry (the lifespan adds the model's metrics once it is loaded)
    app.state.metrics = service_metrics = metrics.ServiceMetrics()
    app.exception_handler(HTTPException)(http_error)
    app.exception_handler(RequestValidationError)(validation_error)

    app.include_router(health.router)
    app.include_router(docs_router(f"{API}/docs", f"{API}/openapi.json", "dermsight API"))
    auth: dict[str, Any] = (
        {"dependencies": [Depends(require_token)], "responses": error_responses(401)}
        if settings.api_token else {}
    )
    for router in protected_routers(settings):
        app.include_router(router, **auth)
    if settings.clinic is not None:  # own auth: user sessions / tokens (docs/clinic.md)
        from dermsight.web.clinic.mount import include_clinic

        include_clinic(app, API)
    add_ui(app, settings.static_dir)

    # middleware (last added = outermost)
    app.add_middleware(BusyMiddleware, max_requests=settings.max_connections)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       image_limit=settings.max_upload_bytes,
                       budget=InflightBudget(settings.max_inflight_bytes))
    templates = PathTemplates(lambda: app.router.routes)  # the log and the metrics name routes
    # outside BodyLimit: its refusals are logged too
    app.add_middleware(RequestLogMiddleware, templates=templates)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=list(CORS_METHODS),
            allow_headers=list(CORS_HEADERS),
            expose_headers=list(CORS_EXPOSED),
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware, observe=service_metrics.observe_request,
                       templates=templates)
    app.add_middleware(SecurityHeadersMiddleware, docs_path=f"{API}/docs")
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document, its error responses made to say what the app sends."""
        if app.openapi_schema is None:
            app.openapi_schema = honest_error_schemas(build_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
