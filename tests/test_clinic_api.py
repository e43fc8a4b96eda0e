"""The clinic HTTP API on a bare app (clinic routers only), on SQLite and PostgreSQL, with real
images: auth (cookie + CSRF, API tokens, roles, rate limit), patients -> lesions -> visits, the
timeline, notes, diagnoses, similar cases, patient export + delete, the audit log, clear 4xx."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from clinic_support import API, PASSWORD, ClinicHarness, image_bytes, image_ids


def _png(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    assert im.format == "PNG"
    return im


def test_login_cookie_csrf_and_roles(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("ana")
    assert h.get("/patients").status_code == 401
    assert h.get("/auth/me").status_code == 401
    r = h.post("/auth/login", json={"username": "ana", "password": "wrong password"})
    assert r.status_code == 401
    assert r.json() == {"detail": "wrong user name or password"}
    r = h.post("/auth/login", json={"username": "ana", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["user"] == {"id": body["user"]["id"], "username": "ana", "role": "clinician"}
    cookie = r.headers["set-cookie"]
    assert "dermsight_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    csrf = body["csrf_token"]
    # a cookie-authenticated unsafe request without / with a wrong CSRF header
    r = h.post("/patients", json={"ref": "P-1"})
    assert r.status_code == 403
    assert "X-CSRF-Token" in r.json()["detail"]
    r = h.post("/patients", json={"ref": "P-1"}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    h.client.headers["X-CSRF-Token"] = csrf
    assert h.post("/patients", json={"ref": "P-1"}).status_code == 201
    assert h.post("/patients", json={"ref": "P-1"}).status_code == 409
    assert h.get("/auth/me").json()["csrf_token"] == csrf
    # wrong role
    assert h.client.delete(f"{API}/patients/1").status_code == 403
    assert h.get("/admin/audit").status_code == 403
    assert h.post("/admin/users", json={"username": "x", "password": PASSWORD,
                                        "role": "admin"}).status_code == 403
    # logout ends the session on the server
    assert h.post("/auth/logout").status_code == 204
    h.client.cookies.set("dermsight_session", cookie.split("=", 1)[1].split(";", 1)[0])
    assert h.get("/patients").status_code == 401


def test_login_rate_limit(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("ana")
    for _ in range(5):
        r = h.post("/auth/login", json={"username": "ana", "password": "not the password"})
        assert r.status_code == 401
    r = h.post("/auth/login", json={"username": "ana", "password": PASSWORD})
    assert r.status_code == 429  # even the right password, for the rest of the window
    assert int(r.headers["Retry-After"]) > 0


def test_api_tokens(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("ana")
    h.add_user("bob")
    h.login("ana")
    r = h.post("/auth/tokens", json={"name": "scripts"})
    assert r.status_code == 201
    tok = r.json()
    listed = h.get("/auth/tokens").json()
    assert [t["name"] for t in listed] == ["scripts"]
    assert "token" not in listed[0]
    with TestClient(h.client.app) as other:  # no cookie: the bearer token alone
        auth = {"Authorization": f"Bearer {tok['token']}"}
        assert other.get(f"{API}/patients", headers=auth).status_code == 200
        # no CSRF needed with a token
        assert other.post(f"{API}/patients", json={"ref": "T-1"}, headers=auth).status_code \
            == 201
        assert other.get(f"{API}/patients",
                         headers={"Authorization": "Bearer dsk_made_up"}).status_code == 401
        # bob cannot revoke ana's token
        with TestClient(h.client.app) as bob_client:
            bob = ClinicHarness(h.clinic, bob_client)
            bob.login("bob")
            assert bob_client.delete(f"{API}/auth/tokens/{tok['id']}").status_code == 404
        assert h.client.delete(f"{API}/auth/tokens/{tok['id']}").status_code == 204
        assert other.get(f"{API}/patients", headers=auth).status_code == 401  # revoked


def _visit_ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_patients_lesions_visits_timeline(  # noqa: PLR0915
        harness: ClinicHarness, clinic_model: Any, data_dir: Path,
        metadata: pd.DataFrame) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    nv = image_bytes(data_dir, image_ids(metadata, "NV", 1)[0])
    mel = image_bytes(data_dir, image_ids(metadata, "MEL", 1)[0])
    pid = h.patient("P-001")
    lid = h.lesion(pid, map={"view": "back", "x": 0.4, "y": 0.3}, location="below scapula")
    v1 = _visit_ok(h.visit(lid, nv, taken_at="2026-01-01", note="first look"))
    v2 = _visit_ok(h.visit(lid, mel, taken_at="2026-03-01"))
    card = clinic_model.card
    assert v1["model"] == {"name": card.name, "version": card.version,
                           "bundle_sha256": card.onnx_sha256}
    direct = clinic_model.predict(nv, age=55, sex="female", site="posterior torso",
                                  heatmap=False).to_dict(heatmap_png=False)
    assert v1["result"]["risk"] == direct["risk"]
    assert v1["result"]["probabilities"] == direct["probabilities"]
    assert "heatmap" not in v1["result"]
    assert (v1["age"], v1["sex"], v1["site"], v1["note"]) == \
        (55.0, "female", "posterior torso", "first look")
    assert v1["created_by"] == "ana"
    # the stored image: the decoded pixels as PNG, no metadata of the upload
    img = h.get(v1["image_url"].removeprefix(API))
    assert img.status_code == 200
    assert img.headers["content-type"] == "image/png"
    stored = _png(img.content)
    assert stored.mode == "RGB"
    assert not stored.info.get("exif")
    assert stored.size == Image.open(io.BytesIO(nv)).size
    if v1["heatmap_url"]:
        heat = _png(h.get(v1["heatmap_url"].removeprefix(API)).content)
        assert heat.has_transparency_data  # laid over the image: see-through where cold
    # the timeline
    lesion = h.get(f"/lesions/{lid}").json()
    assert [v["id"] for v in lesion["visits"]] == [v1["id"], v2["id"]]
    assert lesion["patient"] == {"id": pid, "ref": "P-001"}
    assert lesion["lesion"]["map"] == {"view": "back", "x": 0.4, "y": 0.3}
    [change] = lesion["changes"]
    assert change["days"] == 59
    assert (change["from_visit"], change["to_visit"]) == (v1["id"], v2["id"])
    assert (change["tier_from"], change["tier_to"]) == (v1["result"]["risk"],
                                                        v2["result"]["risk"])
    p1 = v1["result"].get("malignant_probability")
    p2 = v2["result"].get("malignant_probability")
    if p1 is not None and p2 is not None:
        assert change["malignant_delta"] == pytest.approx(p2 - p1, abs=1e-5)
        rank = {"low": 0, "moderate": 1, "high": 2}
        assert change["risk_rose"] == (rank[v2["result"]["risk"]] > rank[v1["result"]["risk"]]
                                       or p2 - p1 >= 0.10)
    patients = h.get("/patients", params={"q": "P-0"}).json()
    assert [(p["ref"], p["n_lesions"], p["n_visits"], p["last_visit_at"]) for p in patients] \
        == [("P-001", 1, 2, "2026-03-01")]
    assert patients[0]["risk_rose"] == change["risk_rose"]
    assert h.get("/patients", params={"q": "Q"}).json() == []
    detail = h.get(f"/patients/{pid}").json()
    assert detail["lesions"][0]["n_visits"] == 2
    assert detail["lesions"][0]["latest_risk"] == v2["result"]["risk"]
    # notes: changed, capped
    r = h.client.patch(f"{API}/visits/{v1['id']}", json={"note": "excised"})
    assert r.json()["note"] == "excised"
    r = h.client.patch(f"{API}/visits/{v1['id']}", json={"note": "x" * 2001})
    assert r.status_code == 413
    assert "too long" in r.json()["detail"]
    r = h.visit(lid, nv, note="y" * 2001)
    assert r.status_code == 413
    # bad input: clear 4xx
    assert h.visit(lid, b"this is not an image").status_code == 422
    assert h.visit(lid, nv[: len(nv) // 3]).status_code == 422
    assert h.visit(lid, nv, age="two hundred").status_code == 422
    assert h.visit(lid, nv, taken_at="yesterday").status_code == 422
    assert h.visit(999999, nv).status_code == 404
    assert h.get("/patients/999999").status_code == 404
    assert h.get("/patients/99999999999").status_code == 422  # beyond any id (PostgreSQL int)
    assert h.get("/visits/0/image").status_code == 422
    assert h.get("/lesions/999999").status_code == 404
    assert h.get("/visits/999999/image").status_code == 404
    assert h.post("/patients/999999/lesions", json={}).status_code == 404
    assert h.post(f"/patients/{pid}/lesions", json={"side": "up"}).status_code == 422
    assert h.client.put(f"{API}/lesions/{lid}/diagnosis",
                        json={"code": "XYZ", "method": "clinical"}).status_code == 422
    # a confirmed second lesion is found as a similar case of the first
    lid2 = h.lesion(pid, side="right")
    v3 = _visit_ok(h.visit(lid2, mel, taken_at="2026-03-02"))
    r = h.client.put(f"{API}/lesions/{lid2}/diagnosis",
                     json={"code": "MEL", "method": "histopathology", "note": "pT1a"})
    assert r.status_code == 200
    assert r.json()["code"] == "MEL"
    assert r.json()["recorded_by"] == "ana"
    sim = h.get(f"/visits/{v2['id']}/similar", params={"k": 3}).json()
    assert sim["clinic"][0]["visit_id"] == v3["id"]  # the same image
    assert sim["clinic"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert sim["clinic"][0]["diagnosis"] == "MEL"
    # the bundled reference set: the same neighbours the facade finds for this image
    if v2["result"]["risk"] != "cannot_assess":
        pred = clinic_model.predict(mel, age=55, sex="female", site="posterior torso",
                                    heatmap=False)
        expected = [c.image_id for c in clinic_model.similar(pred, 3)]
        assert [c["image_id"] for c in sim["reference"]] == expected
        assert all(c["licence"] and c["thumbnail_url"].endswith(".webp")
                   for c in sim["reference"])
    # the patient's export
    r = h.get(f"/patients/{pid}/export")
    assert r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    doc = json.loads(zf.read("patient.json"))
    assert doc["ref"] == "P-001"
    files = [v["image_file"] for le in doc["lesions"] for v in le["visits"]]
    assert len(files) == 3
    assert all(_png(zf.read(f)).size == stored.size for f in files[:1])


def test_admin_users_audit_and_patient_deletion(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame,
        tmp_path: Path) -> None:
    h = harness
    h.add_user("root", role="admin")
    h.login("root")
    r = h.post("/admin/users", json={"username": "ana", "password": PASSWORD,
                                     "role": "clinician"})
    assert r.status_code == 201
    assert h.post("/admin/users", json={"username": "ana", "password": PASSWORD,
                                        "role": "clinician"}).status_code == 409
    assert h.post("/admin/users", json={"username": "bo", "password": "short",
                                        "role": "clinician"}).status_code == 422
    assert [u["username"] for u in h.get("/admin/users").json()] == ["root", "ana"]
    pid = h.patient("DEL-1")
    lid = h.lesion(pid)
    keep = h.lesion(h.patient("KEEP-1"))
    img = image_bytes(data_dir, image_ids(metadata, "BKL", 1)[0])
    other = image_bytes(data_dir, image_ids(metadata, "NV", 2)[1])
    v = _visit_ok(h.visit(lid, img))
    _visit_ok(h.visit(lid, other))
    _visit_ok(h.visit(keep, other))  # shares the second image file with the deleted patient
    folder = tmp_path / "images"
    before = set(p.name for p in folder.iterdir())
    assert h.get(f"/patients/{pid}").status_code == 200
    assert h.get(f"/patients/{pid}/export").status_code == 200
    assert h.client.delete(f"{API}/patients/{pid}").status_code == 204
    assert h.get(f"/patients/{pid}").status_code == 404
    assert h.get(f"/visits/{v['id']}/image").status_code == 404
    after = set(p.name for p in folder.iterdir())
    gone = before - after
    assert gone  # the first image (and its heatmap, if any) are deleted from disk
    assert all(not (folder / name).exists() for name in gone)
    assert h.get(f"/lesions/{keep}").json()["visits"][0]["image_url"]
    kept = h.get(f"/lesions/{keep}").json()["visits"][0]["image_url"].removeprefix(API)
    assert h.get(kept).status_code == 200  # the shared file survives
    assert h.client.delete(f"{API}/patients/{pid}").status_code == 404
    log = h.get("/admin/audit", params={"limit": 50}).json()
    seen = {(e["action"], e["object_type"]) for e in log}
    assert {("create", "patient"), ("create", "visit"), ("export", "patient"),
            ("delete", "patient"), ("create", "user"), ("login", "user"), ("view", "patient"),
            ("view", "lesion")} <= seen
    assert ("view", "patient", pid) in {(e["action"], e["object_type"], e["object_id"])
                                        for e in log}
    assert all(set(e) == {"id", "at", "user", "action", "object_type", "object_id",
                          "patient_id"} for e in log)
    assert "DEL-1" not in json.dumps(log)  # ids and times only


def test_similar_cases_show_each_confirmed_lesion_once(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame) -> None:
    """A confirmed lesion photographed at several visits is one match (its visit closest to the
    query), so k matches show k lesions (the audit saw one lesion in 4 of 5 slots)."""
    h = harness
    h.add_user("ana")
    h.login("ana")
    mel, nv, bkl = (image_bytes(data_dir, image_ids(metadata, dx, 1)[0])
                    for dx in ("MEL", "NV", "BKL"))
    pid = h.patient("SIM-1")
    query = _visit_ok(h.visit(h.lesion(pid, side="left"), mel, taken_at="2026-03-01"))
    seen_twice = h.lesion(pid, side="right")
    same = _visit_ok(h.visit(seen_twice, mel, taken_at="2026-03-02"))
    _visit_ok(h.visit(seen_twice, nv, taken_at="2026-03-09"))
    other = h.lesion(pid, side="midline")
    _visit_ok(h.visit(other, bkl, taken_at="2026-03-03"))
    for lesion, code in ((seen_twice, "MEL"), (other, "BKL")):
        r = h.client.put(f"{API}/lesions/{lesion}/diagnosis",
                         json={"code": code, "method": "histopathology"})
        assert r.status_code == 200, r.text
    found = h.get(f"/visits/{query['id']}/similar", params={"k": 3}).json()["clinic"]
    assert found[0]["visit_id"] == same["id"]  # the same image: that lesion's closest visit
    assert [c["diagnosis"] for c in found] == ["MEL", "BKL"]  # two lesions, two matches
