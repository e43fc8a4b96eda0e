"""``GET /api/v1/health``: liveness and the model's identity (public, for load balancers);
``HEAD`` answers the same status and headers without the body (uptime checkers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from dermsight import __version__
from dermsight.predict import Dermsight
from dermsight.web.deps import ModelDep, SettingsDep
from dermsight.web.routes import API
from dermsight.web.schemas import HealthResponse
from dermsight.web.settings import MIB, Settings

router = APIRouter(prefix=API, tags=["service"])


def _health(model: Dermsight, settings: Settings) -> dict[str, Any]:
    return {"status": "ok", "model": model.info, "dermsight": __version__,
            "clinic": settings.clinic is not None,
            "max_upload_mb": settings.max_upload_bytes / MIB}


@router.get("/health", response_model=HealthResponse, summary="Liveness and model identity",
            description="Public (no token). `HEAD /api/v1/health` is served too, for uptime "
                        "checkers: the same status and headers, no body; it is not listed as "
                        "an operation of its own in this document.")
async def health(model: ModelDep, settings: SettingsDep) -> dict[str, Any]:
    return _health(model, settings)


@router.head("/health", include_in_schema=False)
async def health_head(model: ModelDep, settings: SettingsDep) -> Response:
    """GET's status, type and length, without the body."""
    answer = HealthResponse.model_validate(_health(model, settings))
    body = JSONResponse(jsonable_encoder(answer)).body
    return Response(media_type="application/json", headers={"content-length": str(len(body))})
