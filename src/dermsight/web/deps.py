"""What the routes get through ``Depends``: the settings, the loaded model, the inference workers
and the API-token check.

All of them read ``request.app.state``: ``create_app`` puts the ``Settings`` there, the lifespan
(``lifespan.py``) the model and the workers. The three getters are ``async`` because FastAPI runs a
plain ``def`` dependency in a worker thread: a thread hop per dependency per request. A route
declares what it needs with the annotated aliases (``settings: SettingsDep``, ``model: ModelDep``,
``workers: WorkersDep``);
``require_token`` guards a whole router (``create_app`` applies it to every router but health and
the docs) or a single route (``dependencies=[Depends(require_token)]``). A read-only route marked
with ``open_to_clinic_users`` (the reference thumbnails that clinic pages show) also lets a
signed-in clinic user through without the shared token, checked as the clinic's own routes check
one (``web/clinic/deps.py``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from dermsight.predict import Dermsight
from dermsight.web.settings import Settings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

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


#: endpoints that a signed-in clinic user may call without the shared token (``require_token``)
_OPEN_TO_CLINIC_USERS: set[Callable[..., Any]] = set()
#: ... and only to read
_READ_METHODS = frozenset({"GET", "HEAD"})


def open_to_clinic_users(endpoint: F) -> F:
    """Marks a read-only route's endpoint (a decorator, beside ``@router.get``) as open to a
    signed-in clinic user (a live session cookie or a per-user API token)
    without the shared token, e.g. the reference thumbnails a clinic page shows. Every other
    request to it still needs the shared token, when one is set."""
    _OPEN_TO_CLINIC_USERS.add(endpoint)
    return endpoint


async def _clinic_user_allowed(request: Request) -> bool:
    """Whether the request is a read of an ``open_to_clinic_users`` route by a signed-in clinic
    user (clinic storage on; the user checked by the clinic's own ``authenticate``).

    Raises the clinic's own 401 when the request's Bearer credential is a known per-user API
    token refused for a reason of its own (expired, revoked, its account disabled): the user
    learns why, as on the clinic's routes, rather than the generic shared-token text."""
    if (request.method not in _READ_METHODS
            or request.scope.get("endpoint") not in _OPEN_TO_CLINIC_USERS
            or getattr(request.app.state, "clinic", None) is None):
        return False
    # imported here: the clinic's modules (SQLAlchemy) load only when storage is on
    from dermsight.clinic.accounts import Refused
    from dermsight.web.clinic.deps import BAD_AUTH_HEADER, TOKEN_REFUSED, authenticate

    try:
        await anyio.to_thread.run_sync(authenticate, request)  # the database: off the event loop
    except HTTPException as exc:
        # with a Bearer header, every other refusal names a token the server knows; an unknown
        # token (perhaps a mistyped shared one) or a malformed header keeps the generic text
        generic = {BAD_AUTH_HEADER, TOKEN_REFUSED[Refused.UNKNOWN], TOKEN_REFUSED[Refused.SHARED]}
        if (exc.status_code == 401 and isinstance(exc.detail, str) and exc.detail not in generic
                and request.headers.get("authorization") is not None):
            raise
        return False
    return True


async def require_token(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """401 unless the request carries ``Authorization: Bearer <DERMSIGHT_API_TOKEN>``; lets every
    request through when the operator set no token. Compared in constant time. A route marked
    ``open_to_clinic_users`` also admits a signed-in clinic user, and tells the holder of an
    expired or revoked per-user API token so (``_clinic_user_allowed``)."""
    if not settings.api_token:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    if credentials is not None and hmac.compare_digest(given, settings.api_token.encode()):
        return
    if await _clinic_user_allowed(request):
        return
    raise HTTPException(status_code=401, detail=TOKEN_REFUSED,
                        headers={"WWW-Authenticate": "Bearer"})
