"""Migrations run only when asked, all or nothing, one instance at a time (SQLite and PostgreSQL):

* ``clinic sweep`` / ``purge`` (dry runs included) and ``create-user`` never migrate: a database
  at an earlier revision is refused with one line saying to stop the earlier release and run
  ``clinic upgrade`` (exit 2), and is left at its revision; ``create-user`` still creates the
  schema of a new, empty database (the documented first step);
* an upgrade that fails part-way (here: an index a later revision creates exists already) is
  undone: one line, exit 2, the database exactly as before (revision and columns), and the
  upgrade goes through once the cause is removed;
* instances upgrading one new database at once (``clinic upgrade`` processes, the first statement
  of the migration held open) all succeed: one migrates, the others wait for it and find the
  database upgraded.
"""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from clinic_support import PASSWORD
from dermsight.clinic.config import ClinicConfigError
from dermsight.clinic.db import HEAD, Database, current_revision, upgrade

OLD = "0005"


def _run(args: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None,
         monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    from dermsight.cli import app
    from dermsight.cli.errors import run_guarded

    if stdin is not None and monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = run_guarded(app, args)
    out, err = capsys.readouterr()
    return code, out, err.strip()


def _columns(engine: Engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def _schema(db: Database) -> list[tuple[str, ...]]:
    """Every table, column and index, as the database describes them."""
    insp = inspect(db.engine)
    rows: list[tuple[str, ...]] = []
    for table in sorted(insp.get_table_names()):
        rows += [(table, "column", c["name"], str(c["type"]), str(c["nullable"]))
                 for c in insp.get_columns(table)]
        rows += [(table, "index", str(i["name"]), ",".join(map(str, i["column_names"])))
                 for i in insp.get_indexes(table)]
    return sorted(rows)


@pytest.fixture
def at_old(db_url: str) -> Iterator[Database]:
    db = Database(db_url)
    upgrade(db.engine, OLD)
    yield db
    db.dispose()


# --- commands that look or change rows never migrate ---------------------------------------------

NEEDS = (f"error: cannot open the database: the database is at revision {OLD}, this release "
         f"needs {HEAD}: stop the running instances of the earlier release and run `dermsight "
         "clinic upgrade`")


@pytest.mark.parametrize("command", [
    ["clinic", "sweep", "--dry-run"],
    ["clinic", "sweep", "--yes"],
    ["clinic", "purge", "--dry-run", "--retention-days", "30"],
    ["clinic", "purge", "--retention-days", "30"],
    ["clinic", "create-user", "--username", "admin", "--role", "admin", "--password-stdin"],
])
def test_a_command_on_an_older_database_refuses_and_leaves_it_alone(
        at_old: Database, command: list[str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    db = at_old
    before = _schema(db)
    args = [*command, "--database", db.url]
    if command[1] != "create-user":
        args += ["--images", str(tmp_path / "images")]
    code, out, err = _run(args, capsys, stdin=PASSWORD + "\n", monkeypatch=monkeypatch)
    assert (code, err) == (2, NEEDS), (out, err)
    assert "unreferenced" not in out
    assert "created" not in out
    assert current_revision(db.engine) == OLD
    assert "expires_at" not in _columns(db.engine, "api_tokens")  # revision 0007's column
    assert _schema(db) == before


def test_a_database_newer_than_the_code_is_refused_by_sweep(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = Database(db_url)
    db.upgrade()
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    code, _out, err = _run(["clinic", "sweep", "--dry-run", "--database", db_url, "--images",
                            str(tmp_path / "images")], capsys)
    assert code == 2
    assert err == ("error: cannot open the database: the database is at revision 0099, newer "
                   f"than this dermsight (head {HEAD}): run the newer version, or restore a "
                   "backup made for this one")
    db.dispose()


def test_the_first_account_still_creates_a_new_database(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented first step (docs/clinic.md, 'Turning it on'); sweep and purge do not
    create one: an empty database is refused, a SQLite file that does not exist is not made."""
    images = str(tmp_path / "images")
    if db_url.startswith("sqlite"):
        missing = tmp_path / "typo.db"
        code, _out, err = _run(["clinic", "sweep", "--dry-run", "--database",
                                f"sqlite:///{missing}", "--images", images], capsys)
        assert code == 2
        assert err == (f"error: cannot open the database: the file {missing} does not exist "
                       "(check --database; a new clinic starts with `dermsight clinic "
                       "create-user`)")
        assert not missing.exists()
        sqlite3.connect(tmp_path / "clinic.db").close()  # an empty file
    code, _out, err = _run(["clinic", "purge", "--dry-run", "--retention-days", "30",
                            "--database", db_url, "--images", images], capsys)
    assert code == 2
    assert err == ("error: cannot open the database: the database is empty (no clinic tables "
                   "yet): run `dermsight clinic upgrade` first")
    code, out, err = _run(["clinic", "create-user", "--database", db_url, "--username", "admin",
                           "--role", "admin", "--password-stdin"], capsys,
                          stdin=PASSWORD + "\n", monkeypatch=monkeypatch)
    assert code == 0, err
    assert "created admin 'admin'" in out
    db = Database(db_url)
    assert current_revision(db.engine) == HEAD
    db.dispose()
    code, out, err = _run(["clinic", "sweep", "--dry-run", "--database", db_url, "--images",
                           images], capsys)
    assert code == 0, err
    assert out.startswith("0 unreferenced files")


# --- an upgrade is all or nothing ----------------------------------------------------------------


@pytest.mark.parametrize(("index", "on"), [
    ("ix_users_username_key", "users (username)"),  # revision 0005, the first one to apply
    ("ix_audit_events_patient_id", "audit_events (at)"),  # 0008: after 0005-0007 are applied
])
def test_a_failed_upgrade_changes_nothing_and_can_be_retried(
        db_url: str, index: str, on: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = Database(db_url)
    upgrade(db.engine, "0004")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO users (username, password_hash, role, active, "
                          "created_at) VALUES ('ana', 'x', 'admin', true, "
                          "'2026-01-02T03:04:05+00:00')"))
        conn.execute(text(f"CREATE INDEX {index} ON {on}"))  # what the upgrade will clash with
    before = _schema(db)
    code, _out, err = _run(["clinic", "upgrade", "--database", db_url], capsys)
    assert code == 2, err
    assert "\n" not in err
    assert err.startswith(f"error: cannot open the database: the upgrade from revision 0004 to "
                          f"{HEAD} failed and was undone, the database is unchanged: "), err
    assert index in err
    assert "Traceback" not in err
    assert current_revision(db.engine) == "0004"
    assert "username_key" not in _columns(db.engine, "users")
    assert "ref_key" not in _columns(db.engine, "patients")
    assert _schema(db) == before
    with pytest.raises(ClinicConfigError, match="failed and was undone"):  # the server's start
        db.upgrade()
    assert _schema(db) == before
    # the operator removes the cause: the upgrade goes through, the rows kept
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {index}"))
    code, out, err = _run(["clinic", "upgrade", "--database", db_url], capsys)
    assert code == 0, err
    assert out.strip() == f"clinic database at revision {HEAD}"
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT username_key FROM users")).scalars().all() == ["ana"]
    db.dispose()


# --- instances upgrading at once -----------------------------------------------------------------

#: one instance: ``dermsight clinic upgrade`` in a process of its own, started at a given moment;
#: whatever creates the version table first waits there HOLD_S: long enough for the other
#: instances to have read the revision (none) and be on their way to creating it too, unless
#: something keeps them out
INSTANCE = """
import sys, time
from sqlalchemy import Engine, event

start, held, url = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]

def hold(_conn, _cursor, statement, *_args):
    if statement.lstrip().upper().startswith("CREATE TABLE ALEMBIC_VERSION"):
        time.sleep(held)

event.listen(Engine, "before_cursor_execute", hold)
time.sleep(max(0.0, start - time.time()))
sys.argv = ["dermsight", "clinic", "upgrade", "--database", url]
from dermsight.cli import main
main()
"""
INSTANCES, HOLD_S, START_IN_S = 4, 0.5, 4.0


def test_instances_upgrading_a_new_database_at_once_all_succeed(db_url: str) -> None:
    at = time.time() + START_IN_S  # all read the revision within milliseconds of each other
    procs = [subprocess.Popen([sys.executable, "-c", INSTANCE, str(at), str(HOLD_S), db_url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(INSTANCES)]
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    for out, err, code in results:
        assert code == 0, err[-2000:]
        assert out.strip() == f"clinic database at revision {HEAD}"
    db = Database(db_url)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() \
            == [HEAD]
    db.dispose()
