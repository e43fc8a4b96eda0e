"""Fixes from the clinic-mode audit, in the served app (``create_app`` on SQLite) with real images:

1. one-line text fields (references, usernames, token names, locations) refuse invisible and
   look-alike characters, naming the character without writing it; notes refuse the
   bidirectional controls that display text reordered;
2. the dashboard's sensitivity / specificity do not collapse to "1.000 (1.000-1.000)" at 7 of 7
   (Wilson widened to the bootstrap, as ``dermsight evaluate``);
3. the confirmed-case export and the dashboard leave out visits whose photo could not be
   assessed, and say how many;
4. only a signed-in session creates API tokens, logging out does not pretend to end a token, and
   the shared ``DERMSIGHT_API_TOKEN`` on a clinic route is named as such.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinic_support import (
    API,
    PASSWORD,
    ClinicHarness,
    image_bytes,
    served_clinic,
    unassessable_jpeg,
)
from dermsight.clinic import accounts
from dermsight.clinic.config import ClinicConfig
from dermsight.clinic.figures import ConfirmedItem, model_figures
from dermsight.web.app import create_app
from dermsight.web.settings import Settings

LOW = "ISIC_0013053"  # assessed, tier low
HIGH = "ISIC_0030403"  # assessed, tier high
SHARED = "shared-stateless-token-0123456789"


@pytest.fixture
def app_harness(tmp_path: Path) -> Iterator[ClinicHarness]:
    with served_clinic(tmp_path, api_token=SHARED) as h:
        yield h


def _visit(h: ClinicHarness, lesion_id: int, image: bytes, risk: str) -> dict[str, Any]:
    r = h.post(f"/lesions/{lesion_id}/visits", files={"image": ("x.jpg", image, "image/jpeg")},
               data={"taken_at": "2026-01-05"})
    assert r.status_code == 201, r.text
    visit: dict[str, Any] = r.json()
    assert visit["result"]["risk"] == risk
    return visit


# --- 1. look-alike text -----------------------------------------------------------------------

LOOK_ALIKES = [
    ("P-001\u200b", "character 6 is U+200B ZERO WIDTH SPACE, an invisible formatting character"),
    ("P\u2011001", "character 2 is U+2011 NON-BREAKING HYPHEN"),
    ("P-001\xa0x", "character 6 is U+00A0 NO-BREAK SPACE, a space other than the ordinary"),
    ("P-001  x", "two or more spaces in a row (at character 6)"),
    ("\u202eevil-gpj.exe", "character 1 is U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("\ufeffP-001", "character 1 is U+FEFF ZERO WIDTH NO-BREAK SPACE"),
    ("P-001\u2028x", "U+2028 LINE SEPARATOR, a line separator"),
    ("P\u2013001", "U+2013 EN DASH"),
]


@pytest.mark.parametrize(("ref", "why"), LOOK_ALIKES)
def test_a_look_alike_reference_is_refused_naming_the_character(
        app_harness: ClinicHarness, ref: str, why: str) -> None:
    h = app_harness
    assert h.post("/patients", json={"ref": "P-001"}).status_code == 201
    r = h.post("/patients", json={"ref": ref})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("ref must not contain "), detail
    assert why in detail
    assert "\n" not in detail
    # the odd character itself is never written back
    odd = [c for c in ref if not (c.isascii() and c.isprintable())]
    assert not any(c in r.text for c in odd)
    assert [p["ref"] for p in h.get("/patients").json()] == ["P-001"]


def test_legitimate_references_and_surrounding_spaces(app_harness: ClinicHarness) -> None:
    h = app_harness
    for ref in ("Özil-7", "Straße 12", "ΟΔΟΣ-3", "José-4", "P-001 x", "מ\u05beא-1", "山田-2"):
        r = h.post("/patients", json={"ref": ref})
        assert r.status_code == 201, (ref, r.text)
        assert r.json()["ref"] == ref
    # surrounding whitespace of any kind is removed, not refused
    r = h.post("/patients", json={"ref": "\u00a0P-9 \u3000"})
    assert r.status_code == 201, r.text
    assert r.json()["ref"] == "P-9"


def test_every_one_line_field_refuses_invisible_characters(app_harness: ClinicHarness) -> None:
    h = app_harness
    pid = h.patient("LINE-1")
    for path, body, field in (
            ("/admin/users", {"username": "ana\u200b", "password": "correct horse",
                              "role": "clinician"}, "username"),
            ("/auth/tokens", {"name": "lap\u00a0top"}, "name"),
            (f"/patients/{pid}/lesions", {"location": "left\u2029shoulder"}, "location")):
        r = h.post(path, json=body)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["detail"].startswith(f"{field} must not contain invisible"), r.text
    r = h.get("/patients", params={"q": "LI\u200bNE"})
    assert r.status_code == 422
    assert "U+200B ZERO WIDTH SPACE" in r.json()["detail"]


def test_a_note_refuses_controls_that_reverse_the_text(app_harness: ClinicHarness) -> None:
    h = app_harness
    lid = h.lesion(h.patient("NOTE-1"))
    url = f"{API}/lesions/{lid}/diagnosis"
    r = h.client.put(url, json={"code": "NV", "method": "clinical",
                                "note": "benign \u202efdp.exe"})
    assert r.status_code == 422, r.text
    assert "U+202E RIGHT-TO-LEFT OVERRIDE" in r.json()["detail"]
    assert "\u202e" not in r.text
    r = h.client.put(url, json={"code": "NV", "method": "clinical",
                                "note": "isolate \u2067x\u2069"})
    assert r.status_code == 422, r.text
    # several lines, tabs and any script stay a clinician's to write
    note = "Dermoscopy: regular network.\n\tFollow-up in 3 months — Straße, Ελλάδα"
    r = h.client.put(url, json={"code": "NV", "method": "clinical", "note": note})
    assert r.status_code == 200, r.text
    assert r.json()["note"] == note


# --- 2. intervals of proportions --------------------------------------------------------------


def _item(i: int, code: str, referred: bool) -> ConfirmedItem:
    p_mel = 0.9 if code == "MEL" else 0.05
    return ConfirmedItem(patient_id=i, lesion_id=i, code=code, referred=referred,
                         probabilities={"MEL": p_mel, "NV": 1 - p_mel},
                         prediction="MEL" if code == "MEL" else "NV")


def test_seven_of_seven_does_not_collapse_to_one() -> None:
    items = [_item(i, "MEL", True) for i in range(7)] + \
        [_item(7 + i, "NV", False) for i in range(5)]
    m = model_figures("dermsight", "1", items)
    sens, spec = m["refer"]["sensitivity"], m["refer"]["specificity"]
    assert (sens["value"], sens["k"], sens["n"]) == (1.0, 7, 7)
    assert sens["lo"] == pytest.approx(0.646, abs=0.005)  # Wilson 7 of 7, not 1.000
    assert sens["hi"] == 1.0
    assert sens["method"] == "wilson+bootstrap"
    assert (spec["value"], spec["k"], spec["n"]) == (1.0, 5, 5)
    assert spec["lo"] == pytest.approx(0.566, abs=0.005)
    # the AUC keeps the group bootstrap
    assert m["mel_auc"]["method"] == "bootstrap"
    assert m["mel_auc"]["value"] == 1.0
    assert "Wilson" in m["note"]


# --- 3. visits that could not be assessed -----------------------------------------------------


def test_unassessable_visits_are_left_out_of_the_export_and_counted(
        app_harness: ClinicHarness, data_dir: Path) -> None:
    h = app_harness
    pid = h.patient("GATE-1")
    seen = h.lesion(pid)
    assessed = _visit(h, seen, image_bytes(data_dir, HIGH), "high")
    refused = _visit(h, seen, unassessable_jpeg(), "cannot_assess")
    never = h.lesion(pid, side="right")
    refused_only = _visit(h, never, unassessable_jpeg(), "cannot_assess")
    for lid, code in ((seen, "MEL"), (never, "NV")):
        r = h.client.put(f"{API}/lesions/{lid}/diagnosis",
                         json={"code": code, "method": "histopathology"})
        assert r.status_code == 200, r.text

    r = h.get("/clinic/export/confirmed")
    assert r.status_code == 200, r.text
    assert r.headers["X-Dermsight-Left-Out"] == "2"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    rows = list(csv.DictReader(io.StringIO(zf.read("metadata.csv").decode())))
    assert [(row["image_id"], row["diagnosis"]) for row in rows] == \
        [(f"visit_{assessed['id']}", "MEL")]
    images = sorted(n for n in zf.namelist() if n.startswith("images/"))
    assert images == [f"images/visit_{assessed['id']}.png"]
    for v in (refused, refused_only):
        assert f"images/visit_{v['id']}.png" not in zf.namelist()
    readme = zf.read("README.txt").decode()
    assert "1 image:" in readme
    assert "2 visits were left out" in readme
    assert "cannot assess" in readme

    dash = h.get("/clinic/dashboard").json()
    [m] = dash["models"]
    assert m["n_lesions"] == 1
    assert m["n_left_out_cannot_assess"] == 1
    assert "1 confirmed lesion left out" in m["note"]
    assert dash["n_left_out_cannot_assess"] == 1


# --- 4. tokens --------------------------------------------------------------------------------


def test_only_a_session_creates_tokens_and_logout_does_not_end_one(
        app_harness: ClinicHarness) -> None:
    h = app_harness
    r = h.post("/auth/tokens", json={"name": "script"})
    assert r.status_code == 201, r.text
    made = r.json()
    with TestClient(h.client.app) as bearer:
        bearer.headers["Authorization"] = f"Bearer {made['token']}"
        assert bearer.get(f"{API}/auth/me").status_code == 200
        # a token cannot make the next token: revoking a leaked one cuts its holder off
        r = bearer.post(f"{API}/auth/tokens", json={"name": "next"})
        assert r.status_code == 403
        assert r.json()["detail"].startswith("an API token cannot create API tokens")
        assert [t["name"] for t in h.get("/auth/tokens").json()] == ["script"]
        # logging out with a token says how to end it instead of pretending to
        r = bearer.post(f"{API}/auth/logout")
        assert r.status_code == 400
        assert "DELETE /api/v1/auth/tokens/{id}" in r.json()["detail"]
        assert bearer.get(f"{API}/auth/me").status_code == 200
        assert bearer.delete(f"{API}/auth/tokens/{made['id']}").status_code == 204
        r = bearer.get(f"{API}/auth/me")
        assert r.status_code == 401
        assert r.json()["detail"] == "this API token has been revoked: create a new one"
    # the session still logs out
    assert h.post("/auth/logout").status_code == 204


def test_the_shared_token_is_told_apart_from_an_unknown_one(app_harness: ClinicHarness) -> None:
    with app_harness.clinic.db.session() as s:
        assert accounts.token_lookup(s, SHARED, shared=SHARED) is accounts.Refused.SHARED
        assert accounts.token_lookup(s, SHARED + "x", shared=SHARED) is accounts.Refused.UNKNOWN
        assert accounts.token_lookup(s, SHARED) is accounts.Refused.UNKNOWN
        assert accounts.token_lookup(s, "", shared=None) is accounts.Refused.UNKNOWN
    assert not accounts.is_shared_token("anything", None)
    assert not accounts.is_shared_token("", "")


def test_the_shared_token_on_a_clinic_route_says_what_it_opens(
        app_harness: ClinicHarness) -> None:
    with TestClient(app_harness.client.app) as c:
        c.headers["Authorization"] = f"Bearer {SHARED}"
        assert c.get(f"{API}/model").status_code == 200  # it opens the stateless routes
        r = c.get(f"{API}/patients")
        assert r.status_code == 401
        detail = r.json()["detail"]
        assert "shared API token" in detail
        assert "per-user API token" in detail
        assert "not known to the server" not in detail
        r = c.get(f"{API}/patients", headers={"Authorization": "Bearer dsk_not-a-token"})
        assert r.json()["detail"] == ("this API token is not known to the server: check it, "
                                      "or create a new one")


def test_login_and_me_give_the_idle_timeout_the_web_ui_hides_its_page_after(
        tmp_path: Path) -> None:
    """The page hides patient data after the server's idle timeout without activity: the
    server says what it is (``serve --session-idle-minutes``), at login and in /auth/me."""
    config = ClinicConfig.resolve(database=f"sqlite:///{tmp_path / 'clinic.db'}", env={},
                                  session_idle_minutes=5)
    with TestClient(create_app(replace(Settings(), workers=1, clinic=config))) as client:
        h = ClinicHarness(client.app.state.clinic, client)  # type: ignore[attr-defined]
        h.add_user("admin", role="admin")
        r = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert r.json()["idle_minutes"] == 5
        assert client.get("/api/v1/auth/me").json()["idle_minutes"] == 5
