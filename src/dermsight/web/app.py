"""The HTTP service: ``create_app()`` builds a FastAPI app around one loaded model bundle.

Routes (all JSON errors are ``{"detail": "human-readable sentence"}``):

* ``POST /api/v1/predict`` multipart ``image`` (+ optional ``age``, ``sex``, ``site``);
  query ``heatmap`` (default true), ``tta`` (default false). DICOM uploads are accepted; their
  tags fill the metadata fields the form leaves empty.
* ``GET /api/v1/model`` (the model card), ``/api/v1/model/report`` (the bundle's HTML evaluation
  report), ``/api/v1/model/plots`` + ``/api/v1/model/plots/{name}.png``, ``/api/v1/classes``,
  ``/api/v1/health``, ``/api/v1/examples`` + ``/api/v1/examples/{file}``.
* ``/api/v1/openapi.json`` and ``/api/v1/docs``; the built web UI at ``/``.

Status codes a client can cause: 400 malformed multipart / Content-Length, 401 token (only with
``DERMSIGHT_API_TOKEN``), 403 TTA not allowed, 404, 405, 408 upload timeout, 413 too large, 415 not
an image or not multipart, 422 bad metadata / missing or repeated image / an image in an
accepted format that cannot be used (truncated, corrupt, too many pixels), 503 busy (in-flight
upload budget / connection limit). A 500 only ever means a bug; it carries no
details (the server log gets the exception type and a request id).

Uploaded bytes stay in memory (see ``upload.py``) and are never written to disk or logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from dermsight import __version__, taxonomy
from dermsight import heatmap as hm
from dermsight.io.decode import (
    ALLOWED_FORMATS,
    HEAVY_DECODE_BYTES,
    DecodeLimits,
    decode_cost,
    sniff,
)
from dermsight.io.errors import ImageDecodeError
from dermsight.parallel import limit_blas
from dermsight.predict import Dermsight
from dermsight.records import Metadata
from dermsight.web.docs import docs_router
from dermsight.web.middleware import (
    BodyLimitMiddleware,
    InflightBudget,
    RequestLogMiddleware,
    SecurityHeadersMiddleware,
)
from dermsight.web.schemas import (
    PREDICT_REQUEST_BODY,
    ClassOut,
    ExampleOut,
    HealthResponse,
    PlotsResponse,
    PredictResponse,
    error_responses,
)
from dermsight.web.settings import Settings
from dermsight.web.upload import UploadError, read_upload

log = logging.getLogger("dermsight.web")

API = "/api/v1"
#: Side of the heatmap PNG the API returns. The class-activation map itself is only ~5x5 to 7x7
#: cells, so 112 px keeps all of it while costing a quarter of 224 px to colour and encode (about
#: 1.9 ms instead of 6.4 ms CPU per request); browsers scale the overlay to the image with CSS.
HEATMAP_PX = 112
TTA_DISABLED = (
    "test-time augmentation (?tta=true, 8x the compute) is turned off on this server; the "
    "operator can allow it with DERMSIGHT_ALLOW_TTA=true"
)
PLOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

DESCRIPTION = """\
Decision support for dermoscopic skin-lesion images. **Not a diagnosis**: a dermatologist must
examine any lesion that worries you or the patient.

Errors are JSON `{"detail": "..."}`: 400 malformed multipart body, 401 missing/wrong bearer token
(only when the operator sets `DERMSIGHT_API_TOKEN`), 403 `?tta=true` on a server that does not
allow it (`DERMSIGHT_ALLOW_TTA`), 404, 408 upload too slow, 413 upload over the size cap, 415 not
an image (or not `multipart/form-data`), 422 bad metadata, a missing or repeated image, or an image
in an accepted format that cannot be used (truncated, corrupt, too many pixels), 503 server busy
(retry after `Retry-After` seconds). Uploaded images are processed in memory and never stored.
"""

UI_MISSING_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dermsight</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>dermsight</h1>
<p>The web UI is not built. Build it with <code>cd frontend &amp;&amp; npm ci &amp;&amp;
npm run build</code>, or use the API: <a href="/api/v1/docs">/api/v1/docs</a>.</p>
</body></html>
"""


# --- helpers -----------------------------------------------------------------------------------


def examples_dir() -> Path:
    return Path(str(resources.files("dermsight") / "assets" / "examples"))


def load_examples() -> tuple[str, list[dict[str, Any]]]:
    credits = examples_dir() / "credits.json"
    if not credits.exists():
        return "", []
    doc = json.loads(credits.read_text(encoding="utf-8"))
    return str(doc.get("description", "")), list(doc.get("images", []))


def _field(fields: dict[str, str], name: str) -> str | None:
    value = fields.get(name)
    if value is None or not value.strip():
        return None
    return value


def run_prediction(
    model: Dermsight, data: bytes, kind: str | None, meta: Metadata, heatmap: bool, tta: bool
) -> bytes:
    """Decode + predict + serialise (runs in a worker thread; ONNX Runtime releases the GIL)."""
    if kind == "DICOM":
        from dermsight.io.dicom import decode_dicom_bytes

        record = decode_dicom_bytes(data, model.limits)
        if record.image is None:  # pragma: no cover - the reader raises instead
            raise ImageDecodeError("DICOM file has no image (pixel data)")
        meta = meta.fill_from(record.meta)  # the form's values win over the tags
        pred = model.predict(record.image, meta=meta, heatmap=heatmap, tta=tta)
    else:
        pred = model.predict(data, meta=meta, heatmap=heatmap, tta=tta)
    out = pred.to_dict(heatmap_png=False)
    if heatmap and pred.cam is not None:
        out["heatmap"] = hm.to_base64_png(hm.heatmap_rgba(pred.cam, size=HEATMAP_PX))
    return json.dumps(out, separators=(",", ":")).encode()


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = [str(x) for x in err.get("loc", ())]
        where = loc[0] if loc else "request"
        name = ".".join(loc[1:]) if len(loc) > 1 else ""
        label = {"query": "query parameter", "path": "path parameter", "header": "header"}.get(
            where, where)
        parts.append(f"{label} '{name}': {err.get('msg', 'invalid')}" if name else
                     f"{label}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


class UIMount(Mount):
    """The web UI at ``/``: never answers for ``/api/...`` (those keep their JSON 404/405)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path: str = scope.get("path", "")
        if path == "/api" or path.startswith("/api/"):
            return Match.NONE, {}
        return super().matches(scope)


def prepare_for_serving(model: Dermsight, blas_threads: int) -> None:
    """Per-process tuning for many concurrent inferences on few cores.

    * numpy's BLAS would start one spinning thread per core for every call and fight the
      inference threads: limit it process-wide (``parallel.limit_blas``) to ``blas_threads``.
      (The gate's k-NN product, the largest BLAS call, pins itself to one thread in any case:
      ``gate.one_blas_thread``.)
    (The gate's float16 feature bank is already converted to float32 once by ``load_bundle``.)
    """
    limit_blas(blas_threads)


def _warm_up(model: Dermsight) -> None:
    """One inference at start-up so the first real request does not pay ORT's first-run cost."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(96, 96, 3), dtype=np.uint8)
    model.predict(img, heatmap=True).to_dict(heatmap_png=True)


# --- the app -----------------------------------------------------------------------------------


# ruff noqa below: known debt (issue 11): every route in one closure.
def create_app(  # noqa: C901, PLR0915
    model_path: str | Path | None = None,
    settings: Settings | None = None,
    model: Dermsight | None = None,
) -> FastAPI:
    """Build the service. Loads the bundle (``BundleError`` if it is missing or invalid) once."""
    settings = settings or Settings.from_env()
    if model is None:
        model = Dermsight.load(model_path or settings.model_path, threads=settings.ort_threads)
    model.limits = DecodeLimits(
        max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels
    )
    prepare_for_serving(model, settings.blas_threads)
    _warm_up(model)
    log.info("model %s %s loaded from %s", model.card.name, model.card.version, model.bundle.path)

    app = FastAPI(
        title="dermsight API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=f"{API}/openapi.json",
        docs_url=None,  # served from the package below (no CDN)
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.model = model
    app.state.settings = settings
    limiter_box: list[anyio.CapacityLimiter] = []

    def limiter() -> anyio.CapacityLimiter:
        if not limiter_box:
            limiter_box.append(anyio.CapacityLimiter(settings.workers))
        return limiter_box[0]

    heavy_box: list[anyio.CapacityLimiter] = []

    def heavy_limiter() -> anyio.CapacityLimiter:
        """Large decodes (``io.decode.decode_cost``) run one at a time, beside the workers,
        so that big uploads can never hold every worker."""
        if not heavy_box:
            heavy_box.append(anyio.CapacityLimiter(1))
        return heavy_box[0]

    async def in_thread(fn: Callable[[], Any], heavy: bool = False) -> Any:
        return await anyio.to_thread.run_sync(fn, limiter=heavy_limiter() if heavy else limiter())

    # -- errors ---------------------------------------------------------------------------

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code in (204, 304):  # pragma: no cover - no body allowed
            return Response(status_code=exc.status_code, headers=exc.headers)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    # -- auth -----------------------------------------------------------------------------

    dependencies: list[Any] = []
    if settings.api_token:
        bearer = HTTPBearer(
            auto_error=False,
            description="Set by the operator with DERMSIGHT_API_TOKEN.",
        )
        expected = settings.api_token.encode()

        async def require_token(
            credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
        ) -> None:
            given = credentials.credentials.encode() if credentials is not None else b""
            if credentials is None or not hmac.compare_digest(given, expected):
                raise HTTPException(
                    status_code=401,
                    detail="missing or invalid API token: send 'Authorization: Bearer <token>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )

        dependencies.append(Depends(require_token))

    public = APIRouter(prefix=API, tags=["service"])
    api = APIRouter(prefix=API, dependencies=dependencies,
                    responses=error_responses(401) if settings.api_token else None)

    # -- routes ---------------------------------------------------------------------------

    @public.get("/health", response_model=HealthResponse, summary="Liveness and model identity")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model.info, "dermsight": __version__}

    @api.post(
        "/predict",
        tags=["predict"],
        summary="Assess one lesion image",
        response_model=None,
        openapi_extra={"requestBody": PREDICT_REQUEST_BODY},
        responses={
            200: {"model": PredictResponse, "description": "the assessment"},
            **error_responses(400, 403, 408, 413, 415, 422, 503),
        },
    )
    async def predict(
        request: Request,
        heatmap: bool = Query(True, description="include the base64 PNG heatmap"),
        tta: bool = Query(False, description="average over 8 flips/rotations (8x the compute); "
                          "only when the operator sets DERMSIGHT_ALLOW_TTA=true, else 403"),
    ) -> Response:
        if tta and not settings.allow_tta:
            raise UploadError(403, TTA_DISABLED, drain=False)
        form = await read_upload(request, settings)
        if form.image is None:
            raise UploadError(422, "no image: send the photo in a form field named 'image'")
        try:
            meta = Metadata.parse(
                age=_field(form.fields, "age"),
                sex=_field(form.fields, "sex"),
                site=_field(form.fields, "site"),
            )
        except taxonomy.TaxonomyError as exc:
            raise UploadError(422, str(exc)) from exc
        data = form.image
        kind = sniff(data)
        heavy = await anyio.to_thread.run_sync(decode_cost, data, model.limits) > \
            HEAVY_DECODE_BYTES
        try:
            body = await in_thread(partial(run_prediction, model, data, kind, meta, heatmap, tta),
                                   heavy)
        except ImageDecodeError as exc:
            status = 422 if (kind in ALLOWED_FORMATS or kind == "DICOM") else 415
            raise UploadError(status, exc.reason) from exc
        return Response(content=body, media_type="application/json")

    def _plots_dir() -> Path:
        return model.bundle.path / "plots"

    @api.get("/model", tags=["model"], summary="The model card (JSON)")
    async def model_card() -> dict[str, Any]:
        card = model.card.to_dict()
        plots = sorted(p.stem for p in _plots_dir().glob("*.png")) if _plots_dir().is_dir() \
            else []
        card.setdefault("links", {
            "report": f"{API}/model/report" if model.bundle.report_path else None,
            "plots": {p: f"{API}/model/plots/{p}.png" for p in plots},
        })
        return card

    @api.get(
        "/model/report", tags=["model"], summary="The bundle's HTML evaluation report",
        response_class=HTMLResponse, responses=error_responses(404),
    )
    async def model_report() -> Response:
        report = model.bundle.report_path
        if report is None:
            raise HTTPException(404, "this model bundle has no evaluation report")
        return FileResponse(report, media_type="text/html; charset=utf-8")

    @api.get("/model/plots", tags=["model"], response_model=PlotsResponse,
             summary="Names of the evaluation plots in the bundle")
    async def model_plots() -> dict[str, Any]:
        d = _plots_dir()
        return {"plots": sorted(p.stem for p in d.glob("*.png")) if d.is_dir() else []}

    @api.get(
        "/model/plots/{name}.png", tags=["model"], summary="One evaluation plot (PNG)",
        response_class=Response, responses={
            200: {"content": {"image/png": {}}, "description": "the plot"},
            **error_responses(404),
        },
    )
    async def model_plot(name: str) -> Response:
        d = _plots_dir()
        path = d / f"{name}.png"
        if not PLOT_NAME.match(name) or not path.is_file() or path.resolve().parent != d.resolve():
            raise HTTPException(404, f"no plot named {name[:60]!r} in this model bundle")
        return FileResponse(path, media_type="image/png",
                            headers={"Cache-Control": "public, max-age=3600"})

    @api.get("/classes", tags=["model"], response_model=list[ClassOut],
             summary="The classes this model was trained on")
    async def classes() -> list[dict[str, Any]]:
        out = []
        for code in model.classes:
            c = taxonomy.BY_CODE[code]
            out.append({"code": c.code, "name": c.name, "lay": c.lay, "malignant": c.malignant,
                        "premalignant": c.premalignant})
        return out

    _, examples = load_examples()
    by_file = {e["file"]: e for e in examples}

    @api.get("/examples", tags=["examples"], response_model=list[ExampleOut],
             summary="Real example images (one per class) with credits")
    async def list_examples() -> list[dict[str, Any]]:
        return [
            {
                **{k: e.get(k) for k in ("file", "image_id", "age", "sex", "site", "dataset",
                                         "license", "license_url", "attribution")},
                "code": e["diagnosis"],
                "name": taxonomy.BY_CODE[e["diagnosis"]].name,
                "url": f"{API}/examples/{e['file']}",
                "credit": f"{e['image_id']}, {e['dataset']} ({e['license']})",
            }
            for e in examples
        ]

    @api.get(
        "/examples/{file}", tags=["examples"], summary="One example image (JPEG)",
        response_class=Response, responses={
            200: {"content": {"image/jpeg": {}}, "description": "the image"},
            **error_responses(404),
        },
    )
    async def example_file(file: str) -> Response:
        if file not in by_file:
            raise HTTPException(404, f"no example named {file[:60]!r}")
        return FileResponse(examples_dir() / file, media_type="image/jpeg",
                            headers={"Cache-Control": "public, max-age=86400"})

    app.include_router(public)
    app.include_router(docs_router(f"{API}/docs", f"{API}/openapi.json", "dermsight API"))
    app.include_router(api)

    # -- the web UI -----------------------------------------------------------------------

    static = settings.static_dir
    if (static / "index.html").is_file():
        app.router.routes.append(UIMount("/", app=StaticFiles(directory=static, html=True),
                                         name="ui"))
    else:
        @app.get("/", include_in_schema=False)
        async def ui_missing() -> HTMLResponse:
            return HTMLResponse(UI_MISSING_HTML)

    # -- middleware (last added = outermost) ----------------------------------------------

    app.add_middleware(RequestLogMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       image_limit=settings.max_upload_bytes,
                       budget=InflightBudget(settings.max_inflight_bytes))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware, docs_path=f"{API}/docs")
    return app
