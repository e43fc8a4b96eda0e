"""What the web page's CSRF refresh relies on (frontend/src/clinic/api.ts ``refreshCsrf``): two tabs
of one browser share the session cookie; a password changed in one replaces the browser's session,
so the other tab's CSRF token is out of date. Its request is a 403 that says it is about the
security token; ``GET /auth/me`` (no CSRF token needed) answers the cookie's new session, for the
same user, with its CSRF token; the request sent again with it goes through, and a sign-out with it
really ends the session (SQLite and PostgreSQL)."""

# ruff: noqa: F811  (pytest fixtures imported from clinic_support, taken as arguments)
from __future__ import annotations

from clinic_support import (  # noqa: F401
    API,
    PASSWORD,
    ClinicHarness,
    clinic_model,
    db_url,
    harness,
    pg_cluster,
)

NEW = "a completely different passphrase 42"


def test_a_tab_with_an_out_of_date_csrf_token_finds_the_new_one_at_auth_me(
        harness: ClinicHarness) -> None:
    h = harness
    vic = h.add_user("vic")
    h.login("vic")
    stale = h.client.headers["X-CSRF-Token"]  # what the other tab holds
    # tab 1 changes the password: the cookie (shared by the tabs) now opens a new session
    r = h.client.post(f"{API}/auth/password",
                      json={"current_password": PASSWORD, "new_password": NEW})
    assert r.status_code == 200, r.text
    fresh = r.json()["csrf_token"]
    assert fresh != stale

    # tab 2: its save and its sign-out are refused for the token, said as such
    for path, body in (("/patients", {"ref": "P-1"}), ("/auth/logout", None)):
        r = h.client.post(f"{API}{path}", json=body, headers={"X-CSRF-Token": stale})
        assert r.status_code == 403, r.text
        assert "security token" in r.json()["detail"]
    # /auth/me answers the cookie's session: the same user, the new token
    r = h.client.get(f"{API}/auth/me", headers={"X-CSRF-Token": ""})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == vic.id
    assert r.json()["csrf_token"] == fresh
    # sent again with it: saved; and a sign-out ends the session
    r = h.client.post(f"{API}/patients", json={"ref": "P-1"}, headers={"X-CSRF-Token": fresh})
    assert r.status_code == 201, r.text
    r = h.client.post(f"{API}/auth/logout", headers={"X-CSRF-Token": fresh})
    assert r.status_code in (200, 204), r.text
    assert h.client.get(f"{API}/auth/me").status_code == 401
