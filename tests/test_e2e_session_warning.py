"""End-to-end: the accessibility audit's session-timeout finding (WCAG 2.2.1 Timing Adjustable)
and its route-change and patient-search findings, in the built web UI on a real ``dermsight
serve --database``, in headless Chromium (``browser_support.py``).

* Before the page hides itself after the idle timeout, a modal alert dialog warns (2 minutes
  before), takes focus and keeps Tab inside it; "Stay signed in" refreshes the server's session
  (GET /api/v1/auth/me, which the server counts as activity) and puts focus back where it was;
  "Sign out" signs out. The page's clock is moved on with Playwright's clock; the server's
  session is aged in its database.
* Typing on the page (no request of its own) is passed on to the server every few minutes.
* A route change focuses the new page's heading (and the API token prompt, when the new page's
  request asks for it, still takes focus from there); the patient search's count is in a status
  line.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

import api_support as support
from browser_support import (
    axe_violations,
    describe_violation,
    sign_in_clinic,
    start_clinic_ui_server,
    ui_static_dir,
    watched_page,
)

pytestmark = pytest.mark.browser

USER = "e2e-warn"


@pytest.fixture(scope="module")
def clinic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Server]:
    server = start_clinic_ui_server(tmp_path_factory.mktemp("session-warning"), [(USER, "admin")])
    yield server
    server.stop()


@pytest.fixture
def clinic_page(browser: Any, clinic_server: support.Server) -> Iterator[Any]:
    with watched_page(browser, bypass_csp=True) as pg:  # bypass: axe is injected
        yield pg


def _db(server: support.Server) -> sqlite3.Connection:
    return sqlite3.connect(server.tmpdir.parent / "clinic.db")


def _age_sessions(server: support.Server, minutes: int) -> None:
    """Every session's last request ``minutes`` ago (on the server's clock)."""
    aged = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")
    db = _db(server)
    with db:
        assert db.execute("UPDATE sessions SET last_seen_at = ?", (aged,)).rowcount >= 1
    db.close()


def _minutes_since_seen(server: support.Server) -> float:
    """Minutes since the most recently used session's last request, on the server's clock."""
    db = _db(server)
    (seen,) = db.execute("SELECT MAX(last_seen_at) FROM sessions").fetchone()
    db.close()
    when = dt.datetime.fromisoformat(seen).replace(tzinfo=dt.UTC)
    return (dt.datetime.now(dt.UTC) - when).total_seconds() / 60


def _me_requests(page: Any) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if r.url.endswith("/api/v1/auth/me") else None)
    return seen


def test_a_warning_comes_before_the_timeout_and_stay_signed_in_refreshes_the_server(
        clinic_page: Any, clinic_server: support.Server) -> None:
    page = clinic_page
    page.clock.install()
    sign_in_clinic(page, clinic_server.base, USER)
    idle = page.request.get(f"{clinic_server.base}/api/v1/auth/me").json()["idle_minutes"]
    search = page.get_by_test_id("patient-search")
    search.fill("P-")  # focus in a field, with something typed
    warning = page.get_by_role("alertdialog", name="You will be signed out soon")
    stay = page.get_by_test_id("session-warning-stay")

    page.clock.fast_forward(f"{idle - 3}:00")
    assert warning.count() == 0
    page.clock.fast_forward("01:00")  # 2 minutes before the timeout (a minute of it at least)
    warning.wait_for()
    expect(warning).to_have_attribute("aria-modal", "true")
    expect(warning).to_have_accessible_description(re.compile(r"in about 2 minutes"))
    expect(stay).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("session-warning-sign-out")).to_be_focused()
    page.keyboard.press("Tab")  # Tab stays in the dialog
    expect(stay).to_be_focused()
    assert page.get_by_test_id("patients-page").is_visible()
    found = axe_violations(page)
    assert found == [], "\n".join(describe_violation("session warning", v) for v in found)

    # the server's session is nearly over (its clock is not moved by the page's): staying
    # refreshes it
    _age_sessions(clinic_server, idle - 2)
    me = _me_requests(page)
    page.keyboard.press("Enter")
    expect(warning).to_have_count(0)
    expect(search).to_be_focused()  # back where it was, with what was typed
    expect(search).to_have_value("P-")
    page.wait_for_timeout(500)
    assert len(me) == 1
    assert _minutes_since_seen(clinic_server) < 1

    # the page's idle time started again: no warning until 2 minutes before the new timeout
    page.clock.fast_forward(f"{idle - 3}:00")
    assert warning.count() == 0
    page.clock.fast_forward("01:30")
    warning.wait_for()
    page.get_by_test_id("session-warning-sign-out").click()
    page.locator('[data-testid="login-page"]:not([data-resume="true"])').wait_for()
    expect(warning).to_have_count(0)
    assert [p for p in page.problems if "Failed to load resource" not in p] == []


def test_typing_on_the_page_keeps_the_server_session(
        clinic_page: Any, clinic_server: support.Server) -> None:
    page = clinic_page
    page.clock.install()
    sign_in_clinic(page, clinic_server.base, USER)
    search = page.get_by_test_id("patient-search")
    search.click()
    me = _me_requests(page)
    _age_sessions(clinic_server, 20)
    # a long note: a key now and then for 12 minutes (the search field stands in for it; no
    # request is made while typing, the search's own aside)
    for _ in range(12):
        page.clock.fast_forward("01:00")
        page.keyboard.press("Shift")
    page.wait_for_timeout(500)
    assert 2 <= len(me) <= 4, me  # every 5 minutes or so, not at each key
    assert _minutes_since_seen(clinic_server) < 1


def test_a_new_page_focuses_its_heading_and_the_search_count_is_said(
        clinic_page: Any, clinic_server: support.Server) -> None:
    page = clinic_page
    sign_in_clinic(page, clinic_server.base, USER)
    page.get_by_test_id("nav-learn").click()
    expect(page.locator("main h1").first).to_be_focused()
    page.go_back()
    page.get_by_test_id("patients-page").wait_for()
    expect(page.get_by_role("heading", level=1, name="Patients")).to_be_focused()
    page.get_by_test_id("patient-search").fill("zzz-none")
    expect(page.get_by_test_id("patient-search-status")).to_have_text(
        "0 patients whose reference starts with “zzz-none”")
    expect(page.get_by_test_id("patient-search-status")).to_have_attribute("role", "status")


def test_the_token_prompt_takes_focus_from_the_heading_a_new_page_focused(
        browser: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = ui_static_dir()
    env = {"DERMSIGHT_API_TOKEN": "e2e-shared-token",
           **({"DERMSIGHT_STATIC_DIR": other} if other else {})}
    server = support.start_server(tmp_path_factory.mktemp("token-focus"), env=env)
    try:
        with watched_page(browser) as page:
            page.goto(f"{server.base}/")
            prompt = page.get_by_test_id("token-prompt")
            prompt.get_by_test_id("token-dismiss").click()
            expect(prompt).to_have_count(0)
            # its model card request is refused: it asks again
            page.get_by_test_id("nav-model").click()
            prompt.wait_for()
            expect(prompt.get_by_test_id("token-input")).to_be_focused()
    finally:
        server.stop()
