"""Exports with a file missing from the image store, and the dashboard's figures without the
visits whose body site is in doubt (clinic, ``exports`` / ``figures``).

1. A patient's export with a visit's image (or heatmap) missing from the image store (e.g.
   restored from an incomplete backup) exports everything else, lists the missing files in
   ``patient.json`` and ``README.txt`` and logs one WARNING with the count and visit ids (no
   patient data); it was a 404 for the whole export.
2. The confirmed-case export leaves such a visit out, counted under its own reason in
   ``README.txt`` and in ``X-Dermsight-Left-Out``; it was a 404.
3. The dashboard leaves out visits carrying ``site_contradicts_lesion`` /
   ``site_contradicts_earlier_visit`` (the photo may be of another lesion), counted apart from
   the cannot-assess ones (``n_left_out_site_in_doubt``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clinic_support import API, ClinicHarness, image_bytes, image_ids, served_clinic

HIGH = "ISIC_0030403"
LOGGER = "dermsight.clinic.exports"


def _signed_in(h: ClinicHarness) -> ClinicHarness:
    h.add_user("ana")
    h.login("ana")
    return h


def _keys(h: ClinicHarness, visit_id: int) -> tuple[str, str | None]:
    from dermsight.clinic.models import Visit

    with h.clinic.db.session() as s:
        v = s.get(Visit, visit_id)
        return v.image_key, v.heatmap_key


def _two_visits(h: ClinicHarness, data_dir: Path, metadata: pd.DataFrame, ref: str
                ) -> tuple[int, int, int, int]:
    """A patient with one lesion and two visits of different images (no shared file)."""
    pid = h.patient(ref)
    lid = h.lesion(pid)
    first, second = (image_bytes(data_dir, i) for i in image_ids(metadata, "NV", 2))
    ids = []
    for img in (first, second):
        r = h.visit(lid, img)
        assert r.status_code == 201, r.text
        ids.append(int(r.json()["id"]))
    return pid, lid, ids[0], ids[1]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING]


# --- 1. a patient's export ------------------------------------------------------------------------


def test_a_patient_export_with_missing_files_exports_the_rest_and_lists_them(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame,
        caplog: pytest.LogCaptureFixture) -> None:
    h = _signed_in(harness)
    ref = "GAP-PATIENT-7"
    pid, _, v1, v2 = _two_visits(h, data_dir, metadata, ref)
    image1, heatmap1 = _keys(h, v1)
    _, heatmap2 = _keys(h, v2)
    assert heatmap1 is not None
    assert heatmap2 is not None
    h.clinic.images.delete([image1, heatmap2])  # as after an incomplete restore

    caplog.set_level(logging.WARNING, logger=LOGGER)
    r = h.get(f"/patients/{pid}/export")
    assert r.status_code == 200, r.text
    assert r.headers["X-Dermsight-Missing-Files"] == "2"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(zf.namelist())
    assert f"images/visit_{v1}.png" not in names
    assert f"images/visit_{v1}_heatmap.png" in names
    assert f"images/visit_{v2}.png" in names
    assert f"images/visit_{v2}_heatmap.png" not in names

    doc = json.loads(zf.read("patient.json"))
    assert doc["ref"] == ref
    assert doc["missing_files"] == {"images": [v1], "heatmaps": [v2]}
    visits = {v["id"]: v for le in doc["lesions"] for v in le["visits"]}
    assert visits[v1]["image_missing"] is True
    assert "image_file" not in visits[v1]
    assert visits[v1]["heatmap_file"] == f"images/visit_{v1}_heatmap.png"
    assert visits[v2]["heatmap_missing"] is True
    assert "heatmap_file" not in visits[v2]
    assert visits[v2]["image_file"] == f"images/visit_{v2}.png"
    for v in visits.values():  # every file patient.json names is in the zip
        for key in ("image_file", "heatmap_file"):
            assert key not in v or v[key] in names

    readme = zf.read("README.txt").decode()
    assert f"- images missing: visit {v1}\n" in readme
    assert f"- heatmaps missing: visit {v2}\n" in readme

    [line] = _warnings(caplog)
    assert "2 stored file(s) missing" in line
    assert f"images of visit ids [{v1}]" in line
    assert f"heatmaps of visit ids [{v2}]" in line
    assert ref not in line


def test_the_patient_export_counts_its_missing_files_for_the_header(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame) -> None:
    from dermsight.clinic import exports
    from dermsight.clinic.models import Patient

    h = _signed_in(harness)
    pid, _, _, v2 = _two_visits(h, data_dir, metadata, "GAP-COUNT")
    with h.clinic.db.session() as s:
        whole = exports.patient_export(s, h.clinic.images, s.get(Patient, pid))
    assert (whole.n_missing, whole.missing_images, whole.missing_heatmaps) == (0, (), ())
    assert "No stored file is missing." in zipfile.ZipFile(io.BytesIO(whole.data)).read(
        "README.txt").decode()

    h.clinic.images.delete([_keys(h, v2)[0]])
    with h.clinic.db.session() as s:
        export = exports.patient_export(s, h.clinic.images, s.get(Patient, pid))
    assert export.n_missing == 1
    assert export.missing_images == (v2,)
    assert export.missing_heatmaps == ()
    assert exports.MISSING_HEADER == "X-Dermsight-Missing-Files"


# --- 2. the confirmed-case export -----------------------------------------------------------------


def test_the_confirmed_export_leaves_out_a_visit_whose_image_is_missing(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame,
        caplog: pytest.LogCaptureFixture) -> None:
    h = _signed_in(harness)
    _, lid, v1, v2 = _two_visits(h, data_dir, metadata, "GAP-CONFIRMED")
    r = h.client.put(f"{API}/lesions/{lid}/diagnosis",
                     json={"code": "NV", "method": "histopathology"})
    assert r.status_code == 200, r.text
    h.clinic.images.delete([_keys(h, v1)[0]])

    caplog.set_level(logging.WARNING, logger=LOGGER)
    r = h.get("/clinic/export/confirmed")
    assert r.status_code == 200, r.text
    assert r.headers["X-Dermsight-Left-Out"] == "1"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    rows = list(csv.DictReader(io.StringIO(zf.read("metadata.csv").decode())))
    assert [row["image_id"] for row in rows] == [f"visit_{v2}"]
    assert sorted(n for n in zf.namelist() if n.startswith("images/")) == \
        [f"images/visit_{v2}.png"]
    readme = zf.read("README.txt").decode()
    assert "1 image:" in readme
    assert "1 visit was left out" in readme
    assert "- 0: the gate refused the photo" in readme
    assert "- 0: the visit carries a warning that its body site" in readme
    assert "- 1: the visit's image file is missing from the image store" in readme

    [line] = _warnings(caplog)
    assert "1 visit image file(s) missing" in line
    assert f"visit ids {v1}" in line


# --- 3. the dashboard without visits whose site is in doubt ---------------------------------------


def _dicom(tmp_path: Path, data_dir: Path, site: str) -> bytes:
    """A DICOM of a real lesion photo whose BodyPartExamined is ``site``'s."""
    from dermsight.io.dicom import write_dicom

    rgb = np.asarray(Image.open(io.BytesIO(image_bytes(data_dir, HIGH))).convert("RGB"))
    return write_dicom(tmp_path / "visit.dcm", rgb, age=60, sex="male", site=site).read_bytes()


def _upload_dicom(h: ClinicHarness, lesion_id: int, dcm: bytes) -> dict[str, Any]:
    r = h.post(f"/lesions/{lesion_id}/visits",
               files={"image": ("visit.dcm", dcm, "application/dicom")})
    assert r.status_code == 201, r.text
    visit: dict[str, Any] = r.json()
    assert "site_contradicts_lesion" in {f["code"] for f in visit["result"]["flags"]}
    assert visit["result"]["risk"] != "cannot_assess"
    return visit


def test_the_dashboard_leaves_out_visits_whose_site_is_in_doubt(
        tmp_path: Path, data_dir: Path) -> None:
    with served_clinic(tmp_path) as h:
        pid = h.patient("DASH-SITE")
        good = h.lesion(pid, body_site="posterior torso", location="scapula")
        assert h.visit(good, image_bytes(data_dir, HIGH)).status_code == 201
        # only visit: its DICOM says head/neck on a torso lesion
        doubtful = h.lesion(pid, body_site="posterior torso", side="right")
        _upload_dicom(h, doubtful, _dicom(tmp_path, data_dir, "head/neck"))
        # a good visit, then a later one in doubt: the good one is the lesion's item
        mixed = h.lesion(pid, body_site="posterior torso", location="flank")
        assert h.visit(mixed, image_bytes(data_dir, HIGH)).status_code == 201
        _upload_dicom(h, mixed, _dicom(tmp_path, data_dir, "head/neck"))
        for lid in (good, doubtful, mixed):
            r = h.client.put(f"{API}/lesions/{lid}/diagnosis",
                             json={"code": "MEL", "method": "histopathology"})
            assert r.status_code == 200, r.text

        r = h.get("/clinic/dashboard")
        assert r.status_code == 200, r.text
        dash = r.json()
    [m] = dash["models"]
    assert m["n_lesions"] == 2
    assert m["n_left_out_site_in_doubt"] == 1
    assert m["n_left_out_cannot_assess"] == 0
    assert "1 confirmed lesion left out: every photo of it this model version could assess " \
        "carries a warning that its body site contradicts" in m["note"]
    assert dash["n_left_out_site_in_doubt"] == 1
    assert dash["n_left_out_cannot_assess"] == 0
