"""Clinic data validation through the real clinic API (SQLite and PostgreSQL, real images): a
lesion's body site is read like the predict API's site; a visit without a site is assessed with
its lesion's, one that contradicts it is refused; patient references and usernames that differ
only in case are one; visit dates before 1990 or in the future are refused."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import inspect, select, text

from clinic_support import PASSWORD, ClinicHarness, image_bytes, image_ids
from dermsight import taxonomy
from dermsight.clinic import accounts, sites
from dermsight.clinic.db import HEAD, Database, current_revision, upgrade
from dermsight.clinic.models import Lesion, Patient, User, Visit


def _upload(h: ClinicHarness, lesion_id: int, image: bytes, **fields: str) -> Any:
    """A visit with exactly the given form fields (no defaults)."""
    return h.post(f"/lesions/{lesion_id}/visits",
                  files={"image": ("lesion.jpg", image, "image/jpeg")}, data=fields)


def _n_visits(h: ClinicHarness, lesion_id: int) -> int:
    return len(h.get(f"/lesions/{lesion_id}").json()["visits"])


@pytest.fixture
def image(data_dir: Any, metadata: pd.DataFrame) -> bytes:
    return image_bytes(data_dir, image_ids(metadata, "NV", 1)[0])


# --- 1. a lesion's body site ----------------------------------------------------------------


def test_lesion_body_site_is_read_like_the_predict_site(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    pid = h.patient("SITE-1")
    with pytest.raises(taxonomy.TaxonomyError) as predict_says:
        taxonomy.normalize_site("foo")
    r = h.post(f"/patients/{pid}/lesions", json={"body_site": "foo", "side": "left"})
    assert r.status_code == 422
    assert r.json() == {"detail": str(predict_says.value)}
    assert "unknown anatomic site 'foo'" in r.json()["detail"]
    for given, stored in (("", None), ("  ", None), ("unknown", None), (None, None),
                          ("Head and Neck", "head/neck"), ("posterior_trunk", "posterior torso"),
                          ("back", "posterior torso"), ("upper extremity", "upper extremity")):
        r = h.post(f"/patients/{pid}/lesions", json={"body_site": given})
        assert r.status_code == 201, (given, r.text)
        assert r.json()["body_site"] == stored, given
    with h.clinic.db.session() as s:  # the refused lesion left no row; the stored are normalised
        rows = list(s.scalars(select(Lesion.body_site).where(Lesion.patient_id == pid)))
    assert len(rows) == 8
    assert set(rows) <= {None, *taxonomy.SITES}


# --- 2. a visit's site against its lesion's -------------------------------------------------


def test_visit_site_comes_from_the_lesion_or_agrees_with_it(
        harness: ClinicHarness, image: bytes, clinic_model: Any) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    pid = h.patient("SITE-2")
    lid = h.lesion(pid, body_site="posterior torso")

    # no site: the lesion's is used, for the model too, and the visit says so
    r = _upload(h, lid, image, age="55", sex="female", site="")
    assert r.status_code == 201, r.text
    v = r.json()
    assert (v["site"], v["site_inherited"]) == ("posterior torso", True)
    assert v["result"]["input"]["site"] == "posterior torso"
    stored = v["result"]["probabilities"]
    with_site = clinic_model.predict(image, age=55, sex="female", site="posterior torso")
    assert np.allclose([stored[c] for c in with_site.probabilities],
                       list(with_site.probabilities.values()), atol=1e-5)

    # a contradicting site: 422 with both sites named, before any work, nothing stored
    r = _upload(h, lid, image, age="55", sex="female", site="head/neck")
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "'head/neck'" in detail
    assert "'posterior torso'" in detail
    assert "contradicts" in detail
    r = _upload(h, lid, image, site="nowhere")  # an unknown site stays the predict API's 422
    assert r.status_code == 422
    assert r.json()["detail"].startswith("unknown anatomic site 'nowhere'")
    assert _n_visits(h, lid) == 1

    # the same site, in another spelling: accepted as given
    r = _upload(h, lid, image, site="Posterior Trunk")
    assert r.status_code == 201, r.text
    assert (r.json()["site"], r.json()["site_inherited"]) == ("posterior torso", False)
    with h.clinic.db.session() as s:
        assert [(x.site, x.site_inherited) for x in s.scalars(
            select(Visit).where(Visit.lesion_id == lid).order_by(Visit.id))] == \
            [("posterior torso", True), ("posterior torso", False)]


def test_visit_site_may_refine_a_broad_lesion_site(harness: ClinicHarness, image: bytes) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    pid = h.patient("SITE-3")
    broad = h.lesion(pid, body_site="torso")
    r = _upload(h, broad, image, site="anterior torso")
    assert r.status_code == 201, r.text
    assert (r.json()["site"], r.json()["site_inherited"]) == ("anterior torso", False)
    assert _upload(h, broad, image, site="lower extremity").status_code == 422

    narrow = h.lesion(pid, body_site="anterior torso")  # a broader visit site: the lesion's wins
    r = _upload(h, narrow, image, site="torso")
    assert r.status_code == 201, r.text
    assert (r.json()["site"], r.json()["site_inherited"]) == ("anterior torso", True)
    assert r.json()["result"]["input"]["site"] == "anterior torso"

    unplaced = h.lesion(pid, body_site=None)  # nothing to inherit, nothing to contradict
    r = _upload(h, unplaced, image)
    assert r.status_code == 201, r.text
    assert (r.json()["site"], r.json()["site_inherited"]) == (None, False)


def test_lesions_stored_before_the_rule(harness: ClinicHarness, image: bytes) -> None:
    """A free-text body site stored by an earlier release is no site for the visits (never a
    5xx, never given to the model); a readable one is read like a new lesion's."""
    h = harness
    h.add_user("ana")
    h.login("ana")
    pid = h.patient("OLD-1")
    free, spelled = h.lesion(pid, body_site=None), h.lesion(pid, body_site=None)
    with h.clinic.db.session() as s:
        for lesion_id, text_ in ((free, "left forearm"), (spelled, "Head and Neck")):
            row = s.get(Lesion, lesion_id)
            assert row is not None
            row.body_site = text_
    r = _upload(h, free, image)
    assert r.status_code == 201, r.text
    assert (r.json()["site"], r.json()["site_inherited"]) == (None, False)
    assert _upload(h, free, image, site="head/neck").status_code == 201
    assert _upload(h, spelled, image, site="torso").status_code == 422
    assert h.get(f"/lesions/{free}").json()["lesion"]["body_site"] == "left forearm"


def test_visit_site_rule() -> None:
    assert sites.visit_site(None, None) == sites.VisitSite(None, inherited=False)
    assert sites.visit_site(None, "head/neck") == sites.VisitSite("head/neck", inherited=True)
    assert sites.visit_site("head/neck", None) == sites.VisitSite("head/neck", inherited=False)
    assert sites.visit_site("palms/soles", "lower extremity").site == "palms/soles"
    assert sites.visit_site("upper extremity", "palms/soles").site == "palms/soles"
    for given, lesion in (("head/neck", "torso"), ("anterior torso", "posterior torso"),
                          ("oral/genital", "palms/soles")):
        with pytest.raises(sites.InvalidValue, match="contradicts"):
            sites.visit_site(given, lesion)


# --- 3. case variants of usernames and patient references ------------------------------------


def test_username_taken_in_any_case(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("admin", role="admin")
    h.login("admin")
    for name in ("ADMIN", " Admin ", "admin"):
        r = h.post("/admin/users", json={"username": name, "password": PASSWORD,
                                         "role": "admin"})
        assert r.status_code == 409, name
        assert "exists already" in r.json()["detail"]
    assert "usernames ignore case" in h.post("/admin/users", json={
        "username": "ADMIN", "password": PASSWORD, "role": "clinician"}).json()["detail"]
    with h.clinic.db.session() as s, pytest.raises(accounts.AccountExists):  # the CLI's path
        accounts.create_user(s, "AdMin", PASSWORD, "clinician")
    assert [u["username"] for u in h.get("/admin/users").json()] == ["admin"]
    # login ignores case as well: "ADMIN" can only mean "admin" (revision 0005)
    h.login("ADMIN")
    assert h.get("/auth/me").json()["user"]["username"] == "admin"
    r = h.post("/admin/users", json={"username": "Bea", "password": PASSWORD,
                                     "role": "clinician"})
    assert r.status_code == 201
    assert r.json()["username"] == "Bea"  # the spelling given is kept


def test_patient_ref_taken_in_any_case(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    h.patient("P-001")
    for ref in ("p-001", " P-001 ", "P-001"):
        r = h.post("/patients", json={"ref": ref})
        assert r.status_code == 409, ref
        assert "exists already" in r.json()["detail"]
    assert "references ignore case" in h.post("/patients", json={"ref": "p-001"}).json()["detail"]
    assert [p["ref"] for p in h.get("/patients").json()] == ["P-001"]
    with h.clinic.db.session() as s:
        assert len(list(s.scalars(select(Patient)))) == 1


# --- 4. visit dates -------------------------------------------------------------------------


def test_visit_dates_before_1990_or_in_the_future_are_refused(
        harness: ClinicHarness, image: bytes) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    lid = h.lesion(h.patient("DATE-1"))
    later = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)).isoformat()
    for day, words in (("1900-01-01", "before 1990-01-01"), ("1989-12-31", "before 1990-01-01"),
                       (later, "lies in the future")):
        r = h.visit(lid, image, taken_at=day)
        assert r.status_code == 422, day
        assert words in r.json()["detail"], day
    assert _n_visits(h, lid) == 0
    r = h.visit(lid, image, taken_at="1990-01-01")
    assert r.status_code == 201, r.text
    assert r.json()["taken_at"] == "1990-01-01"


# --- the schema change ----------------------------------------------------------------------


def test_upgrade_to_site_inherited_keeps_visits(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db.engine, "0003")
    assert "site_inherited" not in {c["name"] for c in inspect(db.engine).get_columns("visits")}
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO patients (id, ref, created_at) VALUES "
                          "(1, 'P-1', '2026-01-02T03:04:05+00:00')"))
        conn.execute(text("INSERT INTO lesions (id, patient_id, created_at) VALUES "
                          "(1, 1, '2026-01-02T03:04:05+00:00')"))
        conn.execute(text(
            "INSERT INTO visits (id, lesion_id, taken_at, created_at, site, result_json, risk, "
            "model_name, model_version, bundle_sha256, image_key) VALUES (1, 1, '2026-01-02', "
            "'2026-01-02T03:04:05+00:00', 'torso', '{}', 'low', 'm', '1', 'abc', 'k.png')"))
    db.upgrade()
    assert current_revision(db.engine) == HEAD
    with db.session() as s:
        v = s.get(Visit, 1)
        assert v is not None
        assert (v.site, v.site_inherited) == ("torso", False)
        assert s.scalar(select(User.id)) is None
    db.dispose()
