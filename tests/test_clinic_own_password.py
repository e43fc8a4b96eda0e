"""A user changes their own password (``POST /auth/password``: session and CSRF only, the
current password checked under the failed-login lock, the other sessions and the API tokens
ended, this browser kept signed in, audited as ``set_password``), and failed logins that
complete a lock at the same moment log one ``lockout`` (real app, real threads; SQLite and
PostgreSQL)."""

# ruff: noqa: F811  (pytest fixtures imported from clinic_support, taken as arguments)
from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from clinic_support import (  # noqa: F401
    API,
    PASSWORD,
    SQLITE_ONLY,
    ClinicHarness,
    clinic_model,
    db_url,
    harness,
    pg_cluster,
)
from dermsight.clinic import accounts
from dermsight.clinic.models import AuditEvent, LoginAttempt, utcnow

NEW = "a completely different passphrase 42"
WRONG = "not the password at all 7"
WAIT_S = 30


def _events(h: ClinicHarness, action: str) -> list[AuditEvent]:
    with h.clinic.db.session() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)
                              .order_by(AuditEvent.id)))


def _change(h: ClinicHarness, current: str, new: str, client: Any = None) -> Any:
    return (client or h.client).post(f"{API}/auth/password",
                                     json={"current_password": current, "new_password": new})


def _login(app: Any, username: str, password: str) -> Any:
    return TestClient(app).post(f"{API}/auth/login",
                                json={"username": username, "password": password})


def test_changing_your_own_password_ends_the_other_access_and_keeps_this_session(
        harness: ClinicHarness) -> None:
    h = harness
    vic = h.add_user("vic")
    other = TestClient(h.client.app)  # a second browser of vic's
    r = other.post(f"{API}/auth/login", json={"username": "vic", "password": PASSWORD})
    assert r.status_code == 200
    h.login("vic")
    token = h.post("/auth/tokens", json={"name": "script"}).json()["token"]

    r = _change(h, PASSWORD, NEW)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["username"] == "vic"
    assert body["sessions_ended"] == 1
    assert body["tokens_revoked"] == 1
    # this browser stays signed in, with the new session's CSRF token
    h.client.headers["X-CSRF-Token"] = body["csrf_token"]
    assert h.get("/auth/me").json()["user"]["username"] == "vic"
    assert h.post("/patients", json={"ref": "P-1"}).status_code == 201
    # the other browser and the token are out
    assert other.get(f"{API}/auth/me").status_code == 401
    bearer = TestClient(h.client.app)
    assert bearer.get(f"{API}/auth/me",
                      headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # the old password no longer opens the account; the new one does
    assert _login(h.client.app, "vic", PASSWORD).status_code == 401
    assert _login(h.client.app, "vic", NEW).status_code == 200
    [event] = _events(h, "set_password")
    assert (event.user_id, event.username, event.object_type, event.object_id) == (
        vic.id, "vic", "user", vic.id)


@SQLITE_ONLY
def test_a_wrong_current_password_changes_nothing_and_counts_towards_the_lock(
        harness: ClinicHarness) -> None:
    h = harness
    h.add_user("vic")
    h.login("vic")
    for _ in range(accounts.MAX_FAILURES):
        r = _change(h, WRONG, NEW)
        assert r.status_code == 422, r.text
        assert "current password is wrong" in r.json()["detail"]
    assert len(_events(h, "login_failed")) == accounts.MAX_FAILURES
    assert len(_events(h, "lockout")) == 1
    # locked now: the right current password is not even checked, nor is a login
    r = _change(h, PASSWORD, NEW)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    assert _login(h.client.app, "vic", PASSWORD).status_code == 429
    assert _events(h, "set_password") == []
    assert h.get("/auth/me").status_code == 200  # still signed in: nothing was changed


@SQLITE_ONLY
def test_the_new_password_follows_the_rules(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("vic")
    h.login("vic")
    for new, said in ((PASSWORD, "same as the current"), ("password1", "too easy to guess"),
                      ("short", "8-256 characters"), ("vic", "8-256 characters")):
        r = _change(h, PASSWORD, new)
        assert r.status_code == 422, r.text
        assert said in r.json()["detail"]
    assert _events(h, "set_password") == []
    assert _login(h.client.app, "vic", PASSWORD).status_code == 200
    r = h.client.post(f"{API}/auth/password", json={"current_password": PASSWORD})
    assert r.status_code == 422  # a field left out


@SQLITE_ONLY
def test_only_a_signed_in_session_changes_a_password(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("vic")
    assert _change(h, PASSWORD, NEW).status_code == 401  # nobody signed in
    h.login("vic")
    token = h.post("/auth/tokens", json={"name": "script"}).json()["token"]
    bearer = TestClient(h.client.app)
    r = bearer.post(f"{API}/auth/password", headers={"Authorization": f"Bearer {token}"},
                    json={"current_password": PASSWORD, "new_password": NEW})
    assert r.status_code == 403, r.text
    assert "session" in r.json()["detail"]
    del h.client.headers["X-CSRF-Token"]
    r = _change(h, PASSWORD, NEW)
    assert r.status_code == 403
    assert "X-CSRF-Token" in r.json()["detail"]
    assert _events(h, "set_password") == []
    assert _login(h.client.app, "vic", PASSWORD).status_code == 200


# --- one lockout per lock ------------------------------------------------------------------------


def _parallel_wrong_logins(h: ClinicHarness, n: int) -> list[int]:
    statuses: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            statuses.append(_login(h.client.app, "vic", WRONG).status_code)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert not errors, errors
    assert len(statuses) == n
    return statuses


def test_failures_completing_a_lock_together_log_one_lockout(harness: ClinicHarness,
                                                             monkeypatch: Any) -> None:
    """``MAX_FAILURES`` wrong passwords at once, each let through before any failed (all wait
    for each other after the lock was checked): every one of them finds the account locked
    once it failed, but the lock is logged once."""
    h = harness
    h.add_user("vic")
    n = accounts.MAX_FAILURES
    together = threading.Barrier(n, timeout=WAIT_S)
    orig = accounts.verify_password

    def waiting(*a: Any, **kw: Any) -> Any:
        together.wait()
        return orig(*a, **kw)

    monkeypatch.setattr(accounts, "verify_password", waiting)
    assert sorted(_parallel_wrong_logins(h, n)) == [401] * n
    assert len(_events(h, "login_failed")) == n
    assert len(_events(h, "lockout")) == 1


@SQLITE_ONLY
def test_a_burst_of_failed_logins_logs_at_most_one_lockout(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("vic")
    statuses = _parallel_wrong_logins(h, 14)
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) <= accounts.MAX_FAILURES
    with h.clinic.db.session() as s:
        locked = accounts.locks(s, "vic", "testclient").username > 0
    assert len(_events(h, "lockout")) == (1 if locked else 0)


@SQLITE_ONLY
def test_each_new_lock_is_logged(harness: ClinicHarness) -> None:
    """After an unlock, and after a lock that ended by time, the next lock is logged again."""
    h = harness
    h.add_user("root", role="admin")
    vic = h.add_user("vic")
    for _ in range(accounts.MAX_FAILURES):
        assert _login(h.client.app, "vic", WRONG).status_code == 401
    assert len(_events(h, "lockout")) == 1
    h.login("root")
    assert h.post(f"/admin/users/{vic.id}/unlock").status_code == 200
    for _ in range(accounts.MAX_FAILURES):
        assert _login(h.client.app, "vic", WRONG).status_code == 401
    assert len(_events(h, "lockout")) == 2
    # a lock that ended by time: failures 16, 14, 13, 12, 11 minutes ago locked the account
    # (logged 11 minutes ago) until a minute ago; a failure now locks it again with the
    # last four of them
    with h.clinic.db.session() as s:
        s.query(LoginAttempt).delete()
        s.query(AuditEvent).delete()
        now = utcnow()
        for minutes in (16, 14, 13, 12, 11):
            s.add(LoginAttempt(username="vic", ip="192.0.2.1", success=False,
                               at=now - timedelta(minutes=minutes)))
        s.add(AuditEvent(user_id=vic.id, username="vic", action="lockout", object_type="user",
                         object_id=vic.id, at=now - timedelta(minutes=11)))
    assert _login(h.client.app, "vic", WRONG).status_code == 401
    assert len(_events(h, "lockout")) == 2
