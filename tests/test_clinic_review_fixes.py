"""Fixes of a review of the clinic (SQLite and PostgreSQL where the database matters):

1. Editing only a diagnosis's note keeps its ``recorded_at`` / ``recorded_by`` (a note edit is
   no new diagnosis), so it no longer hides a rise in risk in a photo taken after the
   diagnosis (``risk_rose`` of the lesion and the patient list); changing the code or the
   method still moves them.
2. A change to a patient, lesion, visit or diagnosis whose row another request deleted
   between the route's read and its write is a 404 ("deleted meanwhile"), never a 500
   (SQLAlchemy's ``StaleDataError``, or the diagnosis's foreign key). The interleaving is
   forced: the route's read is followed by the delete, committed in another session.
3. ``access_log.json`` holds none of a deleted patient's events when the id was given again
   (SQLite before revision 0009): events before the patient was created (less a second) and up
   to the deletion of a patient with that id are left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from clinic_support import API, ClinicHarness, make_app
from dermsight.clinic import cases, exports
from dermsight.clinic.models import AuditEvent, Diagnosis, Lesion, Patient, Visit


@pytest.fixture
def h(harness: ClinicHarness) -> ClinicHarness:
    """The clinic routes on SQLite and on PostgreSQL, a clinician signed in."""
    harness.add_user("dx")
    harness.add_user("dx2")
    harness.login("dx")
    return harness


def _visits(h: ClinicHarness, lesion_id: int, *visits: tuple[str, str, float]) -> list[int]:
    """Visits with the given (day, tier, malignant probability), stored as the app stores
    them; their ids."""
    with h.clinic.db.session() as s:
        rows = [Visit(lesion_id=lesion_id, taken_at=date.fromisoformat(day),
                      result_json=json.dumps({"risk": risk, "malignant_probability": p}),
                      risk=risk, malignant_probability=p, model_name="m", model_version="1",
                      bundle_sha256="s", image_key=f"k{lesion_id}-{i}.png")
                for i, (day, risk, p) in enumerate(visits)]
        s.add_all(rows)
        s.flush()
        return [v.id for v in rows]


def _put_dx(h: ClinicHarness, lesion_id: int, **body: Any) -> Any:
    return h.client.put(f"{API}/lesions/{lesion_id}/diagnosis", json=body)


def _rose(h: ClinicHarness, ref: str, lid: int) -> tuple[bool, bool]:
    """``risk_rose`` on the patient list and the lesion page."""
    [row] = h.get("/patients", params={"q": ref}).json()
    return row["risk_rose"], h.get(f"/lesions/{lid}").json()["lesion"]["risk_rose"]


# --- 1. a note edit keeps the diagnosis's date -----------------------------------------------


def test_a_note_edit_keeps_the_diagnosis_date_and_the_rise_after_it(h: ClinicHarness) -> None:
    pid = h.patient("RV-NOTE")
    lid = h.lesion(pid)
    _visits(h, lid, ("2025-01-01", "low", 0.05), ("2025-06-01", "high", 0.8))
    r = _put_dx(h, lid, code="NV", method="clinical", note="benign look")
    assert r.status_code == 200, r.text
    was = datetime(2025, 3, 1, 12, tzinfo=UTC)  # recorded between the two photos
    with h.clinic.db.session() as s:
        s.execute(update(Diagnosis).where(Diagnosis.lesion_id == lid).values(recorded_at=was))
    assert _rose(h, "RV-NOTE", lid) == (True, True)

    h.login("dx2")  # another clinician corrects the note only
    r = _put_dx(h, lid, code="NV", method="clinical", note="benign look, 4 mm",
                replaces={"code": "NV", "method": "clinical", "note": "benign look"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["note"] == "benign look, 4 mm"
    assert datetime.fromisoformat(out["recorded_at"]) == was
    assert out["recorded_by"] == "dx"  # who set the code and method, as the date says
    assert _rose(h, "RV-NOTE", lid) == (True, True)  # the later rise is still said
    shown = h.get(f"/lesions/{lid}").json()["diagnosis"]
    assert (datetime.fromisoformat(shown["recorded_at"]), shown["recorded_by"]) == (was, "dx")
    # without replaces too (the last write wins), a note edit keeps the date
    assert _put_dx(h, lid, code="NV", method="clinical", note=None).status_code == 200
    assert _rose(h, "RV-NOTE", lid) == (True, True)

    # a new code (or method) is a new diagnosis: recorded now, by its author, and it outranks
    # the rise in the earlier photos
    r = _put_dx(h, lid, code="NV", method="histopathology", note="excised",
                replaces={"code": "NV", "method": "clinical"})
    assert r.status_code == 200, r.text
    assert datetime.fromisoformat(r.json()["recorded_at"]) > was
    assert r.json()["recorded_by"] == "dx2"
    assert _rose(h, "RV-NOTE", lid) == (False, False)


# --- 2. a write racing a delete: 404, never 500 ----------------------------------------------


@pytest.fixture
def logged(h: ClinicHarness, clinic_model: Any) -> Iterator[Any]:
    """A client of the clinic routes with the request log's catch-all (as served), signed
    in as ``dx``."""
    from fastapi.testclient import TestClient

    from dermsight.web.middleware import RequestLogMiddleware

    app = make_app(h.clinic, clinic_model)
    app.add_middleware(RequestLogMiddleware)
    client = TestClient(app)
    r = client.post(f"{API}/auth/login", json={"username": "dx",
                                               "password": "correct horse battery"})
    assert r.status_code == 200, r.text
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    yield client
    client.close()


def _delete_after_read(monkeypatch: pytest.MonkeyPatch, h: ClinicHarness,
                       remove: Callable[[Any], None]) -> None:
    """The route's ``get_or_404`` reads its row, then another request deletes it (``remove``,
    committed in its own session) before the route writes."""
    read = cases.get_or_404

    def racing(db: Any, model: Any, object_id: int, what: str) -> Any:
        row = read(db, model, object_id, what)
        with h.clinic.db.session() as other:
            remove(other)
        return row

    monkeypatch.setattr(cases, "get_or_404", racing)


def _deleted_meanwhile(r: Any) -> None:
    assert r.status_code == 404, r.text
    assert "deleted meanwhile" in r.json()["detail"]


def test_renaming_a_patient_deleted_meanwhile_is_a_404(
        h: ClinicHarness, logged: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pid = h.patient("RV-GONE")
    _delete_after_read(monkeypatch, h,
                       lambda s: s.execute(delete(Patient).where(Patient.id == pid)))
    _deleted_meanwhile(logged.patch(f"{API}/patients/{pid}", json={"ref": "RV-NEW"}))
    monkeypatch.undo()
    with h.clinic.db.session() as s:
        assert s.scalar(select(Patient).where(Patient.ref == "RV-NEW")) is None


def test_changing_a_lesion_deleted_meanwhile_is_a_404(
        h: ClinicHarness, logged: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lid = h.lesion(h.patient("RV-LES"))
    _delete_after_read(monkeypatch, h,
                       lambda s: s.execute(delete(Lesion).where(Lesion.id == lid)))
    _deleted_meanwhile(logged.patch(f"{API}/lesions/{lid}", json={"location": "scar"}))


def test_changing_a_visit_deleted_meanwhile_is_a_404(
        h: ClinicHarness, logged: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lid = h.lesion(h.patient("RV-VIS"))
    [vid] = _visits(h, lid, ("2025-01-01", "low", 0.05))
    _delete_after_read(monkeypatch, h,
                       lambda s: s.execute(delete(Visit).where(Visit.id == vid)))
    _deleted_meanwhile(logged.patch(f"{API}/visits/{vid}", json={"note": "retaken"}))


@pytest.mark.parametrize("first", [True, False], ids=["first", "overwrite"])
def test_a_diagnosis_of_a_lesion_deleted_meanwhile_is_a_404(
        h: ClinicHarness, logged: Any, monkeypatch: pytest.MonkeyPatch, first: bool) -> None:
    lid = h.lesion(h.patient("RV-DX"))
    if not first:
        assert _put_dx(h, lid, code="NV", method="clinical").status_code == 200
    _delete_after_read(monkeypatch, h,
                       lambda s: s.execute(delete(Lesion).where(Lesion.id == lid)))
    _deleted_meanwhile(logged.put(f"{API}/lesions/{lid}/diagnosis",
                                  json={"code": "MEL", "method": "histopathology"}))
    monkeypatch.undo()
    with h.clinic.db.session() as s:
        assert s.scalar(select(Diagnosis).where(Diagnosis.lesion_id == lid)) is None


def test_only_stale_data_is_taken_for_a_row_deleted_meanwhile() -> None:
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm.exc import StaleDataError

    from dermsight.web.middleware import deleted_meanwhile

    assert deleted_meanwhile(StaleDataError("UPDATE statement on table 'x' expected to update "
                                            "1 row(s); 0 were matched."))
    wrapped = RuntimeError("flush failed")
    wrapped.__cause__ = StaleDataError()
    assert deleted_meanwhile(wrapped)
    assert not deleted_meanwhile(OperationalError("x", {}, Exception("locked")))
    assert not deleted_meanwhile(KeyError("x"))


# --- 3. access_log.json: only this patient's events ------------------------------------------


def test_the_access_log_leaves_out_a_deleted_patient_of_the_same_id(h: ClinicHarness) -> None:
    """As a SQLite database from before revision 0009 can hold them: a patient deleted, and its
    id given to the next one created."""
    created = datetime(2026, 1, 1, 12, tzinfo=UTC)
    pid = 9000

    def event(at: datetime, action: str, object_type: str, object_id: int) -> AuditEvent:
        return AuditEvent(at=at, username="dx", action=action, object_type=object_type,
                          object_id=object_id, patient_id=pid)

    with h.clinic.db.session() as s:
        s.add_all([  # the earlier patient: months before, and the last ones just before
            event(datetime(2025, 5, 1, tzinfo=UTC), "create", "patient", pid),
            event(datetime(2025, 5, 2, tzinfo=UTC), "view", "visit", 77),
            event(created - timedelta(milliseconds=600), "view", "patient", pid),
            event(created - timedelta(milliseconds=500), "delete", "patient", pid)])
        s.flush()
        s.add(Patient(id=pid, ref="RV-REUSED", created_at=created))
        s.flush()
        s.add_all([  # the new patient's own (one dated a moment before its row: kept)
            event(created - timedelta(milliseconds=200), "create", "patient", pid),
            event(created + timedelta(minutes=5), "view", "patient", pid)])
    with h.clinic.db.session() as s:
        log = exports.access_log(s, pid)
    assert [(e["action"], e["object_type"], datetime.fromisoformat(e["at"])) for e in log] == [
        ("create", "patient", created - timedelta(milliseconds=200)),
        ("view", "patient", created + timedelta(minutes=5))]


def test_the_access_log_keeps_every_event_of_a_patient(h: ClinicHarness) -> None:
    pid = h.patient("RV-OWN")
    lid = h.lesion(pid)
    assert h.get(f"/patients/{pid}").status_code == 200
    assert _put_dx(h, lid, code="NV", method="clinical").status_code == 200
    with h.clinic.db.session() as s:
        log = exports.access_log(s, pid)
    assert [(e["action"], e["object_type"]) for e in log] == [
        ("create", "patient"), ("create", "lesion"), ("view", "patient"),
        ("update", "diagnosis")]
