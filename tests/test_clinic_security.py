"""Security and privacy review of clinic mode (issue 12): one regression test per finding, on
SQLite and (where storage matters) PostgreSQL, with real images.

Access control on every route (401 / 403, CSRF on every unsafe cookie request), sessions (cookie
flags, rotation, logout, expiry, disabled users, hashed secrets), the login rate limit (bursts,
username variants, timing of unknown users), hostile inputs (NUL characters, huge / non-numeric
ids, wrong content types, a 10 MB note: 4xx, never 500), stored files (no EXIF / GPS / DICOM
tags, owner-only permissions, no caching), exports, deletion (nothing left in the SQLite file),
the audit log (ids and times only), retention applied by the server itself, and the server log of
a full clinic flow (no reference, note, file name or password).
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import stat
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, text, update

from clinic_support import (  # noqa: F401 - fixtures
    API,
    PASSWORD,
    SQLITE_ONLY,
    ClinicHarness,
    clinic_model,
    db_url,
    harness,
    image_bytes,
    image_ids,
    make_app,
    open_clinic,
    pg_cluster,
)
from dermsight.clinic import accounts
from dermsight.clinic.config import ClinicConfig
from dermsight.clinic.models import ApiToken, Session, User, Visit, utcnow


def _image(data_dir: Path, metadata: pd.DataFrame, diagnosis: str = "NV", i: int = 0) -> bytes:
    return image_bytes(data_dir, image_ids(metadata, diagnosis, i + 1)[i])


def _clinic_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path with every id = 1) of every clinic route on the app."""
    out = []
    for path, operations in app.openapi()["paths"].items():
        for method in sorted(operations):
            out.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path)))
    assert len(out) >= 20, out  # every clinic route is on the bare app
    return out


def _cookie_login(client: TestClient, username: str) -> tuple[str, str]:
    """Log in without setting the CSRF header; returns (cookie value, csrf token)."""
    r = client.post(f"{API}/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return client.cookies["dermsight_session"], r.json()["csrf_token"]


# --- access control ------------------------------------------------------------------------------


@SQLITE_ONLY
def test_every_route_needs_a_live_session_or_token(harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    ana = h.add_user("ana")
    routes = _clinic_routes(h.client.app)
    anonymous = {(m, p): h.client.request(m, p).status_code for m, p in routes}
    assert anonymous.pop(("POST", f"{API}/auth/login")) == 422  # no body
    assert set(anonymous.values()) == {401}, anonymous
    # a token, then the session and the token of a user an admin disabled: 401 everywhere
    h.login("ana")
    token = h.post("/auth/tokens", json={"name": "t"}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert h.get("/patients").status_code == 200
    with TestClient(h.client.app) as other:
        assert other.get(f"{API}/patients", headers=bearer).status_code == 200
        with h.clinic.db.session() as s:
            s.execute(update(User).where(User.id == ana.id).values(active=False))
        assert h.get("/patients").status_code == 401
        assert other.get(f"{API}/patients", headers=bearer).status_code == 401
        r = other.post(f"{API}/auth/login", json={"username": "ana", "password": PASSWORD})
        assert r.status_code == 401


@SQLITE_ONLY
def test_expired_session_and_a_clinician_on_admin_routes(
        harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    h.add_user("ana")
    h.login("ana")
    cookie = h.client.cookies["dermsight_session"]
    admin_only = [("GET", "/admin/users"), ("GET", "/admin/audit"),
                  ("POST", "/admin/users"), ("DELETE", "/patients/1")]
    for method, path in admin_only:
        kw = ({"json": {"username": "eve", "password": PASSWORD, "role": "admin"}}
              if method == "POST" else {})
        assert h.client.request(method, f"{API}{path}", **kw).status_code == 403, path
    assert h.get("/patients").status_code == 200
    with h.clinic.db.session() as s:
        s.execute(update(Session).where(Session.id == accounts.sha256(cookie))
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert h.get("/patients").status_code == 401
    assert h.get("/auth/me").status_code == 401


@SQLITE_ONLY
def test_a_session_ends_after_its_idle_timeout_and_each_request_extends_it(
        harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    assert h.clinic.config.session_idle_minutes == 30  # the default
    h.add_user("ana")
    h.login("ana")
    sid = accounts.sha256(h.client.cookies["dermsight_session"])

    def idle_for(minutes: float) -> None:
        with h.clinic.db.session() as s:
            s.execute(update(Session).where(Session.id == sid)
                      .values(last_seen_at=utcnow() - timedelta(minutes=minutes)))

    def last_seen_ago() -> timedelta:
        with h.clinic.db.session() as s:
            row = s.get(Session, sid)
            assert row is not None
            assert row.last_seen_at is not None
            return utcnow() - accounts.aware(row.last_seen_at)

    idle_for(29)  # within the timeout: the request passes and counts as activity
    assert h.get("/patients").status_code == 200
    assert last_seen_ago() < timedelta(minutes=1)
    idle_for(29)
    assert h.get("/auth/me").status_code == 200
    idle_for(31)  # past it: 401 that says why, and the session is gone from the database
    r = h.get("/patients")
    assert r.status_code == 401
    assert "30 minutes without activity" in r.json()["detail"]
    with h.clinic.db.session() as s:
        assert s.get(Session, sid) is None
    idle_for(0)
    assert h.get("/patients").status_code == 401  # not revived by a later update
    h.login("ana")
    assert h.get("/patients").status_code == 200
    # a login clears the idle sessions other browsers left behind (not only the 7-day-old ones)
    with h.clinic.db.session() as s:
        user = s.scalar(select(User).where(User.username == "ana"))
        assert user is not None
        left = [accounts.open_session(s, user)[1].id for _ in range(2)]
    with h.clinic.db.session() as s:
        s.execute(update(Session).where(Session.id == left[0])
                  .values(last_seen_at=utcnow() - timedelta(minutes=31)))
    with h.clinic.db.session() as s:
        accounts.open_session(s, user, h.clinic.config.session_idle)
    with h.clinic.db.session() as s:
        assert s.get(Session, left[0]) is None
        assert s.get(Session, left[1]) is not None
    # a shorter timeout from the clinic's settings (--session-idle-minutes / the variable)
    h.clinic.config = replace(h.clinic.config, session_idle_minutes=5)
    sid = accounts.sha256(h.client.cookies["dermsight_session"])
    idle_for(6)
    r = h.get("/patients")
    assert r.status_code == 401
    assert "5 minutes without activity" in r.json()["detail"]


@SQLITE_ONLY
def test_csrf_on_every_unsafe_cookie_route(harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    h.add_user("root", role="admin")
    _cookie_login(h.client, "root")
    unsafe = [(m, p) for m, p in _clinic_routes(h.client.app)
              if m in {"POST", "PUT", "PATCH", "DELETE"} and p != f"{API}/auth/login"]
    assert {m for m, _ in unsafe} == {"POST", "PUT", "PATCH", "DELETE"}
    for forged in (None, "", "forged", "x" * 43):
        headers = {} if forged is None else {"X-CSRF-Token": forged}
        for method, path in unsafe:
            r = h.client.request(method, path, headers=headers)
            assert r.status_code == 403, (method, path, r.text)
    # a multipart upload (what a cross-site form could send) is refused too
    r = h.client.post(f"{API}/lesions/1/visits", files={"image": ("x.jpg", b"x", "image/jpeg")})
    assert r.status_code == 403
    assert h.get("/auth/me").status_code == 200  # the session itself is still fine


# --- sessions ------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_session_cookie_flags_rotation_and_hashed_secrets(
        harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    h.add_user("ana")
    r = h.post("/auth/login", json={"username": "ana", "password": PASSWORD})
    set_cookie = r.headers["set-cookie"]
    first = h.client.cookies["dermsight_session"]
    for flag in ("HttpOnly", "SameSite=strict", "Path=/", f"Max-Age={7 * 86400}"):
        assert flag in set_cookie
    assert "Secure" not in set_cookie  # plain http on loopback
    login = {"username": "ana", "password": PASSWORD}
    with TestClient(h.client.app) as proxied:  # TLS ended by a proxy that says so
        r = proxied.post(f"{API}/auth/login", json=login, headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in r.headers["set-cookie"]
    with TestClient(h.client.app, base_url="https://clinic.test") as tls:
        assert "Secure" in tls.post(f"{API}/auth/login", json=login).headers["set-cookie"]
    # a TLS proxy that does not say so: the operator's setting marks every cookie Secure
    config = h.clinic.config
    from_env = ClinicConfig.resolve(env={"DERMSIGHT_DATABASE_URL": config.database_url,
                                         "DERMSIGHT_SECURE_COOKIE": "true"})
    assert from_env is not None
    assert from_env.secure_cookie
    h.clinic.config = replace(config, secure_cookie=True)
    with TestClient(h.client.app) as proxied:
        assert "Secure" in proxied.post(f"{API}/auth/login", json=login).headers["set-cookie"]
    h.clinic.config = config
    # logging in again rotates the session: the browser's old session id is dead on the server
    assert h.post("/auth/login", json=login).status_code == 200
    second = h.client.cookies["dermsight_session"]
    assert second != first
    with TestClient(h.client.app, cookies={"dermsight_session": first}) as old:
        assert old.get(f"{API}/auth/me").status_code == 401
    # only hashes of the secrets are stored
    token = h.post("/auth/tokens", json={"name": "t"},
                   headers={"X-CSRF-Token": h.get("/auth/me").json()["csrf_token"]}).json()
    with h.clinic.db.session() as s:
        session_ids = set(s.scalars(select(Session.id)))
        hashes = set(s.scalars(select(ApiToken.token_hash)))
        pw_hash = s.scalar(select(User.password_hash))
    assert second not in session_ids
    assert accounts.sha256(second) in session_ids
    assert token["token"] not in hashes
    assert accounts.sha256(token["token"]) in hashes
    assert str(pw_hash).startswith("$argon2id$")


# --- the login rate limit ------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_burst_of_parallel_logins_gets_at_most_five_guesses(
        harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    h.add_user("ana")

    def guess(i: int) -> int:
        code: int = h.post("/auth/login", json={"username": "ana",
                                                "password": f"guess number {i}"}).status_code
        return code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(guess, range(12)))
    assert codes.count(401) <= accounts.MAX_FAILURES, codes
    assert set(codes) <= {401, 429}
    # one at a time now: the window holds exactly MAX_FAILURES checked guesses in all
    checked = codes.count(401)
    while guess(100 + checked) == 401:
        checked += 1
    assert checked == accounts.MAX_FAILURES
    r = h.post("/auth/login", json={"username": "ana", "password": PASSWORD})
    assert r.status_code == 429  # the right password too, for the rest of the window


@SQLITE_ONLY
def test_username_lock_holds_for_spacing_and_case_and_other_addresses(
        harness: ClinicHarness) -> None:  # noqa: F811
    h = harness
    h.add_user("ana")
    app = h.client.app
    for i in range(accounts.MAX_FAILURES):  # each guess from another address
        with TestClient(app, client=(f"10.0.0.{i}", 4000)) as c:
            r = c.post(f"{API}/auth/login", json={"username": "ana", "password": "nope nope"})
            assert r.status_code == 401
    with TestClient(app, client=("10.0.1.1", 4000)) as c:
        # another spelling is the same account (login ignores case): locked as well
        for name in ("ana", " ana ", "ana\t", "ANA", " Ana "):
            r = c.post(f"{API}/auth/login", json={"username": name, "password": PASSWORD})
            assert r.status_code == 429, name


@SQLITE_ONLY
def test_one_colleagues_typos_do_not_lock_the_shared_address(
        harness: ClinicHarness) -> None:  # noqa: F811
    """A clinic behind one NAT or proxy shares a client address: one account locked by its own
    failures leaves the others able to log in from it; only many failures lock the address."""
    h = harness
    h.add_user("ana")
    h.add_user("ben")
    app = h.client.app
    with TestClient(app, client=("10.0.0.7", 4000)) as c:
        for _ in range(accounts.MAX_FAILURES):
            r = c.post(f"{API}/auth/login", json={"username": "ana", "password": "nope nope"})
            assert r.status_code == 401
        r = c.post(f"{API}/auth/login", json={"username": "ana", "password": PASSWORD})
        assert r.status_code == 429  # her account is locked
        r = c.post(f"{API}/auth/login", json={"username": "ben", "password": PASSWORD})
        assert r.status_code == 200, r.text  # his is not, from the same address
        # guessing across many usernames from one address still locks the address
        for i in range(accounts.MAX_ADDRESS_FAILURES - accounts.MAX_FAILURES):
            r = c.post(f"{API}/auth/login",
                       json={"username": f"guess{i}", "password": "nope nope"})
            assert r.status_code == 401, i
        r = c.post(f"{API}/auth/login", json={"username": "ben", "password": PASSWORD})
        assert r.status_code == 429
    with TestClient(app, client=("10.0.0.8", 4000)) as c:  # another address is not
        r = c.post(f"{API}/auth/login", json={"username": "ben", "password": PASSWORD})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_colleagues_logging_in_at_once_from_one_address_all_get_in(
        harness: ClinicHarness) -> None:  # noqa: F811
    """Attempts in flight count as failures until checked (so parallel guesses are capped):
    eight colleagues behind one address logging in at the same moment must still all get in."""
    h = harness
    names = [f"colleague{i}" for i in range(8)]
    for name in names:
        h.add_user(name)
    app = h.client.app

    def login(name: str) -> int:
        with TestClient(app, client=("10.0.0.9", 4000)) as c:
            code: int = c.post(f"{API}/auth/login",
                               json={"username": name, "password": PASSWORD}).status_code
            return code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(login, names))
    assert codes == [200] * 8, codes


@SQLITE_ONLY
def test_unknown_and_disabled_users_cost_one_argon2_verify(
        harness: ClinicHarness, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    h = harness
    h.add_user("ana")
    calls: list[str] = []
    real = accounts._hasher

    class Counting:
        def verify(self, hash_: str, password: str) -> bool:
            calls.append(hash_)
            return bool(real.verify(hash_, password))

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    monkeypatch.setattr(accounts, "_hasher", Counting())
    off = h.add_user("off")
    with h.clinic.db.session() as s:
        s.execute(update(User).where(User.id == off.id).values(active=False))
    for name, password in (("ana", "wrong password"), ("nobody", "wrong password"),
                           ("off", PASSWORD)):
        calls.clear()
        r = h.post("/auth/login", json={"username": name, "password": password})
        assert r.status_code == 401
        assert r.json() == {"detail": "wrong user name or password"}
        assert len(calls) == 1, name
        assert calls[0].startswith("$argon2id$"), name


# --- hostile input: 4xx, never 500 ---------------------------------------------------------------


def test_hostile_input_gets_a_clear_4xx(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame) -> None:  # noqa: F811
    h = harness
    h.add_user("root", role="admin")
    h.login("root")
    pid = h.patient("SEC-1")
    lid = h.lesion(pid)
    r = h.visit(lid, _image(data_dir, metadata))
    assert r.status_code == 201, r.text
    vid = r.json()["id"]
    huge = "x" * (10 * 1024 * 1024)
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", "/patients/abc", {}, 422),
        ("GET", "/patients/-1", {}, 422),
        ("GET", "/patients/99999999999999999999999", {}, 422),
        ("GET", "/lesions/1.5", {}, 422),
        ("GET", "/visits/%00/image", {}, 422),
        ("DELETE", "/auth/tokens/abc", {}, 422),
        ("POST", "/patients", {}, 422),
        ("POST", "/patients", {"content": b"{not json"}, 422),
        ("POST", "/patients", {"content": b'{"ref": "T"}',
                               "headers": {"Content-Type": "text/plain"}}, 422),
        ("POST", "/patients", {"data": {"ref": "T"}}, 422),
        ("POST", "/patients", {"json": ["ref"]}, 422),
        ("POST", "/patients", {"json": {"ref": "a\x00b"}}, 422),
        ("POST", "/patients", {"json": {"ref": "x" * 65}}, 422),
        ("GET", "/patients?q=a%00", {}, 422),
        ("POST", f"/patients/{pid}/lesions", {"json": {"location": "a\x00b"}}, 422),
        ("POST", f"/patients/{pid}/lesions", {"json": {"body_site": "a\x00b"}}, 422),
        ("PATCH", f"/visits/{vid}", {}, 422),
        ("PATCH", f"/visits/{vid}", {"json": {"note": "a\x00b"}}, 422),
        ("PATCH", f"/visits/{vid}", {"json": {"note": huge}}, 413),
        ("PUT", f"/lesions/{lid}/diagnosis",
         {"json": {"code": "NV", "method": "clinical", "note": "a\x00"}}, 422),
        ("POST", "/auth/tokens", {"json": {"name": "a\x00"}}, 422),
        ("POST", "/auth/login", {"json": {"username": "a\x00", "password": "x" * 10}}, 422),
        ("POST", "/admin/users", {"json": {"username": "a\x00", "password": PASSWORD,
                                           "role": "clinician"}}, 422),
        ("POST", f"/lesions/{lid}/visits", {"json": {"note": "x"}}, 415),
        ("POST", f"/lesions/{lid}/visits",
         {"files": {"image": ("a.jpg", _image(data_dir, metadata), "image/jpeg")},
          "data": {"note": "a\x00b"}}, 422),
    ]
    for method, path, kw, expected in cases:
        r = h.client.request(method, f"{API}{path}", **kw)
        assert r.status_code == expected, (method, path, r.status_code, r.text[:200])
        assert "detail" in r.json()
    # a 10 MB note in the upload form: refused before it is stored (413 / 422)
    r = h.visit(lid, _image(data_dir, metadata), note=huge)
    assert r.status_code in (413, 422), r.text
    # unicode references are data, not a problem; invisible characters that would make two
    # references look alike are refused (tests/test_clinic_audit_fixes.py)
    for ref in ("Ünïcødé-Ω-名前-🩺", "' OR 1=1 --", "%_\\"):
        r = h.post("/patients", json={"ref": ref})
        assert r.status_code == 201, (ref, r.text)
        assert [p["ref"] for p in h.get("/patients", params={"q": ref}).json()] == [ref]
    assert h.post("/patients", json={"ref": "\u202eRTL-mark"}).status_code == 422
    assert h.get(f"/lesions/{lid}").json()["visits"][0]["id"] == vid  # nothing stored


# --- stored files, exports, deletion, audit ------------------------------------------------------


def _jpeg_with_exif_and_gps(data: bytes) -> bytes:
    im = Image.open(io.BytesIO(data))
    exif = Image.Exif()
    exif[0x010F] = "SECRETCAMERA"  # Make
    exif[0x9286] = b"ASCII\0\0\0JANE DOE comment"  # UserComment (in the Exif IFD below)
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (52.0, 31.0, 12.0), "E", (13.0, 24.0, 36.0)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif, quality=95)
    out = buf.getvalue()
    assert Image.open(io.BytesIO(out)).getexif().get_ifd(0x8825)[1] == "N"  # really there
    return out


def test_stored_images_carry_no_metadata_and_are_private(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame,  # noqa: F811
        tmp_path: Path) -> None:
    from dermsight.io.dicom import write_dicom

    h = harness
    h.add_user("ana")
    h.login("ana")
    lid = h.lesion(h.patient("META-1"))
    raw = _image(data_dir, metadata)
    jpeg = _jpeg_with_exif_and_gps(raw)
    rgb = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
    dcm = write_dicom(tmp_path / "DOE^JANE-NAMETAG.dcm", rgb, age=50,
                      patient_id="MRN-77231").read_bytes()
    assert b"DOE^JANE-NAMETAG" in dcm
    assert b"MRN-77231" in dcm
    secrets = [b"SECRETCAMERA", b"JANE DOE", b"DOE^JANE", b"MRN-77231", b"NAMETAG",
               b"UPLOADNAME"]
    for name, data in (("UPLOADNAME.jpg", jpeg), ("UPLOADNAME.dcm", dcm)):
        r = h.post(f"/lesions/{lid}/visits", files={"image": (name, data, "image/jpeg")})
        assert r.status_code == 201, r.text
        visit = r.json()
        assert not any(s.decode() in json.dumps(visit) for s in secrets)
        img = h.get(visit["image_url"].removeprefix(API))
        assert "no-store" in img.headers["cache-control"]  # not kept in a shared browser cache
        stored = Image.open(io.BytesIO(img.content))
        assert stored.format == "PNG"
        assert not stored.getexif()
        assert not stored.info.get("exif")
        assert not getattr(stored, "text", {})
        assert set(stored.info) <= {"dpi", "gamma", "srgb"}
    folder = tmp_path / "images"
    files = [p for p in folder.iterdir() if p.is_file()]
    assert files
    for p in files:
        blob = p.read_bytes()
        assert not any(s in blob for s in secrets), p.name
        assert not re.search(rb"(eXIf|tEXt|iTXt|zTXt)", blob), p.name
    # visit images are for the server's user only (a shared host's other accounts read nothing)
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in files)
    with h.clinic.db.session() as s:
        rows = [json.dumps([str(c) for c in row]) for row in s.execute(
            select(Visit.__table__))]
    assert rows
    assert not any(sec.decode() in row for row in rows for sec in secrets)


@SQLITE_ONLY
def test_the_sqlite_file_is_private(harness: ClinicHarness, tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "clinic.db"
    assert db.exists()
    for p in (db, db.with_name("clinic.db-wal")):
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p.name


def test_patient_export_holds_that_patient_only_and_is_audited(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame) -> None:  # noqa: F811
    h = harness
    h.add_user("ana")
    h.login("ana")
    mine, other = h.patient("EXP-MINE"), h.patient("EXP-OTHER")
    lm, lo = h.lesion(mine, location="MINE-LOC"), h.lesion(other, location="OTHER-LOC")
    vm = h.visit(lm, _image(data_dir, metadata, "NV", 0), note="MINE-NOTE").json()
    vo = h.visit(lo, _image(data_dir, metadata, "BKL", 0), note="OTHER-NOTE").json()
    r = h.get(f"/patients/{mine}/export")
    assert r.status_code == 200
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = zf.namelist()
    entry = r"patient\.json|access_log\.json|README\.txt|images/visit_\d+(_heatmap)?\.png"
    assert all(re.fullmatch(entry, n) for n in names), names
    assert f"images/visit_{vm['id']}.png" in names
    assert not any(f"visit_{vo['id']}" in n for n in names)
    blob = b"".join(zf.read(n) for n in names)
    assert b"MINE-NOTE" in blob
    assert b"EXP-MINE" in blob
    for leak in (b"EXP-OTHER", b"OTHER-LOC", b"OTHER-NOTE"):
        assert leak not in blob
    other_image = h.get(vo["image_url"].removeprefix(API)).content
    assert all(zf.read(n) != other_image for n in names)
    with h.clinic.db.session() as s:
        from dermsight.clinic import audit

        log = audit.query(s, 20)
    exported = [e for e in log if e["action"] == "export"]  # the other image's view is later
    assert {"user": "ana", "action": "export", "object_type": "patient",
            "object_id": mine}.items() <= exported[0].items()


@SQLITE_ONLY
def test_deleting_a_patient_leaves_nothing_in_the_sqlite_files(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame,  # noqa: F811
        tmp_path: Path) -> None:
    h = harness
    h.add_user("root", role="admin")
    h.login("root")
    pid = h.patient("GONE-REF-5521")
    lid = h.lesion(pid, location="GONE-LOCATION-5521")
    v = h.visit(lid, _image(data_dir, metadata), note="GONE-NOTE-5521")
    assert v.status_code == 201
    h.client.put(f"{API}/lesions/{lid}/diagnosis",
                 json={"code": "NV", "method": "clinical", "note": "GONE-DX-5521"})
    visit = v.json()
    assert h.client.delete(f"{API}/patients/{pid}").status_code == 204
    assert not [p for p in (tmp_path / "images").iterdir() if p.is_file()]
    # the deleted patient's URLs are 404s, not errors
    for url in (visit["image_url"], visit["heatmap_url"], f"{API}/visits/{visit['id']}/similar",
                f"{API}/lesions/{lid}", f"{API}/patients/{pid}/export"):
        if url:
            assert h.client.get(url).status_code == 404, url
    assert h.client.patch(f"{API}/visits/{visit['id']}", json={"note": "x"}).status_code == 404
    db = tmp_path / "clinic.db"
    with sqlite3.connect(db) as conn:
        for table in ("patients", "lesions", "visits", "diagnoses"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    for p in db.parent.glob("clinic.db*"):
        blob = p.read_bytes()
        assert b"5521" not in blob, p.name  # no ref, location, note or diagnosis note remains


def test_audit_log_holds_ids_and_times_only(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame) -> None:  # noqa: F811
    h = harness
    h.add_user("root", role="admin")
    h.login("root")
    pid = h.patient("AUDIT-REF-3141")
    lid = h.lesion(pid, location="AUDIT-LOC-3141", body_site="head/neck")  # a known site
    r = h.post(f"/lesions/{lid}/visits",
               files={"image": ("AUDIT-FILE-3141.jpg", _image(data_dir, metadata),
                                "image/jpeg")},
               data={"age": "63", "sex": "female", "note": "AUDIT-NOTE-3141"})
    vid = r.json()["id"]
    h.client.patch(f"{API}/visits/{vid}", json={"note": "AUDIT-NOTE2-3141"})
    h.client.put(f"{API}/lesions/{lid}/diagnosis",
                 json={"code": "MEL", "method": "histopathology", "note": "AUDIT-DX-3141"})
    h.get(f"/patients/{pid}")
    h.get(f"/lesions/{lid}")
    h.get(f"/patients/{pid}/export")
    h.get("/clinic/export/confirmed")
    h.post("/auth/tokens", json={"name": "AUDIT-TOKEN-3141"})
    h.client.delete(f"{API}/patients/{pid}")
    with h.clinic.db.session() as s:
        rows = [dict(r._mapping) for r in s.execute(text("SELECT * FROM audit_events"))]
    assert len(rows) >= 10
    assert set(rows[0]) == {"id", "at", "user_id", "username", "action", "object_type",
                            "object_id", "patient_id"}
    dumped = json.dumps([{k: v for k, v in r.items() if k != "at"} for r in rows])
    for secret in ("3141", "female", "head/neck", "MEL", "63", ".jpg", PASSWORD):
        assert secret not in dumped, secret
    assert {r["username"] for r in rows} == {"root"}


# --- retention applied by the server itself ------------------------------------------------------


def _age_visits(clinic: Any, days: int) -> None:
    with clinic.db.session() as s:
        s.execute(update(Visit).values(created_at=utcnow() - timedelta(days=days)))


def test_serve_applies_the_retention_period_at_start_and_daily(
        db_url: str, tmp_path: Path, clinic_model: Any, data_dir: Path,  # noqa: F811
        metadata: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from dermsight.clinic import retention
    from dermsight.clinic.config import ClinicConfig
    from dermsight.web.app import create_app
    from dermsight.web.settings import Settings

    images = tmp_path / "images"
    clinic = open_clinic(db_url, str(images))
    with TestClient(make_app(clinic, clinic_model)) as client:
        h = ClinicHarness(clinic, client)
        h.add_user("ana")
        h.login("ana")
        pid = h.patient("RET-1")
        lid = h.lesion(pid)
        keep = h.lesion(h.patient("RET-KEEP"))
        assert h.visit(lid, _image(data_dir, metadata, "NV", 0)).status_code == 201
        _age_visits(clinic, 40)
        assert h.visit(keep, _image(data_dir, metadata, "BKL", 0)).status_code == 201
    monkeypatch.setattr(retention, "RETENTION_EVERY_S", 0.5)
    config = ClinicConfig(database_url=db_url, images=str(images), retention_days=30,
                          sweep_grace_s=3600)
    app = create_app(Settings(workers=1, clinic=config))
    with TestClient(app) as client:  # the lifespan purges at start
        with clinic.db.session() as s:
            assert len(list(s.scalars(select(Visit)))) == 1
        h = ClinicHarness(clinic, client)
        h.login("ana")
        assert [p["ref"] for p in h.get("/patients").json()] == ["RET-KEEP"]
        _age_visits(clinic, 31)  # ... and again while it runs
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and h.get("/patients").json():
            time.sleep(0.2)
        assert h.get("/patients").json() == []
    assert not [p for p in images.iterdir() if p.is_file()]
    with clinic.db.session() as s:
        purges = s.scalar(text("SELECT count(*) FROM audit_events WHERE action = 'purge'"))
    assert purges >= 2
    clinic.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_purge_skips_while_another_instance_purges(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame) -> None:  # noqa: F811
    from dermsight.clinic import retention
    from test_clinic_processes import cli

    h = harness
    h.add_user("ana")
    h.login("ana")
    lid = h.lesion(h.patient("LOCK-1"))
    assert h.visit(lid, _image(data_dir, metadata)).status_code == 201
    _age_visits(h.clinic, 40)
    with h.clinic.db.engine.connect() as other:  # another instance holds the purge lock
        other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": retention.PURGE_LOCK_KEY})
        assert retention.purge_once(h.clinic, 30) is None
        r = cli("clinic", "purge", "--retention-days", "30", "--database", h.clinic.db.url,
                "--images", h.clinic.config.images)
        assert r.returncode == 0, r.stderr
        assert "another instance is purging" in r.stdout
        other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": retention.PURGE_LOCK_KEY})
    done = retention.purge_once(h.clinic, 30)
    assert done is not None
    assert len(done.visit_ids) == 1


@SQLITE_ONLY
def test_two_processes_purging_one_sqlite_file_at_once_purge_once(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame,  # noqa: F811
        tmp_path: Path) -> None:
    import threading
    import warnings

    from dermsight.clinic import retention

    h = harness
    h.add_user("ana")
    h.login("ana")
    lid = h.lesion(h.patient("TWICE-1"))
    for i in range(3):
        assert h.visit(lid, _image(data_dir, metadata, "NV", i)).status_code == 201
    _age_visits(h.clinic, 40)
    others = [open_clinic(h.clinic.db.url, str(tmp_path / "images")) for _ in range(2)]
    start = threading.Barrier(2)
    counts: list[int | None] = []

    def purge(c: Any) -> None:
        start.wait()
        done = retention.purge_once(c, 30)
        counts.append(None if done is None else len(done.visit_ids))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=purge, args=(c,)) for c in others]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(c or 0 for c in counts) == [0, 3], counts
    assert not [w for w in caught if "expected to delete" in str(w.message)]
    assert h.get("/patients").json() == []
    for c in others:
        c.close()


@pytest.mark.parametrize("flag", ["--retention-days", "--session-idle-minutes"])
def test_serve_clinic_flags_need_storage(flag: str) -> None:
    from test_clinic_processes import cli

    r = cli("serve", flag, "30")
    assert r.returncode == 2
    assert flag in r.stderr
    assert "--database" in r.stderr
    assert "Traceback" not in r.stderr


# --- the server log of a full clinic flow --------------------------------------------------------


@pytest.fixture
def debug_server(tmp_path: Path) -> Iterator[Any]:
    import api_support
    from test_clinic_processes import create_user

    db = tmp_path / "clinic.db"
    create_user(str(db), "root", "admin")
    server = api_support.start_server(
        tmp_path / "srv", env={"OMP_NUM_THREADS": "1", "DERMSIGHT_WORKERS": "1",
                               "DERMSIGHT_LOG_LEVEL": "debug"},
        extra_args=["--database", str(db), "--images", str(tmp_path / "images")])
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_server_log_of_a_full_flow_holds_no_patient_data_or_passwords(
        debug_server: Any, data_dir: Path, metadata: pd.DataFrame) -> None:
    import httpx

    server = debug_server
    secrets = ["LOGREF-7781", "LOGLOC-7781", "LOGNOTE-7781", "LOGFILE-7781", "LOGDX-7781",
               "LOGTOKEN-7781", "wrong-pass-7781", PASSWORD]
    with httpx.Client(base_url=server.base + API, timeout=120) as c:
        assert c.post("/auth/login", json={"username": "root",
                                           "password": "wrong-pass-7781"}).status_code == 401
        r = c.post("/auth/login", json={"username": "root", "password": PASSWORD})
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        pid = c.post("/patients", json={"ref": "LOGREF-7781"}).json()["id"]
        assert c.post("/patients", json={"ref": "LOGREF-7781"}).status_code == 409
        assert c.get("/patients", params={"q": "LOGREF-7781"}).status_code == 200
        lid = c.post(f"/patients/{pid}/lesions", json={"location": "LOGLOC-7781"}).json()["id"]
        r = c.post(f"/lesions/{lid}/visits",
                   files={"image": ("LOGFILE-7781.jpg", _image(data_dir, metadata),
                                    "image/jpeg")},
                   data={"note": "LOGNOTE-7781", "age": "41"})
        assert r.status_code == 201, r.text
        vid = r.json()["id"]
        assert c.patch(f"/visits/{vid}", json={"note": "LOGNOTE-7781 " * 300}).status_code \
            == 413
        assert c.post(f"/lesions/{lid}/visits",
                      files={"image": ("LOGFILE-7781.jpg", b"not an image", "image/jpeg")},
                      data={"note": "LOGNOTE-7781"}).status_code == 422
        c.put(f"/lesions/{lid}/diagnosis",
              json={"code": "NV", "method": "clinical", "note": "LOGDX-7781"})
        c.post("/auth/tokens", json={"name": "LOGTOKEN-7781"})
        assert c.get(f"/patients/{pid}/export").status_code == 200
        assert c.delete(f"/patients/{pid}").status_code == 204
        assert c.post("/auth/logout").status_code == 204
    log = server.log()
    assert f"/api/v1/patients/{pid}" in log  # the request log is on (debug level)
    for secret in secrets:
        assert secret not in log, secret
    assert "Traceback" not in log


@SQLITE_ONLY
def test_a_visit_whose_stored_image_vanished_is_a_404_not_a_500(
        harness: ClinicHarness, data_dir: Path, metadata: pd.DataFrame,  # noqa: F811
        tmp_path: Path) -> None:
    """A file gone from the image store (its patient deleted while the same image was being
    uploaded, or an operator's mistake) is a clear 404 on the image route; the patient's export
    exports the rest and lists it (tests/test_clinic_export_gaps.py)."""
    h = harness
    h.add_user("ana", role="admin")
    h.login("ana")
    pid = h.patient("GONE-1")
    r = h.post(f"/lesions/{h.lesion(pid)}/visits",
               files={"image": ("x.jpg", _image(data_dir, metadata), "image/jpeg")})
    assert r.status_code == 201, r.text
    visit = r.json()
    with h.clinic.db.session() as s:
        key = s.get(Visit, visit["id"]).image_key
    (tmp_path / "images" / key).unlink()
    r = h.get(visit["image_url"].removeprefix(API))
    assert r.status_code == 404, r.text
    assert "missing" in r.json()["detail"]
    r = h.get(f"/patients/{pid}/export")
    assert r.status_code == 200, r.text
    doc = json.loads(zipfile.ZipFile(io.BytesIO(r.content)).read("patient.json"))
    assert doc["missing_files"]["images"] == [visit["id"]]
    assert h.get(visit["heatmap_url"].removeprefix(API)).status_code == 200  # the rest still works
