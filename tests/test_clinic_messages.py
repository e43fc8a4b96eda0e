"""What a clinician and an integrator read in the clinic API's answers, through the real clinic
API (SQLite and PostgreSQL, real images): a 401 says why a session or token stopped working
(idle timeout, 7 days, signed out, account disabled, revoked token) apart from "not signed in"
and "wrong user name or password"; login finds a user ignoring case (the password stays exact)
and the login rate limit counts every spelling of a username together; an export downloads
under the patient's reference and the date, made safe for a file name and a header."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from clinic_support import API, PASSWORD, ClinicHarness, image_bytes, image_ids
from dermsight.clinic import accounts
from dermsight.clinic.models import Session, User, utcnow
from dermsight.web.clinic.bodies import LINE

SIGN_IN_FIRST = "you are not signed in: sign in first"
WRONG = "wrong user name or password"


@pytest.fixture
def image(data_dir: Any, metadata: pd.DataFrame) -> bytes:
    return image_bytes(data_dir, image_ids(metadata, "NV", 1)[0])


def _session_id(h: ClinicHarness) -> str:
    return accounts.sha256(h.client.cookies["dermsight_session"])


def _age_session(h: ClinicHarness, **values: Any) -> None:
    with h.clinic.db.session() as s:
        s.execute(update(Session).where(Session.id == _session_id(h)).values(**values))


def _refused(h: ClinicHarness, path: str = "/patients") -> str:
    r = h.get(path)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"] == "Bearer"
    detail: str = r.json()["detail"]
    return detail


# --- 1. a 401 says why ---------------------------------------------------------------------------


def test_a_401_says_whether_the_session_timed_out_expired_or_was_never_there(
        harness: ClinicHarness) -> None:
    h = harness
    h.add_user("ana")
    assert _refused(h) == SIGN_IN_FIRST
    # idle past the clinic's timeout (30 minutes by default)
    h.login("ana")
    _age_session(h, last_seen_at=utcnow() - timedelta(minutes=31))
    assert _refused(h) == ("your session ended (signed out after 30 minutes without "
                           "activity): sign in again")
    # the idle session was deleted: the same cookie now meets no session at all
    gone = _refused(h)
    assert gone == ("your session ended (you signed out, or it was closed after 30 minutes "
                    "without activity or 7 days): sign in again")
    # 7 days after signing in
    h.login("ana")
    _age_session(h, expires_at=utcnow() - timedelta(seconds=1))
    assert _refused(h, "/auth/me") == ("your session ended (signed out 7 days after signing "
                                       "in): sign in again")
    # an account an admin disabled, with its session still in the browser
    h.login("ana")
    with h.clinic.db.session() as s:
        s.execute(update(User).where(User.username == "ana").values(active=False))
    assert _refused(h) == "your account has been disabled: ask the clinic's administrator"
    # ... while signing in says nothing about the account (as for an unknown user name)
    for name, password in (("ana", PASSWORD), ("nobody", PASSWORD), ("ana", "wrong password")):
        r = h.post("/auth/login", json={"username": name, "password": password})
        assert r.status_code == 401
        assert r.json() == {"detail": WRONG}, name


def test_the_idle_message_follows_the_clinic_setting_and_signing_out_ends_the_session(
        harness: ClinicHarness) -> None:
    h = harness
    h.add_user("ana")
    h.clinic.config = replace(h.clinic.config, session_idle_minutes=1)
    h.login("ana")
    _age_session(h, last_seen_at=utcnow() - timedelta(minutes=2))
    assert _refused(h) == ("your session ended (signed out after 1 minute without activity): "
                           "sign in again")
    h.login("ana")
    cookie = h.client.cookies["dermsight_session"]
    assert h.post("/auth/logout").status_code == 204
    with TestClient(h.client.app, cookies={"dermsight_session": cookie}) as stale:
        r = stale.get(f"{API}/patients")
    assert r.status_code == 401
    assert r.json()["detail"].startswith("your session ended (you signed out, or it was closed")


def test_a_401_for_a_token_says_whether_it_is_unknown_revoked_or_its_account_disabled(
        harness: ClinicHarness) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    made = [h.post("/auth/tokens", json={"name": name}).json() for name in ("laptop", "script")]
    h.client.delete(f"{API}/auth/tokens/{made[0]['id']}")
    with TestClient(h.client.app) as c:

        def detail(header: str) -> str:
            r = c.get(f"{API}/patients", headers={"Authorization": header})
            assert r.status_code == 401
            text: str = r.json()["detail"]
            return text

        assert detail(f"Bearer {made[1]['token']}x") == (
            "this API token is not known to the server: check it, or create a new one")
        assert detail(f"Bearer {made[0]['token']}") == (
            "this API token has been revoked: create a new one")
        assert detail("Basic YW5hOnB3") == (
            "send your API token as 'Authorization: Bearer <token>'")
        assert c.get(f"{API}/patients", headers={
            "Authorization": f"Bearer {made[1]['token']}"}).status_code == 200
        with h.clinic.db.session() as s:
            s.execute(update(User).where(User.username == "ana").values(active=False))
        assert detail(f"Bearer {made[1]['token']}") == (
            "your account has been disabled: ask the clinic's administrator")


def test_forbidden_and_not_found_say_what_to_do(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    r = h.get("/admin/users")
    assert r.status_code == 403
    assert r.json()["detail"] == ("only an administrator can do this: ask the clinic's "
                                  "administrator")
    r = h.get("/patients/999")
    assert r.status_code == 404
    assert r.json()["detail"] == "no patient with id 999: it may have been deleted"
    del h.client.headers["X-CSRF-Token"]
    r = h.post("/patients", json={"ref": "CSRF-1"})
    assert r.status_code == 403
    assert r.json()["detail"] == ("this request lacks the session's security token, or has an "
                                  "out-of-date one (the X-CSRF-Token header): reload the page, "
                                  "or sign in again")


# --- 2. login ignores case -----------------------------------------------------------------------


def test_login_finds_the_user_ignoring_case_but_the_password_stays_exact(
        harness: ClinicHarness) -> None:
    h = harness
    h.add_user("Ana.Lee")
    for typed in ("Ana.Lee", "ana.lee", "ANA.LEE", "  aNa.LeE "):
        r = h.post("/auth/login", json={"username": typed, "password": PASSWORD})
        assert r.status_code == 200, typed
        assert r.json()["user"]["username"] == "Ana.Lee"  # the stored spelling
        assert h.client.get(f"{API}/auth/me").json()["user"]["username"] == "Ana.Lee"
    for password in (PASSWORD.upper(), PASSWORD.title(), PASSWORD[:-1]):
        r = h.post("/auth/login", json={"username": "ana.lee", "password": password})
        assert r.status_code == 401, password
        assert r.json() == {"detail": WRONG}


def _login_from(h: ClinicHarness, address: str, username: str, password: str) -> Any:
    with TestClient(h.client.app, client=(address, 40000)) as c:
        return c.post(f"{API}/auth/login", json={"username": username, "password": password})


def test_the_rate_limit_counts_every_spelling_of_a_username_together(
        harness: ClinicHarness) -> None:
    h = harness
    h.add_user("ana")
    h.add_user("ben")
    # five failures under five spellings, each from another address (no address reaches 5)
    for i, spelling in enumerate(("ana", "Ana", "ANA", " aNa", "anA ")):
        r = _login_from(h, f"10.0.0.{i + 1}", spelling, "wrong password")
        assert r.status_code == 401, spelling
    # the account is locked, whatever the spelling and address, even with its password
    for spelling in ("ana", "ANA"):
        r = _login_from(h, "10.0.1.1", spelling, PASSWORD)
        assert r.status_code == 429, spelling
        assert int(r.headers["Retry-After"]) > 0
        assert r.json()["detail"].startswith("too many failed logins: try again in ")
    # another account from the same addresses is not
    assert _login_from(h, "10.0.0.1", "BEN", PASSWORD).status_code == 200


# --- 3. export file names ------------------------------------------------------------------------


def _file_names(disposition: str) -> tuple[str, str | None]:
    """The ``filename`` and the decoded ``filename*`` of a Content-Disposition header."""
    assert disposition.startswith("attachment; filename=\"")
    plain = disposition.split('filename="', 1)[1].split('"', 1)[0]
    star = None
    if "; filename*=UTF-8''" in disposition:
        star = unquote(disposition.split("; filename*=UTF-8''", 1)[1], errors="strict")
    return plain, star


def _days() -> set[str]:
    today = dt.date.today()
    return {today.isoformat(), (today - timedelta(days=1)).isoformat()}  # across midnight


def _export(h: ClinicHarness, patient_id: int) -> tuple[str, str | None, zipfile.ZipFile]:
    r = h.get(f"/patients/{patient_id}/export")
    assert r.status_code == 200, r.text
    disposition = r.headers["Content-Disposition"]
    assert disposition.isascii()
    assert not set(disposition) & set("\r\n\x00")
    plain, star = _file_names(disposition)
    return plain, star, zipfile.ZipFile(io.BytesIO(r.content))


@pytest.mark.parametrize(("ref", "plain", "star"), [
    ("Smith-01", "patient_Smith-01_{day}.zip", None),
    ("Özil 7", "patient_Ozil_7_{day}.zip", "patient_Özil_7_{day}.zip"),
    ('../../etc/x "quoted"; y', "patient_etc_x_quoted_y_{day}.zip", None),
    ("Straße/12", "patient_{id}_{day}.zip", "patient_Straße_12_{day}.zip"),
    ("ΟΔΟΣ-3", "patient_{id}_{day}.zip", "patient_ΟΔΟΣ-3_{day}.zip"),
    ("...", "patient_{id}_{day}.zip", None),
])
def test_a_patient_export_is_named_by_the_reference_and_the_date(
        harness: ClinicHarness, ref: str, plain: str, star: str | None) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    pid = h.patient(ref)
    got_plain, got_star, zf = _export(h, pid)
    day = got_plain.rsplit("_", 1)[1].removesuffix(".zip")
    assert day in _days()
    assert got_plain == plain.format(id=pid, day=day)
    assert got_star == (star.format(id=pid, day=day) if star else None)
    assert json.loads(zf.read("patient.json"))["ref"] == ref


def test_two_patients_exports_download_under_names_of_their_own(
        harness: ClinicHarness, image: bytes) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    names = set()
    for ref in ("P-001", "P-002"):
        pid = h.patient(ref)
        assert h.visit(h.lesion(pid), image).status_code == 201
        plain, star, zf = _export(h, pid)
        assert star is None
        assert plain.startswith(f"patient_{ref}_")
        assert sum(n.startswith("images/") for n in zf.namelist()) == 2  # image + heatmap
        names.add(plain)
    assert len(names) == 2


def test_the_confirmed_case_export_is_dated(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    r = h.get("/clinic/export/confirmed")
    assert r.status_code == 200, r.text
    plain, star = _file_names(r.headers["Content-Disposition"])
    assert star is None
    assert plain in {f"confirmed_cases_{day}.zip" for day in _days()}


# --- 4. one line of text -------------------------------------------------------------------------

ONE_LINE = "must be one line of text, without tabs, line breaks or other control characters"


def test_a_line_break_or_control_character_is_refused_in_words(harness: ClinicHarness) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    pid = h.patient("LINE-1")
    for path, body in (("/patients", {"ref": "LINE\t2"}),
                       (f"/patients/{pid}/lesions", {"location": "left\nshoulder"}),
                       ("/auth/tokens", {"name": "lap\x00top"})):
        r = h.post(path, json=body)
        assert r.status_code == 422, path
        assert [e["msg"] for e in r.json()["detail"]] == [ONE_LINE], path
    r = h.get("/patients", params={"q": "LI\x1bNE"})
    assert r.status_code == 422
    assert [e["msg"] for e in r.json()["detail"]] == [ONE_LINE]
    assert [p["ref"] for p in h.get("/patients", params={"q": "li"}).json()] == ["LINE-1"]
    # the schema still tells integrators the rule
    schema = h.client.get("/openapi.json").json()
    q = next(p for p in schema["paths"][f"{API}/patients"]["get"]["parameters"]
             if p["name"] == "q")
    assert q["schema"]["anyOf"][0]["pattern"] == LINE


def test_a_visit_date_in_another_format_says_how_to_write_it(
        harness: ClinicHarness, image: bytes) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    lid = h.lesion(h.patient("DATE-FORMAT-1"))
    r = h.visit(lid, image, taken_at="14/03/2026")
    assert r.status_code == 422
    assert r.json()["detail"] == ("the date the image was taken (taken_at) '14/03/2026' is not "
                                  "a date written YYYY-MM-DD: write it like 2026-03-14")
    assert len(h.get(f"/lesions/{lid}").json()["visits"]) == 0


@pytest.mark.parametrize("password", [PASSWORD + " ", " " + PASSWORD, PASSWORD + "\t"])
def test_a_password_with_a_space_at_an_end_is_refused_on_the_command_line(
        db_url: str, password: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The API and the sign-in form strip every text field, so such a password (accepted by
    ``dermsight clinic create-user`` before) could never be typed in to sign in."""
    from dermsight.cli import app
    from dermsight.cli.errors import EXIT_USER, run_guarded

    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    code = run_guarded(app, ["clinic", "create-user", "--database", db_url, "--username",
                             "ana", "--role", "admin", "--password-stdin"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USER, err
    assert err == "error: a password may not start or end with a space (sign-in ignores them)"
