"""Patient references equal ignoring case are one patient in every script, on SQLite and
PostgreSQL alike, through the real clinic API: case folded by Unicode's rules (``Özil`` is
``özil``, ``STRASSE`` is ``straße``, ``ΟΔΟΣ`` is ``οδος``), an accented letter composed or
decomposed the same, other accents still apart; the database itself refuses a second spelling;
usernames take the same rule (``dermsight.clinic.db.taken_ignoring_case``)."""

from __future__ import annotations

import unicodedata

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from clinic_support import PASSWORD, ClinicHarness
from dermsight.clinic import accounts, cases
from dermsight.clinic.models import Patient, User

NFD_E_ACUTE = "e\u0301"  # "é" as e + combining acute accent (macOS file names, some keyboards)


def _nfd(s: str) -> str:
    return unicodedata.normalize("NFD", s)


@pytest.fixture
def h(harness: ClinicHarness) -> ClinicHarness:
    harness.add_user("ana")
    harness.login("ana")
    return harness


def _refs(h: ClinicHarness) -> list[str]:
    return sorted(p["ref"] for p in h.get("/patients").json())


@pytest.mark.parametrize(("first", "again"), [
    ("Özil-7", "özil-7"),
    ("ÉMILE-2", "émile-2"),
    ("Émile-3", _nfd("Émile-3")),          # the same letters, decomposed
    ("Émile-4", _nfd("émile-4")),          # decomposed and in the other case
    (_nfd("Émile-5"), "ÉMILE-5"),          # stored decomposed, given composed
    ("STRASSE-8", "straße-8"),             # full case folding: ß is ss
    ("ΟΔΟΣ-9", "οδος-9"),                  # final sigma folds like the other sigma
    ("\u212a-10", "k-10"),                 # KELVIN SIGN folds to k
])
def test_a_unicode_case_variant_is_the_same_patient(h: ClinicHarness, first: str,
                                                    again: str) -> None:
    h.patient(first)
    r = h.post("/patients", json={"ref": again})
    assert r.status_code == 409, (first, again, r.text)
    detail = r.json()["detail"]
    assert "exists already" in detail
    assert f"(as {first!r}: references ignore case)" in detail  # names the spelling stored
    r = h.post("/patients", json={"ref": f"  {again}  "})  # surrounding spaces ignored too
    assert r.status_code == 409, r.text
    assert _refs(h) == [first]


def test_other_letters_stay_apart(h: ClinicHarness) -> None:
    """Folding is by case only: accents and dotless i are other references. (A fullwidth form,
    ``\uff30-3`` beside ``P-3``, is refused as a look-alike since the look-alike rule:
    ``test_clinic_input_hardening.py``.)"""
    refs = ["Émile-1", "Emile-1", "Èmile-1", "\u0131-2", "i-2", "P-3",
            f"{NFD_E_ACUTE}-4", "e-4"]
    for ref in refs:
        h.patient(ref)
    assert _refs(h) == sorted(refs)
    assert h.post("/patients", json={"ref": "\uff30-3"}).status_code == 409


def test_the_service_function_refuses_and_names_the_stored_spelling(
        h: ClinicHarness) -> None:
    """``cases.create_patient`` (what the API calls) on its own, and the shared lookup."""
    from dermsight.clinic.db import casekey, taken_ignoring_case

    with h.clinic.db.session() as s:
        user = s.scalar(select(User).where(User.username == "ana"))
        assert user is not None
        cases.create_patient(s, "Ångström-11", user)
    with h.clinic.db.session() as s:
        user = s.scalar(select(User).where(User.username == "ana"))
        assert user is not None
        with pytest.raises(cases.Conflict, match="Ångström-11"):
            cases.create_patient(s, _nfd("ÅNGSTRÖM-11"), user)
        assert taken_ignoring_case(s, Patient.ref, "ångström-11") == "Ångström-11"
        assert taken_ignoring_case(s, Patient.ref, "angstrom-11") is None
        assert taken_ignoring_case(s, User.username, "ANA") == "ana"  # usernames: one rule
    assert casekey("Straße") == casekey("STRASSE") == "strasse"


def test_a_second_spelling_is_refused_by_the_database_too(h: ClinicHarness) -> None:
    """A pair an earlier release could store (its SQLite lower() left É as is) can no longer be
    written, even past the check: the unique index on the folded key refuses it (revision 0005;
    a database that already holds one stops its upgrade: test_clinic_casekey_index.py)."""
    with h.clinic.db.session() as s:
        s.add(Patient(ref="Émile-12"))
    with pytest.raises(IntegrityError), h.clinic.db.session() as s:
        s.add(Patient(ref="émile-12"))
    assert _refs(h) == ["Émile-12"]
    r = h.post("/patients", json={"ref": _nfd("ÉMILE-12")})
    assert r.status_code == 409, r.text
    assert "(as 'Émile-12': references ignore case)" in r.json()["detail"]
    assert h.patient("Émile-13") > 0  # a new reference is still created


def test_sqlite_connections_know_the_fold(h: ClinicHarness) -> None:
    """On SQLite the comparison runs in SQL with the same Python function (registered on every
    connection, the migrations' too); PostgreSQL answers the same through its own path."""
    if h.clinic.db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only: PostgreSQL has no Python function to register")
    with h.clinic.db.engine.connect() as conn:
        got = conn.execute(text("SELECT dermsight_casekey(:a) = dermsight_casekey(:b), "
                                "dermsight_casekey(NULL)"),
                           {"a": "ÉMILE", "b": f"{NFD_E_ACUTE}mile"}).one()
    assert tuple(got) == (1, None)


def test_usernames_remain_ascii_and_fold_alike(h: ClinicHarness) -> None:
    """Usernames are ASCII letters, digits and ``._-@`` only, so a Unicode case pair cannot be
    made; the ASCII case variants are refused as before, now through the shared lookup."""
    with h.clinic.db.session() as s:
        with pytest.raises(accounts.AccountError, match="a username is"):
            accounts.create_user(s, "Özil", PASSWORD, "clinician")
        with pytest.raises(accounts.AccountExists, match="usernames ignore case"):
            accounts.create_user(s, "ANA", PASSWORD, "clinician")
