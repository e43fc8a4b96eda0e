"""Access rules of the clinic (served app on SQLite, real images; the migration and the shared
insert on SQLite and PostgreSQL):

1. per-user API tokens expire: a lifetime in days when created (default 90, 1-365, else 422);
   the list says when each expires; an expired token is a 401 that says so and when, unlike a
   revoked or unknown one; revision 0007 gives older tokens an expiry;
2. reads are in the audit log: the patient list (one event per request), a patient, a lesion,
   a visit's image (once per user and visit within ``audit.REPEAT_READ``), the exports;
3. a new password may not be the user name (ignoring case) nor easy to guess (zxcvbn), in the
   API and on the command line, with a message that says what to do;
4. a DICOM visit whose BodyPartExamined contradicts the lesion's recorded site keeps the
   lesion's site for the model and carries a warning naming both; one that agrees and is more
   specific is used;
5. ``db.insert_or_found``, the one race-safe insert, lets an unrelated integrity error through.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from clinic_support import API, PASSWORD, ClinicHarness, image_bytes, served_clinic
from dermsight.clinic import accounts, audit
from dermsight.clinic.db import HEAD, Database, current_revision, upgrade
from dermsight.clinic.models import ApiToken, AuditEvent, User, utcnow

HIGH = "ISIC_0030403"


@pytest.fixture
def app_harness(tmp_path: Path) -> Iterator[ClinicHarness]:
    with served_clinic(tmp_path) as h:
        yield h


def _bearer(h: ClinicHarness, token: str, path: str) -> Any:
    return h.client.get(f"{API}{path}", headers={"Authorization": f"Bearer {token}"})


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


# --- 1. API tokens expire -------------------------------------------------------------------


def test_a_token_expires_after_its_lifetime_and_says_so(app_harness: ClinicHarness) -> None:
    h = app_harness
    before = datetime.now(UTC)
    r = h.post("/auth/tokens", json={"name": "default"})
    assert r.status_code == 201, r.text
    default = r.json()
    assert abs(_when(default["expires_at"]) - (before + timedelta(days=90))) < timedelta(minutes=1)
    r = h.post("/auth/tokens", json={"name": "short", "days": 1})
    assert r.status_code == 201, r.text
    short = r.json()
    assert abs(_when(short["expires_at"]) - (before + timedelta(days=1))) < timedelta(minutes=1)
    listed = {t["name"]: t for t in h.get("/auth/tokens").json()}
    assert listed["short"]["expires_at"] == short["expires_at"]
    assert listed["short"]["expired"] is False
    assert _bearer(h, short["token"], "/patients").status_code == 200

    # a day later (the clock moved: its expiry set back instead)
    with h.clinic.db.session() as s:
        s.execute(
            update(ApiToken)
            .where(ApiToken.id == short["id"])
            .values(expires_at=datetime(2026, 3, 14, 9, 30, tzinfo=UTC))
        )
    r = _bearer(h, short["token"], "/patients")
    assert r.status_code == 401
    assert r.json()["detail"] == (
        "this API token expired on 2026-03-14 09:30 UTC: create a new one (signed in, on the "
        "Account page or with POST /api/v1/auth/tokens) and use it instead"
    )
    assert h.get("/auth/tokens").json()[1]["expired"] is True
    # distinguishable from a revoked and from an unknown token
    assert h.client.delete(f"{API}/auth/tokens/{default['id']}").status_code == 204
    assert "revoked" in _bearer(h, default["token"], "/patients").json()["detail"]
    assert "not known" in _bearer(h, "dsk_nonsense", "/patients").json()["detail"]


def test_an_expired_token_of_a_disabled_account_says_the_account_is_disabled(
    app_harness: ClinicHarness,
) -> None:
    # "create a new one" would be advice its user cannot follow
    h = app_harness
    r = h.post("/auth/tokens", json={"name": "old", "days": 1})
    assert r.status_code == 201, r.text
    token = r.json()
    with h.clinic.db.session() as s:
        s.execute(update(ApiToken).where(ApiToken.id == token["id"])
                  .values(expires_at=datetime(2026, 3, 14, 9, 30, tzinfo=UTC)))
        user_id = s.scalar(select(ApiToken.user_id).where(ApiToken.id == token["id"]))
        s.execute(update(User).where(User.id == user_id).values(active=False))
    r = _bearer(h, token["token"], "/patients")
    assert r.status_code == 401
    assert "disabled" in r.json()["detail"]
    assert "create a new one" not in r.json()["detail"]


@pytest.mark.parametrize("days", [0, -5, 366, 10_000])
def test_a_token_lifetime_outside_1_to_365_days_is_a_422(
    app_harness: ClinicHarness, days: int
) -> None:
    r = app_harness.post("/auth/tokens", json={"name": "x", "days": days})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        f"an API token works for 1 to 365 days (days was {days}): choose a lifetime in that "
        "range, or leave days out for 90"
    )
    assert app_harness.get("/auth/tokens").json() == []


@pytest.mark.parametrize(("days", "shown"), [(True, "true"), ("30", "'30'"), (7.5, "7.5")])
def test_a_token_lifetime_that_is_no_whole_number_is_a_422(
    app_harness: ClinicHarness, days: object, shown: str
) -> None:
    r = app_harness.post("/auth/tokens", json={"name": "x", "days": days})
    assert r.status_code == 422
    assert r.json()["detail"] == f"days must be a whole number (got {shown})"


def test_the_upgrade_gives_older_tokens_an_expiry(db_url: str) -> None:
    """Revision 0007: the later of created_at + 90 days and the upgrade + 14 days."""
    db = Database(db_url)
    upgrade(db.engine, "0006")
    recent = datetime.now(UTC) - timedelta(days=3)
    tokens = sa.table(
        "api_tokens",
        sa.column("id", sa.Integer),
        sa.column("user_id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("token_hash", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, username, username_key, password_hash, role, active, "
                "created_at) VALUES (1, 'ana', 'ana', 'x', 'admin', true, "
                "'2025-01-02 03:04:05')"
            )
        )
        conn.execute(
            tokens.insert(),
            [
                {
                    "id": 1,
                    "user_id": 1,
                    "name": "old",
                    "token_hash": f"{1:064d}",
                    "created_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
                },
                {
                    "id": 2,
                    "user_id": 1,
                    "name": "recent",
                    "token_hash": f"{2:064d}",
                    "created_at": recent,
                },
            ],
        )
    upgraded = datetime.now(UTC)
    db.upgrade()
    assert current_revision(db.engine) == HEAD
    with db.session() as s:
        got = {t.id: accounts.aware(t.expires_at) for t in s.scalars(select(ApiToken))}
    assert abs(got[1] - (upgraded + timedelta(days=14))) < timedelta(minutes=1)
    assert abs(got[2] - (recent + timedelta(days=90))) < timedelta(seconds=1)
    for row in (
        ApiToken(
            user_id=1, name="same hash", token_hash=f"{1:064d}", expires_at=utcnow()
        ),  # still unique
        ApiToken(user_id=1, name="no expiry", token_hash=f"{3:064d}"),
    ):  # NOT NULL
        with db.session() as s:
            s.add(row)
            with pytest.raises(IntegrityError):
                s.flush()
            s.rollback()
    db.dispose()


# --- 2. reads are audited -------------------------------------------------------------------


def _events(h: ClinicHarness) -> list[tuple[str | None, str, str, int | None]]:
    rows = h.get("/admin/audit", params={"limit": 1000}).json()
    return [(e["user"], e["action"], e["object_type"], e["object_id"]) for e in reversed(rows)]


def test_reads_are_in_the_audit_log(app_harness: ClinicHarness, data_dir: Path) -> None:
    h = app_harness
    pid = h.patient("READ-1")
    lid = h.lesion(pid)
    v = h.visit(lid, image_bytes(data_dir, HIGH))
    assert v.status_code == 201, v.text
    vid = v.json()["id"]
    start = len(_events(h))
    assert h.get("/patients", params={"q": "READ"}).status_code == 200
    assert h.get(f"/patients/{pid}").status_code == 200
    assert h.get(f"/lesions/{lid}").status_code == 200
    for _ in range(3):  # the page rendered three times: one event
        assert h.get(f"/visits/{vid}/image").status_code == 200
    assert h.get(f"/visits/{vid}/heatmap").status_code == 200  # not logged
    assert h.get(f"/patients/{pid}/export").status_code == 200
    assert h.get("/clinic/export/confirmed").status_code == 200
    assert _events(h)[start:] == [
        ("admin", "view", "patient_list", None),
        ("admin", "view", "patient", pid),
        ("admin", "view", "lesion", lid),
        ("admin", "view", "visit_image", vid),
        ("admin", "export", "patient", pid),
        ("admin", "export", "confirmed_cases", None),
    ]

    # another user's view is their own event; the same user's after REPEAT_READ is a new one
    h.add_user("ben")
    with h.clinic.db.session() as s:
        s.execute(
            update(AuditEvent)
            .where(AuditEvent.object_type == "visit_image")
            .values(at=utcnow() - audit.REPEAT_READ - timedelta(seconds=5))
        )
    token = h.post("/auth/tokens", json={"name": "script"}).json()["token"]
    assert _bearer(h, token, f"/visits/{vid}/image").status_code == 200  # admin, by token
    h.login("ben")
    assert h.get(f"/visits/{vid}/image").status_code == 200
    assert h.get(f"/visits/{vid}/image").status_code == 200
    h.login("admin")
    views = [e for e in _events(h) if e[2] == "visit_image"]
    assert views == [("admin", "view", "visit_image", vid)] * 2 + [
        ("ben", "view", "visit_image", vid)
    ]
    # ids only: no reference, search text or file name anywhere in the log
    with h.clinic.db.session() as s:
        stored = " ".join(
            str(c)
            for e in s.scalars(select(AuditEvent))
            for c in (e.username, e.action, e.object_type, e.object_id)
        )
    assert "READ" not in stored


# --- 3. passwords -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        ("ana", "password1", "this password is too easy to guess (this is a very common password)"),
        (
            "ana",
            "Password123!",
            "this password is too easy to guess (this is similar to a commonly used password)",
        ),
        (
            "ana",
            "qwertyuiop",
            "this password is too easy to guess (this is a top-100 common password)",
        ),
        ("Clinician7", "cLINICIAN7", "the password may not be the user name (ignoring case)"),
    ],
)
def test_a_guessable_password_is_refused_saying_what_to_do(
    app_harness: ClinicHarness, username: str, password: str, expected: str
) -> None:
    h = app_harness
    r = h.post(
        "/admin/users", json={"username": username, "password": password, "role": "clinician"}
    )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith(expected + ":"), detail
    assert detail.endswith("e.g. four or five unrelated words, or a password manager's random one")
    assert [u["username"] for u in h.get("/admin/users").json()] == ["admin"]
    # the tests' own password, and a long random one, pass
    for name, good in (("ana", PASSWORD), ("bo", "x7#Lq9!vR2@mZ4$tW8&kP1^nB6*cF3(jH5)gD0")):
        assert (
            h.post(
                "/admin/users", json={"username": name, "password": good, "role": "clinician"}
            ).status_code
            == 201
        )


def test_a_guessable_password_is_refused_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dermsight.cli import app
    from dermsight.cli.errors import EXIT_USER, run_guarded

    db = f"sqlite:///{tmp_path / 'clinic.db'}"
    monkeypatch.setattr("sys.stdin", io.StringIO("letmein2024\n"))
    code = run_guarded(
        app,
        [
            "clinic",
            "create-user",
            "--database",
            db,
            "--username",
            "admin",
            "--role",
            "admin",
            "--password-stdin",
        ],
    )
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USER, err
    assert err.startswith(
        "error: this password is too easy to guess (this is similar to a commonly used password): "
    )
    assert "\n" not in err


# --- 4. a DICOM site that contradicts the lesion's -----------------------------------------------


def _dicom(tmp_path: Path, data_dir: Path, site: str) -> bytes:
    from dermsight.io.dicom import write_dicom

    rgb = np.asarray(Image.open(io.BytesIO(image_bytes(data_dir, HIGH))).convert("RGB"))
    return write_dicom(tmp_path / "visit.dcm", rgb, age=60, sex="male", site=site).read_bytes()


def _dicom_visit(h: ClinicHarness, lesion_id: int, dcm: bytes) -> dict[str, Any]:
    r = h.post(
        f"/lesions/{lesion_id}/visits", files={"image": ("visit.dcm", dcm, "application/dicom")}
    )
    assert r.status_code == 201, r.text
    visit: dict[str, Any] = r.json()
    return visit


def test_a_dicom_site_contradicting_the_lesion_keeps_the_lesion_site_with_a_warning(
    app_harness: ClinicHarness, data_dir: Path, tmp_path: Path
) -> None:
    h = app_harness
    lid = h.lesion(h.patient("DCM-SITE"), body_site="posterior torso")
    dcm = _dicom(tmp_path, data_dir, "head/neck")
    v = _dicom_visit(h, lid, dcm)
    assert v["result"]["input"]["site"] == "posterior torso"
    assert (v["site"], v["site_inherited"]) == ("posterior torso", True)
    [flag] = [f for f in v["result"]["flags"] if f["code"] == "site_contradicts_lesion"]
    assert flag == {
        "code": "site_contradicts_lesion",
        "blocking": False,
        "message": "the DICOM file's body part ('HEAD/NECK', read as head/neck) contradicts "
        "the lesion's recorded "
        "body site (posterior torso): the model was given the lesion's site, "
        "posterior torso; check that this photo is of this lesion, and if it is of "
        "another one, delete this visit and add the photo to that lesion",
    }
    # stored with the visit: the lesion's page shows it again (the UI lists result flags)
    [stored] = h.get(f"/lesions/{lid}").json()["visits"]
    assert flag in stored["result"]["flags"]
    # the answer is the model's for the lesion's site (as if the form had given it)
    model = h.client.app.state.model  # type: ignore[attr-defined]
    again = model.predict(dcm, site="posterior torso")
    assert again.probabilities == pytest.approx(v["result"]["probabilities"], abs=1e-5)


def test_a_dicom_site_that_agrees_with_the_lesion_is_used_without_a_warning(
    app_harness: ClinicHarness, data_dir: Path, tmp_path: Path
) -> None:
    h = app_harness
    torso = h.lesion(h.patient("DCM-AGREE"), body_site="torso")
    v = _dicom_visit(h, torso, _dicom(tmp_path, data_dir, "anterior torso"))
    assert (v["site"], v["site_inherited"]) == ("anterior torso", False)  # the more specific
    assert v["result"]["input"]["site"] == "anterior torso"
    same = h.lesion(h.patient("DCM-SAME"), body_site="head/neck")
    w = _dicom_visit(h, same, _dicom(tmp_path, data_dir, "head/neck"))
    assert (w["site"], w["site_inherited"]) == ("head/neck", False)
    for visit in (v, w):
        assert "site_contradicts_lesion" not in {f["code"] for f in visit["result"]["flags"]}
    # a site in the form still wins, and a contradicting one is still refused
    r = h.post(
        f"/lesions/{same}/visits",
        files={
            "image": ("visit.dcm", _dicom(tmp_path, data_dir, "palms/soles"), "application/dicom")
        },
        data={"site": "torso"},
    )
    assert r.status_code == 422
    assert "contradicts the lesion's body site" in r.json()["detail"]


# --- 5. the shared insert ---------------------------------------------------------------------


def test_insert_or_found_lets_an_unrelated_integrity_error_through(db_url: str) -> None:
    from dermsight.clinic.db import insert_or_found

    db = Database(db_url)
    db.upgrade()
    with db.session() as s:
        s.add(User(username="ana", password_hash="x", role="admin", active=True))
    with db.session() as s:
        twin = User(username="ana", password_hash="x", role="admin", active=True)
        assert insert_or_found(s, twin, lambda: s.scalar(select(User.username))) == "ana"
    with db.session() as s, pytest.raises(IntegrityError):
        insert_or_found(
            s, User(username="ana", password_hash="x", role="admin", active=True), lambda: None
        )
    db.dispose()
