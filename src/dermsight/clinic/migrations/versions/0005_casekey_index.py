"""Patient references and usernames keep their case-folded key (``db.casekey``) in a column of
their own under a unique index: the database refuses a second spelling even when two requests
check at once.

Existing rows get their key here. A database that already holds two values with one key (an
earlier release's SQLite folded only ASCII letters; neither database matched ``ß`` with ``ss``
or a composed letter with a decomposed one) is not changed: the upgrade stops before any change
of this revision with one line naming the values and what to do (docs/clinic.md, "Values equal
ignoring case"). Renaming or merging patients is the clinic's decision, not a migration's.

The key column stays nullable on SQLite: making it NOT NULL there means rebuilding the table, and
dropping the old ``patients`` table with foreign keys on would cascade to every lesion. The
model always sets the key (``models.py``); PostgreSQL enforces it as well.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from dermsight.clinic.config import ClinicConfigError
from dermsight.clinic.db import casekey

revision = "0005"
down_revision = "0004"

#: table, name column, its key column, the name in messages
KEYED = (("patients", "ref", "ref_key", "patient references"),
         ("users", "username", "username_key", "usernames"))
KEY_LENGTH = 256  # db.KEY_LENGTH at this revision
SHOWN = 5  # clashing groups named in the message


def _rows(table: str, column: str) -> list[tuple[int, str]]:
    rows = op.get_bind().execute(sa.text(f"SELECT id, {column} FROM {table} ORDER BY id"))
    return [(int(r[0]), str(r[1])) for r in rows]


def _clashes(rows: list[tuple[int, str]]) -> list[list[tuple[int, str]]]:
    """The groups of rows whose values are equal by ``casekey`` (two or more rows each)."""
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row_id, value in rows:
        groups[casekey(value)].append((row_id, value))
    return [group for group in groups.values() if len(group) > 1]


def _describe(what: str, groups: list[list[tuple[int, str]]]) -> str:
    shown = "; ".join(" = ".join(f"{value!r} (id {row_id})" for row_id, value in group)
                      for group in groups[:SHOWN])
    more = f"; and {len(groups) - SHOWN} more" if len(groups) > SHOWN else ""
    return f"{what} {shown}{more}"


def check_no_clashes() -> None:
    """``ClinicConfigError`` (one line) when a name column holds values equal ignoring case."""
    found = [_describe(what, groups) for table, column, _key, what in KEYED
             if (groups := _clashes(_rows(table, column)))]
    if found:
        raise ClinicConfigError(
            "database revision 0005 (names unique ignoring case) cannot be applied: the "
            f"database holds values equal ignoring case: {' | '.join(found)}. Rename all but one "
            "of each group (or move one patient's lesions to the other and delete it), then "
            "upgrade again; see docs/clinic.md, 'Values equal ignoring case'. Nothing of this "
            "revision was applied.")


def upgrade() -> None:
    check_no_clashes()  # before any change (the whole upgrade is one transaction: db.upgrade)
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column, key, _what in KEYED:
        with op.batch_alter_table(table) as batch:  # SQLite: ALTER TABLE ADD COLUMN, no rebuild
            batch.add_column(sa.Column(key, sa.String(KEY_LENGTH), nullable=True))
        rows = _rows(table, column)
        if rows:
            op.get_bind().execute(sa.text(f"UPDATE {table} SET {key} = :key WHERE id = :id"),
                                  [{"id": row_id, "key": casekey(value)}
                                   for row_id, value in rows])
        if not sqlite:
            op.alter_column(table, key, existing_type=sa.String(KEY_LENGTH), nullable=False)
        op.create_index(f"ix_{table}_{key}", table, [key], unique=True)
