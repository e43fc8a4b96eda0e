"""End-to-end: the clinic pages of the built web UI, on a real ``dermsight serve --database``,
driven in headless Chromium (``browser_support.py``, shared with ``test_e2e_browser.py``).

One walk through a clinic's day: sign in (a wrong password first), add a patient, pin a lesion
on the body map, add two visits with two real images, read the timeline and the change between
the visits, compare them, record the confirmed diagnosis, open the dashboard, export the
confirmed cases and the patient, make an API token, read the audit log, delete the patient,
sign out. Screenshots of each page go to ``test-output/e2e-clinic-*.png``.

Two real images of different lesions stand in for one lesion photographed twice: a benign nevus
first, then a melanoma, so that the model's malignant probability rises between the visits.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

import api_support as support
from browser_support import (
    PASSWORD,
    STATIC_INDEX,
    age_sessions,
    clinic_server_fixture,
    sign_in_clinic,
    watched_page,
)

pytestmark = pytest.mark.browser

ADMIN = "e2e-admin"
#: a nevus, then a melanoma (both posterior torso): the malignant probability rises
FIRST, SECOND = "ISIC_0000006", "ISIC_0000170"
REF = "E2E-0001"


clinic_server = clinic_server_fixture("clinic-e2e", [(ADMIN, "admin")])


@pytest.fixture
def clinic_page(browser: Any, clinic_server: support.Server) -> Iterator[Any]:
    with watched_page(browser, accept_downloads=True) as pg:
        yield pg


def add_visit(page: Any, image: Path, *, taken_at: str | None, note: str) -> dict[str, Any]:
    form = page.get_by_test_id("new-visit-form")
    form.get_by_test_id("file-input").set_input_files(str(image))
    form.get_by_test_id("age-input").fill("55")
    form.get_by_test_id("sex-select").select_option("female")
    if taken_at:
        form.get_by_test_id("visit-date").fill(taken_at)
    form.get_by_test_id("visit-note-input").fill(note)
    with page.expect_response(re.compile(r"/api/v1/lesions/\d+/visits$")) as resp:
        form.get_by_test_id("visit-submit").click()
    assert resp.value.status == 201, resp.value.text()
    return dict(resp.value.json())


def download(page: Any, testid: str) -> zipfile.ZipFile:
    with page.expect_download() as d:
        page.get_by_test_id(testid).click()
    path = d.value.path()
    assert d.value.failure() is None
    return zipfile.ZipFile(io.BytesIO(Path(path).read_bytes()))


@dataclass
class Walk:
    """One browser session through the clinic and the ids it made."""

    page: Any
    base: str
    out: Path
    patient_id: int = 0
    lesion_id: int = 0
    visits: list[dict[str, Any]] = field(default_factory=list)
    points: str = ""  # the change between the two visits as the UI writes it

    def json(self, path: str) -> Any:
        """GET through the browser's own session (its cookie)."""
        r = self.page.request.get(f"{self.base}/api/v1{path}")
        assert r.status == 200, r.text()
        return r.json()

    def shot(self, name: str) -> None:
        self.page.wait_for_load_state("networkidle")
        self.page.screenshot(path=str(self.out / f"e2e-clinic-{name}.png"), full_page=True)


def sign_in(w: Walk) -> None:
    """A wrong password is refused with a readable message; the right one opens the clinic."""
    page = w.page
    page.goto(f"{w.base}/#/clinic")
    page.get_by_test_id("login-page").wait_for()
    assert page.get_by_test_id("nav-patients").is_visible()
    page.get_by_test_id("login-username").fill(ADMIN)
    page.get_by_test_id("login-password").fill("not the password")
    page.get_by_test_id("login-submit").click()
    error = page.get_by_test_id("login-error")
    error.wait_for()
    assert "password" in error.inner_text().lower()
    # the refused password is cleared, the user name kept, the button usable again
    assert page.get_by_test_id("login-password").input_value() == ""
    assert page.get_by_test_id("login-username").input_value() == ADMIN
    assert page.get_by_test_id("login-submit").is_enabled()
    w.shot("login")
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("patients-page").wait_for()
    assert ADMIN in page.get_by_test_id("clinic-user").inner_text()


def add_patient_and_lesion(w: Walk) -> None:
    """A patient, and a lesion pinned on the back of the body map."""
    page = w.page
    page.get_by_test_id("new-patient-ref").fill(REF)
    page.get_by_test_id("new-patient-submit").click()
    page.get_by_test_id("patient-page").wait_for()
    assert page.get_by_test_id("patient-ref").inner_text() == REF
    w.patient_id = int(page.get_by_test_id("patient-page").get_attribute("data-patient-id"))
    page.get_by_test_id("lesion-map").get_by_test_id("bodymap-back-posterior-torso") \
        .dispatch_event("click")
    assert "back view" in page.get_by_test_id("new-lesion-point").inner_text()
    assert page.get_by_test_id("lesion-site").input_value() == "posterior torso"
    page.get_by_test_id("pin-0").wait_for()  # the unsaved pin
    page.get_by_test_id("lesion-side").select_option("left")
    page.get_by_test_id("lesion-location").fill("3 cm below the scapula")
    page.get_by_test_id("new-lesion-submit").click()
    page.get_by_test_id("lesion-page").wait_for()
    w.lesion_id = int(page.get_by_test_id("lesion-page").get_attribute("data-lesion-id"))
    lesion = w.json(f"/lesions/{w.lesion_id}")["lesion"]
    assert (lesion["side"], lesion["body_site"]) == ("left", "posterior torso")
    assert lesion["map"]["view"] == "back"
    assert 0 < lesion["map"]["x"] < 1


def two_visits(w: Walk, images: Path, tmp: Path) -> None:
    """Two visits 91 days apart: the timeline shows both and the change between them. The first
    photo came through a messaging app (re-saved at JPEG quality 60): its visit says so."""
    page = w.page
    earlier = (dt.date.today() - dt.timedelta(days=91)).isoformat()
    forwarded = tmp / f"{FIRST}-forwarded.jpg"
    Image.open(images / f"{FIRST}.jpg").save(forwarded, format="JPEG", quality=60)
    v1 = add_visit(page, forwarded, taken_at=earlier, note="first visit")
    page.get_by_test_id(f"visit-{v1['id']}").wait_for()
    note = page.get_by_test_id(f"visit-{v1['id']}").get_by_test_id("visit-flags")
    assert "JPEG quality about 60" in note.locator("li[data-code=compressed]").inner_text()
    assert any(f["code"] == "compressed" and not f["blocking"] for f in v1["result"]["flags"])
    v2 = add_visit(page, images / f"{SECOND}.jpg", taken_at=None, note="looks darker")
    page.get_by_test_id(f"visit-{v2['id']}").wait_for()
    if not any(not f["blocking"] for f in v2["result"]["flags"]):
        assert page.get_by_test_id(f"visit-{v2['id']}").get_by_test_id("visit-flags").count() == 0
    w.visits = [v1, v2]
    detail = w.json(f"/lesions/{w.lesion_id}")
    assert [v["id"] for v in detail["visits"]] == [v1["id"], v2["id"]]
    (change,) = detail["changes"]
    assert change["days"] == 91
    card2 = page.get_by_test_id(f"visit-{v2['id']}")
    assert card2.get_by_test_id("visit-tier").get_attribute("data-risk") == v2["result"]["risk"]
    assert card2.get_by_test_id("visit-note").inner_text() == "looks darker"
    w.points = f"{abs(change['malignant_delta']) * 100:.1f} points"
    arrow = page.get_by_test_id(f"change-{v1['id']}-{v2['id']}")
    assert w.points in arrow.inner_text()
    assert "91 days" in arrow.inner_text()
    assert arrow.get_attribute("data-risk-rose") == str(change["risk_rose"]).lower()
    assert change["malignant_delta"] > 0.10  # nevus -> melanoma
    assert change["risk_rose"]
    assert arrow.get_by_test_id("change-risk-rose").is_visible()
    assert page.get_by_test_id("lesion-risk-rose").is_visible()
    for v in (v1, v2):  # image and heatmap load (same origin, the session cookie)
        card = page.get_by_test_id(f"visit-{v['id']}")
        for testid in ("visit-image", "visit-heatmap"):
            card.get_by_test_id(testid).evaluate(
                "img => img.complete && img.naturalWidth > 0 || new Promise((ok, bad) => {"
                " img.onload = ok; img.onerror = bad })")
    w.shot("timeline")
    similar_cases(w)


def similar_cases(w: Walk) -> None:
    """The latest visit's nearest reference images; no other confirmed lesion in this clinic yet."""
    section = w.page.get_by_test_id("clinic-similar")
    section.wait_for()
    similar = w.json(f"/visits/{w.visits[-1]['id']}/similar?k=5")
    assert similar["clinic"] == []
    section.get_by_test_id("clinic-similar-none").wait_for()
    figures = section.get_by_test_id("similar-case")
    if similar["reference"]:
        figures.nth(len(similar["reference"]) - 1).wait_for()
    assert figures.count() == len(similar["reference"])
    for item in similar["reference"]:
        assert item["image_id"] in section.inner_text()


def compare_and_diagnose(w: Walk) -> None:
    """Two chosen visits side by side; then the confirmed diagnosis."""
    page = w.page
    v1, v2 = w.visits
    page.get_by_test_id("tab-compare").click()
    compare = page.get_by_test_id("compare-view")
    compare.wait_for()
    assert compare.get_by_test_id("heatmap-overlay").count() == 2
    assert w.points in page.get_by_test_id("compare-delta").inner_text()
    page.get_by_test_id("compare-b").select_option(str(v1["id"]))
    assert "no change" in page.get_by_test_id("compare-delta").inner_text()
    page.get_by_test_id("compare-b").select_option(str(v2["id"]))
    w.shot("compare")
    page.get_by_test_id("tab-timeline").click()

    page.get_by_test_id("diagnosis-code").select_option("MEL")
    page.get_by_test_id("diagnosis-method").select_option("histopathology")
    page.get_by_test_id("diagnosis-note").fill("superficial spreading, Breslow 0.4 mm")
    page.get_by_test_id("diagnosis-submit").click()
    diagnosis = page.get_by_test_id("diagnosis")
    diagnosis.wait_for()
    assert diagnosis.get_attribute("data-code") == "MEL"
    assert "histopathology" in diagnosis.inner_text()


def patient_and_list(w: Walk) -> None:
    """The patient page (pin, latest result; no "risk rose": the confirmed diagnosis outranks
    the model's rise), then the list searched by reference: the confirmed melanoma before the
    model's tier."""
    page = w.page
    page.get_by_test_id("lesion-risk-rose").wait_for(state="detached")
    page.get_by_test_id("lesion-patient-link").click()
    page.get_by_test_id("patient-page").wait_for()
    page.get_by_test_id(f"pin-{w.lesion_id}").wait_for()
    row = page.get_by_test_id(f"lesion-row-{w.lesion_id}")
    assert row.get_by_test_id("risk-rose").count() == 0
    assert "MEL" in row.inner_text()
    w.shot("patient")

    page.get_by_test_id("nav-patients").click()
    page.get_by_test_id("patients-page").wait_for()
    mine = page.get_by_test_id(f"patient-row-{w.patient_id}")
    page.get_by_test_id("patient-search").fill("E2E")
    mine.wait_for()
    page.get_by_test_id("patient-search").fill("ZZZ")
    mine.wait_for(state="detached")
    page.get_by_test_id("patient-search").fill("")
    mine.wait_for()
    assert mine.get_by_test_id("risk-rose").count() == 0
    dx = mine.get_by_test_id("patient-dx")
    assert dx.get_attribute("data-malignant") == "true"
    assert dx.inner_text() == "MEL (histopathology) · malignant"
    assert mine.get_by_test_id("patient-tier-cell").inner_text().startswith("Model: ")
    w.shot("patients")


def dashboard_and_export(w: Walk) -> None:
    """One confirmed melanoma: figures withheld with the reason; the confirmed-case export."""
    page = w.page
    page.get_by_test_id("nav-dashboard").click()
    page.get_by_test_id("dashboard-page").wait_for()
    (model,) = w.json("/clinic/dashboard")["models"]
    assert (model["n_lesions"], model["n_mel"]) == (1, 1)
    counts = page.get_by_test_id("dashboard-counts")
    counts.wait_for()
    assert "1 confirmed lesion" in counts.inner_text()
    assert page.get_by_test_id("small-count-warning").is_visible()
    sens = page.get_by_test_id("fig-sensitivity")
    withheld = model["refer"]["sensitivity"] is None
    assert sens.get_attribute("data-withheld") == str(withheld).lower()
    if withheld:
        assert "withheld" in sens.inner_text()
    assert page.get_by_test_id("confusion-matrix").is_visible()
    if model.get("note"):
        assert page.get_by_test_id("dashboard-note").inner_text() == model["note"]
    w.shot("dashboard")
    confirmed = download(page, "export-confirmed")
    assert "metadata.csv" in confirmed.namelist()
    assert any(n.startswith("images/") for n in confirmed.namelist())
    assert "MEL" in confirmed.read("metadata.csv").decode()


def account(w: Walk) -> None:
    """An API token shown once (and usable), a new user, the audit log."""
    page = w.page
    page.get_by_test_id("nav-admin").click()
    page.get_by_test_id("admin-page").wait_for()
    page.get_by_test_id("token-name").fill("e2e script")
    page.get_by_test_id("token-create").click()
    token = page.get_by_test_id("new-token").inner_text().strip()
    assert len(token) >= 20
    me = httpx.get(f"{w.base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["user"]["username"] == ADMIN
    page.get_by_test_id("user-username").fill("e2e-clinician")
    page.get_by_test_id("user-password").fill(PASSWORD)
    page.get_by_test_id("user-role").select_option("clinician")
    page.get_by_test_id("user-create").click()
    assert page.get_by_test_id("user-row-e2e-clinician").inner_text().split() == [
        "e2e-clinician", "clinician"]
    audit = page.get_by_test_id("audit-log")
    audit.get_by_text("export").first.wait_for()
    assert "login" in audit.inner_text()
    w.shot("admin")


def clinician_view(w: Walk) -> None:
    """A clinician (made on the admin page) sees the patient but no delete, users or audit log."""
    context = w.page.context.browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(f"{w.base}/#/clinic/patients/{w.patient_id}")
    page.get_by_test_id("login-username").fill("e2e-clinician")
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("patient-page").wait_for()
    assert page.get_by_test_id("clinic-user").get_attribute("data-role") == "clinician"
    page.get_by_test_id(f"lesion-row-{w.lesion_id}").wait_for()
    assert page.get_by_test_id("patient-export").is_visible()
    assert page.get_by_test_id("patient-delete").count() == 0
    assert page.get_by_test_id("nav-admin").inner_text() == "Account"
    page.get_by_test_id("nav-admin").click()
    page.get_by_test_id("tokens-section").wait_for()
    assert page.get_by_test_id("users-section").count() == 0
    assert page.get_by_test_id("audit-section").count() == 0
    context.close()


def export_and_delete(w: Walk) -> None:
    """The patient's data: export, then delete with the confirm step; then sign out."""
    page = w.page
    page.goto(f"{w.base}/#/clinic/patients/{w.patient_id}")
    page.get_by_test_id("patient-page").wait_for()
    export = download(page, "patient-export")
    assert REF in json.dumps(json.loads(export.read("patient.json")))
    assert sum(n.startswith("images/") for n in export.namelist()) >= 2
    page.get_by_test_id("patient-delete").click()
    confirm = page.get_by_test_id("delete-confirm")
    assert confirm.is_disabled()
    page.get_by_test_id("delete-confirm-input").fill(REF)
    confirm.click()
    page.get_by_test_id("patients-page").wait_for()
    page.get_by_test_id(f"patient-row-{w.patient_id}").wait_for(state="detached")
    assert page.request.get(f"{w.base}/api/v1/patients/{w.patient_id}").status == 404

    page.get_by_test_id("logout").click()
    page.get_by_test_id("login-page").wait_for()
    assert page.request.get(f"{w.base}/api/v1/auth/me").status == 401


def test_clinic_day(clinic_page: Any, clinic_server: support.Server, data_dir: Path,
                    test_output: Path, tmp_path: Path) -> None:
    assert httpx.get(f"{clinic_server.base}/api/v1/health").json()["clinic"] is True
    w = Walk(clinic_page, clinic_server.base, test_output)
    sign_in(w)
    add_patient_and_lesion(w)
    two_visits(w, data_dir / "images", tmp_path)
    compare_and_diagnose(w)
    patient_and_list(w)
    dashboard_and_export(w)
    account(w)
    clinician_view(w)
    export_and_delete(w)
    # the refused password and the 404/401 checks are logged by the browser as failed loads
    assert [p for p in clinic_page.problems if "Failed to load resource" not in p] == []


def switch_user_then_sign_out(page: Any, server: support.Server) -> None:
    """Ended again: "someone else" discards the kept page for the plain sign-in page; an explicit
    sign-out is not a timeout either (the plain page, nothing kept)."""
    resume = page.locator('[data-testid="login-page"][data-resume="true"]')
    # ended again: "someone else" discards the kept page for the plain sign-in page
    age_sessions(server)
    page.get_by_test_id("nav-dashboard").click()
    resume.wait_for()
    resume.get_by_test_id("login-switch-user").click()
    page.locator('[data-testid="login-page"]:not([data-resume])').wait_for()
    assert page.get_by_test_id("clinic-page-holder").count() == 0
    assert page.get_by_test_id("login-username").input_value() == ""
    page.get_by_test_id("login-username").fill(ADMIN)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("dashboard-page").wait_for()
    # signing out is not a timeout: the plain sign-in page, no page kept for anyone
    page.get_by_test_id("logout").click()
    page.get_by_test_id("login-page").wait_for()
    assert page.get_by_test_id("login-page").get_attribute("data-resume") is None
    assert page.get_by_test_id("clinic-page-holder").count() == 0


def test_an_idle_timeout_keeps_the_unsaved_page_for_the_same_user(
        clinic_page: Any, clinic_server: support.Server, test_output: Path) -> None:
    """The server ends a session after a while without activity (here: its row is aged in the
    database, as 30 idle minutes would): the next save gets 401, the page is hidden — patient
    data off the screen — under a sign-in form for the same user, and after signing in again
    what was typed is still there and saves."""
    page = clinic_page
    w = Walk(page, clinic_server.base, test_output)
    # it waits for the page's own list request to be answered, before the session is aged:
    # otherwise its response (200, or 401 if sent after the aging) is taken for the save's
    sign_in_clinic(page, w.base, ADMIN)
    ref = "E2E-IDLE-0001"
    page.get_by_test_id("new-patient-ref").fill(ref)
    age_sessions(clinic_server)
    with page.expect_response(lambda r: r.request.method == "POST"
                              and re.search(r"/api/v1/patients$", r.url) is not None) as resp:
        page.get_by_test_id("new-patient-submit").click()
    assert resp.value.status == 401
    assert "minutes without activity" in resp.value.json()["detail"]
    resume = page.locator('[data-testid="login-page"][data-resume="true"]')
    resume.wait_for()
    assert ADMIN in resume.get_by_test_id("login-resume-note").inner_text()
    assert resume.get_by_test_id("login-username").input_value() == ADMIN
    assert resume.get_by_test_id("login-username").get_attribute("readonly") is not None
    assert not page.get_by_test_id("patients-page").is_visible()  # off the screen, still there
    w.shot("session-ended")
    resume.get_by_test_id("login-password").fill(PASSWORD)
    resume.get_by_test_id("login-submit").click()
    page.get_by_test_id("patients-page").wait_for()
    assert page.get_by_test_id("login-page").count() == 0
    assert page.get_by_test_id("new-patient-ref").input_value() == ref  # nothing typed was lost
    page.get_by_test_id("new-patient-submit").click()
    page.get_by_test_id("patient-page").wait_for()
    assert page.get_by_test_id("patient-ref").inner_text() == ref
    # leave the clinic as found: delete the patient again (an admin, through the UI)
    patient_id = page.get_by_test_id("patient-page").get_attribute("data-patient-id")
    page.get_by_test_id("patient-delete").click()
    page.get_by_test_id("delete-confirm-input").fill(ref)
    page.get_by_test_id("delete-confirm").click()
    page.get_by_test_id("patients-page").wait_for()
    assert page.request.get(f"{w.base}/api/v1/patients/{patient_id}").status == 404
    switch_user_then_sign_out(page, clinic_server)
    assert [p for p in page.problems if "Failed to load resource" not in p] == []


def test_stateless_server_shows_no_clinic(browser: Any, tmp_path_factory: pytest.TempPathFactory
                                          ) -> None:
    """Storage off: no clinic links, and a clinic address shows the Assess page as before."""
    if not STATIC_INDEX.exists():
        pytest.skip("web UI not built")
    server = support.main_server(tmp_path_factory.mktemp("api"))
    assert httpx.get(f"{server.base}/api/v1/health").json().get("clinic") in (False, None)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.base}/#/clinic")
    page.get_by_test_id("dropzone").wait_for()
    page.get_by_test_id("health").get_by_text("model").wait_for()
    for testid in ("nav-patients", "nav-dashboard", "nav-login", "login-page"):
        assert page.get_by_test_id(testid).count() == 0, testid
    context.close()
