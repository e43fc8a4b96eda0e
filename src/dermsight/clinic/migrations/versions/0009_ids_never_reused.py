"""SQLite never hands out again the id of a deleted patient, lesion, visit or diagnosis.

A plain SQLite integer key takes the largest id in use + 1: once the newest patient (or lesion,
visit) was deleted, the next one got its id. The audit log's ``?patient=<id>`` then listed the
deleted patient's history as the new one's, a repeated view of "visit N"'s image within
``audit.REPEAT_READ`` was not logged although it showed another patient's image, and a page
left open on the deleted record changed the new one. PostgreSQL's sequences never reuse an id:
there this revision does nothing.

On SQLite the four tables are rebuilt with an ``AUTOINCREMENT`` key (the model's
``sqlite_autoincrement``), every row, index and foreign key kept, and SQLite's counter of each
(``sqlite_sequence``) starts above the largest id the table holds and the largest id the audit
log names for it (``object_id`` of the object types whose id is the table's: ``audit.py``; a
patient's also ``patient_id``), so that ids of rows deleted before this upgrade are not handed
out again either. A diagnosis's id is named nowhere (its events carry the lesion's id): its
table is rebuilt because it refers to the lesions.

The rebuild runs with the connection's foreign keys on (``db.upgrade``: SQLite ignores turning
them off inside the upgrade's transaction), where dropping a table deletes its rows first and so
the rows that refer to them (``ON DELETE CASCADE``). The old tables are therefore renamed out of
the way first (which makes the old children refer to the old parents), the new ones created and
filled parents first, and the old ones dropped children first: no drop ever reaches a new row.
The whole upgrade is one transaction (``db.upgrade``): a failure leaves the database as it was.
The tables are copied once: the upgrade takes about as long, and as much free disk space, as a
copy of them (the visits hold the model's answers and features).

There is no downgrade (as for the earlier revisions): ``AUTOINCREMENT`` changes no value.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dermsight.clinic.config import ClinicConfigError

revision = "0009"
down_revision = "0008"

KEY_LENGTH = 256  # db.KEY_LENGTH at this revision
#: the tables rebuilt, parents before children
TABLES = ("patients", "lesions", "visits", "diagnoses")
#: per table, the audit log's object types whose ``object_id`` is one of its ids
#: (``audit._LESION_TYPES``, ``audit._VISIT_TYPES`` at this revision)
AUDITED = {"patients": ("patient",), "lesions": ("lesion", "diagnosis"),
           "visits": ("visit", "visit_image"), "diagnoses": ()}
OLD = "_before_0009"


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _columns(table: str) -> list[sa.Column[object]]:
    """The table's columns at revision 0008 on SQLite, in their order there (``ref_key`` stays
    nullable, as revision 0005 left it on SQLite)."""
    if table == "patients":
        return [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("ref", sa.String(64), nullable=False, unique=True),
            _ts("created_at"),
            sa.Column("created_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")),
            sa.Column("ref_key", sa.String(KEY_LENGTH), nullable=True),
        ]
    if table == "lesions":
        return [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("patient_id", sa.Integer,
                      sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
            sa.Column("body_site", sa.String(64)),
            sa.Column("side", sa.String(16)),
            sa.Column("location", sa.String(200)),
            sa.Column("map_view", sa.String(8)),
            sa.Column("map_x", sa.Float),
            sa.Column("map_y", sa.Float),
            _ts("created_at"),
        ]
    if table == "visits":
        return [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("lesion_id", sa.Integer, sa.ForeignKey("lesions.id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("taken_at", sa.Date, nullable=False),
            _ts("created_at"),
            sa.Column("created_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")),
            sa.Column("age", sa.Float),
            sa.Column("sex", sa.String(16)),
            sa.Column("site", sa.String(64)),
            sa.Column("note", sa.Text),
            sa.Column("result_json", sa.Text, nullable=False),
            sa.Column("risk", sa.String(16), nullable=False),
            sa.Column("malignant_probability", sa.Float),
            sa.Column("model_name", sa.String(100), nullable=False),
            sa.Column("model_version", sa.String(50), nullable=False),
            sa.Column("bundle_sha256", sa.String(64), nullable=False),
            sa.Column("image_key", sa.String(100), nullable=False),
            sa.Column("heatmap_key", sa.String(100)),
            sa.Column("embedding", sa.LargeBinary),
            sa.Column("site_inherited", sa.Boolean, nullable=False, server_default=sa.false()),
        ]
    assert table == "diagnoses"
    return [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("lesion_id", sa.Integer, sa.ForeignKey("lesions.id", ondelete="CASCADE"),
                  nullable=False, unique=True),
        sa.Column("code", sa.String(8), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("recorded_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")),
        _ts("recorded_at"),
    ]


def _names(table: str) -> list[str]:
    return [c.name for c in _columns(table)]


def _check_columns(bind: sa.Connection) -> None:
    """``ClinicConfigError`` (one line) before any change when a table's columns are not those
    of revision 0008 (changed by hand): the copy would lose or miss some."""
    for table in TABLES:
        found = [str(r[1]) for r in bind.exec_driver_sql(f"PRAGMA table_info({table})")]
        if sorted(found) != sorted(_names(table)):
            extra = sorted(set(found) - set(_names(table)))
            missing = sorted(set(_names(table)) - set(found))
            raise ClinicConfigError(
                f"database revision 0009 cannot be applied: the table {table} does not have the "
                f"columns of revision 0008 (not expected: {', '.join(extra) or 'none'}; "
                f"missing: {', '.join(missing) or 'none'}): was it changed by hand? Nothing of "
                "this revision was applied.")


def _check_references(bind: sa.Connection) -> None:
    """``ClinicConfigError`` (one line) before any change when a row of the tables refers to a
    row that does not exist (written with the database's foreign keys off: the clinic never
    does): the copy, made with them on, would be refused."""
    for table in TABLES:
        bad = bind.exec_driver_sql(f"PRAGMA foreign_key_check({table})").all()
        if bad:
            raise ClinicConfigError(
                f"database revision 0009 cannot be applied: {len(bad)} row(s) of the table "
                f"{table} refer to rows that do not exist (the first: row {bad[0][1]}, in "
                f"{bad[0][2]}), written with the database's foreign keys off: restore a backup, "
                "or delete or repair those rows. Nothing of this revision was applied.")


def _first_free(bind: sa.Connection, table: str) -> int:
    """The largest id the table holds or the audit log names for it (0: none)."""
    largest = [bind.scalar(sa.text(f"SELECT MAX(id) FROM {table}"))]
    types = AUDITED[table]
    if types:
        marks = ", ".join(f":t{i}" for i in range(len(types)))
        largest.append(bind.scalar(
            sa.text(f"SELECT MAX(object_id) FROM audit_events WHERE object_type IN ({marks})"),
            {f"t{i}": t for i, t in enumerate(types)}))
    if table == "patients":
        largest.append(bind.scalar(sa.text("SELECT MAX(patient_id) FROM audit_events")))
    return max(int(n) for n in [0, *(n for n in largest if n is not None)])


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return  # sequences never reuse an id
    _check_columns(bind)
    _check_references(bind)
    indexes = {table: [str(r[0]) for r in bind.execute(sa.text(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
        "AND sql IS NOT NULL ORDER BY name"), {"t": table})] for table in TABLES}
    floors = {table: _first_free(bind, table) for table in TABLES}
    for table in TABLES:  # every old table out of the way before a new one refers to its name
        op.rename_table(table, table + OLD)
    for table in TABLES:  # parents first: each row's parent is there when it is copied
        op.create_table(table, *_columns(table), sqlite_autoincrement=True)
        names = ", ".join(_names(table))
        op.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {table}{OLD} ORDER BY id")
    for table in reversed(TABLES):  # children first: nothing refers to a table dropped
        op.drop_table(table + OLD)
    for table in TABLES:
        for sql in indexes[table]:  # their names were the old tables' until these were dropped
            op.execute(sql)
        bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
        if floors[table]:
            bind.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :n)"),
                         {"t": table, "n": floors[table]})
