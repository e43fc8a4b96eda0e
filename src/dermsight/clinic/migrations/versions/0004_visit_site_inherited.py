"""Visits record whether their site was the lesion's body site (the visit gave none).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("visits") as batch:
        batch.add_column(sa.Column("site_inherited", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
