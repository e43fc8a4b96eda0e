"""``include_clinic``: put the clinic routers on an app and map clinic errors to 4xx answers.

``create_app`` calls it when storage is on (``Settings.clinic``); the lifespan opens the clinic
(``app.state.clinic``: database, migrations, image store) and closes it at shutdown. The routes
authenticate their users themselves (``deps.py``), so the shared ``DERMSIGHT_API_TOKEN`` does not
apply to them.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from dermsight.clinic.accounts import AccountError
from dermsight.clinic.cases import Conflict, NotFound
from dermsight.clinic.sites import InvalidValue
from dermsight.web.clinic import auth, cases, figures

_STATUS: dict[type[Exception], int] = {NotFound: 404, Conflict: 409, AccountError: 422,
                                       InvalidValue: 422}


async def clinic_error(request: Request, exc: Exception) -> Response:
    status = next(code for kind, code in _STATUS.items() if isinstance(exc, kind))
    return JSONResponse({"detail": str(exc)}, status_code=status)


def include_clinic(app: FastAPI, prefix: str) -> None:
    for kind in _STATUS:
        app.add_exception_handler(kind, clinic_error)
    for module in (auth, cases, figures):
        app.include_router(module.router, prefix=prefix)
