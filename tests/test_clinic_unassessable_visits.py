"""Clinic mode in the real app (``create_app`` on SQLite, as ``dermsight serve --database``):

* a visit whose photo the gate refuses ("cannot assess") never hides the lesion's last assessed
  tier or a rise, in the lesion, the patient's page and the patient list, and says beside them
  that the latest photo could not be assessed;
* a DICOM visit stores the age and sex the model read from its tags (the form's values win), so
  the confirmed-cases export re-scores the visit with the inputs it was served with; revision
  0006 gives rows stored before that the values the model read.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clinic_support import ClinicHarness, image_bytes, served_clinic, unassessable_jpeg

LOW = "ISIC_0013053"  # tier low (malignant probability ~0.01)
HIGH = "ISIC_0030403"  # tier high (~0.98)


@pytest.fixture
def app_harness(tmp_path: Path) -> Iterator[ClinicHarness]:
    with served_clinic(tmp_path) as h:
        yield h


def _visit(h: ClinicHarness, lesion_id: int, image: bytes, taken_at: str, risk: str,
           name: str = "lesion.jpg", **fields: str) -> dict[str, Any]:
    r = h.post(f"/lesions/{lesion_id}/visits", files={"image": (name, image, "image/jpeg")},
               data={"taken_at": taken_at, **fields})
    assert r.status_code == 201, r.text
    visit: dict[str, Any] = r.json()
    assert visit["result"]["risk"] == risk
    return visit


def _lesion(h: ClinicHarness, lesion_id: int) -> dict[str, Any]:
    lesion: dict[str, Any] = h.get(f"/lesions/{lesion_id}").json()["lesion"]
    return lesion


def _patient_row(h: ClinicHarness, ref: str) -> dict[str, Any]:
    [row] = h.get("/patients", params={"q": ref}).json()
    assert row["ref"] == ref
    return dict(row)


def test_an_unassessable_photo_never_hides_a_high_tier_or_a_rise(
        app_harness: ClinicHarness, data_dir: Path) -> None:
    h = app_harness
    pid = h.patient("SAFE-1")
    lid = h.lesion(pid, map={"view": "back", "x": 0.4, "y": 0.3})
    _visit(h, lid, image_bytes(data_dir, LOW), "2025-01-01", "low")
    high = _visit(h, lid, image_bytes(data_dir, HIGH), "2025-06-01", "high")
    p_high = high["result"]["malignant_probability"]
    lesion = _lesion(h, lid)
    assert (lesion["latest_risk"], lesion["risk_rose"]) == ("high", True)
    row = _patient_row(h, "SAFE-1")
    assert (row["latest_risk"], row["risk_rose"]) == ("high", True)

    # the gate refuses the next photo: what was assessed stands, and the refusal is said beside it
    refused = _visit(h, lid, unassessable_jpeg(), "2025-09-01", "cannot_assess")
    assert refused["heatmap_url"] is None
    detail = h.get(f"/lesions/{lid}").json()
    for lesion in (detail["lesion"], h.get(f"/patients/{pid}").json()["lesions"][0]):
        assert lesion["n_visits"] == 3
        assert lesion["latest_risk"] == "high"
        assert lesion["latest_malignant_probability"] == pytest.approx(p_high)
        assert lesion["latest_risk_taken_at"] == "2025-06-01"
        assert lesion["risk_rose"] is True
        assert lesion["latest_visit_risk"] == "cannot_assess"
    # the timeline still has the refused visit, without numbers and without a rise
    assert [c["risk_rose"] for c in detail["changes"]] == [True, False]
    assert detail["changes"][-1]["malignant_delta"] is None
    row = _patient_row(h, "SAFE-1")
    assert row["last_visit_at"] == "2025-09-01"
    assert (row["latest_risk"], row["risk_rose"]) == ("high", True)
    assert row["highest_risk"] == "high"
    assert row["latest_visit_risk"] == "cannot_assess"
    assert row["n_lesions_latest_cannot_assess"] == 1

    # a second lesion seen later at low risk: the patient's highest tier is still the first's
    lid2 = h.lesion(pid, side="right")
    _visit(h, lid2, image_bytes(data_dir, LOW), "2025-10-01", "low")
    row = _patient_row(h, "SAFE-1")
    assert (row["latest_risk"], row["latest_visit_risk"]) == ("low", "low")
    assert (row["highest_risk"], row["risk_rose"]) == ("high", True)
    assert row["n_lesions_latest_cannot_assess"] == 1

    # a retake assessed low again: no rise any more, and nothing left to retake
    _visit(h, lid, image_bytes(data_dir, LOW), "2025-11-01", "low")
    lesion = _lesion(h, lid)
    assert (lesion["latest_risk"], lesion["latest_visit_risk"], lesion["risk_rose"]) == \
        ("low", "low", False)
    assert lesion["latest_risk_taken_at"] == "2025-11-01"
    row = _patient_row(h, "SAFE-1")
    assert (row["highest_risk"], row["risk_rose"]) == ("low", False)
    assert row["n_lesions_latest_cannot_assess"] == 0


def test_a_rise_across_an_unassessable_visit_counts_and_a_lesion_never_assessed_says_so(
        app_harness: ClinicHarness, data_dir: Path) -> None:
    h = app_harness
    pid = h.patient("SAFE-2")
    # low, then a refused photo, then high: the two assessed visits show the rise
    lid = h.lesion(pid)
    _visit(h, lid, image_bytes(data_dir, LOW), "2025-01-01", "low")
    _visit(h, lid, unassessable_jpeg(), "2025-03-01", "cannot_assess")
    _visit(h, lid, image_bytes(data_dir, HIGH), "2025-06-01", "high")
    lesion = _lesion(h, lid)
    assert (lesion["latest_risk"], lesion["risk_rose"]) == ("high", True)
    assert lesion["latest_visit_risk"] == "high"
    # a lesion whose only photo could not be assessed: no tier to show, and no rise
    lid2 = h.lesion(pid, side="right")
    _visit(h, lid2, unassessable_jpeg(), "2025-07-01", "cannot_assess")
    never = _lesion(h, lid2)
    assert (never["latest_risk"], never["latest_visit_risk"], never["risk_rose"]) == \
        ("cannot_assess", "cannot_assess", False)
    assert never["latest_malignant_probability"] is None
    assert never["latest_risk_taken_at"] == "2025-07-01"
    row = _patient_row(h, "SAFE-2")
    assert (row["latest_risk"], row["latest_visit_risk"]) == ("high", "cannot_assess")
    assert (row["highest_risk"], row["risk_rose"]) == ("high", True)
    assert row["n_lesions_latest_cannot_assess"] == 1
    only = h.patient("SAFE-3")
    _visit(h, h.lesion(only), unassessable_jpeg(), "2025-07-01", "cannot_assess")
    row = _patient_row(h, "SAFE-3")
    assert (row["latest_risk"], row["highest_risk"], row["risk_rose"]) == \
        ("cannot_assess", "cannot_assess", False)
    # a new patient (and a new lesion) carry the fields too, empty
    r = h.post("/patients", json={"ref": "SAFE-4"})
    assert r.status_code == 201
    assert {k: r.json()[k] for k in ("latest_risk", "latest_visit_risk", "highest_risk",
                                     "n_lesions_latest_cannot_assess", "risk_rose")} == \
        {"latest_risk": None, "latest_visit_risk": None, "highest_risk": None,
         "n_lesions_latest_cannot_assess": 0, "risk_rose": False}
    # the API's description says what the fields mean
    spec = h.client.get("/api/v1/openapi.json").json()
    described = spec["paths"]["/api/v1/patients"]["get"]["description"]
    assert "latest *assessed* visit" in described
    assert "highest_risk" in described


def _dicom(tmp_path: Path, data_dir: Path, **tags: Any) -> bytes:
    """A real dermoscopy JPEG written as a DICOM file with pydicom (``write_dicom``)."""
    import pydicom

    from dermsight.io.dicom import write_dicom

    rgb = np.asarray(Image.open(io.BytesIO(image_bytes(data_dir, HIGH))).convert("RGB"))
    path = write_dicom(tmp_path / "visit.dcm", rgb, **tags)
    ds = pydicom.dcmread(path)
    if "age" in tags:
        assert ds.PatientAge == f"{tags['age']:03d}Y"
    if "sex" in tags:
        assert ds.PatientSex == tags["sex"][0].upper()
    return path.read_bytes()


def _metadata_csv(h: ClinicHarness) -> tuple[zipfile.ZipFile, dict[str, dict[str, str]]]:
    r = h.get("/clinic/export/confirmed")
    assert r.status_code == 200, r.text
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    rows = csv.DictReader(io.StringIO(zf.read("metadata.csv").decode()))
    return zf, {row["image_id"]: row for row in rows}


def test_a_dicom_visit_stores_the_age_and_sex_the_model_read_from_it(
        app_harness: ClinicHarness, data_dir: Path, tmp_path: Path) -> None:
    h = app_harness
    model = h.client.app.state.model  # type: ignore[attr-defined]
    lid = h.lesion(h.patient("DCM-1"))
    dcm = _dicom(tmp_path, data_dir, age=60, sex="male")
    # no age or sex in the form: the model reads them from the file, and the visit keeps them
    v = _visit(h, lid, dcm, "2025-06-01", "high", name="visit.dcm")
    assert v["result"]["input"] == {"age": 60.0, "sex": "male", "site": "posterior torso"}
    assert (v["age"], v["sex"], v["site"]) == (60.0, "male", "posterior torso")
    stored = [x for x in h.get(f"/lesions/{lid}").json()["visits"] if x["id"] == v["id"]]
    assert (stored[0]["age"], stored[0]["sex"]) == (60.0, "male")
    # values the form gives win over the file's tags, for the model and for the row alike
    w = _visit(h, lid, dcm, "2025-06-02", "high", name="visit.dcm", age="45", sex="female")
    assert w["result"]["input"] == {"age": 45.0, "sex": "female", "site": "posterior torso"}
    assert (w["age"], w["sex"]) == (45.0, "female")
    # one the form leaves out still comes from the file
    u = _visit(h, lid, dcm, "2025-06-03", "high", name="visit.dcm", sex="female")
    assert u["result"]["input"]["age"] == 60.0
    assert (u["age"], u["sex"]) == (60.0, "female")

    # the confirmed-cases export carries them, and re-scoring from it gives what was served
    r = h.client.put(f"/api/v1/lesions/{lid}/diagnosis",
                     json={"code": "MEL", "method": "histopathology"})
    assert r.status_code == 200, r.text
    zf, rows = _metadata_csv(h)
    for visit, (age, sex) in ((v, ("60", "male")), (w, ("45", "female")),
                              (u, ("60", "female"))):
        row = rows[f"visit_{visit['id']}"]
        assert (row["age_approx"], row["sex"], row["anatom_site"]) == \
            (age, sex, "posterior torso")
        again = model.predict(zf.read(f"images/visit_{visit['id']}.png"),
                              age=row["age_approx"], sex=row["sex"], site=row["anatom_site"])
        assert again.to_dict(heatmap_png=False)["input"] == visit["result"]["input"]
        assert again.probabilities == pytest.approx(visit["result"]["probabilities"],
                                                    abs=1e-5)


def test_the_upgrade_gives_older_dicom_visits_the_metadata_the_model_read(
        app_harness: ClinicHarness, data_dir: Path, tmp_path: Path) -> None:
    """Rows stored before a DICOM visit kept the file's tags (revision 0005: the form's empty
    values) get them back from the served answer by revision 0006; values a row holds, and a
    row whose answer cannot be read, stay as they are."""
    from sqlalchemy import text

    from dermsight.clinic.db import HEAD, current_revision, upgrade

    h = app_harness
    lid = h.lesion(h.patient("DCM-OLD"))
    dcm = _dicom(tmp_path, data_dir, age=60, sex="male")
    v = _visit(h, lid, dcm, "2025-06-01", "high", name="visit.dcm")  # the file's age and sex
    u = _visit(h, lid, dcm, "2025-06-02", "high", name="visit.dcm", sex="female")
    broken = _visit(h, lid, dcm, "2025-06-03", "high", name="visit.dcm")
    engine = h.clinic.db.engine
    with engine.begin() as conn:  # as an earlier release stored them
        conn.execute(text("UPDATE visits SET age = NULL, sex = NULL WHERE id IN (:v, :b)"),
                     {"v": v["id"], "b": broken["id"]})
        conn.execute(text("UPDATE visits SET age = NULL WHERE id = :u"), {"u": u["id"]})
        conn.execute(text("UPDATE visits SET result_json = '{' WHERE id = :b"),
                     {"b": broken["id"]})
        conn.execute(text("UPDATE alembic_version SET version_num = '0005'"))
    upgrade(engine, "0006")  # (0007 on: the schema has it already)
    assert current_revision(engine) == "0006"
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": HEAD})
    with engine.connect() as conn:
        rows = {r[0]: tuple(r[1:]) for r in conn.execute(
            text("SELECT id, age, sex, site FROM visits WHERE lesion_id = :l"), {"l": lid})}
    assert rows == {v["id"]: (60.0, "male", "posterior torso"),
                    u["id"]: (60.0, "female", "posterior torso"),
                    broken["id"]: (None, None, "posterior torso")}


def test_a_dicom_site_fills_a_lesion_without_one_and_is_stored(
        app_harness: ClinicHarness, data_dir: Path, tmp_path: Path) -> None:
    h = app_harness
    lid = h.lesion(h.patient("DCM-2"), body_site=None)
    dcm = _dicom(tmp_path, data_dir, age=70, sex="female", site="head/neck")
    v = _visit(h, lid, dcm, "2025-06-01", "high", name="visit.dcm")
    assert v["result"]["input"] == {"age": 70.0, "sex": "female", "site": "head/neck"}
    assert (v["age"], v["sex"], v["site"], v["site_inherited"]) == \
        (70.0, "female", "head/neck", False)
