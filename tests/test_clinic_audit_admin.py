"""The admin's audit log and tokens (audit of the clinic workflow, round 2).

1. ``GET /admin/audit`` pages (``before=<event id>``) past the newest 1,000 events and filters
   by user, action, object type / id and patient; an unknown query parameter is a 422.
2. Events about a patient's records carry the patient's id (revision 0008), also once the
   patient is deleted.
3. The patient list is logged once per user within ``audit.REPEAT_LIST``.
4. Tokens say when they expire soon; an admin lists and revokes any user's token (audited).
6. The product's field words count as known words in the password check.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text

from clinic_support import API, ClinicHarness, image_bytes, served_clinic
from dermsight.clinic import accounts
from dermsight.clinic.db import Database, current_revision, upgrade
from dermsight.clinic.models import AuditEvent, utcnow

HIGH = "ISIC_0030403"


@pytest.fixture
def h(tmp_path: Path) -> Iterator[ClinicHarness]:
    with served_clinic(tmp_path) as harness:
        yield harness


def _audit(h: ClinicHarness, **params: Any) -> Any:
    return h.get("/admin/audit", params=params)


# --- 1. paging and filters ------------------------------------------------------------------


def test_the_audit_log_pages_past_the_newest_1000_events(h: ClinicHarness) -> None:
    with h.clinic.db.session() as s:
        s.execute(insert(AuditEvent), [
            {"at": utcnow(), "user_id": None, "username": "bulk", "action": "view",
             "object_type": "lesion", "object_id": i} for i in range(1, 1501)])
    seen: list[int] = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 1000, "user": "bulk"}
        if before is not None:
            params["before"] = before
        r = _audit(h, **params)
        assert r.status_code == 200, r.text
        page = r.json()
        if not page:
            break
        assert all(e["user"] == "bulk" for e in page)
        seen += [e["object_id"] for e in page]
        before = page[-1]["id"]
    assert seen == list(range(1500, 0, -1))  # all of them, newest first, once each


def test_the_audit_log_filters(h: ClinicHarness) -> None:
    pid = h.patient("FILT-1")
    h.get(f"/patients/{pid}")
    views = _audit(h, action="view", object_type="patient", object_id=pid).json()
    assert [(e["action"], e["object_type"], e["object_id"]) for e in views] == [
        ("view", "patient", pid)]
    assert _audit(h, user="nobody").json() == []
    r = _audit(h, action="veiw")
    assert r.status_code == 422, r.text
    assert "veiw" in r.text
    assert "view" in r.text
    assert {e["user"] for e in _audit(h, user="admin").json()} == {"admin"}


@pytest.mark.parametrize("param", ["offset", "page", "patient_ref"])
def test_an_unknown_audit_query_parameter_is_a_422_naming_it(h: ClinicHarness,
                                                            param: str) -> None:
    r = _audit(h, **{param: "5"})
    assert r.status_code == 422, r.text
    assert param in r.text


# --- 2. the patient of an event -------------------------------------------------------------


def test_reads_of_a_patients_images_are_traced_to_the_patient(h: ClinicHarness,
                                                              data_dir: Path) -> None:
    pid = h.patient("TRACE-1")
    other = h.patient("TRACE-2")
    lid = h.lesion(pid)
    v = h.visit(lid, image_bytes(data_dir, HIGH))
    assert v.status_code == 201, v.text
    vid = v.json()["id"]
    assert h.get(f"/visits/{vid}/image").status_code == 200
    h.get(f"/lesions/{lid}")
    h.get(f"/patients/{other}")
    r = h.client.delete(f"{API}/patients/{pid}")
    assert r.status_code == 204, r.text
    events = {(e["action"], e["object_type"], e["object_id"])
              for e in _audit(h, patient=pid).json()}
    assert {("create", "patient", pid), ("create", "lesion", lid),
            ("view", "visit_image", vid), ("view", "lesion", lid),
            ("delete", "patient", pid)} <= events
    assert ("view", "patient", other) not in events
    assert all(e["patient_id"] == pid for e in _audit(h, patient=pid).json())


def test_a_deleted_visit_keeps_its_patient_in_the_log(h: ClinicHarness,
                                                      data_dir: Path) -> None:
    pid = h.patient("TRACE-3")
    v = h.visit(h.lesion(pid), image_bytes(data_dir, HIGH))
    vid = v.json()["id"]
    other = h.patient("TRACE-4")
    assert h.client.delete(f"{API}/visits/{vid}").status_code == 204
    events = _audit(h, patient=pid).json()
    assert ("delete", "visit", vid) in {(e["action"], e["object_type"], e["object_id"])
                                        for e in events}
    assert ("create", "patient", other) not in {(e["action"], e["object_type"], e["object_id"])
                                                for e in events}


def test_revision_0008_adds_the_patient_column_and_leaves_older_events_without(
        tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(db.engine, "0007")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_events (id, at, username, action, object_type, "
                          "object_id) VALUES (1, '2026-01-02 03:04:05', 'ana', 'view', "
                          "'visit_image', 7)"))
    upgrade(db.engine, "0008")
    assert current_revision(db.engine) == "0008"
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT patient_id FROM audit_events")).all() == [(None,)]
    db.engine.dispose()


# --- 3. the patient list --------------------------------------------------------------------


def test_the_patient_list_is_logged_once_per_user_per_minute(h: ClinicHarness) -> None:
    for q in ("D", "DA", "DAS", "DASH", "DASH-", "DASH-3"):  # a search typed key by key
        assert h.get("/patients", params={"q": q}).status_code == 200
    lists = _audit(h, object_type="patient_list").json()
    assert len(lists) == 1
    with h.clinic.db.session() as s:  # a minute later: a new event
        s.execute(text("UPDATE audit_events SET at = :at WHERE object_type = 'patient_list'"),
                  {"at": utcnow() - timedelta(minutes=2)})
    h.get("/patients")
    assert len(_audit(h, object_type="patient_list").json()) == 2


# --- 4. tokens ------------------------------------------------------------------------------


def test_a_token_expiring_within_7_days_says_so(h: ClinicHarness) -> None:
    assert h.post("/auth/tokens", json={"name": "short", "days": 3}).status_code == 201
    assert h.post("/auth/tokens", json={"name": "long", "days": 30}).status_code == 201
    got = {t["name"]: t for t in h.get("/auth/tokens").json()}
    assert got["short"]["expires_soon"] is True
    assert got["short"]["expires_in_days"] == 2  # 3 days less the seconds since
    assert got["long"]["expires_soon"] is False


def test_an_admin_lists_and_revokes_another_users_token(h: ClinicHarness) -> None:
    ben = h.add_user("ben")
    with h.clinic.db.session() as s:
        token, row = accounts.create_token(s, s.merge(ben), "ben's script", 5)
        token_id = row.id
    bearer = {"Authorization": f"Bearer {token}"}
    assert h.client.get(f"{API}/auth/me", headers=bearer).status_code == 200
    listed = h.get("/admin/tokens")
    assert listed.status_code == 200, listed.text
    row_json = next(t for t in listed.json() if t["id"] == token_id)
    assert (row_json["user"], row_json["name"]) == ("ben", "ben's script")
    assert (row_json["expires_soon"], row_json["revoked_at"]) == (True, None)
    assert token not in listed.text
    assert "hash" not in listed.text
    assert h.client.delete(f"{API}/admin/tokens/{token_id}").status_code == 204
    assert h.client.get(f"{API}/auth/me", headers=bearer).status_code == 401
    assert h.client.delete(f"{API}/admin/tokens/{token_id}").status_code == 404
    assert next(t for t in h.get("/admin/tokens").json()
                if t["id"] == token_id)["revoked_at"] is not None
    assert [(e["user"], e["action"]) for e in
            _audit(h, object_type="api_token", object_id=token_id).json()] == [
        ("admin", "delete")]


def test_a_clinician_cannot_list_or_revoke_others_tokens(h: ClinicHarness) -> None:
    cleo = h.add_user("cleo")
    with h.clinic.db.session() as s:
        token, _ = accounts.create_token(s, s.merge(cleo), "x")
    bearer = {"Authorization": f"Bearer {token}"}
    assert h.client.get(f"{API}/admin/tokens", headers=bearer).status_code == 403
    assert h.client.delete(f"{API}/admin/tokens/1", headers=bearer).status_code == 403


# --- 6. the password check ------------------------------------------------------------------


@pytest.mark.parametrize("password", ["skincancer2026", "Melanoma2026!", "dermoscopy1"])
def test_passwords_built_on_the_fields_words_are_refused(password: str) -> None:
    with pytest.raises(accounts.AccountError, match="too easy to guess"):
        accounts.check_password(password, "ana")
