"""The patient list (``GET /patients``) says each patient's confirmed diagnoses beside the
model's tiers, and a confirmed diagnosis outranks the model's "risk rose":

* ``confirmed`` lists each diagnosed lesion's code and method, malignant ones
  (``taxonomy.MALIGNANT``) first and marked, and ``n_confirmed_malignant`` counts them: a
  patient whose only lesion is a histopathology-confirmed melanoma no longer shows only the
  model's "moderate";
* a lesion with a diagnosis has no ``risk_rose`` (list, patient page, lesion page) for a rise
  in photos taken up to the day the diagnosis was recorded; a rise in a photo taken after it is
  still said; the timeline's changes keep the model's own rise.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import update

from clinic_support import ClinicHarness
from dermsight.clinic.models import Diagnosis, Visit


@pytest.fixture
def h(harness: ClinicHarness) -> ClinicHarness:
    """The clinic routes on SQLite and on PostgreSQL, a clinician signed in."""
    harness.add_user("dx")
    harness.login("dx")
    return harness


def _visits(h: ClinicHarness, lesion_id: int, *visits: tuple[str, str, float]) -> None:
    """Visits with the given (day, tier, malignant probability), stored as the app stores
    them (the model's own tiers are not what these tests are about)."""
    with h.clinic.db.session() as s:
        for i, (day, risk, p) in enumerate(visits):
            s.add(Visit(lesion_id=lesion_id, taken_at=date.fromisoformat(day),
                        result_json=json.dumps({"risk": risk, "malignant_probability": p}),
                        risk=risk, malignant_probability=p, model_name="m",
                        model_version="1", bundle_sha256="s", image_key=f"k{lesion_id}-{i}.png"))


def _diagnose(h: ClinicHarness, lesion_id: int, code: str, method: str) -> None:
    r = h.client.put(f"/api/v1/lesions/{lesion_id}/diagnosis",
                     json={"code": code, "method": method})
    assert r.status_code == 200, r.text


def _row(h: ClinicHarness, ref: str) -> dict[str, Any]:
    [row] = h.get("/patients", params={"q": ref}).json()
    assert row["ref"] == ref
    return dict(row)


def test_a_confirmed_melanoma_is_on_the_list_beside_the_models_tier(h: ClinicHarness) -> None:
    pid = h.patient("DX-MEL")
    lid = h.lesion(pid)
    _visits(h, lid, ("2025-01-01", "moderate", 0.4))
    row = _row(h, "DX-MEL")
    assert (row["confirmed"], row["n_confirmed_malignant"]) == ([], 0)
    _diagnose(h, lid, "MEL", "histopathology")
    row = _row(h, "DX-MEL")
    assert row["confirmed"] == [{"lesion_id": lid, "code": "MEL", "method": "histopathology",
                                 "malignant": True}]
    assert row["n_confirmed_malignant"] == 1
    assert row["highest_risk"] == "moderate"  # the model's tier, unchanged


def test_malignant_diagnoses_come_first_and_are_counted(h: ClinicHarness) -> None:
    pid = h.patient("DX-MIX")
    nv, bcc, none, scc = (h.lesion(pid) for _ in range(4))
    _diagnose(h, nv, "NV", "clinical")
    _diagnose(h, bcc, "BCC", "histopathology")
    _diagnose(h, scc, "SCC", "clinical")
    row = _row(h, "DX-MIX")
    assert [(c["lesion_id"], c["code"], c["method"], c["malignant"]) for c in row["confirmed"]] \
        == [(bcc, "BCC", "histopathology", True), (scc, "SCC", "clinical", True),
            (nv, "NV", "clinical", False)]
    assert row["n_confirmed_malignant"] == 2
    assert none not in [c["lesion_id"] for c in row["confirmed"]]
    # a new patient (POST) has the same fields
    r = h.post("/patients", json={"ref": "DX-NEW"})
    assert (r.json()["confirmed"], r.json()["n_confirmed_malignant"]) == ([], 0)


def _rose(h: ClinicHarness, ref: str, pid: int, lid: int) -> tuple[bool, bool, bool]:
    """``risk_rose`` on the patient list, the patient page and the lesion page."""
    [on_patient] = h.get(f"/patients/{pid}").json()["lesions"]
    return (_row(h, ref)["risk_rose"], on_patient["risk_rose"],
            h.get(f"/lesions/{lid}").json()["lesion"]["risk_rose"])


def test_an_excised_naevus_is_not_flagged_risk_rose(h: ClinicHarness) -> None:
    pid = h.patient("DX-NV")
    lid = h.lesion(pid)
    _visits(h, lid, ("2025-01-01", "low", 0.05), ("2025-06-01", "high", 0.8))
    assert _rose(h, "DX-NV", pid, lid) == (True, True, True)
    _diagnose(h, lid, "NV", "histopathology")
    assert _rose(h, "DX-NV", pid, lid) == (False, False, False)
    row = _row(h, "DX-NV")
    assert row["highest_risk"] == "high"  # the model's tier is still given, as the model's
    assert row["confirmed"][0]["malignant"] is False
    # the timeline keeps the model's own change between the two visits
    [change] = h.get(f"/lesions/{lid}").json()["changes"]
    assert change["risk_rose"] is True
    # once the diagnosis is removed, the rise is said again
    assert h.client.delete(f"/api/v1/lesions/{lid}/diagnosis").status_code == 204
    assert _rose(h, "DX-NV", pid, lid) == (True, True, True)


def test_a_rise_in_a_photo_taken_after_the_diagnosis_is_still_said(h: ClinicHarness) -> None:
    pid = h.patient("DX-LATER")
    lid = h.lesion(pid)
    _visits(h, lid, ("2025-01-01", "low", 0.05), ("2025-06-01", "high", 0.8))
    _diagnose(h, lid, "NV", "clinical")
    with h.clinic.db.session() as s:  # the diagnosis was recorded in between the photos
        s.execute(update(Diagnosis).where(Diagnosis.lesion_id == lid)
                  .values(recorded_at=datetime(2025, 3, 1, 12, tzinfo=UTC)))
    assert _rose(h, "DX-LATER", pid, lid) == (True, True, True)
    with h.clinic.db.session() as s:  # recorded on the day of the later photo: outranks it
        s.execute(update(Diagnosis).where(Diagnosis.lesion_id == lid)
                  .values(recorded_at=datetime(2025, 6, 1, 23, tzinfo=UTC)))
    assert _rose(h, "DX-LATER", pid, lid) == (False, False, False)
