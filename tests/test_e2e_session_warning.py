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
    clinic_server_fixture,
    describe_violation,
    sign_in_clinic,
    ui_static_dir,
    watched_page,
)

pytestmark = pytest.mark.browser

USER = "e2e-warn"


clinic_server = clinic_server_fixture("session-warning", [(USER, "admin")])


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

    # the page's timeout is a minute before the server's (the server records a session's use at
    # most every minute): the warning comes 2 minutes before the page's
    page.clock.fast_forward(f"{idle - 4}:00")
    assert warning.count() == 0
    page.clock.fast_forward("01:00")  # 2 minutes before the page's timeout
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
    page.clock.fast_forward(f"{idle - 4}:00")
    assert warning.count() == 0
    page.clock.fast_forward("01:30")
    warning.wait_for()
    page.get_by_test_id("session-warning-sign-out").click()
    page.locator('[data-testid="login-page"]:not([data-resume="true"])').wait_for()
    expect(warning).to_have_count(0)
    assert [p for p in page.problems if "Failed to load resource" not in p] == []


def _age_sessions_s(server: support.Server, seconds: float) -> None:
    """Every session's last recorded use ``seconds`` ago (on the server's clock)."""
    aged = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")
    db = _db(server)
    with db:
        assert db.execute("UPDATE sessions SET last_seen_at = ?", (aged,)).rowcount >= 1
    db.close()


def _focused(page: Any) -> str:
    """What has focus: its test id, else its tag (BODY when focus is lost)."""
    return str(page.evaluate("(() => { const a = document.activeElement;"
                             " return a ? (a.dataset.testid || a.tagName) : 'none' })()"))


def _open_warning(page: Any, base: str) -> Any:
    """Sign in (the page's clock installed) and wait for the warning; returns it."""
    page.clock.install()
    sign_in_clinic(page, base, USER)
    warning = page.get_by_role("alertdialog", name="You will be signed out soon")
    page.clock.fast_forward("28:10")
    warning.wait_for()
    expect(page.get_by_test_id("session-warning-stay")).to_be_focused()
    return warning


def test_stay_signed_in_works_up_to_the_warnings_last_seconds(
        clinic_page: Any, clinic_server: support.Server) -> None:
    """The server records a session's use at most every minute: its idle time may have started
    up to a minute before the page's. The page's deadline allows for it, so that "Stay signed
    in" pressed just before the countdown ends still finds the server's session."""
    page = clinic_page
    page.clock.install()
    sign_in_clinic(page, clinic_server.base, USER)
    idle = page.request.get(f"{clinic_server.base}/api/v1/auth/me").json()["idle_minutes"]
    warning = page.get_by_role("alertdialog", name="You will be signed out soon")
    # when the warning comes (2 minutes before the page's deadline), to 10 s
    page.clock.fast_forward(f"{idle - 5}:00")
    elapsed = (idle - 5) * 60
    while warning.count() == 0 and elapsed < idle * 60:
        page.clock.fast_forward("00:10")
        elapsed += 10
        page.wait_for_timeout(50)
    warning.wait_for()
    page.clock.fast_forward("01:50")  # 10 s before the page's deadline
    elapsed += 110
    # the server last wrote the session's use 59 s before the page's last activity (the sign-in)
    _age_sessions_s(clinic_server, elapsed + 59)
    page.get_by_test_id("session-warning-stay").click()
    expect(warning).to_have_count(0)
    page.wait_for_timeout(500)
    assert page.locator('[data-testid="login-page"]').count() == 0, "Stay found no session"
    assert page.get_by_test_id("patients-page").is_visible()
    assert _minutes_since_seen(clinic_server) < 1


def test_back_while_the_warning_is_open_leaves_focus_in_it(
        clinic_page: Any, clinic_server: support.Server) -> None:
    page = clinic_page
    page.clock.install()
    sign_in_clinic(page, clinic_server.base, USER)
    page.get_by_test_id("nav-learn").click()
    page.get_by_test_id("nav-learn").wait_for()
    page.go_back()
    page.get_by_test_id("patients-page").wait_for()
    warning = page.get_by_role("alertdialog", name="You will be signed out soon")
    page.clock.fast_forward("28:10")
    warning.wait_for()
    stay = page.get_by_test_id("session-warning-stay")
    expect(stay).to_be_focused()
    for move, to in ((page.go_forward, "#/learn"), (page.go_back, "#/clinic")):
        move()  # Forward, Back with the warning open
        for _ in range(50):  # (not wait_for_function: its polling runs on the page's clock, held)
            if page.evaluate("location.hash") == to:
                break
            page.wait_for_timeout(100)
        assert page.evaluate("location.hash") == to
        page.wait_for_timeout(300)
        expect(warning).to_have_count(1)
        expect(stay).to_be_focused()  # not moved behind the modal
    # the page behind is inert while the warning is open
    expect(page.locator("main#main")).to_have_attribute("inert", "")
    expect(page.locator("header.site-header")).to_have_attribute("inert", "")
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("session-warning-sign-out")).to_be_focused()
    page.keyboard.press("Escape")  # "Stay signed in"
    expect(warning).to_have_count(0)
    expect(page.locator("main#main")).not_to_have_attribute("inert", "")
    assert _focused(page) != "BODY"


def test_a_click_in_the_warning_or_beside_it_keeps_its_keys(
        clinic_page: Any, clinic_server: support.Server) -> None:
    page = clinic_page
    warning = _open_warning(page, clinic_server.base)
    page.get_by_test_id("session-warning-time").click()  # its text
    assert _focused(page) == "session-warning"  # the dialog, not <body>
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_test_id("session-warning-sign-out")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_test_id("session-warning-stay")).to_be_focused()
    page.mouse.click(5, 5)  # beside it, on the backdrop
    page.keyboard.press("Tab")
    assert _focused(page) in ("session-warning-stay", "session-warning-sign-out")
    page.get_by_test_id("session-warning-time").click()
    page.keyboard.press("Escape")  # "Stay signed in", also after a click on its text
    expect(warning).to_have_count(0)
    assert page.get_by_test_id("patients-page").is_visible()


def test_the_timeout_on_a_public_page_leaves_focus_on_the_page(
        clinic_page: Any, clinic_server: support.Server) -> None:
    page = clinic_page
    page.clock.install()
    sign_in_clinic(page, clinic_server.base, USER)
    page.get_by_test_id("nav-learn").click()
    expect(page.locator("main h1").first).to_be_focused()
    warning = page.get_by_role("alertdialog", name="You will be signed out soon")
    page.clock.fast_forward("28:10")
    warning.wait_for()
    page.clock.fast_forward("02:00")  # nobody answered: the session ends, the warning goes
    expect(warning).to_have_count(0)
    focused = page.evaluate("(() => { const a = document.activeElement; return a ?"
                            " a.tagName + (a.closest('main') ? ' in main' : '') : '' })()")
    assert focused in ("H1 in main", "MAIN in main"), focused


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
