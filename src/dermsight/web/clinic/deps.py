"""Dependencies of the clinic routes: the open clinic, the logged-in user, CSRF, roles.

A request is authenticated by ``Authorization: Bearer <per-user API token>`` or by the session
cookie; a cookie-authenticated unsafe request (POST/PUT/PATCH/DELETE) must also send
``X-CSRF-Token`` (the token login returned), else 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from starlette.exceptions import HTTPException

from dermsight.clinic import accounts
from dermsight.clinic.models import Session, User
from dermsight.clinic.runtime import Clinic

COOKIE = "dermsight_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def clinic_of(request: Request) -> Clinic:
    """The clinic the lifespan opened (``app.state.clinic``)."""
    clinic: Clinic = request.app.state.clinic
    return clinic


@dataclass(frozen=True)
class Auth:
    user: User
    session: Session | None  # None when a bearer token authenticated the request


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def authenticate(request: Request) -> Auth:
    clinic = clinic_of(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("send 'Authorization: Bearer <your API token>'")
        with clinic.db.session() as s:
            user = accounts.token_user(s, token.strip())
        if user is None:
            raise _unauthorized("unknown or revoked API token")
        return Auth(user, None)
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise _unauthorized("not logged in")
    with clinic.db.session() as s:
        found = accounts.session_user(s, cookie, clinic.config.session_idle)
    if found is None:
        raise _unauthorized(
            f"the session has ended (logged out, {clinic.config.session_idle_minutes} minutes "
            "without activity, or 7 days old): log in again")
    row, user = found
    if request.method in UNSAFE and not accounts.csrf_ok(row, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header (log in again to get "
                                 "a fresh token)")
    return Auth(user, row)


def current_user(request: Request) -> User:
    return authenticate(request).user


def require_admin(request: Request) -> User:
    user = current_user(request)
    if user.role != "admin":
        raise HTTPException(403, "this needs the admin role")
    return user


#: route parameters: the logged-in user / an admin (401 / 403 otherwise)
CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(require_admin)]
#: a path id: a positive 32-bit integer (PostgreSQL's INTEGER; larger ids exist nowhere: 404 or 422)
ObjectId = Annotated[int, Path(ge=1, le=2_147_483_647)]
