"""The audit log: who created / viewed / exported / deleted which object, when (ids only).

Reads are logged too (action ``view``): a patient's or a lesion's page and an export at every
request, a visit's image once per user and visit within ``REPEAT_READ`` (a lesion's page loads
every visit's image at once, and again at each visit to it: one event per image and sitting,
not per render), the patient list once per request without the search text (it can be part of
a reference). A visit's heatmap, the dashboard (figures over all confirmed cases) and similar
cases (ids and diagnoses; their thumbnails are visit images, logged as such) are not.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from dermsight.clinic.accounts import aware
from dermsight.clinic.models import AuditEvent, User, utcnow

#: a read of one object by one user within this time of the last one logged is not logged again
#: (``record_read``)
REPEAT_READ = timedelta(minutes=10)

ACTIONS = ("create", "view", "update", "export", "delete", "login", "logout", "purge")


def record(db: DbSession, user: User | None, action: str, object_type: str,
           object_id: int | None = None) -> None:
    if action not in ACTIONS:  # pragma: no cover - a programming error
        raise ValueError(f"unknown audit action {action!r}")
    db.add(AuditEvent(user_id=user.id if user else None, username=user.username if user else None,
                      action=action, object_type=object_type, object_id=object_id))


def record_read(db: DbSession, user: User, object_type: str, object_id: int) -> bool:
    """Log that ``user`` viewed the object, unless the same view of it by the same user was
    logged within ``REPEAT_READ`` (one lookup in the recent events: the index on ``at``; two
    requests at the same moment may both log it). Returns whether an event was added."""
    since = utcnow() - REPEAT_READ
    seen = db.scalar(select(AuditEvent.id).where(
        AuditEvent.at >= since, AuditEvent.user_id == user.id, AuditEvent.action == "view",
        AuditEvent.object_type == object_type, AuditEvent.object_id == object_id).limit(1))
    if seen is not None:
        return False
    record(db, user, "view", object_type, object_id)
    return True


def recent(db: DbSession, limit: int) -> list[dict[str, Any]]:
    rows = db.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit))
    return [{"at": aware(e.at).isoformat(), "user": e.username, "action": e.action,
             "object_type": e.object_type, "object_id": e.object_id} for e in rows]
