"""End-to-end: the upload limit said before the upload, the footer's server status kept current,
and keyboard / screen-reader focus on the clinic pages, in headless Chromium against a real
``dermsight serve --database`` started with a small upload cap (``DERMSIGHT_MAX_UPLOAD_MB=0.02``)
and real lesion images (``../shared/data``).

Each test pins a fix: a file over the cap (GET /health's ``max_upload_mb``) is refused on the
Assess page and on a clinic visit before anything is sent, in the words of the server's 413 (still
used when /health could not be read); the footer re-checks the server (window focus, every 30 s)
and says "not reachable" when a check fails, "ok" again when it answers; after signing in focus is
on the page's heading; closing the delete box puts focus back on its button, a deleted patient is
announced in a polite status line; the account page says "No tokens yet."; a session that ended
brings back the sign-in form with the password field focused.

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
from browser_support import (
    PASSWORD,
    age_sessions,
    new_lesion,
    new_patient,
    start_clinic_ui_server,
    watched_page,
)

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.browser

ADMIN = "limits-admin"
CAP_MB = "0.02"  # 20971 bytes: the shared data's images are 7 to 31 KB
BIG = "ISIC_0012464"  # 28.6 KB: over the cap
SMALL = "ISIC_0000000"  # 9.5 KB: under it
UPLOADS = re.compile(r"/api/v1/(predict|lesions/\d+/visits)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Server]:
    srv = start_clinic_ui_server(tmp_path_factory.mktemp("limits-a11y"), [(ADMIN, "admin")],
                                 env={"DERMSIGHT_MAX_UPLOAD_MB": CAP_MB})
    yield srv
    srv.stop()


@pytest.fixture
def page(browser: Any, server: support.Server) -> Iterator[Any]:
    with watched_page(browser) as pg:
        yield pg


@pytest.fixture
def big_image(data_dir: Path) -> Path:
    path = data_dir / "images" / f"{BIG}.jpg"
    assert path.stat().st_size > float(CAP_MB) * 1024 * 1024
    return path


@pytest.fixture
def small_image(data_dir: Path) -> Path:
    path = data_dir / "images" / f"{SMALL}.jpg"
    assert path.stat().st_size < float(CAP_MB) * 1024 * 1024
    return path


def uploads(page: Any) -> list[str]:
    """The image uploads (POST /predict, POST .../visits) the page sends from now on."""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url)
            if r.method == "POST" and UPLOADS.search(r.url) else None)
    return sent


def active_testid(page: Any) -> str | None:
    return page.evaluate("document.activeElement?.dataset?.testid ?? null")


def focus_lost(page: Any) -> bool:
    return bool(page.evaluate(
        "document.activeElement === null || document.activeElement === document.body"))


def sign_in(page: Any, server: support.Server) -> None:
    page.goto(f"{server.base}/#/clinic")
    page.get_by_test_id("login-username").fill(ADMIN)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("patients-page").wait_for()


# --- the upload limit ---------------------------------------------------------------------------


def test_health_says_the_upload_limit(server: support.Server) -> None:
    body = server.client().get("/api/v1/health").json()
    assert body["max_upload_mb"] == pytest.approx(float(CAP_MB), rel=1e-4)


def test_assess_refuses_a_file_over_the_limit_before_sending_it(
        page: Any, server: support.Server, big_image: Path, small_image: Path) -> None:
    """Before: the whole file was uploaded and the server's 413 said it was too large."""
    page.goto(f"{server.base}/")
    expect(page.get_by_test_id("health")).to_contain_text("ok")  # /health has been read
    sent = uploads(page)
    page.get_by_test_id("file-input").set_input_files(str(big_image))
    error = page.get_by_test_id("error-message")
    size = f"{big_image.stat().st_size / 1024:.0f} KB"
    expect(error).to_contain_text(
        f"The image file is too large ({size}): this server accepts files up to {CAP_MB} MB. "
        "Send a smaller copy of the photo")
    assert error.get_attribute("role") == "alert"
    expect(page.get_by_test_id("submit")).to_be_disabled()
    page.get_by_test_id("age-input").press("Enter")  # submitting the form sends nothing either
    page.wait_for_timeout(500)
    assert sent == []
    # a file under the limit is assessed as before
    page.get_by_test_id("file-input").set_input_files(str(small_image))
    expect(page.get_by_test_id("error-message")).to_have_count(0)
    with page.expect_response(UPLOADS) as resp:
        page.get_by_test_id("submit").click()
    assert resp.value.status == 200
    page.get_by_test_id("result").wait_for()
    # (the one failed resource: GET /auth/me's 401, nobody is signed in to the clinic)
    assert [p for p in page.problems if "Failed to load resource" not in p] == []


def test_without_health_the_413_says_the_same(page: Any, server: support.Server,
                                              big_image: Path) -> None:
    """/health not readable (here: answered without the limit): the file is sent, and the
    server's 413 is said in the same words as the check before sending."""
    def no_limit(route: Any) -> None:
        answer = route.fetch()
        body = answer.json()
        body.pop("max_upload_mb", None)
        route.fulfill(response=answer, json=body)

    page.route("**/api/v1/health", no_limit)
    page.goto(f"{server.base}/")
    expect(page.get_by_test_id("health")).to_contain_text("ok")
    page.get_by_test_id("file-input").set_input_files(str(big_image))
    with page.expect_response(UPLOADS) as resp:
        page.get_by_test_id("submit").click()
    assert resp.value.status == 413
    size = f"{big_image.stat().st_size / 1024:.0f} KB"
    expect(page.get_by_test_id("error-message")).to_contain_text(
        f"The image file is too large ({size}): this server accepts files up to {CAP_MB} MB.")


def test_a_clinic_visit_over_the_limit_is_refused_before_sending(
        page: Any, server: support.Server, big_image: Path) -> None:
    sign_in(page, server)
    new_lesion(page, "LIMIT-0001")
    sent = uploads(page)
    form = page.get_by_test_id("new-visit-form")
    form.get_by_test_id("file-input").set_input_files(str(big_image))
    refused = form.get_by_test_id("visit-file-refused")
    expect(refused).to_contain_text(
        f"The image file is too large ({big_image.stat().st_size / 1024:.0f} KB): this server "
        f"accepts files up to {CAP_MB} MB.")
    expect(form.get_by_test_id("visit-submit")).to_be_disabled()
    page.wait_for_timeout(500)
    assert sent == []


# --- the footer's server status ---------------------------------------------------------------


def test_the_footer_rechecks_the_server(page: Any, server: support.Server) -> None:
    """Before: /health was read once at load, so the footer said "ok" with the server down."""
    page.clock.install()
    checks: list[str] = []
    page.on("request",
            lambda r: checks.append(r.url) if r.url.endswith("/api/v1/health") else None)
    page.goto(f"{server.base}/")
    status = page.get_by_test_id("health")
    expect(status).to_contain_text("Server: ok · model")
    page.route("**/api/v1/health", lambda route: route.abort("connectionrefused"))  # down
    page.clock.run_for(31_000)
    expect(status).to_have_text("Server: not reachable")
    page.unroute("**/api/v1/health")  # back
    page.clock.run_for(6_000)
    page.evaluate("window.dispatchEvent(new Event('focus'))")
    expect(status).to_contain_text("Server: ok · model")
    # a server that takes the connection but never answers: one check waits (focus coming back
    # meanwhile adds none), and once it has waited 10 s the footer says "not reachable"
    held: list[Any] = []
    page.route("**/api/v1/health", lambda route: held.append(route))
    before = len(checks)
    page.clock.run_for(6_000)
    for _ in range(3):
        page.evaluate("window.dispatchEvent(new Event('focus'))")
        page.clock.run_for(1_000)
    page.wait_for_timeout(300)
    assert len(checks) - before == 1
    expect(status).to_contain_text("Server: ok · model")
    page.clock.run_for(11_000)
    expect(status).to_have_text("Server: not reachable")


# --- the clinic's focus and announcements -------------------------------------------------------


def test_signing_in_puts_focus_on_the_page_heading(page: Any, server: support.Server) -> None:
    """Before: the sign-in form went away with focus on its button, leaving it on <body>."""
    sign_in(page, server)
    heading = page.get_by_test_id("patients-page").locator("h1")
    expect(heading).to_be_focused()


def test_delete_box_focus_and_the_deleted_patient_is_announced(
        page: Any, server: support.Server) -> None:
    sign_in(page, server)
    ref = "A11Y-DEL-0001"
    new_patient(page, ref)
    page.get_by_test_id("patient-delete").click()
    expect(page.get_by_test_id("delete-confirm-input")).to_be_focused()
    page.get_by_test_id("delete-cancel").click()  # Cancel: back on the button that opened it
    expect(page.get_by_test_id("patient-delete")).to_be_focused()
    page.get_by_test_id("patient-delete").press("Enter")
    expect(page.get_by_test_id("delete-confirm-input")).to_be_focused()
    page.keyboard.press("Escape")  # Escape closes it the same way
    expect(page.get_by_test_id("delete-confirm-box")).to_have_count(0)
    expect(page.get_by_test_id("patient-delete")).to_be_focused()
    page.get_by_test_id("patient-delete").click()
    page.get_by_test_id("delete-confirm-input").fill(ref)
    page.get_by_test_id("delete-confirm").click()
    page.get_by_test_id("patients-page").wait_for()
    status = page.get_by_test_id("clinic-status")
    expect(status).to_have_text(f"Patient {ref} deleted.")
    assert status.get_attribute("role") == "status"
    assert status.get_attribute("aria-live") == "polite"
    assert not focus_lost(page)
    page.get_by_test_id("nav-dashboard").click()  # the message was about the page before
    page.get_by_test_id("dashboard-page").wait_for()
    expect(status).to_have_text("")


def test_tokens_empty_state_and_focus_after_delete(page: Any, server: support.Server) -> None:
    sign_in(page, server)
    page.goto(f"{server.base}/#/clinic/admin")
    section = page.get_by_test_id("tokens-section")
    expect(section.get_by_test_id("token-empty")).to_have_text("No tokens yet.")
    expect(section.get_by_test_id("token-list")).to_have_count(0)
    section.get_by_test_id("token-name").fill("a11y script")
    section.get_by_test_id("token-create").click()
    section.get_by_test_id("new-token").wait_for()
    delete = section.locator("[data-testid^='token-delete-']")
    expect(delete).to_have_count(1)
    delete.click()
    expect(section.get_by_test_id("token-status")).to_have_text("Token “a11y script” deleted.")
    expect(section.get_by_test_id("token-empty")).to_have_text("No tokens yet.")
    expect(section.locator("h2")).to_be_focused()


def test_an_ended_session_focuses_the_password(page: Any, server: support.Server) -> None:
    """Before: the page under the form was hidden with focus on it: focus was nowhere."""
    sign_in(page, server)
    page.get_by_test_id("patient-list").locator("caption", has_not_text="Loading").wait_for()
    age_sessions(server)
    page.get_by_test_id("nav-dashboard").click()
    resume = page.locator('[data-testid="login-page"][data-resume="true"]')
    resume.wait_for()
    expect(resume.get_by_test_id("login-password")).to_be_focused()
    assert active_testid(page) == "login-password"
    resume.get_by_test_id("login-password").fill(PASSWORD)
    resume.get_by_test_id("login-password").press("Enter")
    expect(page.get_by_test_id("dashboard-page").locator("h1")).to_be_focused()
