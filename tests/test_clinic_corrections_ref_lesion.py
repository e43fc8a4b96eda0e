"""Correcting a patient's reference and a lesion, and deleting a lesion created by mistake, on
SQLite and PostgreSQL (before: ``PATCH /patients/{id}``, ``PATCH /lesions/{id}`` and
``DELETE /lesions/{id}`` were 405, so a name typed into ``ref`` or ``location`` could only go
with the patient's whole history):

* ``PATCH /patients/{id}`` ``{ref}``: the rules of creating a patient (the same 422s, the same
  409 for another patient's reference ignoring case), ``ref_key`` in step, audited;
* ``PATCH /lesions/{id}`` ``{location, side, map}``: the rules of creating a lesion, ``{}`` and
  ``body_site`` a 422 saying why, audited;
* ``DELETE /lesions/{id}``: the lesion with its visits, diagnosis and the image files no other
  visit uses; audited with the patient's id;
* after each, the old text is gone from the SQLite file and its WAL (also after a visit's or a
  diagnosis's note is corrected); every route needs a signed-in user and, with the cookie, the
  CSRF header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session as DbSession

from clinic_support import API, SQLITE_ONLY, ClinicHarness
from dermsight.clinic.config import sqlite_path
from dermsight.clinic.db import casekey
from dermsight.clinic.models import Diagnosis, Lesion, Patient, Visit

LOW = "ISIC_0013053"
HIGH = "ISIC_0030403"


@pytest.fixture
def h(harness: ClinicHarness) -> ClinicHarness:
    harness.add_user("root", role="admin")
    harness.add_user("ana")
    harness.login("ana")
    return harness


def _jpeg(data_dir: Path, image_id: str) -> bytes:
    return (data_dir / "images" / f"{image_id}.jpg").read_bytes()


def _visit(h: ClinicHarness, lesion_id: int, image: bytes, **fields: str) -> dict[str, Any]:
    r = h.visit(lesion_id, image, **fields)
    assert r.status_code == 201, r.text
    visit: dict[str, Any] = r.json()
    return visit


def _events(h: ClinicHarness, **query: Any) -> list[dict[str, Any]]:
    h.login("root")
    r = h.get("/admin/audit", params={"limit": 500, **query})
    h.login("ana")
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()
    return events


def _audited(h: ClinicHarness, action: str, object_type: str) -> list[tuple[int, int | None]]:
    return [(e["object_id"], e["patient_id"]) for e in _events(h)
            if (e["action"], e["object_type"]) == (action, object_type)]


def _patch(h: ClinicHarness, path: str, body: Any) -> Any:
    return h.client.patch(f"{API}{path}", json=body)


def _stored_bytes(h: ClinicHarness) -> bytes:
    """The SQLite database file and its write-ahead log, as on disk."""
    path = sqlite_path(h.clinic.db.url)
    assert path is not None
    assert path.is_file()
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


# --- a patient's reference ------------------------------------------------------------------------


def test_a_reference_is_corrected_with_its_key_and_audited(h: ClinicHarness) -> None:
    pid = h.patient("Jane Doe")
    lid = h.lesion(pid)
    r = _patch(h, f"/patients/{pid}", {"ref": "  P-1001 "})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["id"], body["ref"]) == (pid, "P-1001")
    assert [le["id"] for le in body["lesions"]] == [lid]
    assert h.get(f"/patients/{pid}").json()["ref"] == "P-1001"
    assert [p["id"] for p in h.get("/patients", params={"q": "p-10"}).json()] == [pid]
    assert h.get("/patients", params={"q": "jane"}).json() == []
    with h.clinic.db.session() as s:
        p = s.get(Patient, pid)
        assert p is not None
        assert p.ref_key == casekey("P-1001")
    # the old reference is free again; the patient's own in another case is a correction
    assert h.post("/patients", json={"ref": "jane doe"}).status_code == 201
    r = _patch(h, f"/patients/{pid}", {"ref": "p-1001"})
    assert r.status_code == 200, r.text
    assert r.json()["ref"] == "p-1001"
    assert _audited(h, "update", "patient") == [(pid, pid), (pid, pid)]


def test_a_reference_another_patient_has_is_the_create_409(h: ClinicHarness) -> None:
    pid, other = h.patient("P-1"), h.patient("Özil-7")
    created = h.post("/patients", json={"ref": "özil-7"})
    assert created.status_code == 409
    r = _patch(h, f"/patients/{pid}", {"ref": "özil-7"})
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == created.json()["detail"]
    assert "'Özil-7'" in r.json()["detail"]
    assert h.get(f"/patients/{pid}").json()["ref"] == "P-1"
    assert h.get(f"/patients/{other}").json()["ref"] == "Özil-7"
    assert _audited(h, "update", "patient") == []


def test_a_reference_taken_while_the_request_runs_is_the_409_not_a_500(h: ClinicHarness) -> None:
    """Another request creates a patient with the reference after this one's check, just
    before its update: the unique ``ref_key`` refuses the update, and the answer is the 409."""
    pid = h.patient("P-1")
    fired: list[bool] = []

    def rival(session: DbSession, *_: Any) -> None:
        if fired or not any(isinstance(o, Patient) for o in session.dirty):
            return
        fired.append(True)
        with h.clinic.db.session() as other:
            other.add(Patient(ref="P-RACE"))

    event.listen(DbSession, "before_flush", rival)
    try:
        r = _patch(h, f"/patients/{pid}", {"ref": "p-race"})
    finally:
        event.remove(DbSession, "before_flush", rival)
    assert fired
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == ("a patient with reference 'p-race' exists already (as "
                                  "'P-RACE': references ignore case)")
    assert h.get(f"/patients/{pid}").json()["ref"] == "P-1"
    assert _audited(h, "update", "patient") == []


@pytest.mark.parametrize("body", [
    {"ref": ""}, {"ref": "   "}, {"ref": "P\n1"}, {"ref": "P\u200b1"}, {"ref": "x" * 65},
    {}, {"ref": None}, {"ref": "P-2", "created_by": 1}, [],
])
def test_a_reference_follows_the_create_rules(h: ClinicHarness, body: Any) -> None:
    pid = h.patient("P-1")
    r = _patch(h, f"/patients/{pid}", body)
    assert r.status_code == 422, r.text
    if isinstance(body, dict) and body and body.get("ref"):
        created = h.post("/patients", json=body)
        assert created.status_code == 422
        assert r.json()["detail"] == created.json()["detail"]
    assert h.get(f"/patients/{pid}").json()["ref"] == "P-1"


def test_an_unknown_patient_or_lesion_is_a_404(h: ClinicHarness) -> None:
    r = _patch(h, "/patients/999", {"ref": "P-9"})
    assert r.status_code == 404
    assert r.json()["detail"] == "no patient with id 999: it may have been deleted"
    r = _patch(h, "/lesions/999", {"location": "back"})
    assert r.status_code == 404
    assert "no lesion with id 999" in r.json()["detail"]
    r = h.client.delete(f"{API}/lesions/999")
    assert r.status_code == 404
    assert "no lesion with id 999" in r.json()["detail"]
    assert h.client.delete(f"{API}/lesions/0").status_code == 422
    assert _audited(h, "update", "patient") == _audited(h, "delete", "lesion") == []


# --- a lesion's location, side and map -----------------------------------------------------------


def test_a_lesion_location_side_and_map_are_corrected(h: ClinicHarness) -> None:
    pid = h.patient("P-1")
    lid = h.lesion(pid, location="mole Jane showed", map={"view": "back", "x": 0.2, "y": 0.3})
    r = _patch(h, f"/lesions/{lid}", {"location": " upper back ", "side": "right"})
    assert r.status_code == 200, r.text
    le = r.json()
    assert (le["id"], le["location"], le["side"], le["body_site"]) == (
        lid, "upper back", "right", "posterior torso")
    assert le["map"] == {"view": "back", "x": 0.2, "y": 0.3}  # left out: kept
    r = _patch(h, f"/lesions/{lid}", {"map": {"view": "front", "x": 1, "y": 0}})
    assert r.status_code == 200, r.text
    assert r.json()["map"] == {"view": "front", "x": 1.0, "y": 0.0}
    r = _patch(h, f"/lesions/{lid}", {"location": "", "side": None, "map": None})
    assert r.status_code == 200, r.text
    le = r.json()
    assert (le["location"], le["side"], le["map"]) == (None, None, None)
    shown = h.get(f"/patients/{pid}").json()["lesions"][0]
    assert (shown["location"], shown["side"], shown["map"]) == (None, None, None)
    assert _audited(h, "update", "lesion") == [(lid, pid)] * 3


@pytest.mark.parametrize(("body", "says"), [
    ({}, "give location, side or map"),
    ({"body_site": "head/neck"}, "body_site cannot be changed"),
    ({"body_site": None, "location": "back"}, "body_site cannot be changed"),
    ({"side": "up"}, "side"),
    ({"location": "a\tb"}, "location"),
    ({"location": "x" * 201}, "location"),
    ({"map": {"view": "top", "x": 0, "y": 0}}, "view"),
    ({"map": {"view": "back", "x": 2, "y": 0}}, "less than or equal to 1"),
    ({"location": "back", "patient_id": 2}, "patient_id"),
])
def test_a_lesion_change_follows_the_create_rules(h: ClinicHarness, body: dict[str, Any],
                                                  says: str) -> None:
    lid = h.lesion(h.patient("P-1"), location="kept")
    r = _patch(h, f"/lesions/{lid}", body)
    assert r.status_code == 422, r.text
    assert says in str(r.json()["detail"])  # the bare test app: pydantic's list
    le = h.get(f"/lesions/{lid}").json()["lesion"]
    assert (le["location"], le["side"], le["body_site"]) == ("kept", "left", "posterior torso")


def test_body_site_is_not_in_the_lesion_change_schema(h: ClinicHarness) -> None:
    from dermsight.web.clinic.bodies import LesionChangeIn

    assert set(LesionChangeIn.model_json_schema()["properties"]) == {"location", "side", "map"}


# --- deleting a lesion ---------------------------------------------------------------------------


def _count(h: ClinicHarness, model: type[Any], lesion_id: int) -> int:
    column = Lesion.id if model is Lesion else model.lesion_id
    with h.clinic.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(
            column == lesion_id)) or 0)


def test_a_lesion_is_deleted_with_its_visits_diagnosis_and_unshared_files(
        h: ClinicHarness, data_dir: Path) -> None:
    pid = h.patient("DEL-L")
    wrong, keep = h.lesion(pid), h.lesion(pid, side="right")
    low, high = _jpeg(data_dir, LOW), _jpeg(data_dir, HIGH)
    v1 = _visit(h, wrong, high, taken_at="2025-01-01")
    v2 = _visit(h, wrong, low, taken_at="2025-02-01")
    shared = _visit(h, keep, low, taken_at="2025-02-01")  # the same image: the same files
    r = h.client.put(f"{API}/lesions/{wrong}/diagnosis", json={"code": "NV", "method": "clinical"})
    assert r.status_code == 200, r.text
    before = set(h.clinic.images.keys())
    assert len(before) == 4

    r = h.client.delete(f"{API}/lesions/{wrong}")
    assert r.status_code == 204, r.text
    after = set(h.clinic.images.keys())
    assert len(after) == 2
    assert after < before
    assert h.get(f"/visits/{shared['id']}/image").status_code == 200
    assert h.get(f"/visits/{shared['id']}/heatmap").status_code == 200
    for gone in (v1, v2):
        assert h.get(f"/visits/{gone['id']}/image").status_code == 404
    assert h.get(f"/lesions/{wrong}").status_code == 404
    assert (_count(h, Lesion, wrong), _count(h, Visit, wrong), _count(h, Diagnosis, wrong)) == (
        0, 0, 0)
    detail = h.get(f"/patients/{pid}").json()
    assert [le["id"] for le in detail["lesions"]] == [keep]
    assert h.client.delete(f"{API}/lesions/{wrong}").status_code == 404
    assert _audited(h, "delete", "lesion") == [(wrong, pid)]
    assert next((e["action"], e["object_id"]) for e in _events(h, patient=pid)
            if e["object_type"] == "lesion") == ("delete", wrong)

    # the last lesion: the patient stays, and the shared files go with it
    assert h.client.delete(f"{API}/lesions/{keep}").status_code == 204
    assert set(h.clinic.images.keys()) == set()
    assert h.get(f"/patients/{pid}").json()["lesions"] == []


# --- who may, CSRF -------------------------------------------------------------------------------


def test_the_routes_need_a_user_and_the_csrf_header(h: ClinicHarness) -> None:
    pid = h.patient("P-1")
    lid = h.lesion(pid, location="kept")
    calls = [("PATCH", f"/patients/{pid}", {"ref": "P-2"}),
             ("PATCH", f"/lesions/{lid}", {"location": "moved"}),
             ("DELETE", f"/lesions/{lid}", None)]
    token = h.client.headers.pop("X-CSRF-Token")
    for method, path, body in calls:
        r = h.client.request(method, f"{API}{path}", json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert "X-CSRF-Token" in r.json()["detail"]
    h.client.headers["X-CSRF-Token"] = token
    assert h.client.post(f"{API}/auth/logout").status_code == 204
    for method, path, body in calls:
        r = h.client.request(method, f"{API}{path}", json=body)
        assert r.status_code == 401, (method, path, r.text)
    h.login("ana")
    detail = h.get(f"/patients/{pid}").json()
    assert (detail["ref"], detail["lesions"][0]["location"]) == ("P-1", "kept")


@pytest.mark.parametrize("role", ["clinician", "admin"])
def test_any_signed_in_user_corrects_and_deletes(h: ClinicHarness, role: str) -> None:
    """Like creating a patient or a lesion and deleting a visit: any account (deleting a
    patient stays the administrator's)."""
    h.add_user("someone", role=role)
    h.login("someone")
    pid = h.patient("P-1")
    lid = h.lesion(pid)
    assert _patch(h, f"/patients/{pid}", {"ref": "P-2"}).status_code == 200
    assert _patch(h, f"/lesions/{lid}", {"side": "midline"}).status_code == 200
    assert h.client.delete(f"{API}/lesions/{lid}").status_code == 204
    expected = 204 if role == "admin" else 403
    assert h.client.delete(f"{API}/patients/{pid}").status_code == expected


def test_an_api_token_needs_no_csrf_header(h: ClinicHarness) -> None:
    pid = h.patient("P-1")
    lid = h.lesion(pid)
    token = h.post("/auth/tokens", json={"name": "script"}).json()["token"]
    h.client.cookies.clear()
    h.client.headers.pop("X-CSRF-Token")
    auth = {"Authorization": f"Bearer {token}"}
    r = h.client.patch(f"{API}/patients/{pid}", json={"ref": "P-2"}, headers=auth)
    assert r.status_code == 200, r.text
    assert h.client.delete(f"{API}/lesions/{lid}", headers=auth).status_code == 204


# --- the old text leaves the database file -------------------------------------------------------


@SQLITE_ONLY
def test_the_old_texts_are_gone_from_the_file_and_the_wal(h: ClinicHarness,
                                                          data_dir: Path) -> None:
    pid = h.patient("Rosalind Franklin")
    lid = h.lesion(pid, location="Franklin-Lesion")
    gone = h.lesion(pid, location="Mistaken-Place")
    visit = _visit(h, lid, _jpeg(data_dir, LOW), note="Margaret-Note")
    dx = {"code": "NV", "method": "clinical", "note": "Told-Mr-Gosling"}
    assert h.client.put(f"{API}/lesions/{lid}/diagnosis", json=dx).status_code == 200
    stored = _stored_bytes(h)
    for text in (b"Rosalind Franklin", b"Franklin-Lesion", b"Mistaken-Place", b"Margaret-Note",
                 b"Told-Mr-Gosling"):
        assert text in stored

    casefolded = casekey("Rosalind Franklin").encode()
    steps: list[tuple[str, str, Any, tuple[bytes, ...]]] = [
        ("PATCH", f"/patients/{pid}", {"ref": "P-77"}, (b"Rosalind Franklin", casefolded)),
        ("PATCH", f"/lesions/{lid}", {"location": "scapula"}, (b"Franklin-Lesion",)),
        ("PATCH", f"/visits/{visit['id']}", {"note": "checked"}, (b"Margaret-Note",)),
        ("PUT", f"/lesions/{lid}/diagnosis", {**dx, "note": "seen"}, (b"Told-Mr-Gosling",)),
        ("DELETE", f"/lesions/{gone}", None, (b"Mistaken-Place",)),
    ]
    for method, path, body, old in steps:  # each step scrubs its own old text
        r = h.client.request(method, f"{API}{path}", json=body)
        assert r.status_code in (200, 204), r.text
        stored = _stored_bytes(h)
        for text in old:
            assert text not in stored, (method, path, text)
    assert b"P-77" in stored
    assert b"scapula" in stored
