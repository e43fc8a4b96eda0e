"""Account administration racing logins, token creation and another administrator (SQLite and
PostgreSQL, real threads): a login or token creation in progress does not survive a new
password; two administrators disabling each other leave one active; unlock does not lift the
client address's lock and needs a session; failed logins of unknown names do not grow the
audit log without bound; a damaged ``alembic_version`` is a one-line error."""

# ruff: noqa: F811  (pytest fixtures imported from clinic_support, taken as arguments)
from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

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
from dermsight.clinic import accounts, audit
from dermsight.clinic.config import ClinicConfigError
from dermsight.clinic.db import Database, require_current
from dermsight.clinic.models import AuditEvent, User

NEW = "a completely different passphrase 42"
WAIT_S = 20


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["r"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            result["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def test_login_straddling_set_password_opens_no_session(harness: ClinicHarness,
                                                        monkeypatch: Any) -> None:
    h = harness
    h.add_user("vic")
    checked, go_on = threading.Event(), threading.Event()
    orig = accounts.verify_password

    def slow(db: Any, username: str, password: str) -> Any:
        user = orig(db, username, password)  # the old password has just been verified
        checked.set()
        go_on.wait(WAIT_S)
        return user

    monkeypatch.setattr(accounts, "verify_password", slow)
    attacker = TestClient(h.client.app)
    t, result = _in_thread(lambda: attacker.post(
        f"{API}/auth/login", json={"username": "vic", "password": PASSWORD}))
    assert checked.wait(WAIT_S)
    with h.clinic.db.session() as s:  # what `dermsight clinic set-password vic` does
        accounts.set_password(s, accounts.find_user(s, "vic"), NEW)
    go_on.set()
    t.join(WAIT_S)
    assert "error" not in result, result
    assert result["r"].status_code == 401, result["r"].text
    assert attacker.get(f"{API}/auth/me").status_code == 401
    monkeypatch.setattr(accounts, "verify_password", orig)
    assert h.client.post(f"{API}/auth/login",
                         json={"username": "vic", "password": NEW}).status_code == 200


def test_token_created_straddling_set_password_is_refused(harness: ClinicHarness,
                                                          monkeypatch: Any) -> None:
    h = harness
    h.add_user("vic")
    h.login("vic")
    checked, go_on = threading.Event(), threading.Event()
    orig = accounts.session_lookup

    def slow(*a: Any, **kw: Any) -> Any:
        found = orig(*a, **kw)  # the session was found live
        checked.set()
        go_on.wait(WAIT_S)
        return found

    monkeypatch.setattr(accounts, "session_lookup", slow)
    t, result = _in_thread(lambda: h.post("/auth/tokens", json={"name": "x"}))
    assert checked.wait(WAIT_S)
    with h.clinic.db.session() as s:
        accounts.set_password(s, accounts.find_user(s, "vic"), NEW)
    go_on.set()
    t.join(WAIT_S)
    monkeypatch.setattr(accounts, "session_lookup", orig)
    assert "error" not in result, result
    r = result["r"]
    if r.status_code == 201:  # written: it must at least have been revoked
        c = TestClient(h.client.app)
        me = c.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {r.json()['token']}"})
        assert me.status_code == 401, "a token created during set-password survived it"
    assert r.status_code == 401, r.text
    assert "sign in again" in r.json()["detail"]


def test_two_admins_disabling_each_other_leave_one(db_url: str, monkeypatch: Any) -> None:
    db = Database(db_url)
    db.upgrade()
    with db.session() as s:
        ids = [accounts.create_user(s, name, PASSWORD + f" {i}", "admin").id
               for i, name in enumerate(("alice", "bob"))]
    barrier = threading.Barrier(2)
    orig = accounts.other_active_admins

    def slow_count(db_: Any, user: Any) -> int:
        n = orig(db_, user)
        # both count before either writes, where nothing stops them; the other one waits for
        # this one's lock
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=2)
        return n

    monkeypatch.setattr(accounts, "other_active_admins", slow_count)

    def disable(user_id: int) -> Any:
        with db.session() as s:
            return accounts.disable(s, s.get(User, user_id))

    runs = [_in_thread(lambda i=i: disable(i)) for i in ids]  # type: ignore[misc]
    for t, _ in runs:
        t.join(60)
    errors = [r.get("error") for _, r in runs if "error" in r]
    with db.session() as s:
        active = list(s.scalars(select(User.username).where(User.active.is_(True))))
    db.dispose()
    assert len(active) == 1, (active, errors)
    assert len(errors) == 1, errors
    assert isinstance(errors[0], accounts.AccountError), errors


def test_unlock_keeps_the_address_lock(db_url: str) -> None:
    db = Database(db_url)
    db.upgrade()
    ip = "203.0.113.9"
    with db.session() as s:
        vic = accounts.create_user(s, "vic", PASSWORD, "clinician")
        for _ in range(accounts.MAX_FAILURES):
            accounts.record_attempt(s, "VIC", ip, False)
        for i in range(accounts.MAX_ADDRESS_FAILURES - accounts.MAX_FAILURES):
            accounts.record_attempt(s, f"nobody{i % 3}", ip, False)
    with db.session() as s:
        before = accounts.locks(s, "vic", ip)
        assert before.username
        assert before.address
        assert accounts.unlock(s, s.get(User, vic.id)) == accounts.MAX_FAILURES
    with db.session() as s:
        assert accounts.locks(s, "vic", "198.51.100.1").username == 0  # the account: unlocked
        assert accounts.locks(s, "someone", ip).address > 0  # the address: still locked
        assert accounts.locked_until(s, ["vic"]) == {}
    db.dispose()


@SQLITE_ONLY
def test_unlock_needs_a_session(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("root", role="admin")
    vic = h.add_user("vic")
    h.login("root")
    token = h.post("/auth/tokens", json={"name": "ops"}).json()["token"]
    c = TestClient(h.client.app)
    r = c.post(f"{API}/admin/users/{vic.id}/unlock",
               headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403, r.text
    assert "session" in r.json()["detail"]
    assert h.post(f"/admin/users/{vic.id}/unlock").status_code == 200


def _events(h: ClinicHarness, action: str) -> list[Any]:
    with h.clinic.db.session() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@SQLITE_ONLY
def test_unknown_names_write_no_failed_login_event(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("vic")
    for name in ("ghost1", "ghost2"):
        r = h.client.post(f"{API}/auth/login", json={"username": name, "password": "x" * 9})
        assert r.status_code == 401
    assert _events(h, "login_failed") == []
    r = h.client.post(f"{API}/auth/login", json={"username": "vic", "password": "x" * 9})
    assert r.status_code == 401
    assert [e.object_type for e in _events(h, "login_failed")] == ["user"]


@SQLITE_ONLY
def test_address_lockouts_are_capped(harness: ClinicHarness, monkeypatch: Any) -> None:
    from dermsight.web.clinic import auth

    monkeypatch.setattr(audit, "LOCKOUTS_MAX", 3)
    h = harness
    with h.clinic.db.session() as s:
        for n in range(6):  # six addresses, each at its limit, each with a new unknown name
            ip = f"198.51.100.{n}"
            for _ in range(accounts.MAX_ADDRESS_FAILURES):
                accounts.record_attempt(s, f"ghost{n}-{_ % 4}", ip, False)
            auth._audit_failure(s, f"ghost{n}", ip)
    with h.clinic.db.session() as s:
        n_lockouts = s.scalar(select(func.count(AuditEvent.id))
                              .where(AuditEvent.action == "lockout"))
    assert n_lockouts == 3
    assert _events(h, "login_failed") == []


def test_two_revision_rows_are_a_one_line_error(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.upgrade()
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0001')"))
    with pytest.raises(ClinicConfigError, match="alembic_version") as info:
        require_current(db.engine)
    assert "\n" not in str(info.value)
    with pytest.raises(ClinicConfigError, match="alembic_version"):
        db.upgrade()
    db.dispose()


def _paused(monkeypatch: Any, name: str) -> tuple[threading.Event, threading.Event]:
    """Pause the request right after ``accounts.<name>`` found its session / token live."""
    checked, go_on = threading.Event(), threading.Event()
    orig = getattr(accounts, name)

    def slow(*a: Any, **kw: Any) -> Any:
        found = orig(*a, **kw)
        checked.set()
        go_on.wait(WAIT_S)
        return found

    monkeypatch.setattr(accounts, name, slow)
    return checked, go_on


def _patients(h: ClinicHarness) -> list[str]:
    from dermsight.clinic.models import Patient

    with h.clinic.db.session() as s:
        return list(s.scalars(select(Patient.ref)))


def test_a_write_in_flight_when_the_account_is_disabled_writes_nothing(
        harness: ClinicHarness, monkeypatch: Any) -> None:
    h = harness
    h.add_user("vic")
    h.login("vic")
    checked, go_on = _paused(monkeypatch, "session_lookup")
    t, result = _in_thread(lambda: h.post("/patients", json={"ref": "P-RACE"}))
    assert checked.wait(WAIT_S)
    with h.clinic.db.session() as s:  # `dermsight clinic disable vic`
        accounts.disable(s, accounts.find_user(s, "vic"))
    go_on.set()
    t.join(WAIT_S)
    assert "error" not in result, result
    assert result["r"].status_code == 401, result["r"].text
    assert "disabled" in result["r"].json()["detail"]
    assert _patients(h) == []


def test_a_write_in_flight_when_its_token_is_revoked_writes_nothing(
        harness: ClinicHarness, monkeypatch: Any) -> None:
    h = harness
    h.add_user("vic")
    h.login("vic")
    made = h.post("/auth/tokens", json={"name": "script"}).json()
    checked, go_on = _paused(monkeypatch, "token_lookup")
    c = TestClient(h.client.app)
    t, result = _in_thread(lambda: c.post(
        f"{API}/patients", json={"ref": "P-RACE"},
        headers={"Authorization": f"Bearer {made['token']}"}))
    assert checked.wait(WAIT_S)
    assert h.client.delete(f"{API}/auth/tokens/{made['id']}").status_code == 204
    go_on.set()
    t.join(WAIT_S)
    assert "error" not in result, result
    assert result["r"].status_code == 401, result["r"].text
    assert "revoked" in result["r"].json()["detail"]
    assert _patients(h) == []
