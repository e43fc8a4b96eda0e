"""End-to-end: two tabs of one browser share the clinic's session cookie. The page's keep-alive
(``GET /api/v1/auth/me``, sent while someone types) must not take on a session another tab
opened: tab A signed in as one user, tab B signed out and in as another; A's next keep-alive
took B's CSRF token, so that A, still showing its own user, wrote as B's (the audit log named B).
Now the keep-alive only compares: another session (another user) ends A's page, which asks its
user to sign in again, and A writes nothing as B. In the built web UI on a real ``dermsight serve
--database``, in headless Chromium (``browser_support.py``).

Set ``DERMSIGHT_E2E_STATIC_DIR=<folder>`` to drive another build of the UI (the committed one
before this fix: the test then fails).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

import api_support as support
from browser_support import (
    PASSWORD,
    clinic_server_fixture,
    sign_in_clinic,
    watched_page,
)

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.browser

ALICE = "e2e-tabs-alice"
BOB = "e2e-tabs-bob"


clinic_server = clinic_server_fixture("session-tabs", [(ALICE, "admin"), (BOB, "clinician")])


def _patients_created_by(server: support.Server) -> dict[str, list[str]]:
    """Who created which patient, from the audit log: {user: [object ids]}."""
    db = sqlite3.connect(server.tmpdir.parent / "clinic.db")
    rows = db.execute("SELECT username, object_id FROM audit_events "
                      "WHERE object_type = 'patient' AND action LIKE '%create%'").fetchall()
    db.close()
    found: dict[str, list[str]] = {}
    for user, obj in rows:
        found.setdefault(str(user), []).append(str(obj))
    return found


def test_a_session_another_tab_opened_ends_this_tabs_instead_of_being_taken_on(
        browser: Any, clinic_server: support.Server) -> None:
    base = clinic_server.base
    with watched_page(browser) as tab_a:
        tab_a.on("dialog", lambda d: d.dismiss())
        tab_a.clock.install()  # A's timers moved on below (the keep-alive's interval)
        sign_in_clinic(tab_a, base, ALICE)
        expect(tab_a.locator("header")).to_contain_text(ALICE)

        # tab B, same browser (same cookie jar): sign out, sign in as bob
        tab_b = tab_a.context.new_page()
        tab_b.goto(f"{base}/#/clinic")
        tab_b.get_by_test_id("patients-page").wait_for()
        tab_b.get_by_role("button", name="Sign out").first.click()
        tab_b.get_by_test_id("login-username").fill(BOB)
        tab_b.get_by_test_id("login-password").fill(PASSWORD)
        tab_b.get_by_test_id("login-submit").click()
        tab_b.get_by_test_id("patients-page").wait_for()

        # A, still showing alice: someone types, and the keep-alive asks the server
        tab_a.bring_to_front()
        pings: list[str] = []
        tab_a.on("request", lambda r: pings.append(r.url)
                 if r.url.endswith("/api/v1/auth/me") else None)
        tab_a.get_by_test_id("new-patient-ref").fill("TABS-A")
        tab_a.clock.fast_forward("05:10")
        tab_a.keyboard.press("Shift")
        # A's session is gone (replaced by bob's): A asks alice to sign in again, its page
        # (and what was typed on it) kept hidden; it never shows bob's session as alice's
        resume = tab_a.locator('[data-testid="login-page"][data-resume="true"]')
        resume.wait_for(timeout=10_000)
        assert pings, "the keep-alive asked the server"
        expect(resume.get_by_test_id("login-username")).to_have_value(ALICE)
        expect(tab_a.get_by_test_id("patients-page")).to_be_hidden()
        # nothing A could submit is written as bob
        assert tab_a.get_by_test_id("new-patient-submit").filter(visible=True).count() == 0
        assert BOB not in _patients_created_by(clinic_server)

        # B is bob's, unaffected; a write there is bob's own
        tab_b.bring_to_front()
        tab_b.get_by_test_id("new-patient-ref").fill("TABS-B")
        tab_b.get_by_test_id("new-patient-submit").click()
        tab_b.get_by_test_id("patient-page").wait_for()
        assert len(_patients_created_by(clinic_server).get(BOB, [])) == 1

        # alice signs in again in A: her page is back, with what she typed, and writes as her
        tab_a.bring_to_front()
        resume.get_by_test_id("login-password").fill(PASSWORD)
        resume.get_by_test_id("login-submit").click()
        tab_a.get_by_test_id("patients-page").wait_for()
        expect(tab_a.get_by_test_id("new-patient-ref")).to_have_value("TABS-A")
        tab_a.get_by_test_id("new-patient-submit").click()
        tab_a.get_by_test_id("patient-page").wait_for()
        created = _patients_created_by(clinic_server)
        assert len(created.get(ALICE, [])) == 1
        assert len(created.get(BOB, [])) == 1
