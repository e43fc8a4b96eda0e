"""``GET /api/v1/health``: liveness and the model's identity (public, for load balancers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from dermsight import __version__
from dermsight.web.deps import ModelDep, SettingsDep
from dermsight.web.routes import API
from dermsight.web.schemas import HealthResponse
from dermsight.web.settings import MIB

router = APIRouter(prefix=API, tags=["service"])


@router.get("/health", response_model=HealthResponse, summary="Liveness and model identity")
async def health(model: ModelDep, settings: SettingsDep) -> dict[str, Any]:
    return {"status": "ok", "model": model.info, "dermsight": __version__,
            "clinic": settings.clinic is not None,
            "max_upload_mb": settings.max_upload_bytes / MIB}
