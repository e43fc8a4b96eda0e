"""Clinic storage core on SQLite and PostgreSQL: migrations (from empty and from revision 1 with
data), the database URL, the content-addressed image store and its sweep, accounts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from dermsight.clinic import accounts
from dermsight.clinic.config import ClinicConfig, ClinicConfigError, database_url
from dermsight.clinic.db import HEAD, Database, current_revision, table_names, upgrade
from dermsight.clinic.imagestore import ImageStore
from dermsight.clinic.models import LoginAttempt, Session, Visit

TABLES = {"users", "api_tokens", "sessions", "login_attempts", "patients", "lesions", "visits",
          "diagnoses", "audit_events"}


def test_upgrade_from_empty(db_url: str) -> None:
    db = Database(db_url)
    assert current_revision(db.engine) is None
    db.upgrade()
    assert current_revision(db.engine) == HEAD
    assert table_names(db.engine) >= TABLES
    db.upgrade()  # idempotent
    assert current_revision(db.engine) == HEAD
    if db_url.startswith("sqlite"):
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.dispose()


def test_upgrade_from_revision_1_keeps_the_data(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db.engine, "0001")
    assert "embedding" not in {c["name"] for c in inspect(db.engine).get_columns("visits")}
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (id, username, password_hash, role, active, created_at) VALUES "
            "(1, 'ana', 'x', 'admin', true, '2026-01-02T03:04:05+00:00')"))
        conn.execute(text("INSERT INTO patients (id, ref, created_at, created_by) VALUES "
                          "(1, 'P-001', '2026-01-02T03:04:05+00:00', 1)"))
        conn.execute(text("INSERT INTO lesions (id, patient_id, side, created_at) VALUES "
                          "(1, 1, 'left', '2026-01-02T03:04:05+00:00')"))
        conn.execute(text(
            "INSERT INTO visits (id, lesion_id, taken_at, created_at, result_json, risk, "
            "malignant_probability, model_name, model_version, bundle_sha256, image_key) VALUES "
            "(1, 1, '2026-01-02', '2026-01-02T03:04:05+00:00', '{\"risk\": \"low\"}', 'low', "
            "0.1, 'm', '1', 'abc', 'k.png')"))
        conn.execute(text(
            "INSERT INTO sessions (id, user_id, csrf_token, created_at, expires_at) VALUES "
            "('s1', 1, 'c', '2026-01-02T03:04:05+00:00', '2026-01-09T03:04:05+00:00')"))
    db.upgrade()
    assert current_revision(db.engine) == HEAD
    assert "embedding" in {c["name"] for c in inspect(db.engine).get_columns("visits")}
    assert "ix_audit_events_at" in {i["name"] for i in inspect(db.engine).get_indexes(
        "audit_events")}
    with db.session() as s:
        v = s.get(Visit, 1)
        assert v is not None
        assert (v.risk, v.image_key, v.embedding, v.lesion.patient.ref) == \
            ("low", "k.png", None, "P-001")
        session = s.get(Session, "s1")  # 0003: not used since created (idle time from then)
        assert session is not None
        assert session.last_seen_at is None
    db.dispose()


def test_database_url_forms(tmp_path: Path) -> None:
    assert database_url(str(tmp_path / "c.db")) == f"sqlite:///{tmp_path / 'c.db'}"
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(ClinicConfigError, match="unsupported database URL scheme 'mysql'"):
        database_url("mysql://u@h/db")
    cfg = ClinicConfig.resolve(env={"DERMSIGHT_DATABASE_URL": str(tmp_path / "c.db"),
                                    "DERMSIGHT_RETENTION_DAYS": "30"})
    assert cfg is not None
    assert cfg.images == str(tmp_path / "c-images")
    assert cfg.retention_days == 30
    assert cfg.session_idle_minutes == 30  # the default idle timeout
    idle = {"DERMSIGHT_DATABASE_URL": str(tmp_path / "c.db")}
    assert ClinicConfig.resolve(env={**idle, "DERMSIGHT_SESSION_IDLE_MINUTES": "5"}
                                ).session_idle_minutes == 5  # type: ignore[union-attr]
    assert ClinicConfig.resolve(session_idle_minutes=7, env={
        **idle, "DERMSIGHT_SESSION_IDLE_MINUTES": "5"}).session_idle_minutes == 7  # type: ignore[union-attr]
    for bad, message in (("soon", "not a whole number"), ("0", "1-10080 minutes"),
                         ("20000", "1-10080 minutes")):
        with pytest.raises(ClinicConfigError, match=message):
            ClinicConfig.resolve(env={**idle, "DERMSIGHT_SESSION_IDLE_MINUTES": bad})
    assert ClinicConfig.resolve(env={}) is None
    with pytest.raises(ClinicConfigError, match="image folder shared by every instance"):
        ClinicConfig.resolve(database="postgresql+psycopg://u@/db", env={})
    static = tmp_path / "static"
    bad = ClinicConfig(database_url="sqlite://", images=str(static / "img"))
    with pytest.raises(ClinicConfigError, match="static folder"):
        bad.check_not_under(static)


def test_image_store_is_content_addressed_and_the_sweep_keeps_referenced_files(
        tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "img"))
    k1 = store.put(b"first", "png")
    assert k1 == store.put(b"first", "png")  # same content, same file
    k2 = store.put(b"second", "png")
    assert store.get(k1) == b"first"
    assert sorted(store.keys()) == sorted([k1, k2])
    (tmp_path / "img" / ".tmp-deadbeef").write_bytes(b"half a file")
    assert store.sweep({k1}, grace_s=3600) == []  # all younger than the grace period
    old = time.time() - 7200
    for name in (k2, ".tmp-deadbeef"):
        os.utime(tmp_path / "img" / name, (old, old))
    assert sorted(store.sweep({k1}, grace_s=3600)) == sorted([k2, ".tmp-deadbeef"])
    assert store.keys() == [k1]
    with pytest.raises(ValueError, match="bad image key"):
        store.get("../etc/passwd")


def test_passwords_tokens_and_the_login_rate_limit(db_url: str) -> None:
    db = Database(db_url)
    db.upgrade()
    with db.session() as s:
        user = accounts.create_user(s, "ana", "long enough pw", "clinician")
        assert user.password_hash.startswith("$argon2id$")
        with pytest.raises(accounts.AccountExists):
            accounts.create_user(s, "ana", "long enough pw", "clinician")
        with pytest.raises(accounts.AccountError, match="8-256 characters"):
            accounts.create_user(s, "bob", "short", "clinician")
        with pytest.raises(accounts.AccountError, match="role"):
            accounts.create_user(s, "bob", "long enough pw", "root")
    with db.session() as s:
        assert accounts.verify_password(s, "ana", "long enough pw") is not None
        assert accounts.verify_password(s, "ana", "wrong password") is None
        assert accounts.verify_password(s, "nobody", "long enough pw") is None
        user = accounts.verify_password(s, "ana", "long enough pw")
        assert user is not None
        token, row = accounts.create_token(s, user, "laptop")
        assert token not in row.token_hash
        assert row.token_hash == accounts.sha256(token)
    with db.session() as s:
        found = accounts.token_lookup(s, token)
        assert isinstance(found, accounts.User)
        assert found.username == "ana"
        assert accounts.revoke_token(s, found, row.id)
    with db.session() as s:
        assert accounts.token_lookup(s, token) is accounts.Refused.REVOKED
        for _ in range(accounts.MAX_FAILURES - 1):
            accounts.record_attempt(s, "ana", "10.0.0.1", success=False)
        assert accounts.retry_after_s(s, "ana", "10.0.0.2") == 0
        accounts.record_attempt(s, "ana", "10.0.0.1", success=False)
        wait = accounts.retry_after_s(s, "ana", "10.0.0.2")  # by username
        assert 0 < wait <= accounts.FAILURE_WINDOW.total_seconds() + 1
        # the address is not locked by one account's failures: a clinic may share it
        assert accounts.retry_after_s(s, "other", "10.0.0.1") == 0
        for i in range(accounts.MAX_ADDRESS_FAILURES - accounts.MAX_FAILURES):
            accounts.record_attempt(s, f"user{i}", "10.0.0.1", success=False)
        assert accounts.retry_after_s(s, "other", "10.0.0.1") > 0  # by address
        assert accounts.retry_after_s(s, "other", "10.0.0.9") == 0
        assert s.query(LoginAttempt).count() == accounts.MAX_ADDRESS_FAILURES
    db.dispose()
