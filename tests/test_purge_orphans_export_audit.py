"""The retention purge's empty lesions and patients, and the confirmed-case export's audit events
(clinic, ``rights.purge_plan`` / ``GET /clinic/export/confirmed``), on SQLite and PostgreSQL.

1. The purge deleted a lesion or a patient only when this same run had purged its last visit:
   a patient created without lesions, a lesion without visits or one whose visits were deleted
   by hand stayed for good, past any retention period. It now also deletes every lesion without
   visits and without a diagnosis, and every patient without lesions, created before the
   period; one created within it stays, even empty.
2. The confirmed-case export wrote one ``confirmed_cases`` event naming no patient, so a
   patient's audit history (``?patient=<id>``) did not show that their images and data were
   exported. It now also writes one ``confirmed_cases_patient`` event per patient the zip
   holds rows of, carrying the patient's id.
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select, text, update

from clinic_support import (
    API,
    SQLITE_ONLY,
    ClinicHarness,
    image_bytes,
    image_ids,
    unassessable_jpeg,
)

DAYS = 30


def _signed_in(h: ClinicHarness) -> ClinicHarness:
    h.add_user("ana")
    h.login("ana")
    return h


def _age(h: ClinicHarness, days: int) -> None:
    """Every patient, lesion and visit stored so far: created ``days`` days ago."""
    from dermsight.clinic.models import Lesion, Patient, Visit, utcnow

    when = utcnow() - timedelta(days=days)
    with h.clinic.db.session() as s:
        for model in (Patient, Lesion, Visit):
            s.execute(update(model).values(created_at=when))


def _ids(h: ClinicHarness) -> tuple[set[int], set[int], set[int]]:
    from dermsight.clinic.models import Lesion, Patient, Visit

    with h.clinic.db.session() as s:
        return (set(s.scalars(select(Patient.id))), set(s.scalars(select(Lesion.id))),
                set(s.scalars(select(Visit.id))))


def _purge_events(h: ClinicHarness) -> list[tuple[str, int, int | None]]:
    with h.clinic.db.session() as s:
        rows = s.execute(text("SELECT object_type, object_id, patient_id FROM audit_events "
                              "WHERE action = 'purge' ORDER BY id"))
        return [(r[0], r[1], r[2]) for r in rows]


def _visit(h: ClinicHarness, lid: int, image: bytes) -> int:
    r = h.visit(lid, image)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _nv(data_dir: Path, metadata: pd.DataFrame, n: int) -> list[bytes]:
    return [image_bytes(data_dir, i) for i in image_ids(metadata, "NV", n)]


# --- 1. the retention purge ------------------------------------------------------------------


def test_the_purge_deletes_old_empty_lesions_and_patients_and_keeps_recent_ones(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame) -> None:
    from dermsight.clinic.models import Patient, utcnow
    from dermsight.clinic.rights import purge_plan

    h = _signed_in(harness)
    img_a, img_b = _nv(data_dir, metadata, 2)
    empty_patient = h.patient("EMPTY-PATIENT-DOE")  # never had a lesion
    roe = h.patient("P-ROE")
    roe_lesion = h.lesion(roe, location="behind left ear of Mr Roe")  # never had a visit
    moved = h.patient("P-VISITS-DELETED")
    moved_lesion = h.lesion(moved)
    wrong = _visit(h, moved_lesion, img_a)
    assert h.client.delete(f"{API}/visits/{wrong}").status_code == 204  # filed wrongly
    confirmed = h.patient("P-CONFIRMED-NO-VISITS")
    confirmed_lesion = h.lesion(confirmed)
    r = h.client.put(f"{API}/lesions/{confirmed_lesion}/diagnosis",
                     json={"code": "NV", "method": "histopathology"})
    assert r.status_code == 200, r.text
    followed = h.patient("P-FOLLOWED")
    followed_old_lesion = h.lesion(followed)  # old and empty: purged; the patient stays
    _age(h, 400)
    followed_new_lesion = h.lesion(followed)  # recent and empty: a clinician just made it
    recent_visit = _visit(h, followed_new_lesion, img_b)
    new_patient = h.patient("P-JUST-CREATED")  # recent, no lesion yet
    new_patient_lesion = h.lesion(new_patient)  # recent, no visit yet
    old_patient = h.patient("P-OLD-WITH-NEW-LESION")
    old_patient_lesion = h.lesion(old_patient)
    with h.clinic.db.session() as s:  # an old patient who was just given a new lesion
        s.execute(update(Patient).where(Patient.id == old_patient)
                  .values(created_at=utcnow() - timedelta(days=400)))
    before = _ids(h)

    plan = purge_plan(h.clinic, DAYS, dry_run=True)
    assert plan.visit_ids == []
    assert plan.lesion_ids == sorted([roe_lesion, moved_lesion, followed_old_lesion])
    assert plan.patient_ids == sorted([empty_patient, roe, moved])
    assert _ids(h) == before  # a dry run deletes nothing
    assert _purge_events(h) == []

    done = purge_plan(h.clinic, DAYS)
    assert done == plan
    patients, lesions, visits = _ids(h)
    assert patients == {confirmed, followed, new_patient, old_patient}
    assert lesions == {confirmed_lesion, followed_new_lesion, new_patient_lesion,
                       old_patient_lesion}
    assert visits == {recent_visit}
    events = _purge_events(h)
    assert sorted(e for e in events if e[0] == "lesion") == sorted(
        [("lesion", roe_lesion, roe), ("lesion", moved_lesion, moved),
         ("lesion", followed_old_lesion, followed)])
    assert sorted(e for e in events if e[0] == "patient") == sorted(
        [("patient", pid, pid) for pid in (empty_patient, roe, moved)])
    assert len(events) == 6
    again = purge_plan(h.clinic, DAYS, dry_run=True)
    assert (again.visit_ids, again.lesion_ids, again.patient_ids) == ([], [], [])
    with h.clinic.db.session() as s:  # the lesion's location is gone from the database
        assert s.scalar(text("SELECT count(*) FROM lesions WHERE location LIKE '%Roe%'")) == 0


def test_the_purge_still_deletes_what_it_empties_and_files(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame) -> None:
    from dermsight.clinic.models import Visit
    from dermsight.clinic.rights import purge_plan

    h = _signed_in(harness)
    img_a, img_b = _nv(data_dir, metadata, 2)
    pid = h.patient("P-EXPIRED")
    lid = h.lesion(pid)
    old = _visit(h, lid, img_a)
    _age(h, 400)
    keeper = h.patient("P-KEEP")
    kept = _visit(h, h.lesion(keeper), img_b)
    done = purge_plan(h.clinic, DAYS)
    assert (done.visit_ids, done.lesion_ids, done.patient_ids) == ([old], [lid], [pid])
    patients, _, visits = _ids(h)
    assert patients == {keeper}
    assert visits == {kept}

    with h.clinic.db.session() as s:
        v = s.get(Visit, kept)
        assert v is not None
        kept_keys = {k for k in (v.image_key, v.heatmap_key) if k}
    files = {p.name for p in Path(h.clinic.config.images).rglob("*") if p.is_file()}
    assert files == kept_keys  # the purged visit's image and heatmap are gone


def test_the_purge_deletes_recent_lesions_and_patients_it_emptied_in_chunks(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dermsight.clinic import rights
    from dermsight.clinic.models import Visit, utcnow

    monkeypatch.setattr(rights, "_IN_MAX", 2, raising=False)  # 3 lesions: 2 chunks
    h = _signed_in(harness)
    pids, lids, vids = [], [], []
    for i, img in enumerate(_nv(data_dir, metadata, 3)):
        pids.append(h.patient(f"P-CHUNK-{i}"))
        lids.append(h.lesion(pids[-1]))
        vids.append(_visit(h, lids[-1], img))
    with h.clinic.db.session() as s:  # only the visits are old (as before this release)
        s.execute(update(Visit).values(created_at=utcnow() - timedelta(days=400)))
    done = rights.purge_plan(h.clinic, DAYS)
    assert (done.visit_ids, done.lesion_ids, done.patient_ids) == (vids, lids, pids)
    assert _ids(h) == (set(), set(), set())


@SQLITE_ONLY
def test_the_purge_command_deletes_an_old_empty_patient(
        harness: ClinicHarness) -> None:
    from test_clinic_processes import cli

    h = _signed_in(harness)
    pid = h.patient("EMPTY-PATIENT-DOE")
    _age(h, 400)
    args = ("--retention-days", str(DAYS), "--database", h.clinic.db.url,
            "--images", h.clinic.config.images)
    r = cli("clinic", "purge", "--dry-run", *args)
    assert r.returncode == 0, r.stderr
    assert "would purge 0 visits, 0 lesions and 1 patient (" in r.stdout
    assert f"patient ids: {pid}" in r.stdout
    assert "EMPTY-PATIENT-DOE" not in r.stdout + r.stderr
    r = cli("clinic", "purge", *args)
    assert r.returncode == 0, r.stderr
    assert _ids(h)[0] == set()
    r = cli("clinic", "purge", "--dry-run", *args)
    assert "0 visits, 0 lesions and 0 patients" in r.stdout


# --- 2. the confirmed-case export's audit events ------------------------------------------------


def _audit(h: ClinicHarness, **params: Any) -> list[tuple[str, str, int | None, int | None]]:
    r = h.get("/admin/audit", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return [(e["action"], e["object_type"], e["object_id"], e["patient_id"])
            for e in reversed(r.json())]


def test_the_confirmed_export_logs_one_event_per_patient_it_holds(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame) -> None:
    h = harness
    h.add_user("admin", role="admin")
    h.login("admin")
    img_a, img_b = _nv(data_dir, metadata, 2)
    pids, lids = [], []
    for ref, image in (("P-EXP-1", img_a), ("P-EXP-2", img_b),
                       ("P-GATE-REFUSED", unassessable_jpeg()), ("P-NO-DIAGNOSIS", img_a)):
        pid = h.patient(ref)
        lid = h.lesion(pid)
        _visit(h, lid, image)
        pids.append(pid)
        lids.append(lid)
    for lid in lids[:3]:
        r = h.client.put(f"{API}/lesions/{lid}/diagnosis",
                         json={"code": "NV", "method": "histopathology"})
        assert r.status_code == 200, r.text
    start = len(_audit(h))

    r = h.get("/clinic/export/confirmed")
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(
        zipfile.ZipFile(io.BytesIO(r.content)).read("metadata.csv").decode())))
    assert sorted({row["group_id"] for row in rows}) == [f"patient_{p}" for p in pids[:2]]
    assert _audit(h)[start:] == [
        ("export", "confirmed_cases", None, None),
        ("export", "confirmed_cases_patient", pids[0], pids[0]),
        ("export", "confirmed_cases_patient", pids[1], pids[1]),
    ]
    # the patient's history lists the export; patients not in the zip have none
    assert ("export", "confirmed_cases_patient", pids[0], pids[0]) in _audit(
        h, patient=pids[0])
    for pid in pids[2:]:
        assert [e for e in _audit(h, patient=pid) if e[0] == "export"] == []


def test_confirmed_zip_names_the_patients_it_holds(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame) -> None:
    from dermsight.clinic import exports

    h = _signed_in(harness)
    with h.clinic.db.session() as s:
        assert exports.confirmed_zip(s, h.clinic.images).patient_ids == ()
    pid = h.patient("P-ZIP")
    lid = h.lesion(pid)
    for img in _nv(data_dir, metadata, 2):
        _visit(h, lid, img)
    r = h.client.put(f"{API}/lesions/{lid}/diagnosis",
                     json={"code": "NV", "method": "histopathology"})
    assert r.status_code == 200, r.text
    with h.clinic.db.session() as s:
        export = exports.confirmed_zip(s, h.clinic.images)
    assert export.n_rows == 2
    assert export.patient_ids == (pid,)


def test_a_purge_within_the_period_keeps_empty_lesions_and_patients(
        harness: ClinicHarness) -> None:
    from dermsight.clinic.rights import purge_plan

    h = _signed_in(harness)
    pid = h.patient("P-FRESH")
    lid = h.lesion(pid)
    _age(h, DAYS - 1)
    done = purge_plan(h.clinic, DAYS)
    assert (done.visit_ids, done.lesion_ids, done.patient_ids) == ([], [], [])
    assert _ids(h)[:2] == ({pid}, {lid})
