"""A visit's body site against its lesion's and its other visits' (clinic, ``sites``).

1. A visit whose DICOM site contradicts its lesion's (warning ``site_contradicts_lesion``: the
   photo may be of another lesion) is left out of the confirmed-case export (counted in
   README.txt and X-Dermsight-Left-Out) and of the clinic's similar cases.
2. A lesion without a body site: a visit whose site (from the file or typed) contradicts
   another visit's of the lesion is stored with a warning (``site_contradicts_earlier_visit``)
   naming that visit's site and date.
3. The DICOM warning quotes the file's own words ("'CHEST', read as anterior torso").
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clinic_support import API, ClinicHarness, image_bytes, served_clinic

HIGH = "ISIC_0030403"
DOUBT_CODES = {"site_contradicts_lesion", "site_contradicts_earlier_visit"}


@pytest.fixture
def app_harness(tmp_path: Path) -> Iterator[ClinicHarness]:
    with served_clinic(tmp_path) as h:
        yield h


def _dicom(tmp_path: Path, data_dir: Path, site: str, *, body_part: str | None = None) -> bytes:
    """A DICOM of a real lesion photo whose BodyPartExamined is ``site``'s (or ``body_part``
    verbatim)."""
    import pydicom

    from dermsight.io.dicom import write_dicom

    rgb = np.asarray(Image.open(io.BytesIO(image_bytes(data_dir, HIGH))).convert("RGB"))
    path = write_dicom(tmp_path / "visit.dcm", rgb, age=60, sex="male", site=site)
    if body_part is not None:
        ds = pydicom.dcmread(path)
        ds.BodyPartExamined = body_part
        ds.save_as(path)
    return path.read_bytes()


def _upload(h: ClinicHarness, lesion_id: int, dcm: bytes, **fields: str) -> dict[str, Any]:
    r = h.post(f"/lesions/{lesion_id}/visits",
               files={"image": ("visit.dcm", dcm, "application/dicom")}, data=fields)
    assert r.status_code == 201, r.text
    visit: dict[str, Any] = r.json()
    return visit


def _codes(visit: dict[str, Any]) -> set[str]:
    return {f["code"] for f in visit["result"]["flags"]}


def _confirm(h: ClinicHarness, lesion_id: int, code: str = "MEL") -> None:
    r = h.client.put(f"{API}/lesions/{lesion_id}/diagnosis",
                     json={"code": code, "method": "histopathology"})
    assert r.status_code == 200, r.text


# --- 1. left out of the export and of similar cases ---------------------------------------------


def test_a_visit_whose_site_contradicts_its_lesion_is_left_out_of_the_export(
        app_harness: ClinicHarness, data_dir: Path, tmp_path: Path) -> None:
    h = app_harness
    lid = h.lesion(h.patient("EXP-SITE"), body_site="posterior torso")
    good = h.visit(lid, image_bytes(data_dir, HIGH))
    assert good.status_code == 201, good.text
    doubtful = _upload(h, lid, _dicom(tmp_path, data_dir, "head/neck"))
    assert "site_contradicts_lesion" in _codes(doubtful)
    _confirm(h, lid)

    r = h.get("/clinic/export/confirmed")
    assert r.status_code == 200, r.text
    assert r.headers["X-Dermsight-Left-Out"] == "1"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    rows = list(csv.DictReader(io.StringIO(zf.read("metadata.csv").decode())))
    assert [row["image_id"] for row in rows] == [f"visit_{good.json()['id']}"]
    assert f"images/visit_{doubtful['id']}.png" not in zf.namelist()
    readme = zf.read("README.txt").decode()
    assert "1 image:" in readme
    assert "1 visit was left out" in readme
    assert "- 0: the gate refused the photo" in readme
    assert "- 1: the visit carries a warning that its body site" in readme


def test_a_visit_whose_site_contradicts_its_lesion_is_no_similar_case(
        app_harness: ClinicHarness, data_dir: Path, tmp_path: Path) -> None:
    h = app_harness
    pid = h.patient("SIM-SITE")
    query = h.visit(h.lesion(pid), image_bytes(data_dir, HIGH))
    assert query.status_code == 201, query.text
    # another confirmed lesion whose only visit's DICOM says head/neck on a torso lesion
    doubtful_lesion = h.lesion(pid, body_site="posterior torso", side="right")
    doubtful = _upload(h, doubtful_lesion, _dicom(tmp_path, data_dir, "head/neck"))
    assert "site_contradicts_lesion" in _codes(doubtful)
    _confirm(h, doubtful_lesion)
    # and one whose visit is fine: the list is not empty for another reason
    fine_lesion = h.lesion(pid, body_site="posterior torso", location="scapula")
    fine = h.visit(fine_lesion, image_bytes(data_dir, HIGH))
    assert fine.status_code == 201, fine.text
    _confirm(h, fine_lesion, "NV")

    r = h.get(f"/visits/{query.json()['id']}/similar", params={"k": 5})
    assert r.status_code == 200, r.text
    ids = [c["visit_id"] for c in r.json()["clinic"]]
    assert ids == [fine.json()["id"]]


# --- 2. a lesion without a body site ------------------------------------------------------------


def test_a_lesion_without_a_site_warns_when_a_dicom_visit_contradicts_an_earlier_one(
        app_harness: ClinicHarness, data_dir: Path, tmp_path: Path) -> None:
    h = app_harness
    lid = h.lesion(h.patient("NOSITE-DCM"), body_site=None)
    torso = _upload(h, lid, _dicom(tmp_path, data_dir, "torso"))
    anterior = _upload(h, lid, _dicom(tmp_path, data_dir, "anterior torso"))
    for visit in (torso, anterior):  # the same place, said more precisely: fine
        assert not _codes(visit) & DOUBT_CODES
    head = _upload(h, lid, _dicom(tmp_path, data_dir, "head/neck"))
    # stored with its own site (nothing to prefer it to), with a warning naming the other visit
    assert head["site"] == "head/neck"
    assert head["result"]["input"]["site"] == "head/neck"
    today = dt.date.today().isoformat()
    [flag] = [f for f in head["result"]["flags"] if f["code"] in DOUBT_CODES]
    assert flag == {
        "code": "site_contradicts_earlier_visit",
        "blocking": False,
        "message": "the DICOM file's body part ('HEAD/NECK', read as head/neck) contradicts "
        f"the site of this lesion's visit of {today} (anterior torso), and the lesion has no "
        "recorded body site: the model was given head/neck; check that this photo is of this "
        "lesion, and if it is of another one, delete this visit and add the photo to that "
        "lesion",
    }
    [stored] = [v for v in h.get(f"/lesions/{lid}").json()["visits"] if v["id"] == head["id"]]
    assert flag in stored["result"]["flags"]
    # ... and it is no labelled image of the lesion
    _confirm(h, lid)
    r = h.get("/clinic/export/confirmed")
    assert r.headers["X-Dermsight-Left-Out"] == "1"
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert f"images/visit_{head['id']}.png" not in names
    assert f"images/visit_{anterior['id']}.png" in names


def test_a_lesion_without_a_site_warns_when_a_typed_site_contradicts_an_earlier_visit(
        app_harness: ClinicHarness, data_dir: Path) -> None:
    h = app_harness
    lid = h.lesion(h.patient("NOSITE-FORM"), body_site=None)
    first = h.visit(lid, image_bytes(data_dir, HIGH), site="back", taken_at="2025-03-01")
    assert first.status_code == 201, first.text
    assert not _codes(first.json()) & DOUBT_CODES
    broader = h.visit(lid, image_bytes(data_dir, HIGH), site="torso", taken_at="2025-04-01")
    assert broader.status_code == 201, broader.text
    assert not _codes(broader.json()) & DOUBT_CODES
    r = h.visit(lid, image_bytes(data_dir, HIGH), site="lower extremity",
                taken_at="2025-05-01")
    assert r.status_code == 201, r.text  # non-blocking
    v = r.json()
    assert v["site"] == "lower extremity"
    [flag] = [f for f in v["result"]["flags"] if f["code"] in DOUBT_CODES]
    assert flag["code"] == "site_contradicts_earlier_visit"
    assert flag["blocking"] is False
    assert flag["message"].startswith(
        "this visit's site (lower extremity) contradicts the site of this lesion's visit of "
        "2025-04-01 (torso), and the lesion has no recorded body site")


def test_a_lesion_with_a_site_gets_no_earlier_visit_warning(
        app_harness: ClinicHarness, data_dir: Path) -> None:
    # the lesion's own site is the reference there (a typed contradiction is a 422)
    h = app_harness
    lid = h.lesion(h.patient("SITE-KEPT"), body_site="torso")
    for site in ("anterior torso", "posterior torso"):
        r = h.visit(lid, image_bytes(data_dir, HIGH), site=site)
        assert r.status_code == 201, r.text
        assert not _codes(r.json()) & DOUBT_CODES


# --- 3. the file's own words --------------------------------------------------------------------


def test_the_dicom_site_warning_quotes_the_files_body_part(
        app_harness: ClinicHarness, data_dir: Path, tmp_path: Path) -> None:
    h = app_harness
    lid = h.lesion(h.patient("DCM-CHEST"), body_site="posterior torso")
    v = _upload(h, lid, _dicom(tmp_path, data_dir, "anterior torso", body_part="CHEST"))
    [flag] = [f for f in v["result"]["flags"] if f["code"] == "site_contradicts_lesion"]
    assert flag["message"].startswith(
        "the DICOM file's body part ('CHEST', read as anterior torso) contradicts the lesion's "
        "recorded body site (posterior torso): the model was given the lesion's site, "
        "posterior torso;")
    assert v["site"] == "posterior torso"


# --- 4. a doubtful visit does not cast doubt on correct ones -----------------------------------


def test_a_visit_in_doubt_does_not_flag_a_later_visit_that_agrees_with_the_others(
        app_harness: ClinicHarness, data_dir: Path) -> None:
    h = app_harness
    lid = h.lesion(h.patient("NOSITE-SPREAD"), body_site=None)
    first = h.visit(lid, image_bytes(data_dir, HIGH), site="posterior torso",
                    taken_at="2025-03-01")
    assert first.status_code == 201, first.text
    wrong = h.visit(lid, image_bytes(data_dir, HIGH), site="upper extremity",
                    taken_at="2025-04-01")
    assert wrong.status_code == 201, wrong.text
    assert "site_contradicts_earlier_visit" in _codes(wrong.json())
    third = h.visit(lid, image_bytes(data_dir, HIGH), site="posterior torso",
                    taken_at="2025-05-01")
    assert third.status_code == 201, third.text
    assert not _codes(third.json()) & DOUBT_CODES


def test_deleting_the_visit_behind_a_flag_lifts_it(
        app_harness: ClinicHarness, data_dir: Path) -> None:
    h = app_harness
    lid = h.lesion(h.patient("NOSITE-DELETE"), body_site=None)
    first = h.visit(lid, image_bytes(data_dir, HIGH), site="upper extremity",
                    taken_at="2025-03-01")
    assert first.status_code == 201, first.text
    second = h.visit(lid, image_bytes(data_dir, HIGH), site="posterior torso",
                     taken_at="2025-04-01")
    assert second.status_code == 201, second.text
    assert "site_contradicts_earlier_visit" in _codes(second.json())
    r = h.client.delete(f"{API}/visits/{first.json()['id']}")
    assert r.status_code in (200, 204), r.text
    r = h.get(f"/lesions/{lid}")
    assert r.status_code == 200, r.text
    [left] = r.json()["visits"]
    assert left["id"] == second.json()["id"]
    assert not _codes(left) & DOUBT_CODES
