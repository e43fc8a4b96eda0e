"""Visits keep the model's pooled features (similar cases); the audit log is indexed by time.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("visits") as batch:
        batch.add_column(sa.Column("embedding", sa.LargeBinary, nullable=True))
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
