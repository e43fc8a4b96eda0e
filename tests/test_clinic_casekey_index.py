"""Names unique ignoring case are enforced by the database itself, on SQLite and PostgreSQL:
``patients.ref_key`` / ``users.username_key`` hold ``casekey`` of the name under a unique index
(revision 0005), set by the model. The loser of two concurrent requests gets the pre-check's 409
(API) or exit 2 (CLI); the migration backfills the keys and stops, changing nothing, on a
database that already holds a clashing pair; the patient search by prefix follows the same rule
on both databases."""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.orm import Session as DbSession

from clinic_support import PASSWORD, ClinicHarness, open_clinic
from dermsight.clinic import accounts, cases
from dermsight.clinic.config import ClinicConfigError
from dermsight.clinic.db import HEAD, Database, casekey, current_revision, upgrade
from dermsight.clinic.models import Patient, User
from race_support import race_two_sessions

STAMP = "'2026-01-02T03:04:05+00:00'"


def _nfd(s: str) -> str:
    return unicodedata.normalize("NFD", s)


@pytest.fixture
def h(harness: ClinicHarness) -> ClinicHarness:
    harness.add_user("root", role="admin")
    harness.login("root")
    return harness


def _refs(h: ClinicHarness, q: str | None = None) -> list[str]:
    r = h.get("/patients", params={"q": q} if q is not None else None)
    assert r.status_code == 200, r.text
    return sorted(p["ref"] for p in r.json())


def _racing(h: ClinicHarness, rival: Callable[[], Any],
            real: Callable[[DbSession, InstrumentedAttribute[str], str], str | None]
            ) -> Callable[[DbSession, InstrumentedAttribute[str], str], str | None]:
    """``taken_ignoring_case`` as a concurrent request meets it: its check finds the name free,
    then the rival request commits the name in another case before this one inserts."""

    def check(db: DbSession, column: InstrumentedAttribute[str], name: str) -> str | None:
        found = real(db, column, name)
        with h.clinic.db.session() as other:
            other.add(rival())
        return found

    return check


# --- the database refuses a second spelling ------------------------------------------------------


def test_the_model_stores_the_key(h: ClinicHarness) -> None:
    pid = h.patient(_nfd("Straße-Ö1"))
    with h.clinic.db.session() as s:
        p = s.get(Patient, pid)
        assert p is not None
        assert p.ref_key == casekey("STRASSE-ö1") == "strasse-o\u03081"
        user = s.scalar(select(User).where(User.username == "root"))
        assert user is not None
        assert user.username_key == "root"


@pytest.mark.parametrize(("model", "first", "again"), [
    (Patient, {"ref": "Smith-01"}, {"ref": "smith-01"}),
    (Patient, {"ref": "Émile-2"}, {"ref": _nfd("ÉMILE-2")}),
    (User, {"username": "ana"}, {"username": "ANA"}),
])
def test_an_insert_past_the_check_is_refused_by_the_database(
        h: ClinicHarness, model: type[Any], first: dict[str, str],
        again: dict[str, str]) -> None:
    extra = {"password_hash": "x", "role": "clinician", "active": True} if model is User else {}
    with h.clinic.db.session() as s:
        s.add(model(**first, **extra))
    with pytest.raises(IntegrityError), h.clinic.db.session() as s:
        s.add(model(**again, **extra))
    with h.clinic.db.session() as s:
        column = Patient.ref if model is Patient else User.username
        assert list(s.scalars(select(column).where(column != "root"))) == list(first.values())


# --- the loser of a race gets the pre-check's answer ----------------------------------------------


def test_a_patient_lost_race_is_a_409_naming_the_winner(
        h: ClinicHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cases, "taken_ignoring_case",
                        _racing(h, lambda: Patient(ref="Smith-01"), cases.taken_ignoring_case))
    r = h.post("/patients", json={"ref": "smith-01"})
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == ("a patient with reference 'smith-01' exists already "
                                  "(as 'Smith-01': references ignore case)")
    assert _refs(h) == ["Smith-01"]
    monkeypatch.undo()
    assert h.patient("Smith-02") > 0  # the next request is served as usual


def test_two_concurrent_sessions_make_one_patient(
        h: ClinicHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two real transactions: B checks while A's insert is not yet committed (the check finds
    nothing), then B's insert waits on A (PostgreSQL: the unique index; SQLite: the write lock)
    and, once A commits, is refused: one patient, and B gets the pre-check's Conflict."""
    outcome = race_two_sessions(
        h.clinic.db, lambda a: cases.create_patient(a, "Smith-01", _root(a)),
        lambda s: cases.create_patient(s, "smith-01", _root(s)).id,
        monkeypatch=monkeypatch, past=(cases, "taken_ignoring_case"))
    assert isinstance(outcome, cases.Conflict), outcome
    assert "(as 'Smith-01': references ignore case)" in str(outcome)
    assert _refs(h) == ["Smith-01"]


def _root(s: DbSession) -> User:
    user = s.scalar(select(User).where(User.username == "root"))
    assert user is not None
    return user


def test_a_user_lost_race_is_a_409_in_the_api(
        h: ClinicHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    def rival() -> User:
        return User(username="Ana", password_hash="x", role="clinician", active=True)

    monkeypatch.setattr(accounts, "taken_ignoring_case",
                        _racing(h, rival, accounts.taken_ignoring_case))
    r = h.post("/admin/users", json={"username": "ana", "password": PASSWORD,
                                     "role": "clinician"})
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == ("a user named 'ana' exists already (as 'Ana': usernames "
                                  "ignore case)")
    monkeypatch.undo()
    assert sorted(u["username"] for u in h.get("/admin/users").json()) == ["Ana", "root"]


def test_a_user_lost_race_is_exit_2_in_the_cli(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from dermsight.cli import app
    from dermsight.cli.errors import EXIT_USER, run_guarded

    db = Database(db_url)
    db.upgrade()

    def check(s: DbSession, column: InstrumentedAttribute[str], name: str) -> str | None:
        with db.session() as other:  # the rival: another admin's command, a moment earlier
            other.add(User(username="ADMIN", password_hash="x", role="admin", active=True))
        return None  # this command's check ran before it

    monkeypatch.setattr(accounts, "taken_ignoring_case", check)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code = run_guarded(app, ["clinic", "create-user", "--database", db_url, "--username",
                             "admin", "--role", "admin", "--password-stdin"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USER, err
    assert err == ("error: a user named 'admin' exists already (as 'ADMIN': usernames ignore "
                   "case)")
    with db.session() as s:
        assert list(s.scalars(select(User.username))) == ["ADMIN"]
    db.dispose()


# --- the migration -------------------------------------------------------------------------------


@pytest.fixture
def at_0004(db_url: str) -> Iterator[Database]:
    db = Database(db_url)
    upgrade(db.engine, "0004")
    yield db
    db.dispose()


def _insert(db: Database, users: list[str], refs: list[str]) -> None:
    with db.engine.begin() as conn:
        for i, name in enumerate(users, 1):
            conn.execute(text("INSERT INTO users (id, username, password_hash, role, active, "
                              f"created_at) VALUES (:id, :name, 'x', 'admin', true, {STAMP})"),
                         {"id": i, "name": name})
        for i, ref in enumerate(refs, 1):
            conn.execute(text(f"INSERT INTO patients (id, ref, created_at) VALUES (:id, :ref, "
                              f"{STAMP})"), {"id": i, "ref": ref})
            conn.execute(text(f"INSERT INTO lesions (id, patient_id, created_at) VALUES (:id, "
                              f":id, {STAMP})"), {"id": i})


def test_the_migration_backfills_the_keys(at_0004: Database) -> None:
    db = at_0004
    refs = ["P-001", "Straße-2", _nfd("Émile-3"), "ΟΔΟΣ-4"]
    _insert(db, ["ana", "Bo"], refs)
    db.upgrade()
    assert current_revision(db.engine) == HEAD
    for table, key in (("patients", "ref_key"), ("users", "username_key")):
        indexes = {i["name"]: i for i in inspect(db.engine).get_indexes(table)}
        assert indexes[f"ix_{table}_{key}"]["unique"], indexes
    with db.session() as s:
        assert [(p.ref, p.ref_key, len(p.lesions)) for p in s.scalars(
            select(Patient).order_by(Patient.id))] == [(r, casekey(r), 1) for r in refs]
        assert list(s.scalars(select(User.username_key).order_by(User.id))) == ["ana", "bo"]
        user = s.scalar(select(User).where(User.username == "ana"))
        assert user is not None
        with pytest.raises(cases.Conflict, match=r"\(as 'Straße-2': references ignore case\)"):
            cases.create_patient(s, "STRASSE-2", user)
    with pytest.raises(IntegrityError), db.engine.begin() as conn:  # the index, not the app
        conn.execute(text(f"INSERT INTO patients (ref, ref_key, created_at) VALUES "
                          f"('p-001', 'p-001', {STAMP})"))


def test_the_migration_stops_on_a_clashing_pair_and_changes_nothing(
        at_0004: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pair an earlier release let in (its SQLite lower() left É as is) is the clinic's to
    resolve: the upgrade names both values and what to do, keeps them, and can be retried."""
    db = at_0004
    _insert(db, ["admin", "ADMIN", "bo"], ["Émile-12", "émile-12", "P-1", "STRASSE-9",
                                           "straße-9"])
    with pytest.raises(ClinicConfigError) as caught:
        db.upgrade()
    message = str(caught.value)
    assert "\n" not in message
    for part in ("'Émile-12' (id 1) = 'émile-12' (id 2)", "'STRASSE-9' (id 4) = 'straße-9' "
                 "(id 5)", "usernames 'admin' (id 1) = 'ADMIN' (id 2)", "Rename all but one",
                 "docs/clinic.md", "Nothing of this revision was applied"):
        assert part in message, message
    assert "P-1" not in message
    assert "'bo'" not in message
    assert current_revision(db.engine) == "0004"
    assert "ref_key" not in {c["name"] for c in inspect(db.engine).get_columns("patients")}
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM patients")).scalar() == 5
        assert conn.execute(text("SELECT count(*) FROM lesions")).scalar() == 5
    # the server's start and the CLI say the same in one line
    with pytest.raises(ClinicConfigError, match="cannot be applied"):
        open_clinic(db.url, str(tmp_path / "images"))
    from dermsight.cli import app
    from dermsight.cli.errors import EXIT_USER, run_guarded

    assert run_guarded(app, ["clinic", "upgrade", "--database", db.url]) == EXIT_USER
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot open the database: database revision 0005"), err
    assert "'Émile-12' (id 1) = 'émile-12' (id 2)" in err
    assert "\n" not in err
    # the operator renames one of each pair; the upgrade then goes through
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE patients SET ref = 'Émile-12b' WHERE id = 2"))
        conn.execute(text("UPDATE patients SET ref = 'straße-9b' WHERE id = 5"))
        conn.execute(text("UPDATE users SET username = 'admin2' WHERE id = 2"))
    db.upgrade()
    assert current_revision(db.engine) == HEAD
    with db.session() as s:
        assert s.scalar(select(Patient.ref).where(Patient.ref_key == casekey("ÉMILE-12B"))) \
            == "Émile-12b"


# --- the search by prefix ------------------------------------------------------------------------

SEARCHED = ["Özil-1", "özil-2", "OZIL-3", "Smith_1", "Smith%2", "SmithX3", "José-4",
            _nfd("José-5"), "Jose-6", "STRASSE-7", "straße-8", "ΟΔΟΣ-9", "back\\slash-10"]


QUERIES = [
    ("ÖZ", ["Özil-1", "özil-2"]),                 # non-ASCII case: both databases alike
    ("öz", ["Özil-1", "özil-2"]),
    ("oz", ["OZIL-3"]),                           # only case folds: Ö is not O
    ("smith", ["Smith%2", "SmithX3", "Smith_1"]),
    ("SMITH_", ["Smith_1"]),                      # _ and % are literal
    ("smith%", ["Smith%2"]),
    ("Straß", ["STRASSE-7", "straße-8"]),         # ß is ss
    ("STRASSE-", ["STRASSE-7", "straße-8"]),
    ("οδοσ", ["ΟΔΟΣ-9"]),                         # final sigma
    ("JOSÉ", ["José-4", _nfd("José-5")]),         # composed or decomposed alike
    (_nfd("josé-5"), [_nfd("José-5")]),
    ("jose-", ["Jose-6"]),                        # an accent is not dropped...
    ("Jose", ["Jose-6", "José-4", _nfd("José-5")]),  # ...but may follow a prefix's last letter
    ("BACK\\", ["back\\slash-10"]),
    ("zz", []),
]


def test_prefix_search_follows_the_rule_on_both_databases(h: ClinicHarness) -> None:
    for ref in SEARCHED:
        h.patient(ref)
    got = {q: _refs(h, q) for q, _ in QUERIES}
    assert got == {q: sorted(expected) for q, expected in QUERIES}
