"""API tokens expire: ``api_tokens.expires_at``.

Until this release a per-user API token worked until it was revoked. A token made from now on
carries the lifetime chosen when it is created (``accounts.TOKEN_DAYS``, 90 days by default).
A token an older release made gets the later of two dates: 90 days after it was created (what
it would have had), and 14 days after this upgrade, so that a script using an old token does
not stop at the moment of the upgrade but has two weeks in which its owner sees the date in the
token list and makes a new one. Revoked tokens get the same date (they stay refused).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

#: what an older token is given (fixed here: a later change of the default changes nothing)
DEFAULT_LIFETIME = timedelta(days=90)
GRACE_AFTER_UPGRADE = timedelta(days=14)

_tokens = sa.table(
    "api_tokens",
    sa.column("id", sa.Integer),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("expires_at", sa.DateTime(timezone=True)),
)


def _aware(t: datetime) -> datetime:
    """SQLite returns naive datetimes: they were stored in UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def expiry_of_older_token(created_at: datetime | None, upgraded_at: datetime) -> datetime:
    """The expiry an older token gets: the later of ``created_at`` + 90 days and
    ``upgraded_at`` + 14 days (a token without a creation time: the latter)."""
    floor = upgraded_at + GRACE_AFTER_UPGRADE
    if created_at is None:
        return floor
    return max(_aware(created_at) + DEFAULT_LIFETIME, floor)


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    now = datetime.now(UTC)
    for row_id, created_at in bind.execute(sa.select(_tokens.c.id, _tokens.c.created_at)).all():
        bind.execute(
            _tokens.update()
            .where(_tokens.c.id == row_id)
            .values(expires_at=expiry_of_older_token(created_at, now))
        )
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("expires_at", existing_type=sa.DateTime(timezone=True), nullable=False)
