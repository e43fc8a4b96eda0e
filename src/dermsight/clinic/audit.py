"""The audit log: who created / viewed / exported / deleted which object, when (ids only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from dermsight.clinic.accounts import aware
from dermsight.clinic.models import AuditEvent, User

ACTIONS = ("create", "view", "update", "export", "delete", "login", "logout", "purge")


def record(db: DbSession, user: User | None, action: str, object_type: str,
           object_id: int | None = None) -> None:
    if action not in ACTIONS:  # pragma: no cover - a programming error
        raise ValueError(f"unknown audit action {action!r}")
    db.add(AuditEvent(user_id=user.id if user else None, username=user.username if user else None,
                      action=action, object_type=object_type, object_id=object_id))


def recent(db: DbSession, limit: int) -> list[dict[str, Any]]:
    rows = db.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit))
    return [{"at": aware(e.at).isoformat(), "user": e.username, "action": e.action,
             "object_type": e.object_type, "object_id": e.object_id} for e in rows]
