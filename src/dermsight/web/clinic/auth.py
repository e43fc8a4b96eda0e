"""Login, logout, the current user, changing one's own password, per-user API tokens; admin:
users (list, create, unlock, disable, enable) and the audit log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession
from starlette.exceptions import HTTPException

from dermsight.clinic import accounts, audit
from dermsight.clinic.accounts import aware
from dermsight.clinic.models import ApiToken, AuditEvent, User, utcnow
from dermsight.clinic.runtime import Clinic
from dermsight.web.clinic.bodies import AuditQuery, LoginIn, TokenIn, UserIn, _Body
from dermsight.web.clinic.deps import (
    COOKIE,
    AdminUser,
    CurrentUser,
    ObjectId,
    admin_only,
    authenticate,
    clinic_of,
    route_session,
)
from dermsight.web.upload import check_query

router = APIRouter(tags=["clinic: accounts"])
#: the one answer for an unknown user name, an inactive account and a wrong password alike
WRONG_CREDENTIALS = "wrong user name or password"


def user_json(u: User) -> dict[str, Any]:
    return {"id": u.id, "username": u.username, "role": u.role}


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _https(request: Request) -> bool:
    return (request.url.scheme == "https"
            or request.headers.get("x-forwarded-proto", "").lower() == "https")


def _claim_attempt(clinic: Clinic, username: str, ip: str, refused: str) -> int:
    """Record a password check of ``username`` from ``ip`` before it is made (committed first:
    parallel guesses see it) and return its id; a 429 with ``Retry-After`` (``refused``: what
    was too many) when the account, the name or the address is locked."""
    with clinic.db.session() as s:
        attempt = accounts.claim_attempt(s, username, ip)
    with clinic.db.session() as s:
        wait = accounts.retry_after_s(s, username, ip, exclude=attempt)
        if wait:
            accounts.settle_attempt(s, attempt, None)
    if wait:
        raise HTTPException(429, f"{refused}: try again in {wait} s",
                            headers={"Retry-After": str(wait)})
    return attempt


@router.post("/auth/login", summary="Log in: sets the session cookie, returns the CSRF token")
def login(body: LoginIn, request: Request, response: Response) -> dict[str, Any]:
    clinic = clinic_of(request)
    ip = _client_ip(request)
    attempt = _claim_attempt(clinic, body.username, ip, "too many failed logins")
    with clinic.db.session() as s:
        user = accounts.verify_password(s, body.username, body.password)
        # the session is opened only if the account, locked now, is still active with the
        # hash just verified: a set-password or disable committed meanwhile makes this login
        # a failed one, as a wrong password (the old password no longer opens the account)
        if user is not None and not accounts.confirm_login(s, user, user.password_hash,
                                                           body.password):
            user = None
        accounts.settle_attempt(s, attempt, success=user is not None)
        if user is None:
            cookie, row = "", None
            _audit_failure(s, body.username, ip, attempt)
        else:
            old = request.cookies.get(COOKIE)
            if old:  # a new session id at every login: the browser's previous one ends
                accounts.close_session(s, old)
            cookie, row = accounts.open_session(s, user, clinic.config.session_idle)
            audit.record(s, user, "login", "user", user.id)
    if user is None or row is None:
        raise HTTPException(401, WRONG_CREDENTIALS)
    response.set_cookie(COOKIE, cookie, max_age=accounts.SESSION_DAYS * 86400, httponly=True,
                        samesite="strict", secure=_https(request) or clinic.config.secure_cookie,
                        path="/")
    return {"user": user_json(user), "csrf_token": row.csrf_token,
            # the web UI hides its page after this many minutes without activity
            "idle_minutes": clinic.config.session_idle_minutes}


def _audit_failure(s: DbSession, typed: str, ip: str, attempt: int | None = None) -> None:
    """Log a failed login to an existing account (``login_failed``; at most ``MAX_FAILURES``
    per account and window: the account's lock bounds them) and, when it completed a lock of
    the account or the address, one ``lockout`` per lock: several failures that complete it
    at once (parallel guesses, each let through before the others failed) log it once.
    ``attempt``: the failure's own ``LoginAttempt`` (None: taken as the one that began any lock
    of the address in place). Serialized (``accounts.hold_failure_lock``): an account's or a
    name's lock is logged unless a ``lockout`` about it was logged since the failure that began
    it (``accounts.lock_starts``); an address's by the failure that began it. A name that
    matches no account gets no ``login_failed``, and its lockouts, like every address's, are
    logged up to ``audit.LOCKOUTS_MAX`` within the window (``audit.record_lockout``): the log
    cannot be filled by guesses from many addresses."""
    accounts.hold_failure_lock(s, attempt)
    account = accounts.find_user(s, typed)
    if account is not None:
        audit.record_login(s, "login_failed", account, typed)
    began = accounts.lock_starts(s, typed, ip)
    if began.username is not None and not _lockout_logged(s, account, typed,
                                                          aware(began.username.at)):
        if account is not None:
            audit.record_login(s, "lockout", account, typed)
        else:
            audit.record_lockout(s, None, typed, address=False)
    if began.address is not None and attempt in (None, began.address.id):
        audit.record_lockout(s, account, typed, address=True)


def _lockout_logged(s: DbSession, account: User | None, typed: str, since: datetime) -> bool:
    """Whether a ``lockout`` of ``account`` (None: of the name ``typed``, which matches no
    account, ignoring case as logins do) was logged at ``since`` or later."""
    if account is not None:
        return s.scalar(select(AuditEvent.id).where(
            AuditEvent.action == "lockout", AuditEvent.object_type == "user",
            AuditEvent.object_id == account.id, AuditEvent.at >= since).limit(1)) is not None
    key = accounts.login_key(typed)
    # at most ``audit.LOCKOUTS_MAX`` such events within the window (``audit.record_lockout``)
    names = s.scalars(select(AuditEvent.username).where(
        AuditEvent.action == "lockout", AuditEvent.object_type == "unknown_user",
        AuditEvent.at >= since))
    return any(accounts.login_key(name or "") == key for name in names)


#: a bearer token on the routes that only a signed-in session may use
TOKEN_CANNOT_CREATE = ("an API token cannot create API tokens (a leaked one could otherwise "
                       "outlive its revocation): sign in and create it from your session")
TOKEN_CANNOT_CREATE_USER = ("an API token cannot create accounts (a leaked one could otherwise "
                            "make an account that outlives its revocation): sign in as an "
                            "administrator and create it from your session")
TOKEN_CANNOT_LOG_OUT = ("an API token is not a session and logging out does not end it: "
                        "revoke it with DELETE /api/v1/auth/tokens/{id} (GET "
                        "/api/v1/auth/tokens lists their ids)")


@router.post("/auth/logout", status_code=204, summary="Log out (ends the session)",
             responses={400: {"description": "sent with an API token instead of a session"}})
def logout(request: Request) -> Response:
    """A bearer API token is not ended by logging out: 400, saying how to revoke it (so that a
    script that "logs out" its token does not believe it is gone)."""
    auth = authenticate(request)
    if auth.session is None:  # cookie sessions need the CSRF header here too
        raise HTTPException(400, TOKEN_CANNOT_LOG_OUT)
    cookie = request.cookies.get(COOKIE)
    clinic = clinic_of(request)
    if cookie:
        # not ``route_session``: its check, after this deletes the request's own session, would
        # refuse the logout; a session ended meanwhile is deleted already (nothing to undo)
        with clinic.db.session() as s:
            accounts.close_session(s, cookie)
            audit.record(s, auth.user, "logout", "user", auth.user.id)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/auth/me", summary="The logged-in user, the session's CSRF token and the idle "
                                "timeout")
def me(request: Request) -> dict[str, Any]:
    auth = authenticate(request)
    return {"user": user_json(auth.user),
            "csrf_token": auth.session.csrf_token if auth.session else None,
            "idle_minutes": clinic_of(request).config.session_idle_minutes}


@router.get("/auth/tokens", summary="Your API tokens (never the token itself)",
            description="Each token that is not revoked, with `expires_at` (when it stops "
                        "working), `expired` (it has: a request with it is a 401; create a "
                        "new one), `expires_soon` (it stops working within 7 days) and "
                        "`expires_in_days` (whole days left).")
def list_tokens(request: Request, user: CurrentUser) -> list[dict[str, Any]]:
    with route_session(request) as s:
        rows = accounts.user_tokens(s, user)
    return [{"id": t.id, "name": t.name, **_token_times(t)} for t in rows]


def session_only(refusal: str, *, admin: bool) -> Callable[[Request], User]:
    """A dependency: the user of a signed-in session (cookie + CSRF), an administrator when
    ``admin``; 403 ``refusal`` for a bearer API token (even an administrator's: what a leaked
    token must not do), 403 for a user who is not an administrator."""
    def signed_in(request: Request) -> User:
        auth = authenticate(request)
        if auth.session is None:
            raise HTTPException(403, refusal)
        return admin_only(auth.user) if admin else auth.user

    return signed_in


session_user = session_only(TOKEN_CANNOT_CREATE, admin=False)
admin_session_user = session_only(TOKEN_CANNOT_CREATE_USER, admin=True)


class PasswordIn(_Body):
    """``POST /auth/password``: the user's own password now, and the new one."""

    current_password: str = Field(max_length=256)
    new_password: str = Field(max_length=accounts.MAX_PASSWORD)


#: a bearer token on ``POST /auth/password``
TOKEN_CANNOT_SET_PASSWORD = ("an API token cannot change a password (a leaked one could "
                             "otherwise lock its owner out): sign in and change it from your "
                             "session")
#: the current password typed to change it is not the account's
WRONG_CURRENT_PASSWORD = ("the current password is wrong: nothing was changed (failed tries "
                          "count towards the lock of failed sign-ins)")
SAME_PASSWORD = "the new password is the same as the current one: choose another one"

session_to_set_password = session_only(TOKEN_CANNOT_SET_PASSWORD, admin=False)


@router.post("/auth/password",
             summary="Change your own password (from a signed-in session only; audited)",
             description="Checks `current_password` (a wrong one is a 422 and counts as a "
                         "failed sign-in: after "
                         f"{accounts.MAX_FAILURES} within "
                         f"{int(accounts.FAILURE_WINDOW.total_seconds()) // 60} minutes, a 429 "
                         "until the lock ends), then sets `new_password` (the rules of every "
                         "new password; a refused one is a 422 saying why). Your other "
                         "sessions end and every API token of yours is revoked; this browser "
                         "stays signed in with a new session (new cookie, new `csrf_token`, "
                         "answered as by login, with `sessions_ended`: the other sessions "
                         "ended, and `tokens_revoked`). 403 with an API token. Logged as "
                         "`set_password` by you.",
             responses={403: {"description": "sent with an API token instead of a session"},
                        422: {"description": "the current password is wrong, or the new one "
                                             "is refused"},
                        429: {"description": "too many failed sign-ins or password checks"}})
def change_password(body: PasswordIn, request: Request, response: Response,
                    user: Annotated[User, Depends(session_to_set_password)]) -> dict[str, Any]:
    """The current password is checked as a login checks it (``login``: the attempt claimed
    first, so parallel guesses count against each other; a locked account or address is a
    429; a wrong password is a failed login, audited as one): this route is no way around the
    lock. The new password is set only if the account still has the password just verified
    (``accounts.set_password(replacing=)``); the request's own session is checked first
    (``route_session(check_at_once=True)``), as the new password ends it, and a new one is
    opened in the same transaction."""
    clinic = clinic_of(request)
    ip = _client_ip(request)
    attempt = _claim_attempt(clinic, user.username, ip,
                             "too many failed sign-ins or password checks")
    with clinic.db.session() as s:
        verified = accounts.verify_password(s, user.username, body.current_password)
        ok = verified is not None and verified.id == user.id
        verified_hash = verified.password_hash if verified is not None and ok else ""
        accounts.settle_attempt(s, attempt, success=ok)
        if not ok:
            _audit_failure(s, user.username, ip, attempt)
    if not ok:
        raise HTTPException(422, WRONG_CURRENT_PASSWORD)
    if body.new_password == body.current_password:
        raise HTTPException(422, SAME_PASSWORD)
    with route_session(request, check_at_once=True) as s:
        try:
            ended = accounts.set_password(s, user, body.new_password, replacing=verified_hash)
        except accounts.PasswordChangedMeanwhile as exc:
            raise HTTPException(409, str(exc)) from exc
        except accounts.AccountError as exc:
            raise HTTPException(422, str(exc)) from exc
        audit.record(s, user, "set_password", "user", user.id)
        cookie, row = accounts.open_session(s, user, clinic.config.session_idle)
    response.set_cookie(COOKIE, cookie, max_age=accounts.SESSION_DAYS * 86400, httponly=True,
                        samesite="strict", secure=_https(request) or clinic.config.secure_cookie,
                        path="/")
    return {"user": user_json(user), "csrf_token": row.csrf_token,
            "idle_minutes": clinic.config.session_idle_minutes,
            # the request's own session is among those ``set_password`` ended
            "sessions_ended": max(ended.sessions - 1, 0), "tokens_revoked": ended.tokens}


@router.post("/auth/tokens", status_code=201,
             summary="A new API token (shown once; from a signed-in session only)",
             description=f"`days`: how long it works, {accounts.TOKEN_DAYS_MIN}-"
                         f"{accounts.TOKEN_DAYS_MAX} (default {accounts.TOKEN_DAYS}; another "
                         "value is a 422). The answer's `expires_at` says until when; after "
                         "that a request with it is a 401 saying so, and a new token must be "
                         "created.")
def create_token(body: TokenIn, request: Request, user: Annotated[User, Depends(session_user)]
                 ) -> dict[str, Any]:
    """Only a session may create a token: a token that made tokens would let whoever holds a
    leaked one keep access after it is revoked. The token is committed only if the session
    still exists and the account is active (``deps.route_session``, the check every
    authenticated clinic route makes): a set-password or disable committed since the session
    was checked refuses it (401), one committed later revokes it."""
    with route_session(request) as s:
        try:
            token, row = accounts.create_token(s, user, body.name,
                                               accounts.TOKEN_DAYS if body.days is None
                                               else body.days)
        except accounts.AccountError as exc:
            raise HTTPException(422, str(exc)) from exc
        audit.record(s, user, "create", "api_token", row.id)
    return {"id": row.id, "name": row.name, "token": token,
            "expires_at": aware(row.expires_at).isoformat()}


@router.delete("/auth/tokens/{token_id}", status_code=204, summary="Revoke one of your tokens")
def revoke_token(token_id: ObjectId, request: Request, user: CurrentUser
                 ) -> Response:
    """The request's access is checked first (``route_session(check_at_once=True)``): a token
    may revoke itself, which a check after the revocation would refuse."""
    with route_session(request, check_at_once=True) as s:
        if not accounts.revoke_token(s, user, token_id):
            raise HTTPException(404, f"you have no API token with id {token_id}")
        audit.record(s, user, "delete", "api_token", token_id)
    return Response(status_code=204)


def _account_json(u: User, locked_until: dict[str, datetime]) -> dict[str, Any]:
    """An account as the admin's list shows it: ``locked`` (by its failed logins, now) and
    ``locked_until`` (when that lock ends; null when not locked)."""
    until = locked_until.get(u.username)
    return {**user_json(u), "active": u.active, "created_at": aware(u.created_at).isoformat(),
            "locked": until is not None, "locked_until": until.isoformat() if until else None}


@router.get("/admin/users", summary="Every account (admin)",
            description="Each account with `active` (false: disabled) and `locked` (its failed "
                        f"logins lock it now: {accounts.MAX_FAILURES} within "
                        f"{int(accounts.FAILURE_WINDOW.total_seconds()) // 60} minutes) with "
                        "`locked_until` (when the lock ends; null when not locked).")
def list_users(request: Request, admin: AdminUser) -> list[dict[str, Any]]:
    with route_session(request) as s:
        users = list(s.scalars(select(User).order_by(User.id)))
        locked = accounts.locked_until(s, [u.username for u in users])
    return [_account_json(u, locked) for u in users]


def _account(s: DbSession, user_id: int) -> User:
    user = s.get(User, user_id)
    if user is None:
        raise HTTPException(404, f"no user with id {user_id}")
    return user


def _one_account_json(s: DbSession, user: User) -> dict[str, Any]:
    return _account_json(user, accounts.locked_until(s, [user.username]))


#: a bearer token on ``POST /admin/users/{id}/unlock``
TOKEN_CANNOT_UNLOCK = ("an API token cannot unlock accounts (a leaked one could otherwise lift "
                       "the failed-login lock again and again): sign in as an administrator "
                       "and unlock it from your session")

admin_session_to_unlock = session_only(TOKEN_CANNOT_UNLOCK, admin=True)


@router.post("/admin/users/{user_id}/unlock",
             summary="Unlock an account its failed logins locked (admin, from a signed-in "
                     "session only; audited)",
             description="The account's failed logins stop counting against it (they stay in "
                         "the audit log as `login_failed`), so the user can sign in at once. A "
                         "lock of a client address (20 failures from it) is not an account's "
                         "and stays: those failures still count against their address. 403 "
                         "with an API token. Answers the account as `GET /admin/users` lists "
                         "it.")
def unlock_user(user_id: ObjectId, request: Request,
                admin: Annotated[User, Depends(admin_session_to_unlock)]) -> dict[str, Any]:
    with route_session(request) as s:
        user = _account(s, user_id)
        accounts.unlock(s, user)
        audit.record(s, admin, "unlock", "user", user.id)
        return _one_account_json(s, user)


@router.post("/admin/users/{user_id}/disable",
             summary="Disable an account: it cannot sign in; its sessions end and its API "
                     "tokens are revoked (admin; audited)",
             description="409 for your own account and for the last active administrator. "
                         "Enabling it again brings no session or token back. Answers the "
                         "account as `GET /admin/users` lists it.")
def disable_user(user_id: ObjectId, request: Request, admin: AdminUser) -> dict[str, Any]:
    with route_session(request) as s:
        user = _account(s, user_id)
        if user.id == admin.id:
            raise HTTPException(409, "you cannot disable your own account: ask another "
                                     "administrator")
        try:
            accounts.disable(s, user)
        except accounts.AccountError as exc:
            raise HTTPException(409, str(exc)) from exc
        audit.record(s, admin, "disable", "user", user.id)
        return _one_account_json(s, user)


#: a bearer token on ``POST /admin/users/{id}/enable``
TOKEN_CANNOT_ENABLE = ("an API token cannot enable accounts (a leaked one could otherwise give "
                       "back access that outlives its revocation): sign in as an "
                       "administrator and enable it from your session")

admin_session_to_enable = session_only(TOKEN_CANNOT_ENABLE, admin=True)


@router.post("/admin/users/{user_id}/enable",
             summary="Enable a disabled account (admin, from a signed-in session only; "
                     "audited)",
             description="The user signs in again: no earlier session or API token comes "
                         "back. An active account is left as it is. Answers the account as "
                         "`GET /admin/users` lists it.")
def enable_user(user_id: ObjectId, request: Request,
                admin: Annotated[User, Depends(admin_session_to_enable)]) -> dict[str, Any]:
    with route_session(request) as s:
        user = _account(s, user_id)
        if not user.active:
            accounts.enable(s, user)
            audit.record(s, admin, "enable", "user", user.id)
        return _one_account_json(s, user)


@router.post("/admin/users", status_code=201,
             summary="Create an account (admin; from a signed-in session only)")
def create_user(body: UserIn, request: Request,
                admin: Annotated[User, Depends(admin_session_user)]) -> dict[str, Any]:
    """Only a session may create an account: an account made with a leaked token (an
    administrator's, say) would keep access after the token is revoked."""
    with route_session(request) as s:
        try:
            user = accounts.create_user(s, body.username, body.password, body.role)
        except accounts.AccountError as exc:
            status = 409 if isinstance(exc, accounts.AccountExists) else 422
            raise HTTPException(status, str(exc)) from exc
        audit.record(s, admin, "create", "user", user.id)
    return user_json(user)


#: the query parameters of ``GET /admin/audit`` (any other is a 422 naming it)
AUDIT_QUERY = tuple(AuditQuery.model_fields)
AUDIT_DESCRIPTION = (
    f"At most `limit` events (1-{audit.PAGE_MAX}, default 100), newest first, each with its "
    "`id`. The next, older page: `before=<the last event's id>`. Filters (combined): `user` "
    "(a user name, exactly), `action`, `object_type`, `object_id`, `patient` (a patient's id: "
    "the events about the patient, their lesions, visits, visit images, diagnoses and exports, "
    "also after the patient's deletion; events logged before this release carry no patient "
    "and are not found by it). Another query parameter is a 422 naming it.")


@router.get("/admin/audit", summary="The audit log, newest first (ids and times only; admin)",
            description=AUDIT_DESCRIPTION)
def audit_log(request: Request, admin: AdminUser,
              params: Annotated[AuditQuery, Query()]) -> list[dict[str, Any]]:
    check_query(request, AUDIT_QUERY)
    if params.action and params.action not in audit.ACTIONS:
        raise HTTPException(422, f"action {params.action!r} is not one the audit log records: "
                                 f"one of {', '.join(audit.ACTIONS)}")
    where = audit.Filter(user=params.user or None, action=params.action or None,
                         object_type=params.object_type or None, object_id=params.object_id,
                         patient_id=params.patient)
    with route_session(request) as s:
        return audit.query(s, params.limit, params.before, where)


def _token_times(t: ApiToken) -> dict[str, Any]:
    """A token's dates as the lists show them, ``expired`` and ``expires_soon`` (it stops
    working within ``accounts.EXPIRES_SOON``, 7 days) with ``expires_in_days`` (whole days
    left, rounded down; 0 in its last day)."""
    now = utcnow()
    expires = aware(t.expires_at)
    left = expires - now
    return {"created_at": aware(t.created_at).isoformat(),
            "last_used_at": aware(t.last_used_at).isoformat() if t.last_used_at else None,
            "expires_at": expires.isoformat(),
            "expired": expires <= now,
            "expires_soon": now < expires <= now + accounts.EXPIRES_SOON,
            "expires_in_days": max(left.days, 0)}


@router.get("/admin/tokens", summary="Every user's API tokens (admin; never the token itself)",
            description="Each token, revoked ones too (`revoked_at`), with its `user`, `name`, "
                        "dates, `expired` and `expires_soon` (it stops working within 7 days).")
def list_all_tokens(request: Request, admin: AdminUser) -> list[dict[str, Any]]:
    with route_session(request) as s:
        rows = accounts.all_tokens(s)
    return [{"id": t.id, "name": t.name, "user": username, "user_id": t.user_id,
             **_token_times(t),
             "revoked_at": aware(t.revoked_at).isoformat() if t.revoked_at else None}
            for t, username in rows]


@router.delete("/admin/tokens/{token_id}", status_code=204,
               summary="Revoke any user's API token (admin; audited)")
def admin_revoke_token(token_id: ObjectId, request: Request, admin: AdminUser) -> Response:
    """Checked first, as ``revoke_token``: an administrator's token may revoke itself."""
    with route_session(request, check_at_once=True) as s:
        if not accounts.revoke_token(s, None, token_id):
            raise HTTPException(404, f"there is no API token with id {token_id} that is not "
                                     "revoked")
        audit.record(s, admin, "delete", "api_token", token_id)
    return Response(status_code=204)
