"""Account administration and the audit of sign-ins (hospital-ops audit, A and B).

A. An operator can manage accounts: ``dermsight clinic set-password | unlock | disable |
   enable USER`` and the admin routes ``POST /admin/users/{id}/unlock | disable | enable``.
   Setting a password or disabling ends the user's sessions and revokes their API tokens;
   enabling again brings none back. ``GET /admin/users`` says whether an account is locked and
   until when.
B. Failed logins, lockouts, logouts and these actions leave audit events, and the audit query
   accepts their actions.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinic_support import (  # noqa: F401 - fixtures
    API,
    PASSWORD,
    SQLITE_ONLY,
    ClinicHarness,
    clinic_model,
    db_url,
    harness,
)
from dermsight.clinic import accounts

NEW_PASSWORD = "violet tractor under moonlit gravel"
WRONG = "not the password at all"


@pytest.fixture
def h(harness: ClinicHarness) -> ClinicHarness:  # noqa: F811
    """The clinic routes with an administrator, ``root``, signed in."""
    harness.add_user("root", role="admin")
    harness.login("root")
    return harness


def _url(h: ClinicHarness) -> str:
    url: str = h.clinic.config.database_url
    return url


def _events(h: ClinicHarness, **params: Any) -> list[dict[str, Any]]:
    r = h.get("/admin/audit", params=params)
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()
    return events


def _account(h: ClinicHarness, name: str) -> dict[str, Any]:
    r = h.get("/admin/users")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = next(u for u in r.json() if u["username"] == name)
    return found


def _login(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    return client.post(f"{API}/auth/login", json={"username": username, "password": password})


def _signed_in(h: ClinicHarness, username: str) -> tuple[TestClient, str]:
    """A second browser signed in as ``username`` and an API token of theirs."""
    other = TestClient(h.client.app)
    r = _login(other, username)
    assert r.status_code == 200, r.text
    other.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    r = other.post(f"{API}/auth/tokens", json={"name": "script"})
    assert r.status_code == 201, r.text
    return other, r.json()["token"]


def _cli(args: list[str], stdin: str = "", *, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from dermsight.cli import app
    from dermsight.cli.errors import run_guarded

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = run_guarded(app, ["clinic", *args])
    out = capsys.readouterr()
    return code, out.out.strip(), out.err.strip()


# --- A: the admin routes -------------------------------------------------------------------------


def test_a_locked_account_is_listed_as_locked_and_an_admin_unlocks_it(
        h: ClinicHarness) -> None:
    ana = h.add_user("ana")
    other = TestClient(h.client.app)
    for _ in range(accounts.MAX_FAILURES):
        assert _login(other, "ana", WRONG).status_code == 401
    assert _login(other, "ana").status_code == 429  # the right password, locked out
    listed = _account(h, "ana")
    assert listed["active"] is True
    assert listed["locked"] is True
    assert listed["locked_until"] is not None
    assert _account(h, "root")["locked"] is False
    assert _account(h, "root")["locked_until"] is None

    r = h.post(f"/admin/users/{ana.id}/unlock")
    assert r.status_code == 200, r.text
    assert r.json()["locked"] is False
    assert r.json()["locked_until"] is None
    assert _account(h, "ana")["locked"] is False
    assert _login(other, "ana").status_code == 200
    unlocks = _events(h, action="unlock")
    assert [(e["user"], e["object_type"], e["object_id"]) for e in unlocks] == [
        ("root", "user", ana.id)]


@SQLITE_ONLY
def test_unknown_account_ids_are_a_404_and_clinicians_get_a_403(h: ClinicHarness) -> None:
    h.add_user("ana")
    for action in ("unlock", "disable", "enable"):
        r = h.post(f"/admin/users/9999/{action}")
        assert r.status_code == 404, r.text
        assert r.json()["detail"] == "no user with id 9999"
    h.login("ana")
    for action in ("unlock", "disable", "enable"):
        assert h.post(f"/admin/users/1/{action}").status_code == 403


def test_disabling_ends_sessions_and_tokens_and_enabling_brings_none_back(
        h: ClinicHarness) -> None:
    ana = h.add_user("ana")
    browser, token = _signed_in(h, "ana")
    bearer = {"Authorization": f"Bearer {token}"}
    assert browser.get(f"{API}/auth/me").status_code == 200

    r = h.post(f"/admin/users/{ana.id}/disable")
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
    assert browser.get(f"{API}/auth/me").status_code == 401
    assert browser.get(f"{API}/auth/me", headers=bearer).status_code == 401
    assert _login(TestClient(h.client.app), "ana").status_code == 401

    r = h.post(f"/admin/users/{ana.id}/enable")
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True
    # the old session and the old token stay dead
    assert browser.get(f"{API}/auth/me").status_code == 401
    r = browser.get(f"{API}/auth/me", headers=bearer)
    assert r.status_code == 401
    assert "revoked" in r.json()["detail"]
    # a new sign-in works
    assert _login(TestClient(h.client.app), "ana").status_code == 200
    actions = [(e["action"], e["user"], e["object_id"])
               for e in _events(h, object_type="user", object_id=ana.id)
               if e["action"] in ("disable", "enable")]
    assert actions == [("enable", "root", ana.id), ("disable", "root", ana.id)]


@SQLITE_ONLY
def test_enabling_an_active_account_changes_nothing(h: ClinicHarness) -> None:
    ana = h.add_user("ana")
    browser, token = _signed_in(h, "ana")
    r = h.post(f"/admin/users/{ana.id}/enable")
    assert r.status_code == 200, r.text
    assert browser.get(f"{API}/auth/me").status_code == 200
    assert browser.get(f"{API}/auth/me",
                       headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert _events(h, action="enable") == []


@SQLITE_ONLY
def test_an_admin_cannot_disable_themselves(h: ClinicHarness) -> None:
    root_id = _account(h, "root")["id"]
    r = h.post(f"/admin/users/{root_id}/disable")
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == ("you cannot disable your own account: ask another "
                                  "administrator")
    assert _account(h, "root")["active"] is True
    assert h.get("/auth/me").status_code == 200


@SQLITE_ONLY
def test_an_admin_token_disables_but_only_a_session_enables(h: ClinicHarness) -> None:
    """Enabling gives access back: a leaked admin token must not be able to revive an account
    whose password its holder knows (the rule of creating accounts)."""
    ana = h.add_user("ana")
    token = h.post("/auth/tokens", json={"name": "script"}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    with TestClient(h.client.app) as other:
        r = other.post(f"{API}/admin/users/{ana.id}/disable", headers=bearer)
        assert r.status_code == 200, r.text
        r = other.post(f"{API}/admin/users/{ana.id}/enable", headers=bearer)
        assert r.status_code == 403, r.text
        assert "API token cannot enable accounts" in r.json()["detail"]
    assert _account(h, "ana")["active"] is False


# --- B: the audit of sign-ins --------------------------------------------------------------------


def test_failed_logins_and_the_lockout_are_audited(h: ClinicHarness) -> None:
    ana = h.add_user("ana")
    other = TestClient(h.client.app)
    for _ in range(accounts.MAX_FAILURES):
        assert _login(other, "ANA", WRONG).status_code == 401
    assert _login(other, "ana").status_code == 429
    failed = _events(h, action="login_failed")
    assert len(failed) == accounts.MAX_FAILURES  # the refused (429) one is not a failure
    assert {(e["user"], e["object_type"], e["object_id"]) for e in failed} == {
        ("ana", "user", ana.id)}
    lockouts = _events(h, action="lockout")
    assert [(e["user"], e["object_type"], e["object_id"]) for e in lockouts] == [
        ("ana", "user", ana.id)]
    assert lockouts[0]["id"] > max(e["id"] for e in failed)


@SQLITE_ONLY
def test_a_failed_login_to_an_unknown_name_writes_no_audit_row_and_never_the_password(
        h: ClinicHarness) -> None:
    """A name no account has writes no per-attempt ``login_failed`` row (unbounded across
    addresses otherwise); only lockouts are audited, under a cap. An existing account's failed
    logins are (test_a_failed_login_to_a_disabled_account_is_audited)."""
    other = TestClient(h.client.app)
    typed = "  " + "x" * 64 + "  "  # the longest name a login takes, with spaces around it
    assert _login(other, typed, WRONG).status_code == 401
    assert _login(other, "nobody", WRONG).status_code == 401
    assert _events(h, action="login_failed") == []
    everything = repr(_events(h, limit=1000))
    assert WRONG not in everything
    assert PASSWORD not in everything


@SQLITE_ONLY
def test_a_failed_login_to_a_disabled_account_is_audited(h: ClinicHarness) -> None:
    ana = h.add_user("ana")
    assert h.post(f"/admin/users/{ana.id}/disable").status_code == 200
    assert _login(TestClient(h.client.app), "ana").status_code == 401
    failed = _events(h, action="login_failed")
    assert [(e["user"], e["object_id"]) for e in failed] == [("ana", ana.id)]


@SQLITE_ONLY
def test_an_address_lockout_is_audited(h: ClinicHarness) -> None:
    other = TestClient(h.client.app)
    for i in range(accounts.MAX_ADDRESS_FAILURES):  # one address, many names
        assert _login(other, f"guess{i}", WRONG).status_code == 401
    assert _login(other, "someone", WRONG).status_code == 429
    lockouts = _events(h, action="lockout")
    assert [(e["user"], e["object_type"], e["object_id"]) for e in lockouts] == [
        (f"guess{accounts.MAX_ADDRESS_FAILURES - 1}", "address", None)]


@SQLITE_ONLY
def test_logout_is_audited(h: ClinicHarness) -> None:
    ana = h.add_user("ana")
    browser, _ = _signed_in(h, "ana")
    assert browser.post(f"{API}/auth/logout").status_code == 204
    logouts = _events(h, action="logout")
    assert [(e["user"], e["object_type"], e["object_id"]) for e in logouts] == [
        ("ana", "user", ana.id)]


@SQLITE_ONLY
@pytest.mark.parametrize("action", ["login_failed", "lockout", "unlock", "disable",
                                    "enable", "set_password"])
def test_the_audit_query_accepts_the_new_actions(h: ClinicHarness, action: str) -> None:
    r = h.get("/admin/audit", params={"action": action})
    assert r.status_code == 200, r.text


# --- A: the command line -------------------------------------------------------------------------


def test_set_password_on_the_command_line_ends_sessions_and_tokens(
        h: ClinicHarness, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ana = h.add_user("ana")
    browser, token = _signed_in(h, "ana")
    code, out, err = _cli(["set-password", "ANA", "--database", _url(h), "--password-stdin"],
                          NEW_PASSWORD + "\n", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    assert out == "new password set for 'ana'; ended 1 session and revoked 1 API token"
    assert browser.get(f"{API}/auth/me").status_code == 401
    assert browser.get(f"{API}/auth/me",
                       headers={"Authorization": f"Bearer {token}"}).status_code == 401
    fresh = TestClient(h.client.app)
    assert _login(fresh, "ana").status_code == 401
    assert _login(fresh, "ana", NEW_PASSWORD).status_code == 200
    events = _events(h, action="set_password")
    assert [(e["user"], e["object_type"], e["object_id"]) for e in events] == [
        (None, "user", ana.id)]


@SQLITE_ONLY
def test_set_password_follows_the_password_rules(
        h: ClinicHarness, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    h.add_user("ana")
    browser, _ = _signed_in(h, "ana")
    for weak, message in (("ana", "a password is 8-256 characters long (this one has 3)"),
                          (PASSWORD + " ", "a password may not start or end with a space "
                                           "(sign-in ignores them)")):
        code, out, err = _cli(["set-password", "ana", "--database", _url(h), "--password-stdin"],
                              weak + "\n", monkeypatch=monkeypatch, capsys=capsys)
        assert code == 2, out
        assert err == f"error: {message}"
    code, _, err = _cli(["set-password", "ana", "--database", _url(h), "--password-stdin"],
                        "password1\n", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2
    assert err.startswith("error: this password is too easy to guess")
    assert "\n" not in err
    # nothing changed: the old password and the session still work
    assert browser.get(f"{API}/auth/me").status_code == 200
    assert _login(TestClient(h.client.app), "ana").status_code == 200


@SQLITE_ONLY
@pytest.mark.parametrize("command", ["set-password", "unlock", "disable", "enable"])
def test_an_unknown_user_on_the_command_line_is_one_line_and_exit_2(
        h: ClinicHarness, command: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    stdin = ["--password-stdin"] if command == "set-password" else []
    code, out, err = _cli([command, "nobody", "--database", _url(h), *stdin],
                          NEW_PASSWORD + "\n", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2, out
    assert err == ("error: no user named 'nobody' in this database (usernames ignore case; the "
                   "admin page lists them)")


def test_unlock_disable_enable_on_the_command_line(
        h: ClinicHarness, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ana = h.add_user("ana")
    other = TestClient(h.client.app)
    for _ in range(accounts.MAX_FAILURES):
        assert _login(other, "ana", WRONG).status_code == 401
    assert _login(other, "ana").status_code == 429
    code, out, err = _cli(["unlock", "ana", "--database", _url(h)], monkeypatch=monkeypatch,
                          capsys=capsys)
    assert code == 0, err
    assert out.startswith("unlocked 'ana' (it was locked until ")
    browser, token = _signed_in(h, "ana")

    code, out, err = _cli(["disable", "ana", "--database", _url(h)], monkeypatch=monkeypatch,
                          capsys=capsys)
    assert code == 0, err
    assert out == "disabled 'ana'; ended 1 session and revoked 1 API token"
    assert browser.get(f"{API}/auth/me").status_code == 401
    assert _account(h, "ana")["active"] is False

    code, out, err = _cli(["enable", "ana", "--database", _url(h)], monkeypatch=monkeypatch,
                          capsys=capsys)
    assert code == 0, err
    assert out == ("enabled 'ana': it signs in with its password (no earlier session or API "
                   "token comes back)")
    assert browser.get(f"{API}/auth/me").status_code == 401
    assert browser.get(f"{API}/auth/me",
                       headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert _login(TestClient(h.client.app), "ana").status_code == 200
    actions = [(e["action"], e["user"]) for e in _events(h, object_type="user",
                                                         object_id=ana.id)
               if e["action"] in ("unlock", "disable", "enable")]
    assert actions == [("enable", None), ("disable", None), ("unlock", None)]


@SQLITE_ONLY
def test_the_last_active_admin_cannot_be_disabled_on_the_command_line(
        h: ClinicHarness, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["disable", "root", "--database", _url(h)], monkeypatch=monkeypatch,
                          capsys=capsys)
    assert code == 2, out
    assert err.startswith("error: 'root' is the last active administrator and cannot be "
                          "disabled")
    assert "\n" not in err
    assert _account(h, "root")["active"] is True


def test_reenabling_an_account_disabled_in_the_database_brings_no_session_back(
        h: ClinicHarness, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The old workaround (``users.active = false`` in SQL) left the sessions in place:
    enabling the account must not revive them."""
    from sqlalchemy import update

    from dermsight.clinic.models import User

    h.add_user("ana")
    browser, token = _signed_in(h, "ana")
    with h.clinic.db.session() as s:
        s.execute(update(User).where(User.username == "ana").values(active=False))
    assert browser.get(f"{API}/auth/me").status_code == 401
    code, _, err = _cli(["enable", "ana", "--database", _url(h)], monkeypatch=monkeypatch,
                        capsys=capsys)
    assert code == 0, err
    assert browser.get(f"{API}/auth/me").status_code == 401
    assert browser.get(f"{API}/auth/me",
                       headers={"Authorization": f"Bearer {token}"}).status_code == 401


@SQLITE_ONLY
def test_set_password_says_when_the_account_is_still_locked(
        h: ClinicHarness, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    h.add_user("ana")
    other = TestClient(h.client.app)
    for _ in range(accounts.MAX_FAILURES):
        assert _login(other, "ana", WRONG).status_code == 401
    code, out, err = _cli(["set-password", "ana", "--database", _url(h), "--password-stdin"],
                          NEW_PASSWORD + "\n", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    first, second = out.splitlines()
    assert first == "new password set for 'ana'; ended 0 sessions and revoked 0 API tokens"
    assert second.startswith("'ana' is still locked by its failed logins until ")
    assert second.endswith(": `dermsight clinic unlock ana` ends the lock now")
    assert _login(other, "ana", NEW_PASSWORD).status_code == 429
