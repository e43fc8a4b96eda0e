"""The audit log: who created / viewed / exported / deleted which object, when (ids only).

Reads are logged too (action ``view``): a patient's or a lesion's page and an export at every
request, a visit's image once per user and visit within ``REPEAT_READ`` (a lesion's page loads
every visit's image at once, and again at each visit to it: one event per image and sitting,
not per render), the patient list once per user within ``REPEAT_LIST`` without the search text
(it can be part of a reference; the list's search asks again at each pause in typing). A
visit's heatmap, the dashboard (figures over all confirmed cases) and similar cases (ids and
diagnoses; their thumbnails are visit images, logged as such) are not.

An event about a patient, or about one of their lesions, visits, visit images or diagnoses,
carries the patient's id (``patient_id``; revision 0008 on: older events have none), so that
the events of one patient can be listed (``query``), also after the patient's deletion.

Sign-ins are logged too: ``login``, ``logout``, ``login_failed`` and ``lockout``
(``record_login``), and an administrator's actions on accounts (``unlock``, ``disable``,
``enable``, ``set_password``; ``set_password`` also a user changing their own). The events
have no field for the client's address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session as DbSession

from dermsight.clinic.accounts import aware
from dermsight.clinic.models import AuditEvent, Lesion, User, Visit, utcnow

#: a read of one object by one user within this time of the last one logged is not logged again
#: (``record_read``)
REPEAT_READ = timedelta(minutes=10)
#: the patient list: one event per user within this time (``record_read``)
REPEAT_LIST = timedelta(minutes=1)

#: ``login_failed``: a wrong password or a disabled account (not a login refused by a lock: the
#: ``lockout`` that began it is logged; not a name that matches no account: only its lockout,
#: within ``LOCKOUTS_MAX``); ``lockout``: an account (``user`` / ``unknown_user``) or a client
#: address (``address``) reached its limit of failed logins;
#: ``unlock``, ``disable``, ``enable``, ``set_password``: an administrator's action
#: on an account (in the web UI / API or with ``dermsight clinic``: no user), or
#: ``set_password`` by a user changing their own password (``POST /auth/password``)
ACTIONS = ("create", "view", "update", "export", "delete", "login", "logout", "purge",
           "login_failed", "lockout", "unlock", "disable", "enable", "set_password")
#: the most events one page of ``query`` returns
PAGE_MAX = 1000

#: object types whose id is a lesion's: the event's patient is the lesion's
_LESION_TYPES = frozenset({"lesion", "diagnosis"})
#: object types whose id is a visit's
_VISIT_TYPES = frozenset({"visit", "visit_image"})


def patient_of(db: DbSession, object_type: str, object_id: int | None) -> int | None:
    """The id of the patient an event about this object concerns (None: no patient, or the
    object is gone)."""
    if object_id is None:
        return None
    if object_type == "patient":
        return object_id
    lesion_id: int | None = None
    if object_type in _VISIT_TYPES:
        visit = db.get(Visit, object_id)
        lesion_id = visit.lesion_id if visit is not None else None
    elif object_type in _LESION_TYPES:
        lesion_id = object_id
    if lesion_id is None:
        return None
    lesion = db.get(Lesion, lesion_id)
    return lesion.patient_id if lesion is not None else None


def record(db: DbSession, user: User | None, action: str, object_type: str,
           object_id: int | None = None, *, patient_id: int | None = None) -> None:
    """Add an event. ``patient_id``: given where the object is about to go (a deleted visit);
    otherwise found from the object (``patient_of``)."""
    if action not in ACTIONS:  # pragma: no cover - a programming error
        raise ValueError(f"unknown audit action {action!r}")
    if patient_id is None:
        patient_id = patient_of(db, object_type, object_id)
    db.add(AuditEvent(user_id=user.id if user else None, username=user.username if user else None,
                      action=action, object_type=object_type, object_id=object_id,
                      patient_id=patient_id))


#: the most characters of a user name typed at a failed login that an event keeps (the
#: longest user name there can be)
TYPED_NAME_MAX = 64


def record_login(db: DbSession, action: str, user: User | None, typed: str, *,
                 address: bool = False) -> None:
    """A ``login_failed`` or ``lockout`` event of a login to ``user``, the account the name
    typed at the login names (None: no account has that name). About an existing account, as
    any event about it: its id and user name, the object ``user``. Else the name as typed,
    without surrounding spaces and cut to ``TYPED_NAME_MAX`` characters, no user id, the object
    ``unknown_user``. ``address``: a lock of the client address (the object ``address``, the
    user of the login that reached the limit). Never the password."""
    if action not in ACTIONS:  # pragma: no cover - a programming error
        raise ValueError(f"unknown audit action {action!r}")
    if address:
        object_type, object_id = "address", None
    elif user is not None:
        object_type, object_id = "user", user.id
    else:
        object_type, object_id = "unknown_user", None
    db.add(AuditEvent(user_id=user.id if user else None,
                      username=user.username if user else typed.strip()[:TYPED_NAME_MAX],
                      action=action, object_type=object_type, object_id=object_id,
                      patient_id=None))


#: the most ``lockout`` events about no account (a name that matches none) or about a client
#: address that are logged within ``LOCKOUT_WINDOW``, all addresses together
#: (``record_lockout``): guesses from many addresses cannot grow the log without bound
LOCKOUTS_MAX = 100
#: the window of ``LOCKOUTS_MAX`` (the failed-login window, 15 minutes)
LOCKOUT_WINDOW = timedelta(minutes=15)


def record_lockout(db: DbSession, user: User | None, typed: str, *, address: bool) -> bool:
    """A ``lockout`` event of a name that matches no account (``user`` None, ``address``
    False) or of a client address (``address``), as ``record_login`` writes it, unless
    ``LOCKOUTS_MAX`` such events were logged within the last ``LOCKOUT_WINDOW`` (one count
    over the index on ``at``; two requests at the same moment may both log one past it).
    Returns whether it was logged."""
    since = utcnow() - LOCKOUT_WINDOW
    n = db.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.at >= since, AuditEvent.action == "lockout",
        or_(AuditEvent.object_type == "address", AuditEvent.object_type == "unknown_user")))
    if int(n or 0) >= LOCKOUTS_MAX:
        return False
    record_login(db, "lockout", user, typed, address=address)
    return True


def record_read(db: DbSession, user: User, object_type: str, object_id: int | None,
                within: timedelta = REPEAT_READ) -> bool:
    """Log that ``user`` viewed the object, unless the same view of it by the same user was
    logged within ``within`` (one lookup in the recent events: the index on ``at``; two
    requests at the same moment may both log it). Returns whether an event was added.

    The same view: the same object type and id, and the same patient (``patient_of``): an id
    that names another patient's object than the one logged (a row deleted and its id taken
    again, as a SQLite database before revision 0009 did) is a view of that patient, logged."""
    since = utcnow() - within
    patient_id = patient_of(db, object_type, object_id)
    same_id = (AuditEvent.object_id.is_(None) if object_id is None
               else AuditEvent.object_id == object_id)
    same_patient = (AuditEvent.patient_id.is_(None) if patient_id is None
                    else AuditEvent.patient_id == patient_id)
    seen = db.scalar(select(AuditEvent.id).where(
        AuditEvent.at >= since, AuditEvent.user_id == user.id, AuditEvent.action == "view",
        AuditEvent.object_type == object_type, same_id, same_patient).limit(1))
    if seen is not None:
        return False
    record(db, user, "view", object_type, object_id, patient_id=patient_id)
    return True


@dataclass(frozen=True)
class Filter:
    """Which events ``query`` lists (None: any)."""

    user: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: int | None = None
    patient_id: int | None = None


def event_json(e: AuditEvent) -> dict[str, Any]:
    return {"id": e.id, "at": aware(e.at).isoformat(), "user": e.username, "action": e.action,
            "object_type": e.object_type, "object_id": e.object_id, "patient_id": e.patient_id}


def query(db: DbSession, limit: int, before: int | None = None,
          where: Filter = Filter()) -> list[dict[str, Any]]:
    """Up to ``limit`` events, newest first, older than the event ``before`` (its id: the
    last id of a page gives the next page), matching ``where``."""
    stmt = select(AuditEvent)
    if before is not None:
        stmt = stmt.where(AuditEvent.id < before)
    if where.user is not None:
        stmt = stmt.where(AuditEvent.username == where.user)
    if where.action is not None:
        stmt = stmt.where(AuditEvent.action == where.action)
    if where.object_type is not None:
        stmt = stmt.where(AuditEvent.object_type == where.object_type)
    if where.object_id is not None:
        stmt = stmt.where(AuditEvent.object_id == where.object_id)
    if where.patient_id is not None:
        stmt = stmt.where(AuditEvent.patient_id == where.patient_id)
    rows = db.scalars(stmt.order_by(AuditEvent.id.desc()).limit(limit))
    return [event_json(e) for e in rows]
