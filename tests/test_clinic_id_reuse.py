"""The id of a deleted patient, lesion or visit is never given to a new one (privacy audit).

Before revision 0009 a SQLite database took the largest id in use + 1 (no ``AUTOINCREMENT``):
once the newest patient or visit was deleted, the next one got its id, so the audit log's
``?patient=<id>`` mixed two patients, a view of the new visit's image within ``REPEAT_READ`` of a
view of the deleted one was not logged, and a page left open on the deleted visit changed the
new one. PostgreSQL (sequences) behaves as before.

1. Through the API (SQLite and PostgreSQL): a patient, a visit deleted and another created get
   new ids; the deleted visit's id stays a 404; the new visit's image view is logged with its
   own patient.
2. ``audit.record_read`` skips a repeated view only when the earlier event names the same
   patient.
3. Revision 0009 on a SQLite database at 0008: every row, index and foreign key kept, and no id
   the tables or the audit log named before the upgrade is given again; a database the copy
   would fail on is refused before any change, a failure part-way leaves it as it was;
   PostgreSQL unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, insert, inspect, text

from clinic_support import API, SQLITE_ONLY, ClinicHarness, image_bytes
from dermsight.clinic import audit
from dermsight.clinic.config import ClinicConfigError
from dermsight.clinic.db import HEAD, Database, current_revision, upgrade
from dermsight.clinic.models import AuditEvent, Lesion, Patient, User, Visit, utcnow

LOW = "ISIC_0013053"
HIGH = "ISIC_0030403"
REBUILT = ("patients", "lesions", "visits", "diagnoses")


@pytest.fixture
def h(harness: ClinicHarness) -> ClinicHarness:
    harness.add_user("root", role="admin")
    harness.login("root")
    return harness


def _visit(h: ClinicHarness, lesion_id: int, image: bytes) -> int:
    r = h.visit(lesion_id, image)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _events(h: ClinicHarness, **params: Any) -> list[dict[str, Any]]:
    r = h.get("/admin/audit", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()
    return events


# --- 1. through the API --------------------------------------------------------------------------


def test_a_deleted_patients_id_is_not_given_again(h: ClinicHarness) -> None:
    h.patient("KEEP-1")
    gone = h.patient("GONE-1")  # the newest
    assert h.client.delete(f"{API}/patients/{gone}").status_code == 204
    new = h.patient("NEW-1")
    assert new != gone
    assert h.get(f"/patients/{gone}").status_code == 404
    # the deleted patient's history is not the new one's
    assert {e["object_id"] for e in _events(h, patient=new)} == {new}
    assert all(e["object_id"] != new for e in _events(h, patient=gone))


def test_a_deleted_lesions_and_visits_ids_are_not_given_again(h: ClinicHarness,
                                                               data_dir: Path) -> None:
    pid = h.patient("VISITS-1")
    lid = h.lesion(pid)
    first = _visit(h, lid, image_bytes(data_dir, LOW))
    assert h.client.delete(f"{API}/visits/{first}").status_code == 204
    second = _visit(h, lid, image_bytes(data_dir, LOW))
    assert second != first
    # a page left open on the deleted visit changes nothing of the new one
    r = h.client.patch(f"{API}/visits/{first}", json={"note": "stale tab"})
    assert r.status_code == 404, r.text
    assert h.client.delete(f"{API}/visits/{first}").status_code == 404
    visits = h.get(f"/lesions/{lid}").json()["visits"]
    assert [(v["id"], v.get("note")) for v in visits] == [(second, None)]
    # a lesion: deleted with its patient, the next one gets another id
    other = h.patient("VISITS-2")
    gone_lesion = h.lesion(other)
    assert h.client.delete(f"{API}/patients/{other}").status_code == 204
    assert h.lesion(pid) != gone_lesion


def test_the_image_of_a_new_visit_is_logged_after_the_newest_visit_was_deleted(
        h: ClinicHarness, data_dir: Path) -> None:
    first_patient = h.patient("IMG-1")
    first = _visit(h, h.lesion(first_patient), image_bytes(data_dir, HIGH))
    assert h.get(f"/visits/{first}/image").status_code == 200
    assert h.client.delete(f"{API}/visits/{first}").status_code == 204
    other_patient = h.patient("IMG-2")
    second = _visit(h, h.lesion(other_patient), image_bytes(data_dir, LOW))
    assert h.get(f"/visits/{second}/image").status_code == 200  # within REPEAT_READ
    views = [(e["object_id"], e["patient_id"])
             for e in _events(h, action="view", object_type="visit_image")]
    assert sorted(views) == sorted([(first, first_patient), (second, other_patient)])
    assert [e["object_id"] for e in _events(h, patient=other_patient, action="view")] \
        == [second]


# --- 2. record_read and the patient --------------------------------------------------------------


def test_a_view_is_skipped_only_when_the_same_patients_view_was_logged(
        h: ClinicHarness, data_dir: Path) -> None:
    """An event for the same visit id that names another patient (an id given again by a
    database before revision 0009) does not hide this view."""
    pid = h.patient("READ-1")
    vid = _visit(h, h.lesion(pid), image_bytes(data_dir, LOW))
    with h.clinic.db.session() as s:
        root = s.query(User).filter_by(username="root").one()
        s.execute(insert(AuditEvent), [{
            "at": utcnow(), "user_id": root.id, "username": "root", "action": "view",
            "object_type": "visit_image", "object_id": vid, "patient_id": pid + 1000}])
    assert h.get(f"/visits/{vid}/image").status_code == 200
    assert h.get(f"/visits/{vid}/image").status_code == 200  # now a repeat: skipped
    views = [(e["object_id"], e["patient_id"])
             for e in _events(h, action="view", object_type="visit_image")]
    assert sorted(views) == sorted([(vid, pid + 1000), (vid, pid)])
    with h.clinic.db.session() as s:  # the patient list (no patient): once, as before
        root = s.query(User).filter_by(username="root").one()
        assert audit.record_read(s, root, "patient_list", None, within=audit.REPEAT_LIST)
        assert not audit.record_read(s, root, "patient_list", None, within=audit.REPEAT_LIST)


# --- 3. revision 0009 ----------------------------------------------------------------------------

#: the rows an older database holds: patients 1-2 (3-5 deleted since, 5 the newest), lesions
#: 1-2 (6 deleted), visits 1-3 (8 deleted), a diagnosis; a user and a token; events naming
#: patient 5, lesion 6 (a diagnosis event), visit 8 (an image view) and patient 4 (as the
#: patient of an event about visit 7)
ROWS: list[tuple[str, dict[str, Any]]] = [
    ("INSERT INTO users (id, username, username_key, password_hash, role, active, created_at) "
     "VALUES (1, 'ana', 'ana', 'x', 'admin', :yes, '2026-01-02 03:04:05')", {"yes": True}),
    ("INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, expires_at) "
     "VALUES (1, 1, 'script', 'h', '2026-01-02 03:04:05', '2027-01-02 03:04:05')", {}),
    ("INSERT INTO patients (id, ref, ref_key, created_at, created_by) VALUES "
     "(1, 'P-1', 'p-1', '2026-01-02 03:04:05', 1), (2, 'P-2', 'p-2', '2026-01-02 03:04:05', 1)",
     {}),
    ("INSERT INTO lesions (id, patient_id, body_site, created_at) VALUES "
     "(1, 1, 'anterior torso', '2026-01-02 03:04:05'), (2, 2, NULL, '2026-01-02 03:04:05')", {}),
    ("INSERT INTO visits (id, lesion_id, taken_at, created_at, created_by, result_json, risk, "
     "model_name, model_version, bundle_sha256, image_key, embedding, site_inherited) VALUES "
     "(1, 1, '2026-01-02', '2026-01-02 03:04:05', 1, '{}', 'low', 'm', '1', 's', 'k1.png', "
     ":blob, :yes), "
     "(2, 1, '2026-01-03', '2026-01-03 03:04:05', 1, '{}', 'high', 'm', '1', 's', 'k2.png', "
     "NULL, :no), "
     "(3, 2, '2026-01-04', '2026-01-04 03:04:05', NULL, '{}', 'low', 'm', '1', 's', 'k3.png', "
     "NULL, :no)", {"blob": b"\x00\x01", "yes": True, "no": False}),
    ("INSERT INTO diagnoses (id, lesion_id, code, method, recorded_by, recorded_at) VALUES "
     "(1, 1, 'NV', 'clinical', 1, '2026-01-05 03:04:05')", {}),
    ("INSERT INTO audit_events (at, username, action, object_type, object_id, patient_id) "
     "VALUES ('2026-01-06 03:04:05', 'ana', 'delete', 'patient', 5, 5), "
     "('2026-01-06 03:04:05', 'ana', 'delete', 'diagnosis', 6, 3), "
     "('2026-01-06 03:04:05', 'ana', 'view', 'visit_image', 8, 3), "
     "('2026-01-06 03:04:05', 'ana', 'delete', 'visit', 7, 4), "
     "('2026-01-06 03:04:05', 'ana', 'view', 'patient_list', NULL, NULL)", {}),
]


def _insert_rows(db: Database) -> None:
    with db.engine.begin() as conn:
        for sql, values in ROWS:
            conn.execute(text(sql), values)


def _dump(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    tables = [str(r[0]) for r in conn.execute(text(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name != 'alembic_version' ORDER BY name"))]
    return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
            for t in tables}


def _structure(engine: Engine) -> list[tuple[str, ...]]:
    """Every table's columns, indexes, unique constraints and foreign keys."""
    insp = inspect(engine)
    rows: list[tuple[str, ...]] = []
    for table in sorted(insp.get_table_names()):
        rows += [(table, "column", c["name"], str(c["type"]), str(c["nullable"]),
                  str(c["default"])) for c in insp.get_columns(table)]
        rows += [(table, "index", str(i["name"]), ",".join(map(str, i["column_names"])),
                  str(i["unique"])) for i in insp.get_indexes(table)]
        rows += [(table, "unique", ",".join(u["column_names"]))
                 for u in insp.get_unique_constraints(table)]
        rows += [(table, "fk", ",".join(f["constrained_columns"]), f["referred_table"],
                  ",".join(f["referred_columns"]), str(f["options"].get("ondelete")))
                 for f in insp.get_foreign_keys(table)]
        rows.append((table, "pk", ",".join(insp.get_pk_constraint(table)["constrained_columns"])))
    return sorted(rows)


@pytest.fixture
def at_0008(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'clinic.db'}")  # a file: the upgrade's own connection
    upgrade(db.engine, "0008")
    _insert_rows(db)
    yield db
    db.dispose()


def test_revision_0009_keeps_every_row_and_gives_no_earlier_id_again(at_0008: Database) -> None:
    db = at_0008
    with db.engine.connect() as conn:
        rows_before = _dump(conn)
    structure_before = _structure(db.engine)
    db.upgrade()
    assert current_revision(db.engine) == HEAD == "0009"
    with db.engine.connect() as conn:
        assert _dump(conn) == rows_before
        assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
        sql = dict(conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"
                                     )).all())
        for table in REBUILT:
            assert "AUTOINCREMENT" in sql[table], sql[table]
        assert "AUTOINCREMENT" not in sql["users"]
        assert not [t for t in sql if t.endswith("_before_0009")]
    assert _structure(db.engine) == structure_before  # indexes, keys, constraints as they were
    with db.session() as s:  # new rows: above every id the tables or the log named
        patient = Patient(ref="P-new", created_by=1)
        s.add(patient)
        s.flush()
        lesion = Lesion(patient_id=patient.id)
        s.add(lesion)
        s.flush()
        visit = Visit(lesion_id=lesion.id, taken_at=date(2026, 2, 1), result_json="{}",
                      risk="low", model_name="m", model_version="1", bundle_sha256="s",
                      image_key="k9.png")
        s.add(visit)
        s.flush()
        assert (patient.id, lesion.id, visit.id) == (6, 7, 9)
    with db.session() as s:  # the foreign keys still act: a patient's deletion cascades
        s.delete(s.get(Patient, 1))
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM lesions ORDER BY id")).scalars().all() == [2, 7]
        assert conn.execute(text("SELECT id FROM visits ORDER BY id")).scalars().all() == [3, 9]
        assert conn.execute(text("SELECT COUNT(*) FROM diagnoses")).scalar() == 0
    with db.session() as s:  # the newest, deleted: its id is not given again
        s.delete(s.get(Patient, 6))
    with db.session() as s:
        again = Patient(ref="P-again")
        s.add(again)
        s.flush()
        assert again.id == 7


def test_revision_0009_on_an_empty_database_and_a_new_one(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'new.db'}")
    db.upgrade()
    with db.session() as s:
        first = Patient(ref="A")
        s.add(first)
    with db.session() as s:
        s.delete(s.get(Patient, first.id))
    with db.session() as s:
        second = Patient(ref="B")
        s.add(second)
    assert second.id == first.id + 1
    db.dispose()


def test_revision_0009_refuses_a_row_whose_parent_is_missing_before_any_change(
        at_0008: Database) -> None:
    with at_0008.engine.connect() as conn:  # as a hand edit with the foreign keys off would
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.execute(text("INSERT INTO lesions (id, patient_id, created_at) VALUES "
                          "(9, 99, '2026-01-02 03:04:05')"))
        conn.commit()
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
    structure = _structure(at_0008.engine)
    with pytest.raises(ClinicConfigError) as caught:
        at_0008.upgrade()
    message = str(caught.value)
    assert "\n" not in message
    assert "1 row(s) of the table lesions refer to rows that do not exist" in message
    assert "Nothing of this revision was applied" in message
    assert current_revision(at_0008.engine) == "0008"
    assert _structure(at_0008.engine) == structure


def test_a_failure_part_way_through_revision_0009_changes_nothing(
        at_0008: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    db = at_0008
    with db.engine.connect() as conn:
        rows_before = _dump(conn)
        sql_before = conn.execute(text("SELECT type, name, sql FROM sqlite_master "
                                       "ORDER BY name")).all()

    def fail_at_the_last_drop(_conn: Any, _cursor: Any, statement: str, params: Any,
                              *_args: Any) -> tuple[str, Any]:
        if statement.strip().upper().startswith("DROP TABLE PATIENTS_BEFORE_0009"):
            return "DROP TABLE no_such_table_here", params  # the database refuses it
        return statement, params

    event.listen(Engine, "before_cursor_execute", fail_at_the_last_drop, retval=True)
    try:
        with pytest.raises(ClinicConfigError, match="failed and was undone"):
            db.upgrade()
    finally:
        event.remove(Engine, "before_cursor_execute", fail_at_the_last_drop)
    assert current_revision(db.engine) == "0008"
    with db.engine.connect() as conn:
        assert _dump(conn) == rows_before
        assert conn.execute(text("SELECT type, name, sql FROM sqlite_master "
                                 "ORDER BY name")).all() == sql_before
    db.upgrade()  # the cause gone, it goes through
    with db.engine.connect() as conn:
        assert _dump(conn) == rows_before


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_revision_0009_changes_nothing_on_postgresql(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db.engine, "0008")
    _insert_rows(db)
    with db.engine.begin() as conn:  # rows with given ids leave a sequence behind: move it on
        for table in REBUILT:
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                              f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"))
    structure = _structure(db.engine)
    db.upgrade()
    assert current_revision(db.engine) == HEAD
    assert _structure(db.engine) == structure
    with db.session() as s:
        patient = Patient(ref="P-new")
        s.add(patient)
        s.flush()
        assert patient.id == 3
    db.dispose()


@SQLITE_ONLY
def test_the_sqlite_tables_of_a_new_database_are_those_of_the_models(db_url: str) -> None:
    """The models and the migrations agree: the four tables' keys are AUTOINCREMENT in both."""
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateTable

    from dermsight.clinic.models import Base

    for table in REBUILT:
        ddl = str(CreateTable(Base.metadata.tables[table]).compile(dialect=sqlite.dialect()))
        assert "AUTOINCREMENT" in ddl
    db = Database(db_url)
    db.upgrade()
    with db.engine.connect() as conn:
        sql = dict(conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"
                                     )).all())
    assert {t for t, ddl in sql.items() if ddl and "AUTOINCREMENT" in ddl} == set(REBUILT)
    db.dispose()
