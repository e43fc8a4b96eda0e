"""What the routes get through ``Depends``: the settings, the loaded model, the inference workers
and the API-token check.

All of them read ``request.app.state``: ``create_app`` puts the ``Settings`` there, the lifespan
(``lifespan.py``) the model and the workers. The three getters are ``async`` because FastAPI runs a
plain ``def`` dependency in a worker thread: a thread hop per dependency per request. A route
declares what it needs with the annotated aliases (``settings: SettingsDep``, ``model: ModelDep``,
``workers: WorkersDep``);
``require_token`` guards a whole router (``create_app`` applies it to every router but health and
the docs) or a single route (``dependencies=[Depends(require_token)]``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from dermsight.predict import Dermsight
from dermsight.web.settings import Settings

T = TypeVar("T")

NOT_STARTED = ("the service has not started: the app's lifespan loads the model (an ASGI server "
               "runs it; in tests use 'with TestClient(app)')")


class Workers:
    """Worker threads for the blocking work of requests (decode, inference; ONNX Runtime releases
    the GIL): at most ``settings.workers`` at a time, and large decodes
    (``io.decode.decode_cost`` over ``HEAVY_DECODE_BYTES``) one at a time beside them, so that big
    uploads can never hold every worker."""

    def __init__(self, workers: int) -> None:
        self.normal = anyio.CapacityLimiter(workers)
        self.heavy = anyio.CapacityLimiter(1)

    async def run(self, fn: Callable[[], T], heavy: bool = False) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self.heavy if heavy else self.normal)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_model(request: Request) -> Dermsight:
    model: Dermsight | None = getattr(request.app.state, "model", None)
    if model is None:
        raise RuntimeError(NOT_STARTED)
    return model


async def get_workers(request: Request) -> Workers:
    workers: Workers | None = getattr(request.app.state, "workers", None)
    if workers is None:
        raise RuntimeError(NOT_STARTED)
    return workers


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelDep = Annotated[Dermsight, Depends(get_model)]
WorkersDep = Annotated[Workers, Depends(get_workers)]

bearer = HTTPBearer(auto_error=False, description="Set by the operator with DERMSIGHT_API_TOKEN.")
TOKEN_REFUSED = "missing or invalid API token: send 'Authorization: Bearer <token>'"


async def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """401 unless the request carries ``Authorization: Bearer <DERMSIGHT_API_TOKEN>``; lets every
    request through when the operator set no token. Compared in constant time."""
    if not settings.api_token:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    if credentials is None or not hmac.compare_digest(given, settings.api_token.encode()):
        raise HTTPException(status_code=401, detail=TOKEN_REFUSED,
                            headers={"WWW-Authenticate": "Bearer"})
