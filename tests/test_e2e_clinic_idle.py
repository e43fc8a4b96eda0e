"""End-to-end: the clinic UI audit's three findings, in the built web UI on a real
``dermsight serve --database``, in headless Chromium (``browser_support.py``).

* A page left alone for the session's idle timeout hides the patient's data by itself (a timer
  in the page, from the idle timeout the server reports, else its default of 30 minutes), under
  the sign-in form for the same user with one line saying why; no request is needed for it (the
  page's clock is moved on with Playwright's clock, the server's is not, so only the page's
  timer can hide it). A key press is activity and starts the idle time again.
* The Clinician | Patient switch, which changes nothing on clinic pages, is not offered there: a
  note says the clinic pages show the clinician view only; on the Assess page it is there.
* A patient list cut at the server's 200 says so (211 patients) and searching finds the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

import api_support as support
from browser_support import (
    PASSWORD,
    clinic_server_fixture,
    new_patient,
    sign_in_clinic,
    start_clinic_ui_server,
    watched_page,
)

pytestmark = pytest.mark.browser

USER = "e2e-idle"
#: the server's idle timeout when serve is not given one (SESSION_IDLE_MINUTES)
IDLE_MINUTES = 30


clinic_server = clinic_server_fixture("clinic-idle", [(USER, "admin")])


@pytest.fixture
def clinic_page(browser: Any, clinic_server: support.Server) -> Iterator[Any]:
    with watched_page(browser) as pg:
        yield pg


def test_a_page_left_alone_hides_the_patient_after_the_idle_timeout(
        clinic_page: Any, clinic_server: support.Server) -> None:
    page = clinic_page
    page.clock.install()  # the page's timers and Date, moved on below; the server's clock is not
    sign_in_clinic(page, clinic_server.base, USER)
    me = page.request.get(f"{clinic_server.base}/api/v1/auth/me").json()
    idle = int(me.get("idle_minutes", IDLE_MINUTES))
    assert idle == IDLE_MINUTES
    ref = "E2E-IDLE-HIDE-1"
    new_patient(page, ref)
    patient = page.get_by_test_id("patient-page")
    resume = page.locator('[data-testid="login-page"][data-resume="true"]')

    # four minutes short of the timeout (before the warning, 2 minutes before the page's timeout,
    # which is a minute before the server's; only its own buttons answer the warning:
    # test_e2e_session_warning.py): still there; a key press starts the idle time again
    page.clock.fast_forward(f"{idle - 4}:00")
    assert patient.is_visible()
    page.keyboard.press("Shift")
    page.clock.fast_forward(f"{idle - 4}:00")
    assert patient.is_visible(), "a key press is activity: the idle time starts again"
    assert resume.count() == 0

    # the idle time passes without activity: the page hides, without any clinic request
    clinic_requests: list[str] = []
    page.on("request", lambda r: clinic_requests.append(r.url)
            if re.search(r"/api/v1/(patients|lesions|visits|auth)", r.url) else None)
    page.clock.fast_forward("04:00")
    resume.wait_for(timeout=10_000)
    assert not patient.is_visible()
    assert not page.get_by_test_id("patient-ref").is_visible()
    assert page.get_by_text(ref).filter(visible=True).count() == 0  # off the screen
    reason = resume.get_by_test_id("login-idle-reason").inner_text()
    assert f"{idle} minutes without activity" in reason
    assert "\n" not in reason.strip()
    assert resume.get_by_test_id("login-username").input_value() == USER
    assert clinic_requests == []  # the page's own timer, not a refused request

    # signing in again as the same user shows the same page again
    resume.get_by_test_id("login-password").fill(PASSWORD)
    resume.get_by_test_id("login-submit").click()
    patient.wait_for()
    assert page.get_by_test_id("patient-ref").inner_text() == ref
    assert page.get_by_test_id("login-page").count() == 0
    assert [p for p in page.problems if "Failed to load resource" not in p] == []


def test_the_patient_view_switch_is_not_offered_on_clinic_pages(
        clinic_page: Any, clinic_server: support.Server) -> None:
    page = clinic_page
    page.goto(f"{clinic_server.base}/")
    page.get_by_test_id("audience-patient").click()  # chosen on the Assess page
    assert page.get_by_test_id("audience-toggle").get_attribute("data-audience") == "patient"
    sign_in_clinic(page, clinic_server.base, USER)
    # the clinic pages have no patient view: no switch that seems to change them, a note instead
    assert page.get_by_test_id("audience-toggle").count() == 0
    assert page.get_by_test_id("audience-patient").count() == 0
    note = page.get_by_test_id("audience-clinic-note")
    assert note.is_visible()
    assert "Clinician view only" in note.inner_text()
    assert "no patient view" in note.text_content()
    # back on the Assess page the switch is there, with the view chosen before
    page.get_by_test_id("nav-assess").click()
    page.get_by_test_id("audience-toggle").wait_for()
    assert page.get_by_test_id("audience-toggle").get_attribute("data-audience") == "patient"
    assert page.get_by_test_id("audience-clinic-note").count() == 0


def test_a_patient_list_cut_at_the_limit_says_so(
        clinic_page: Any, clinic_server: support.Server) -> None:
    page = clinic_page
    base = clinic_server.base
    sign_in_clinic(page, base, USER)
    csrf = page.request.get(f"{base}/api/v1/auth/me").json()["csrf_token"]
    refs = [f"E2E-LIST-{i:04d}" for i in range(211)]
    for ref in refs:
        r = page.request.post(f"{base}/api/v1/patients", data={"ref": ref},
                              headers={"X-CSRF-Token": csrf})
        assert r.status in (201, 409), r.text()  # 409: made by an earlier run of this module
    page.reload()
    caption = page.get_by_test_id("patient-list").locator("caption", has_not_text="Loading")
    caption.wait_for()
    assert caption.inner_text().strip() == (
        "The first 200 patients by reference are shown; search by reference to find others.")
    assert page.get_by_test_id("patient-link").count() == 200
    # the last ones are found by searching
    page.get_by_test_id("patient-search").fill("E2E-LIST-021")
    page.get_by_test_id("patient-list").locator("caption", has_text="1 patient whose").wait_for()
    assert page.get_by_test_id("patient-link").all_inner_texts() == ["E2E-LIST-0210"]


def test_the_page_hides_after_the_idle_timeout_the_server_was_given(
        browser: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """``serve`` with a 5-minute idle timeout: the page hides after 5 minutes (a minute sooner:
    the server records a session's use at most every minute), not the default 30. Needs the
    server to report its timeout (``idle_minutes`` in ``GET /auth/me``)."""
    server = start_clinic_ui_server(tmp_path_factory.mktemp("clinic-idle-5"), [(USER, "admin")],
                                    env={"DERMSIGHT_SESSION_IDLE_MINUTES": "5"})
    try:
        with watched_page(browser) as page:
            page.clock.install()
            sign_in_clinic(page, server.base, USER)
            me = page.request.get(f"{server.base}/api/v1/auth/me").json()
            if "idle_minutes" not in me:
                pytest.skip("the server does not report its idle timeout (GET /auth/me "
                            "'idle_minutes'): the page falls back to 30 minutes")
            assert me["idle_minutes"] == 5
            page.clock.fast_forward("03:30")
            assert page.get_by_test_id("patients-page").is_visible()
            page.clock.fast_forward("01:00")
            resume = page.locator('[data-testid="login-page"][data-resume="true"]')
            resume.wait_for(timeout=10_000)
            assert not page.get_by_test_id("patients-page").is_visible()
            assert "5 minutes without activity" in resume.get_by_test_id(
                "login-idle-reason").inner_text()
    finally:
        server.stop()
