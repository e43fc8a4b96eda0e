"""End-to-end: what a clinician and an admin run into on the clinic pages, driven in headless
Chromium against a real ``dermsight serve --database`` with real lesion images (``../shared/data``).

Each test pins a fix of the clinic sweep: on a 375 px phone the clinic's pages do not scroll
sideways (the navigation wraps, tables scroll in their own box); after saving a visit or a
diagnosis keyboard focus lands on what was saved, not on <body>; correcting a diagnosis can be
cancelled and says it replaces the old one; a save refused because the session had ended says
it was not saved (not the server's "not logged in", still shown after signing in again); the
server's messages read as sentences ("Wrong user name or password."), a lockout's wait in
minutes ("try again in 15 min.", not "898 s").

Set ``DERMSIGHT_E2E_STATIC_DIR=<folder>`` to drive another build of the UI (e.g. an older one:
these tests then show what it got wrong). Needs what ``test_e2e_clinic.py`` needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import api_support as support
import browser_support
from browser_support import PASSWORD, clinic_server_fixture, watched_page

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.browser

NEVUS = "ISIC_0000006"


clinic_server = clinic_server_fixture(
    "clinic-sweep",
    [("sweep-admin", "admin"), ("sweep-doc", "clinician"), ("sweep-locked", "clinician")])


@pytest.fixture
def phone(browser: Any, clinic_server: support.Server) -> Iterator[Any]:
    with watched_page(browser) as pg:
        pg.set_viewport_size({"width": 375, "height": 800})
        yield pg


@pytest.fixture
def desk(browser: Any, clinic_server: support.Server) -> Iterator[Any]:
    with watched_page(browser) as pg:
        yield pg


def sign_in(page: Any, server: support.Server, user: str = "sweep-doc",
            password: str = PASSWORD) -> None:
    page.goto(f"{server.base}/#/clinic")
    page.get_by_test_id("login-username").fill(user)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()


def new_lesion(page: Any, server: support.Server, ref: str) -> None:
    """A new patient ``ref`` with one lesion on the back; ends on the lesion's page."""
    page.goto(f"{server.base}/#/clinic")
    browser_support.new_lesion(page, ref)


def overflow(page: Any) -> int:
    """How far the page is wider than the window (px): 0 when nothing scrolls sideways."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def test_phone_clinic_pages_do_not_scroll_sideways(phone: Any,
                                                   clinic_server: support.Server) -> None:
    # Old UI: with the clinic's links (Patients, Dashboard, Admin) the header ran 213 px past a
    # 375 px screen on every page, and the patient table pushed the page wider as well.
    sign_in(phone, clinic_server, "sweep-admin")
    phone.get_by_test_id("patients-page").wait_for()
    new_lesion(phone, clinic_server, "PHONE-0001")
    for where, testid in (("#/clinic", "patient-list"), ("#/clinic/dashboard", "dashboard-page"),
                          ("#/clinic/admin", "clinic-user")):
        phone.goto(f"{clinic_server.base}/{where}")
        phone.get_by_test_id(testid).first.wait_for()
        assert overflow(phone) <= 0, f"{where} scrolls sideways by {overflow(phone)} px"
        for link in ("nav-assess", "nav-patients", "nav-dashboard", "nav-admin"):
            box = phone.get_by_test_id(link).bounding_box()
            assert box is not None, link
            assert box["x"] >= 0, link
            assert box["x"] + box["width"] <= 375, link


def test_focus_lands_on_the_saved_visit_and_diagnosis(desk: Any, clinic_server: support.Server,
                                                      data_dir: Path) -> None:
    # Old UI: the saved form was replaced and focus fell to <body>; "Correct" opened a form with
    # no way back but saving, and the same "Record diagnosis" button.
    sign_in(desk, clinic_server)
    desk.get_by_test_id("patients-page").wait_for()
    new_lesion(desk, clinic_server, "FOCUS-0001")
    form = desk.get_by_test_id("new-visit-form")
    form.get_by_test_id("file-input").set_input_files(str(data_dir / "images" / f"{NEVUS}.jpg"))
    with desk.expect_response(re.compile(r"/api/v1/lesions/\d+/visits$")) as resp:
        form.get_by_test_id("visit-submit").click()
    assert resp.value.status == 201
    visit_id = resp.value.json()["id"]
    expect(desk.locator(f'li[data-visit-id="{visit_id}"]')).to_be_focused()

    desk.get_by_test_id("diagnosis-code").select_option("NV")
    desk.get_by_test_id("diagnosis-submit").click()
    shown = desk.get_by_test_id("diagnosis")
    expect(shown).to_be_focused()
    expect(shown).to_contain_text("Diagnosis recorded")

    desk.get_by_test_id("diagnosis-edit").click()
    expect(desk.get_by_test_id("diagnosis-code")).to_be_focused()
    expect(desk.get_by_test_id("diagnosis-submit")).to_have_text("Save correction")
    desk.get_by_test_id("diagnosis-code").select_option("MEL")
    desk.get_by_test_id("diagnosis-cancel").click()
    expect(desk.get_by_test_id("diagnosis-code")).to_have_count(0)
    expect(shown).to_have_attribute("data-code", "NV")
    expect(desk.get_by_test_id("diagnosis-edit")).to_be_focused()


def test_a_save_after_the_session_ended_says_it_was_not_saved(
        desk: Any, clinic_server: support.Server) -> None:
    # Old UI: after signing in again the form still said "not logged in" under the typed note.
    sign_in(desk, clinic_server)
    desk.get_by_test_id("patients-page").wait_for()
    new_lesion(desk, clinic_server, "EXPIRED-0001")
    desk.get_by_test_id("diagnosis-code").select_option("BKL")
    desk.get_by_test_id("diagnosis-note").fill("seborrhoeic keratosis, shave biopsy")
    desk.context.clear_cookies()  # the server ended the session
    desk.get_by_test_id("diagnosis-submit").click()
    desk.get_by_test_id("login-password").fill(PASSWORD)
    desk.get_by_test_id("login-submit").click()
    section = desk.get_by_test_id("diagnosis-section")
    expect(section.get_by_test_id("error-message")).to_contain_text("Not saved")
    expect(section).not_to_contain_text("not logged in")
    expect(desk.get_by_test_id("diagnosis-note")).to_have_value(
        "seborrhoeic keratosis, shave biopsy")


def test_server_messages_read_as_sentences(desk: Any, clinic_server: support.Server) -> None:
    # Old UI: "Could not sign in. wrong username or password" and "… a patient with reference …".
    sign_in(desk, clinic_server, password="not the password")
    expect(desk.get_by_test_id("login-error")).to_contain_text("Wrong user name or password")
    desk.get_by_test_id("login-password").fill(PASSWORD)
    desk.get_by_test_id("login-submit").click()
    desk.get_by_test_id("patients-page").wait_for()
    desk.get_by_test_id("new-patient-ref").fill("TWICE-0001")
    desk.get_by_test_id("new-patient-submit").click()
    desk.get_by_test_id("patient-page").wait_for()
    desk.goto(f"{clinic_server.base}/#/clinic")
    desk.get_by_test_id("new-patient-ref").fill("TWICE-0001")
    desk.get_by_test_id("new-patient-submit").click()
    expect(desk.get_by_test_id("patients-page").get_by_role("alert")).to_contain_text(
        "A patient with reference 'TWICE-0001' exists already")


def test_a_lockout_says_the_wait_in_minutes(desk: Any, clinic_server: support.Server) -> None:
    # Old UI: "Could not sign in. too many failed logins: try again in 898 s".
    desk.goto(f"{clinic_server.base}/#/clinic")
    desk.get_by_test_id("login-username").fill("sweep-locked")
    for attempt in range(10):
        desk.get_by_test_id("login-password").fill(f"wrong {attempt}")
        with desk.expect_response(re.compile(r"/api/v1/auth/login$")) as resp:
            desk.get_by_test_id("login-submit").click()
        if resp.value.status == 429:
            break
    assert resp.value.status == 429
    error = desk.get_by_test_id("login-error")
    expect(error).to_contain_text(re.compile(r"Too many failed logins: try again in \d+ min\."))
    expect(error).not_to_contain_text(re.compile(r"\d+ s\b"))
