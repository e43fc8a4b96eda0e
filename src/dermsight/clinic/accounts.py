"""Local accounts: argon2 password hashes (new passwords checked against the username and by
zxcvbn), server-side sessions with a CSRF token, per-user API tokens (stored as sha256, each
with an expiry), and login rate limiting kept in the database (shared by instances)."""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session as DbSession

from dermsight.clinic.config import SESSION_DAYS
from dermsight.clinic.db import add_unique, casekey, taken_ignoring_case
from dermsight.clinic.models import ROLES, ApiToken, LoginAttempt, Session, User, utcnow

#: failures per username within the window before logins to it are refused
MAX_FAILURES = 5
#: failures from one client address within the window before logins from it are refused: higher
#: than per username, because a clinic behind one NAT or proxy shares an address, and one
#: colleague's typos must not lock everyone else out
MAX_ADDRESS_FAILURES = 20
FAILURE_WINDOW = timedelta(minutes=15)
MIN_PASSWORD = 8
MAX_PASSWORD = 256
#: an API token's lifetime in days: the default, and the range ``create_token`` accepts
TOKEN_DAYS = 90
TOKEN_DAYS_MIN = 1
TOKEN_DAYS_MAX = 365
USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")

_hasher = PasswordHasher()
#: verified against when the username does not exist, so both cases take the same time
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class AccountError(ValueError):
    """A user-caused problem with an account request (bad username, weak password)."""


class AccountExists(AccountError):
    """The username is taken."""


class Refused(enum.Enum):
    """Why a session cookie or an API token authenticates nobody (``session_lookup``,
    ``token_lookup``). Only the holder of the cookie or token learns it: it says nothing about
    whether a username exists."""

    UNKNOWN = "unknown"  # never issued, signed out, or ended and cleaned up since
    EXPIRED = "expired"  # a session past its 7 days (an expired token: ``TokenExpired``)
    IDLE = "idle"  # a session unused for longer than the idle timeout (deleted now)
    REVOKED = "revoked"  # an API token its owner revoked
    DISABLED = "disabled"  # the account is no longer active
    SHARED = "shared"  # the server's shared API token, which opens no clinic route


def aware(t: datetime) -> datetime:
    """SQLite returns naive datetimes: they were stored in UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_username(username: str) -> str:
    name = username.strip()
    if not 1 <= len(name) <= 64 or not set(name) <= USERNAME_CHARS:
        raise AccountError("a username is 1-64 characters: letters A-Z, digits and . _ - @ "
                           "(no spaces or accents)")
    return name


#: the lowest zxcvbn score (0-4) a new password must reach: 3 is "safely unguessable:
#: moderate protection from an offline slow-hash scenario" (zxcvbn's scale; argon2id here)
MIN_PASSWORD_SCORE = 3
#: zxcvbn refuses longer inputs; a longer password is judged by its start (the rest only adds)
_SCORED_PREFIX = 72
#: words of this product a password should not lean on (zxcvbn's ``user_inputs``)
#: and the words of its field (a clinic's staff reaches for them first)
_PRODUCT_WORDS = ("dermsight", "derm", "clinic", "clinical", "skin", "cancer", "skincancer",
                  "melanoma", "dermoscopy", "dermoscope", "dermatoscopy", "dermatology",
                  "dermatologist", "naevus", "naevi", "nevus", "nevi", "mole", "moles",
                  "lesion", "lesions", "hospital", "patient", "biopsy", "carcinoma")
#: how a refusal ends: what to choose instead
EXAMPLE = "e.g. four or five unrelated words, or a password manager's random one"


def _sentence_part(text: str) -> str:
    """zxcvbn's feedback sentence as part of a one-line message: lower-case first letter, no
    final full stop."""
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def check_password(password: str, username: str | None = None) -> None:
    """Refuse (``AccountError``, a message that says what to do) a password with a space at
    either end, of another length than ``MIN_PASSWORD``-``MAX_PASSWORD``, equal to
    ``username`` ignoring case, or easy to guess: below ``MIN_PASSWORD_SCORE`` by zxcvbn (its
    dictionaries of common passwords, names and words, keyboard patterns, dates, repeats and
    l33t spellings; the username, the product's name and words of its field
    (``_PRODUCT_WORDS``: skin, melanoma, dermoscopy, clinic...) count as known words), with zxcvbn's
    own feedback in the message."""
    # the API and the sign-in form strip every text field: a password made elsewhere (the
    # command line) with a space at either end could never be typed in to sign in
    if password != password.strip():
        raise AccountError("a password may not start or end with a space (sign-in ignores "
                           "them)")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password is {MIN_PASSWORD}-{MAX_PASSWORD} characters long "
                           f"(this one has {len(password)})")
    name = (username or "").strip()
    if name and casekey(password) == casekey(name):
        raise AccountError(f"the password may not be the user name (ignoring case): choose "
                           f"another one, {EXAMPLE}")
    # imported here: its dictionaries (a few MB) are loaded only when an account is made
    from zxcvbn import zxcvbn

    verdict = zxcvbn(password[:_SCORED_PREFIX],
                     user_inputs=[name, *_PRODUCT_WORDS] if name else list(_PRODUCT_WORDS))
    if verdict["score"] >= MIN_PASSWORD_SCORE:
        return
    feedback = verdict["feedback"]
    why = _sentence_part(feedback.get("warning") or "")
    hints = [_sentence_part(h) for h in feedback.get("suggestions") or [] if h.strip()]
    raise AccountError("this password is too easy to guess" + (f" ({why})" if why else "")
                       + ": " + "; ".join([*hints, f"choose a longer one, {EXAMPLE}"]))


def create_user(db: DbSession, username: str, password: str, role: str) -> User:
    """A new account; ``AccountExists`` when a username equal to it ignoring case exists
    (``db.taken_ignoring_case``, the rule patient references follow; usernames are ASCII),
    also for the loser of two concurrent requests (the unique index on ``User.username_key``).
    Login ignores case the same way (``verify_password``, ``login_key``)."""
    name = check_username(username)
    check_password(password, name)
    if role not in ROLES:
        raise AccountError(f"the role must be one of {', '.join(ROLES)}")
    taken = taken_ignoring_case(db, User.username, name)
    if taken is None:
        user = User(username=name, password_hash=_hasher.hash(password), role=role, active=True)
        taken = add_unique(db, user, User.username, name)
        if taken is None:
            return user
    # "ADMIN" beside "admin" would invite confusion or impersonation
    same = "" if taken == name else f" (as {taken!r}: usernames ignore case)"
    raise AccountExists(f"a user named {name!r} exists already{same}")


def login_key(username: str) -> str:
    """What a login's username is looked up and rate-limited by: ``casekey`` of it without
    surrounding spaces (``ADMIN`` and `` admin `` are ``admin``), cut to the 64 characters
    ``LoginAttempt.username`` holds (the same cut for recording and counting)."""
    return casekey(username.strip())[:64]


def verify_password(db: DbSession, username: str, password: str) -> User | None:
    """The active user ``username`` names ignoring case (usernames are unique by ``casekey``)
    whose password is exactly ``password``, else None; an unknown or inactive username costs the
    same argon2 verification as a wrong password. Nothing is written: a login confirms the
    account under a lock before it opens a session (``confirm_login``)."""
    user = find_user(db, username)
    if user is None or not user.active:
        with contextlib.suppress(VerificationError, InvalidHashError):
            _hasher.verify(_DUMMY_HASH, password)
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return user


def lock_user(db: DbSession, user_id: int) -> User | None:
    """The user row ``user_id`` read again (``populate_existing``) under a lock held until the
    transaction ends, so that a concurrent ``set_password`` / ``disable`` / ``enable`` is
    either wholly before this transaction or wholly after it. PostgreSQL: ``SELECT ... FOR
    UPDATE`` (READ COMMITTED reads the latest committed row once the lock is granted). SQLite
    (whose driver begins a transaction only at the first write): a no-op UPDATE of the row
    first, which takes the database's write lock (waiting for another writer's commit), then
    the read. None when the user is gone."""
    if db.get_bind().dialect.name == "sqlite":
        db.execute(update(User).where(User.id == user_id).values(active=User.active)
                   .execution_options(synchronize_session=False))
    return db.scalars(select(User).where(User.id == user_id).with_for_update()
                      .execution_options(populate_existing=True)).first()


def confirm_login(db: DbSession, user: User, verified_hash: str, password: str) -> bool:
    """In the transaction that opens a session: whether the account ``verify_password`` found
    is still active with the very password hash that was verified (``lock_user``: a
    ``set_password`` or ``disable`` committed while the password was being checked makes this
    False, and one that comes later ends the session this transaction opens). Re-hashes an
    outdated hash with the verified password."""
    now = lock_user(db, user.id)
    if now is None or not now.active or now.password_hash != verified_hash:
        return False
    if _hasher.check_needs_rehash(now.password_hash):
        now.password_hash = _hasher.hash(password)
    return True


# --- rate limiting -------------------------------------------------------------------------------


def address_key(ip: str) -> str:
    """What a login's client address is rate-limited by (the same for recording and counting):
    an IPv4 address as is; an IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) as its IPv4 address
    (it is the same client); any other IPv6 address as its /64 network (``2001:db8:1:2::/64``),
    because one client is usually given a whole /64 and can change address within it at
    will; anything else (not an address) as is. Cut to the 64 characters
    ``LoginAttempt.ip`` holds."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        # without a zone (``fe80::1%eth0``): the network is the same on every interface
        return str(ipaddress.ip_network((int(address), 64), strict=False))
    return str(address)


@dataclass(frozen=True)
class Locks:
    """Seconds until a login may be tried again (0: not locked), for the username and for the
    client address separately (``locks``)."""

    username: int
    address: int

    @property
    def wait(self) -> int:
        return max(self.username, self.address)


def locks(db: DbSession, username: str, ip: str, now: datetime | None = None,
          exclude: int | None = None) -> Locks:
    """``MAX_FAILURES`` failed attempts for the username (ignoring case: ``login_key``) lock
    it, ``MAX_ADDRESS_FAILURES`` from the address (an IPv6 one's /64 network:
    ``address_key``) lock that, each for the rest of its ``FAILURE_WINDOW``. ``exclude``: the
    caller's own attempt (``claim_attempt``), not counted against it."""
    now = now or utcnow()
    since = now - FAILURE_WINDOW
    waits = []
    for column, value, limit in ((LoginAttempt.username, login_key(username), MAX_FAILURES),
                                 (LoginAttempt.ip, address_key(ip), MAX_ADDRESS_FAILURES)):
        failed = list(db.scalars(
            select(LoginAttempt.at).where(column == value, LoginAttempt.at >= since,
                                          LoginAttempt.success.is_(False),
                                          LoginAttempt.id != (exclude or 0))
            .order_by(LoginAttempt.at.desc()).limit(limit)))
        wait = 0
        if len(failed) >= limit:
            oldest = aware(failed[-1])
            wait = max(1, int((oldest + FAILURE_WINDOW - now).total_seconds()) + 1)
        waits.append(wait)
    return Locks(username=waits[0], address=waits[1])


@dataclass(frozen=True)
class LockStarts:
    """The failed login that began the lock in place now, for the username and for the client
    address separately (None: not locked): ``lock_starts``."""

    username: LoginAttempt | None
    address: LoginAttempt | None


def _lock_start(rows: list[LoginAttempt], limit: int, now: datetime) -> LoginAttempt | None:
    """Of the failed attempts ``rows`` of one username or address (oldest first), the one that
    began the lock in place at ``now`` (None: not locked): the latest attempt before which the
    key was not locked (fewer than ``limit`` failures within the ``FAILURE_WINDOW`` before it).
    Every later failure came while the lock held, so it is the same lock (a lock is lifted
    only by time or by ``unlock``, which takes the failures out of the count)."""
    if sum(aware(r.at) >= now - FAILURE_WINDOW for r in rows) < limit:
        return None
    for i in range(len(rows) - 1, -1, -1):
        since = aware(rows[i].at) - FAILURE_WINDOW
        if sum(aware(r.at) >= since for r in rows[:i]) < limit:
            return rows[i]
    return rows[0]  # pragma: no cover - the first row always has nothing before it


def lock_starts(db: DbSession, username: str, ip: str, now: datetime | None = None
                ) -> LockStarts:
    """The failed login that began the username's lock in place now, and the one that began
    the client address's (``locks``' limits; None: not locked), so that a lock is logged once
    (``lockout``) however many failures complete it at the same moment. Failures in flight
    (claimed, not yet settled) count, as in ``locks``."""
    now = now or utcnow()
    starts = []
    for column, value, limit in ((LoginAttempt.username, login_key(username), MAX_FAILURES),
                                 (LoginAttempt.ip, address_key(ip), MAX_ADDRESS_FAILURES)):
        # the table keeps two windows (``record_attempt``): enough to see where a lock began
        rows = list(db.scalars(
            select(LoginAttempt).where(column == value, LoginAttempt.success.is_(False),
                                       LoginAttempt.at >= now - 2 * FAILURE_WINDOW)
            .order_by(LoginAttempt.at, LoginAttempt.id)))
        starts.append(_lock_start(rows, limit, now))
    return LockStarts(username=starts[0], address=starts[1])


#: PostgreSQL's advisory lock held while a failed login is logged (``hold_failure_lock``)
FAILURE_LOCK_KEY = 0x64726D66


def hold_failure_lock(db: DbSession, attempt_id: int | None) -> None:
    """Serialize the logging of failed logins (held until the transaction ends), so that of
    several failures completing a lock at once exactly one finds it not logged yet. SQLite: a
    no-op UPDATE of the attempt's row, which takes the database's write lock (waiting for
    another writer's commit) before anything is read. PostgreSQL: a transaction-level advisory
    lock (READ COMMITTED: what is read after it includes the previous holder's commit)."""
    if db.get_bind().dialect.name == "sqlite":
        db.execute(update(LoginAttempt).where(LoginAttempt.id == (attempt_id or 0))
                   .values(success=LoginAttempt.success)
                   .execution_options(synchronize_session=False))
    else:
        db.execute(select(func.pg_advisory_xact_lock(FAILURE_LOCK_KEY)))


def retry_after_s(db: DbSession, username: str, ip: str, now: datetime | None = None,
                  exclude: int | None = None) -> int:
    """Seconds until a login may be tried again (0 = now): the longer of the username's and
    the address's lock (``locks``)."""
    return locks(db, username, ip, now, exclude).wait


def locked_until(db: DbSession, usernames: list[str], now: datetime | None = None
                 ) -> dict[str, datetime]:
    """Of ``usernames``, those locked now by their failed logins (``MAX_FAILURES`` within the
    ``FAILURE_WINDOW``: ``locks``), with the time the lock ends (one query). A lock of the
    client address is not an account's: it is not shown here."""
    now = now or utcnow()
    keys = {login_key(name): name for name in usernames}
    failed: dict[str, list[datetime]] = {}
    if not keys:
        return {}
    # only these names' failures (the index on ``username``), not every recent one
    for key, at in db.execute(
            select(LoginAttempt.username, LoginAttempt.at)
            .where(LoginAttempt.username.in_(list(keys)),
                   LoginAttempt.at >= now - FAILURE_WINDOW, LoginAttempt.success.is_(False))
            .order_by(LoginAttempt.at.desc())):
        if key in keys:
            failed.setdefault(key, []).append(aware(at))
    until = {}
    for key, times in failed.items():
        if len(times) >= MAX_FAILURES:
            ends = times[MAX_FAILURES - 1] + FAILURE_WINDOW
            if ends > now:
                until[keys[key]] = ends
    return until


#: what an unlocked failed login's ``LoginAttempt.username`` becomes (``unlock``): no
#: ``login_key`` is it (a key never starts with a space: the name is stripped first)
UNLOCKED = " unlocked"


def unlock(db: DbSession, user: User) -> int:
    """Stop the failed logins of ``user``'s name (any case: ``login_key``) counting against the
    account, which ends its lock; returns how many there were. They keep counting against their
    client address (a lock of the address is not the account's and stays: their name becomes
    ``UNLOCKED``), and the audit log keeps them (``login_failed``)."""
    n = db.query(LoginAttempt).filter(
        LoginAttempt.username == login_key(user.username), LoginAttempt.success.is_(False)
    ).update({"username": UNLOCKED}, synchronize_session=False)
    return int(n)


def record_attempt(db: DbSession, username: str, ip: str, success: bool) -> LoginAttempt:
    row = LoginAttempt(username=login_key(username), ip=address_key(ip), success=success)
    db.add(row)
    # keep the table small: attempts older than the window no longer count
    db.query(LoginAttempt).filter(LoginAttempt.at < utcnow() - 2 * FAILURE_WINDOW).delete()
    db.flush()
    return row


def claim_attempt(db: DbSession, username: str, ip: str) -> int:
    """Record a login attempt as failed *before* the password is checked (commit it at once):
    concurrent attempts then count against each other, so a burst of parallel guesses gets no
    more than ``MAX_FAILURES`` checks. Returns its id (``retry_after_s(exclude=)``,
    ``settle_attempt``)."""
    return record_attempt(db, username, ip, success=False).id


def settle_attempt(db: DbSession, attempt_id: int, success: bool | None) -> None:
    """The claimed attempt succeeded (True), failed (False: it stays), or was refused before
    the password was checked (None: forgotten, so waiting out the lock is not prolonged)."""
    if success is None:
        db.query(LoginAttempt).filter(LoginAttempt.id == attempt_id).delete()
    elif success:
        db.query(LoginAttempt).filter(LoginAttempt.id == attempt_id).update({"success": True})


# --- sessions ------------------------------------------------------------------------------------


def open_session(db: DbSession, user: User, idle: timedelta | None = None
                 ) -> tuple[str, Session]:
    """A new session; returns the cookie value (only its hash is stored) and the row. Sessions
    past their 7 days (or unused for longer than ``idle``) are deleted on the way."""
    cookie = secrets.token_urlsafe(32)
    now = utcnow()
    row = Session(id=sha256(cookie), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                  created_at=now, last_seen_at=now,
                  expires_at=now + timedelta(days=SESSION_DAYS))
    db.add(row)
    db.query(Session).filter(Session.expires_at < now).delete()
    if idle is not None:
        db.query(Session).filter(
            func.coalesce(Session.last_seen_at, Session.created_at) < now - idle).delete()
    return cookie, row


def session_lookup(db: DbSession, cookie: str, idle: timedelta | None = None
                   ) -> tuple[Session, User] | Refused:
    """The live session of ``cookie`` and its user, else why not: ``UNKNOWN`` (no such session:
    signed out, or ended and cleaned up since), ``EXPIRED`` (past its 7 days), ``IDLE`` (unused
    for longer than ``idle``: deleted now, so a later request finds it ``UNKNOWN``) or
    ``DISABLED`` (the user is no longer active). A live one is marked as used now (written at
    most every minute, or every quarter of ``idle`` if shorter)."""
    row = db.get(Session, sha256(cookie))
    now = utcnow()
    if row is None:
        return Refused.UNKNOWN
    if aware(row.expires_at) < now:
        return Refused.EXPIRED
    last = aware(row.last_seen_at or row.created_at)
    if idle is not None and now - last > idle:
        db.delete(row)
        return Refused.IDLE
    touch_every = timedelta(minutes=1) if idle is None else min(timedelta(minutes=1), idle / 4)
    if now - last >= touch_every:
        row.last_seen_at = now
    user = db.get(User, row.user_id)
    if user is None:
        return Refused.UNKNOWN
    if not user.active:
        return Refused.DISABLED
    return row, user


def still_granted(db: DbSession, user_id: int, session_id: str | None,
                  token_hash: str | None, *, lock: bool = True) -> Refused | None:
    """In a transaction that is about to commit for a request: None when the session
    (``session_id``, its stored hash) or the API token (``token_hash``) that authenticated it
    still exists, not revoked, and the account is still active, else why not. ``lock`` (a
    request that writes): the account is locked (``lock_user``) for the rest of the
    transaction, so a ``set_password``, ``disable`` or token revocation that ends the access
    is either committed before (this says so) or waits for the write and ends the access after
    it. Without it (a read: nothing to order against) the rows are only read again, so reads
    never queue for SQLite's write lock."""
    user = (lock_user(db, user_id) if lock
            else db.get(User, user_id, populate_existing=True))
    if user is None:
        return Refused.UNKNOWN
    if not user.active:
        return Refused.DISABLED
    if session_id is not None:
        if db.get(Session, session_id, populate_existing=True) is None:
            return Refused.UNKNOWN
    elif token_hash is not None:
        token = db.execute(select(ApiToken.id, ApiToken.revoked_at)
                           .where(ApiToken.token_hash == token_hash)).first()
        if token is None:
            return Refused.UNKNOWN
        if token.revoked_at is not None:
            return Refused.REVOKED
    return None


def close_session(db: DbSession, cookie: str) -> None:
    db.query(Session).filter(Session.id == sha256(cookie)).delete()


def csrf_ok(row: Session, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(header.encode(), row.csrf_token.encode())


# --- API tokens ----------------------------------------------------------------------------------


def create_token(db: DbSession, user: User, name: str, days: int = TOKEN_DAYS
                 ) -> tuple[str, ApiToken]:
    """A new API token of ``user`` that works for ``days`` days (``TOKEN_DAYS_MIN`` to
    ``TOKEN_DAYS_MAX``; ``AccountError`` otherwise); returns the token (only its hash is
    stored) and the row."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise AccountError("a token name is 1-100 characters")
    if isinstance(days, bool) or not TOKEN_DAYS_MIN <= days <= TOKEN_DAYS_MAX:
        raise AccountError(f"an API token works for {TOKEN_DAYS_MIN} to {TOKEN_DAYS_MAX} days "
                           f"(days was {days}): choose a lifetime in that range, or leave days "
                           f"out for {TOKEN_DAYS}")
    token = "dsk_" + secrets.token_urlsafe(32)
    now = utcnow()
    row = ApiToken(user_id=user.id, name=name, token_hash=sha256(token), created_at=now,
                   expires_at=now + timedelta(days=days))
    db.add(row)
    db.flush()
    return token, row


def is_shared_token(token: str, shared: str | None) -> bool:
    """Whether ``token`` is the server's shared API token ``shared`` (``DERMSIGHT_API_TOKEN``;
    None: none is set), compared in constant time."""
    return bool(shared) and hmac.compare_digest(token.encode(), (shared or "").encode())


@dataclass(frozen=True)
class TokenExpired:
    """Why an API token authenticates nobody: it expired at ``at`` (``token_lookup``)."""

    at: datetime


def token_lookup(db: DbSession, token: str, shared: str | None = None
                 ) -> User | Refused | TokenExpired:
    """The user of an API token, else why not: ``UNKNOWN``, ``REVOKED``, ``TokenExpired``
    (past its ``expires_at``), ``DISABLED``, or ``SHARED`` when it is no user's token but the
    server's shared one (``shared``: it opens only the stateless routes)."""
    row = db.scalar(select(ApiToken).where(ApiToken.token_hash == sha256(token)))
    if row is None:
        return Refused.SHARED if is_shared_token(token, shared) else Refused.UNKNOWN
    if row.revoked_at is not None:
        return Refused.REVOKED
    user = db.get(User, row.user_id)
    if user is None:
        return Refused.UNKNOWN
    if not user.active:  # before the expiry: a disabled user cannot make a new token
        return Refused.DISABLED
    now = utcnow()
    if aware(row.expires_at) <= now:
        return TokenExpired(aware(row.expires_at))
    row.last_used_at = now
    return user


def user_tokens(db: DbSession, user: User) -> list[ApiToken]:
    return list(db.scalars(select(ApiToken).where(
        ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)).order_by(ApiToken.id)))


def revoke_token(db: DbSession, user: User | None, token_id: int) -> bool:
    """Revoke the token ``token_id`` of ``user`` (None: of any user, an admin's revocation);
    False when there is no such token that is not revoked."""
    row = db.get(ApiToken, token_id)
    if row is None or (user is not None and row.user_id != user.id) or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


#: a token that stops working within this time is listed as expiring soon
EXPIRES_SOON = timedelta(days=7)


def all_tokens(db: DbSession) -> list[tuple[ApiToken, str]]:
    """Every user's API tokens, revoked ones too, with the owner's user name (oldest first)."""
    rows = db.execute(select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
                      .order_by(ApiToken.id))
    return [(t, name) for t, name in rows]


# --- account administration ----------------------------------------------------------------------


def find_user(db: DbSession, username: str) -> User | None:
    """The account ``username`` names, ignoring case and surrounding spaces (as login finds
    it), or None."""
    return db.scalar(select(User).where(User.username_key == casekey(username.strip())))


@dataclass(frozen=True)
class Ended:
    """What ``end_access`` ended: sessions deleted, API tokens revoked."""

    sessions: int
    tokens: int


def end_access(db: DbSession, user: User) -> Ended:
    """End every session of ``user`` (deleted: enabling the account again later brings none
    back) and revoke every API token of theirs not revoked yet."""
    sessions = db.query(Session).filter(Session.user_id == user.id).delete()
    tokens = db.query(ApiToken).filter(ApiToken.user_id == user.id,
                                       ApiToken.revoked_at.is_(None)
                                       ).update({"revoked_at": utcnow()})
    return Ended(sessions=int(sessions), tokens=int(tokens))


class PasswordChangedMeanwhile(AccountError):
    """``set_password(replacing=)``: the password is no longer the one that was checked."""


def set_password(db: DbSession, user: User, password: str, *,
                 replacing: str | None = None) -> Ended:
    """Give ``user`` a new password (the rules of ``check_password``; ``AccountError``
    otherwise) and end their sessions and API tokens (``end_access``): whoever held one, or
    knew the old password, is out. ``replacing``: the password hash the user's current
    password was just verified against (a user changing their own); when the account no
    longer has it (a new password or a disabling committed meanwhile),
    ``PasswordChangedMeanwhile`` and nothing is changed."""
    check_password(password, user.username)
    new_hash = _hasher.hash(password)
    locked = lock_user(db, user.id)  # a login confirming the old hash waits, or sees it
    if replacing is not None and (locked is None or not locked.active
                                  or locked.password_hash != replacing):
        raise PasswordChangedMeanwhile(
            "your password was changed or your account disabled while this request ran: "
            "nothing was changed; sign in again")
    user = locked or user
    user.password_hash = new_hash
    db.flush()  # the row's lock before the sessions are read (PostgreSQL: one in commit waits)
    return end_access(db, user)


def other_active_admins(db: DbSession, user: User) -> int:
    return int(db.scalar(select(func.count(User.id)).where(
        User.role == "admin", User.active.is_(True), User.id != user.id)) or 0)


def _lock_active_admins(db: DbSession) -> None:
    """PostgreSQL: lock every active administrator's row (``FOR UPDATE``, in id order so that
    two of these never deadlock); a concurrent ``disable`` waits, then finds the rows as they
    are after it. SQLite: nothing here (``lock_user`` takes the write lock)."""
    if db.get_bind().dialect.name != "sqlite":
        db.execute(select(User.id).where(User.role == "admin", User.active.is_(True))
                   .order_by(User.id).with_for_update())


def disable(db: DbSession, user: User) -> Ended:
    """Disable ``user``'s account (it can no longer sign in) and end their sessions and API
    tokens (``end_access``). ``AccountError`` for the last active administrator: nobody could
    administer the clinic from the web any more; the count is made under the locks of
    ``_lock_active_admins`` and ``lock_user``, so two administrators disabling each other at
    once leave one of them active."""
    if user.role == "admin":
        _lock_active_admins(db)
    user = lock_user(db, user.id) or user
    if user.active and user.role == "admin" and other_active_admins(db, user) == 0:
        raise AccountError(f"{user.username!r} is the last active administrator and cannot be "
                           "disabled: make another administrator first (to shut out whoever "
                           "holds its password, sessions or tokens, set a new password "
                           "instead: that ends them all)")
    user.active = False
    db.flush()
    return end_access(db, user)


def enable(db: DbSession, user: User) -> Ended:
    """Let ``user`` sign in again (nothing happens to an active account). No earlier session
    or API token comes back: any that outlived the disabling (an account disabled by hand in
    the database) are ended now."""
    user = lock_user(db, user.id) or user
    if user.active:
        return Ended(sessions=0, tokens=0)
    user.active = True
    db.flush()
    return end_access(db, user)


def count_users(db: DbSession) -> int:
    return int(db.scalar(select(func.count(User.id))) or 0)
