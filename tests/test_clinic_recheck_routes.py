"""Every authenticated clinic route checks, in its own transaction, that the session or API token
that authenticated it is still valid and its account still active (``deps.route_session``): a
request in flight when its user signs out, is disabled or has the token revoked is refused
(401) and changes nothing, writes no audit row and hands nothing out; a token may still revoke
itself and logging out still works (SQLite and PostgreSQL, real threads)."""

# ruff: noqa: F811  (pytest fixtures imported from clinic_support, taken as arguments)
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from clinic_support import (  # noqa: F401
    API,
    ClinicHarness,
    clinic_model,
    db_url,
    harness,
    pg_cluster,
)
from dermsight.clinic import accounts
from dermsight.clinic.models import ApiToken, AuditEvent, Patient
from dermsight.web.clinic.deps import COOKIE, DISABLED, SESSION_ENDED, TOKEN_REFUSED

WAIT_S = 20


def _in_flight(monkeypatch: Any, lookup: str, request: Callable[[], Any],
               meanwhile: Callable[[], None]) -> Any:
    """Send ``request`` in a thread, paused right after ``accounts.<lookup>`` found its
    session / token live; run ``meanwhile``; let it go on; its response."""
    checked, go_on = threading.Event(), threading.Event()
    orig = getattr(accounts, lookup)

    def slow(*a: Any, **kw: Any) -> Any:
        found = orig(*a, **kw)
        checked.set()
        go_on.wait(WAIT_S)
        return found

    monkeypatch.setattr(accounts, lookup, slow)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["r"] = request()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            result["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        assert checked.wait(WAIT_S)
        monkeypatch.setattr(accounts, lookup, orig)  # the requests of ``meanwhile`` unpaused
        meanwhile()
    finally:
        go_on.set()
        t.join(WAIT_S)
    assert "error" not in result, result
    return result["r"]


def _sign_out(h: ClinicHarness) -> Callable[[], None]:
    """End the harness client's session in the database (a logout in another tab)."""
    cookie = h.client.cookies.get(COOKIE)
    assert cookie

    def end() -> None:
        with h.clinic.db.session() as s:
            accounts.close_session(s, cookie)

    return end


def _disable(h: ClinicHarness, username: str) -> Callable[[], None]:
    """``dermsight clinic disable <username>``."""
    def disable() -> None:
        with h.clinic.db.session() as s:
            user = accounts.find_user(s, username)
            assert user is not None
            accounts.disable(s, user)

    return disable


def _events(h: ClinicHarness, action: str, object_type: str) -> list[Any]:
    with h.clinic.db.session() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action,
                                                       AuditEvent.object_type == object_type)))


def _patient_ids(h: ClinicHarness) -> list[int]:
    with h.clinic.db.session() as s:
        return list(s.scalars(select(Patient.id)))


def _refused(r: Any, detail: str) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["detail"] == detail


@pytest.mark.parametrize("how", ["signed_out", "disabled"])
def test_delete_patient_in_flight_when_access_ends_deletes_nothing(
        harness: ClinicHarness, monkeypatch: Any, how: str) -> None:
    h = harness
    h.add_user("root", role="admin")
    h.add_user("ada", role="admin")  # disable refuses the last active administrator
    h.login("ada")
    pid = h.patient("P-KEEP")
    end = _sign_out(h) if how == "signed_out" else _disable(h, "ada")
    r = _in_flight(monkeypatch, "session_lookup",
                   lambda: h.client.delete(f"{API}/patients/{pid}"), end)
    _refused(r, SESSION_ENDED if how == "signed_out" else DISABLED)
    assert _patient_ids(h) == [pid]
    assert _events(h, "delete", "patient") == []


def test_delete_patient_in_flight_when_its_token_is_revoked_deletes_nothing(
        harness: ClinicHarness, monkeypatch: Any) -> None:
    h = harness
    h.add_user("ada", role="admin")
    h.login("ada")
    pid = h.patient("P-KEEP")
    made = h.post("/auth/tokens", json={"name": "script"}).json()
    c = TestClient(h.client.app)

    def revoke() -> None:
        assert h.client.delete(f"{API}/auth/tokens/{made['id']}").status_code == 204

    r = _in_flight(monkeypatch, "token_lookup", lambda: c.delete(
        f"{API}/patients/{pid}", headers={"Authorization": f"Bearer {made['token']}"}), revoke)
    _refused(r, TOKEN_REFUSED[accounts.Refused.REVOKED])
    assert _patient_ids(h) == [pid]
    assert _events(h, "delete", "patient") == []


def test_export_in_flight_when_the_account_is_disabled_hands_out_nothing(
        harness: ClinicHarness, monkeypatch: Any) -> None:
    h = harness
    h.add_user("vic")
    h.login("vic")
    pid = h.patient("P-EXPORT")
    r = _in_flight(monkeypatch, "session_lookup",
                   lambda: h.get(f"/patients/{pid}/export"), _disable(h, "vic"))
    _refused(r, DISABLED)
    assert r.headers["content-type"].startswith("application/json")
    assert _events(h, "export", "patient") == []


@pytest.mark.parametrize("path", ["/patients/{pid}", "/clinic/dashboard",
                                  "/clinic/export/confirmed", "/patients"])
def test_reads_in_flight_when_signed_out_are_refused(
        harness: ClinicHarness, monkeypatch: Any, path: str) -> None:
    h = harness
    h.add_user("vic")
    h.login("vic")
    pid = h.patient("P-READ")
    r = _in_flight(monkeypatch, "session_lookup", lambda: h.get(path.format(pid=pid)),
                   _sign_out(h))
    _refused(r, SESSION_ENDED)
    assert _events(h, "view", "patient") == []
    assert _events(h, "export", "confirmed_cases") == []
    assert _events(h, "view", "patient_list") == []


@pytest.mark.parametrize("route", ["disable", "enable", "unlock", "create_user",
                                   "admin_revoke"])
def test_admin_routes_in_flight_when_the_admin_signed_out_change_nothing(
        harness: ClinicHarness, monkeypatch: Any, route: str) -> None:
    h = harness
    h.add_user("ada", role="admin")
    target = h.add_user("vic")
    if route == "enable":
        _disable(h, "vic")()
    with h.clinic.db.session() as s:  # a token of vic's, for the admin to revoke
        _token, row = accounts.create_token(s, accounts.find_user(s, "vic"), "script")
        token_id = row.id
    h.login("ada")
    before = _all_events(h)
    send = {
        "disable": lambda: h.post(f"/admin/users/{target.id}/disable"),
        "enable": lambda: h.post(f"/admin/users/{target.id}/enable"),
        "unlock": lambda: h.post(f"/admin/users/{target.id}/unlock"),
        "create_user": lambda: h.post("/admin/users", json={
            "username": "newbie", "password": "another long passphrase 7", "role": "clinician"}),
        "admin_revoke": lambda: h.client.delete(f"{API}/admin/tokens/{token_id}"),
    }[route]
    r = _in_flight(monkeypatch, "session_lookup", send, _sign_out(h))
    _refused(r, SESSION_ENDED)
    assert _all_events(h) == before
    with h.clinic.db.session() as s:
        assert accounts.find_user(s, "newbie") is None
        vic = accounts.find_user(s, "vic")
        assert vic is not None
        assert vic.active is (route != "enable")
        if route != "enable":  # (enabling would have revoked it: end_access)
            token = s.get(ApiToken, token_id)
            assert token is not None
            assert token.revoked_at is None


def _all_events(h: ClinicHarness) -> list[tuple[str, str, int | None]]:
    with h.clinic.db.session() as s:
        return [(e.action, e.object_type, e.object_id)
                for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_revoke_own_token_in_flight_when_the_account_is_disabled_is_refused(
        harness: ClinicHarness, monkeypatch: Any) -> None:
    h = harness
    h.add_user("root", role="admin")
    h.add_user("vic")
    h.login("vic")
    made = h.post("/auth/tokens", json={"name": "script"}).json()
    r = _in_flight(monkeypatch, "session_lookup",
                   lambda: h.client.delete(f"{API}/auth/tokens/{made['id']}"),
                   _disable(h, "vic"))
    _refused(r, DISABLED)
    assert _events(h, "delete", "api_token") == []


def test_a_token_can_still_revoke_itself(harness: ClinicHarness) -> None:
    """The check of ``DELETE /auth/tokens/{id}`` runs before the revocation: a check after it
    would find the request's own token revoked and refuse."""
    h = harness
    h.add_user("ada", role="admin")
    h.login("ada")
    bearer = TestClient(h.client.app)
    for path in ("/auth/tokens/{id}", "/admin/tokens/{id}"):
        made = h.post("/auth/tokens", json={"name": "script"}).json()
        r = bearer.delete(f"{API}{path.format(id=made['id'])}",
                          headers={"Authorization": f"Bearer {made['token']}"})
        assert r.status_code == 204, r.text
        with h.clinic.db.session() as s:
            token = s.get(ApiToken, made["id"])
            assert token is not None
            assert token.revoked_at is not None
    assert len(_events(h, "delete", "api_token")) == 2


def test_logout_and_reads_still_work(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("vic")
    h.login("vic")
    pid = h.patient("P-OK")
    assert h.get(f"/patients/{pid}").status_code == 200
    assert h.get("/clinic/dashboard").status_code == 200
    assert h.get("/auth/tokens").status_code == 200
    assert h.post("/auth/logout").status_code == 204
    assert h.get("/patients").status_code == 401
    assert len(_events(h, "logout", "user")) == 1
