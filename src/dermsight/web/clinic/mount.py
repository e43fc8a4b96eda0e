"""``mount_clinic``: put the clinic routers on an app and map clinic errors to 4xx answers."""

from __future__ import annotations

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from dermsight.clinic.accounts import AccountError
from dermsight.clinic.cases import Conflict, NotFound
from dermsight.clinic.runtime import Clinic
from dermsight.web.clinic import auth, cases, figures


def mount_clinic(app: FastAPI, clinic: Clinic, prefix: str, workers: int) -> None:
    """Needs ``app.state.model`` and ``app.state.settings`` (``create_app`` sets both)."""
    app.state.clinic = clinic
    app.state.clinic_limiter = anyio.CapacityLimiter(workers)

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    async def conflict(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    async def account(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(AccountError, account)
    for module in (auth, cases, figures):
        app.include_router(module.router, prefix=prefix)
