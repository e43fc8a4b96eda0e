"""Dependencies of the clinic routes: the open clinic, the logged-in user, CSRF, roles.

A request is authenticated by ``Authorization: Bearer <per-user API token>`` or by the session
cookie; a cookie-authenticated unsafe request (POST/PUT/PATCH/DELETE) must also send
``X-CSRF-Token`` (the token login returned), else 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy import event
from sqlalchemy.orm import Session as DbSession
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


#: the 401 details; each says what happened and what to do (the web UI shows them as sentences)
NOT_SIGNED_IN = "you are not signed in: sign in first"
BAD_AUTH_HEADER = "send your API token as 'Authorization: Bearer <token>'"
DISABLED = "your account has been disabled: ask the clinic's administrator"
TOKEN_REFUSED = {
    accounts.Refused.UNKNOWN: "this API token is not known to the server: check it, or create "
                              "a new one",
    accounts.Refused.REVOKED: "this API token has been revoked: create a new one",
    accounts.Refused.DISABLED: DISABLED,
    accounts.Refused.SHARED: "this is the server's shared API token (DERMSIGHT_API_TOKEN): it "
                             "opens only the stateless routes (predict, model, examples); the "
                             "clinic's routes need a user: sign in, or send a per-user API "
                             "token",
}


def token_expired(expired: accounts.TokenExpired) -> str:
    """The 401 detail of an API token past its expiry: when, and that a new one is needed
    (an expired token cannot be extended)."""
    when = expired.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"this API token expired on {when}: create a new one (signed in, on the Account "
            "page or with POST /api/v1/auth/tokens) and use it instead")


def _minutes(n: int) -> str:
    return f"{n} minute" if n == 1 else f"{n} minutes"


def session_refused(why: accounts.Refused, idle_minutes: int) -> str:
    """The 401 detail of a session cookie that authenticates nobody
    (``accounts.session_lookup``)."""
    if why is accounts.Refused.IDLE:
        return (f"your session ended (signed out after {_minutes(idle_minutes)} without "
                "activity): sign in again")
    if why is accounts.Refused.EXPIRED:
        return (f"your session ended (signed out {accounts.SESSION_DAYS} days after signing "
                "in): sign in again")
    if why is accounts.Refused.DISABLED:
        return DISABLED
    # deleted: signed out, or ended by the idle timeout or its age and cleaned up since
    return (f"your session ended (you signed out, or it was closed after "
            f"{_minutes(idle_minutes)} without activity or {accounts.SESSION_DAYS} days): "
            "sign in again")


def authenticate(request: Request) -> Auth:
    clinic = clinic_of(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized(BAD_AUTH_HEADER)
        shared = request.app.state.settings.api_token
        with clinic.db.session() as s:
            user = accounts.token_lookup(s, token.strip(), shared)
        if isinstance(user, accounts.TokenExpired):
            raise _unauthorized(token_expired(user))
        if isinstance(user, accounts.Refused):
            raise _unauthorized(TOKEN_REFUSED[user])
        request.state.clinic_grant = Grant(user.id, None, accounts.sha256(token.strip()))
        return Auth(user, None)
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise _unauthorized(NOT_SIGNED_IN)
    with clinic.db.session() as s:
        found = accounts.session_lookup(s, cookie, clinic.config.session_idle)
    if isinstance(found, accounts.Refused):
        raise _unauthorized(session_refused(found, clinic.config.session_idle_minutes))
    row, user = found
    if request.method in UNSAFE and not accounts.csrf_ok(row, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"this request lacks the session's security token, or has an "
                                 f"out-of-date one (the {CSRF_HEADER} header): reload the page, "
                                 f"or sign in again")
    request.state.clinic_grant = Grant(user.id, row.id, None)
    return Auth(user, row)


@dataclass(frozen=True)
class Grant:
    """What authenticated a request (``authenticate``), for ``recheck``: the user, and the
    session's id (the cookie's hash) or the API token's hash."""

    user_id: int
    session_id: str | None
    token_hash: str | None


#: a request whose session was ended (signed out, a new password) while it ran
SESSION_ENDED = "your session ended while this request was running: sign in again"


def recheck(db: DbSession, request: Request, *, at_once: bool = False) -> None:
    """In a route's transaction: just before it commits, a 401 (the transaction rolled
    back, nothing written) when the session or API token that authenticated the request was
    ended or revoked, or its account disabled, while the request ran (``authenticate`` checked
    it in a transaction of its own, maybe seconds earlier: an upload is assessed in between).
    The check (``accounts.still_granted``) runs after the route's writes, when this
    transaction holds SQLite's write lock, and locks the account's row (PostgreSQL), so such a
    change is either committed before it (refused) or waits for this commit and ends the
    access after it. ``at_once``: the check runs now instead, before the route's writes (for a
    route that may end the very access that authenticated it, which a check after its write
    would refuse); the lock it takes (SQLite's write lock, the account's row) is held to the
    commit all the same. Routes use it through ``route_session``."""
    grant: Grant | None = getattr(request.state, "clinic_grant", None)
    if grant is None:  # pragma: no cover - every clinic route authenticates first
        return

    # a read (not an UNSAFE method) is checked without taking the account's lock: nothing it
    # does needs ordering against a disable or sign-out; SQLite's write lock stays free
    writes = request.method in UNSAFE

    def check(session: DbSession) -> None:
        why = accounts.still_granted(session, grant.user_id, grant.session_id,
                                     grant.token_hash, lock=writes)
        if why is None:
            return
        if why is accounts.Refused.DISABLED:
            raise _unauthorized(DISABLED)
        if grant.session_id is None:
            raise _unauthorized(TOKEN_REFUSED[why])
        raise _unauthorized(SESSION_ENDED)

    if at_once:
        check(db)
    else:
        event.listen(db, "before_commit", check, once=True)


@contextmanager
def route_session(request: Request, *, check_at_once: bool = False) -> Iterator[DbSession]:
    """The transaction of an authenticated clinic route, reads and writes alike:
    ``clinic.db.session()`` with ``recheck`` registered on it, so that a request whose session
    or API token was ended, or whose account was disabled, while it ran is refused (401,
    nothing written, nothing handed out) instead of completed. Every authenticated clinic
    route opens its transactions with it (``store_visit`` and ``rights.delete_patient``, which
    open their own, take ``recheck``). Not for login and logout (logout deletes the very
    session that authenticated it). ``check_at_once``: ``recheck(at_once=True)``, for a route
    that may end its own access (a token revoking itself)."""
    with clinic_of(request).db.session() as s:
        recheck(s, request, at_once=check_at_once)
        yield s


def current_user(request: Request) -> User:
    return authenticate(request).user


def admin_only(user: User) -> User:
    """``user`` if an administrator, else 403."""
    if user.role != "admin":
        raise HTTPException(403, "only an administrator can do this: ask the clinic's "
                                 "administrator")
    return user


def require_admin(request: Request) -> User:
    return admin_only(current_user(request))


#: route parameters: the logged-in user / an admin (401 / 403 otherwise)
CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(require_admin)]
#: a path id: a positive 32-bit integer (PostgreSQL's INTEGER; larger ids exist nowhere: 404 or 422)
ObjectId = Annotated[int, Path(ge=1, le=2_147_483_647)]
