"""``GET /api/v1/health``: liveness, storage readiness and the model's identity (public, for load
balancers); ``HEAD`` answers the same status and headers without the body (uptime checkers).

Without clinic storage the answer is 200 whenever the process serves requests. With clinic
storage on, each check also asks the database a ``SELECT 1`` and, for an image folder on this
machine, whether it exists and may be written (each in a worker thread, at most
``READY_TIMEOUT_S``, so a hung network mount holds no other request): when either fails the
answer is a 503 ``{"status": "storage unavailable", "detail": ...}`` with ``Retry-After``, so a
load balancer takes the instance out while the storage is down (the other fields as usual)."""

from __future__ import annotations

import logging
import os
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from dermsight import __version__
from dermsight.predict import Dermsight
from dermsight.web.deps import ModelDep, SettingsDep
from dermsight.web.middleware import STORAGE_DETAILS, STORAGE_RETRY_AFTER_S, storage_failure
from dermsight.web.routes import API
from dermsight.web.schemas import RETRY_AFTER, ErrorResponse, HealthResponse
from dermsight.web.settings import MIB, Settings

router = APIRouter(prefix=API, tags=["service"])
log = logging.getLogger("dermsight.web")

#: the longest a health check waits for the database's answer
READY_TIMEOUT_S = 3.0
STORAGE_DOWN = "storage unavailable"


def _database_check(clinic: Any) -> None:
    with clinic.db.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")


def _images_check(clinic: Any) -> str | None:
    """Why the local image folder cannot be used (errno name only), or None (also for S3)."""
    images = clinic.images
    if not getattr(images, "local", False):
        return None
    folder = images.fs._strip_protocol(images.root)
    if not os.path.isdir(folder):
        return "folder missing"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "folder not writable"
    return None


async def storage_problem(request: Request) -> str | None:
    """The ``detail`` of a 503 when the clinic storage cannot be used now, else None (also when
    clinic storage is off). Logs one line: which store, the error's class and code only."""
    clinic = getattr(request.app.state, "clinic", None)
    if clinic is None:
        return None
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            await anyio.to_thread.run_sync(_database_check, clinic, abandon_on_cancel=True)
    except TimeoutError:
        log.error("health: clinic database did not answer within %g s", READY_TIMEOUT_S)
        return STORAGE_DETAILS["database"]
    except Exception as exc:  # noqa: BLE001 - any failure of the check means "not ready"
        found = storage_failure(exc)
        log.error("health: clinic database unavailable: %s",
                  found[1] if found else type(exc).__name__)
        return STORAGE_DETAILS["database"]
    try:
        # a hung network mount blocks os.path.isdir / os.access: never on the event loop
        with anyio.fail_after(READY_TIMEOUT_S):
            why = await anyio.to_thread.run_sync(_images_check, clinic, abandon_on_cancel=True)
    except TimeoutError:
        log.error("health: clinic image folder did not answer within %g s", READY_TIMEOUT_S)
        return STORAGE_DETAILS["image store"]
    if why is not None:
        log.error("health: clinic image store unavailable: %s", why)
        return STORAGE_DETAILS["image store"]
    return None


def _health(model: Dermsight, settings: Settings) -> dict[str, Any]:
    return {"status": "ok", "model": model.info, "dermsight": __version__,
            "clinic": settings.clinic is not None,
            "max_upload_mb": settings.max_upload_bytes / MIB}


def _unavailable(answer: dict[str, Any], detail: str) -> JSONResponse:
    body = {**jsonable_encoder(HealthResponse.model_validate(answer)),
            "status": STORAGE_DOWN, "detail": detail}
    return JSONResponse(body, status_code=503,
                        headers={"Retry-After": str(STORAGE_RETRY_AFTER_S)})


@router.get("/health", response_model=HealthResponse, summary="Liveness and model identity",
            description="Public (no token). With clinic storage on it also checks the storage "
                        "(a `SELECT 1` on the database and the image folder, each at most 3 s): "
                        "when that fails the answer is a 503 with `Retry-After` and "
                        '`{"status": "storage unavailable", "detail": ...}`. '
                        "`HEAD /api/v1/health` is served too, for uptime "
                        "checkers: the same status and headers, no body; it is not listed as "
                        "an operation of its own in this document.",
            responses={503: {"model": ErrorResponse, "headers": RETRY_AFTER,
                             "description": "server busy (`detail` only), or the clinic "
                                            "storage is unavailable (`status` \"storage "
                                            "unavailable\", `detail` and the fields above)"}})
async def health(request: Request, model: ModelDep, settings: SettingsDep) -> Any:
    answer = _health(model, settings)
    problem = await storage_problem(request)
    return answer if problem is None else _unavailable(answer, problem)


@router.head("/health", include_in_schema=False)
async def health_head(request: Request, model: ModelDep, settings: SettingsDep) -> Response:
    """GET's status, type and length, without the body."""
    answer = _health(model, settings)
    problem = await storage_problem(request)
    if problem is not None:
        full = _unavailable(answer, problem)
        return Response(status_code=503, media_type="application/json",
                        headers={"content-length": str(len(full.body)),
                                 "Retry-After": str(STORAGE_RETRY_AFTER_S)})
    body = JSONResponse(jsonable_encoder(HealthResponse.model_validate(answer))).body
    return Response(media_type="application/json", headers={"content-length": str(len(body))})
