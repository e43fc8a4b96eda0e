"""What an administrator meets when the clinic's storage or its environment is not right: one
line and exit 2, never a traceback, and a server start that says which database it uses.

1. a database locked by another process (``BEGIN IMMEDIATE`` held): ``create-user``,
   ``set-password``, ``unlock`` print one line (no SQL, no password hash), exit 2;
2. an image store that cannot be opened (S3 without credentials): ``Clinic.open`` raises
   ``ClinicConfigError`` naming the store and the client's error; ``clinic sweep`` exits 2;
3. ``serve`` logs the database it uses (absolute path; a URL's password masked) and warns when
   it creates a new, empty SQLite file;
4. an upgrade whose COMMIT fails (a full disk) says it failed and was undone;
5. a misspelt ``DERMSIGHT_*`` variable stops ``dermsight clinic`` commands too;
6. a question with no terminal to answer it (cron's stdin) is refused up front, exit 2;
7. an upgrade does not log Alembic's lines about itself ("Will assume non-transactional DDL").
"""

from __future__ import annotations

import io
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clinic_support import PASSWORD

pytest.importorskip("sqlalchemy")


def _run(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
         stdin: str = "") -> tuple[int, str, str]:
    """``dermsight ARGS`` as the console script runs it, with ``stdin`` (not a terminal)."""
    from dermsight.cli import app
    from dermsight.cli.errors import run_guarded

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = run_guarded(app, args)
    out, err = capsys.readouterr()
    return code, out, err.strip()


@pytest.fixture
def db_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clinic database at this release's revision with one admin, ``ana``."""
    path = tmp_path / "clinic.db"
    code, _out, err = _run(["clinic", "create-user", "--database", str(path), "--username",
                            "ana", "--role", "admin", "--password-stdin"], capsys, monkeypatch,
                           PASSWORD + "\n")
    assert code == 0, err
    return path


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Another process's write lock on ``path`` (an open ``BEGIN IMMEDIATE``)."""
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# --- 1. a locked database ------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["create-user", "--username", "bob", "--password-stdin"],
    ["set-password", "ana", "--password-stdin"],
    ["unlock", "ana"],
])
def test_a_locked_database_is_one_line_without_sql_or_hash(
        db_file: Path, args: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dermsight.clinic import db

    monkeypatch.setattr(db, "SQLITE_LOCK_TIMEOUT_S", 1)
    with _locked(db_file):
        code, out, err = _run(["clinic", *args, "--database", str(db_file)], capsys, monkeypatch,
                              "violet harbor teapot 56\n")
    assert code == 2, err
    assert err.startswith("error: database error: database is locked (another process"), err
    assert "\n" not in err
    for secret in ("argon2", "INSERT", "UPDATE", "DELETE", "[SQL", "parameters", "Traceback"):
        assert secret not in out + err


# --- 2. an image store that cannot be opened -----------------------------------------------------


class _NoCredentials(Exception):
    """botocore's ``NoCredentialsError`` when botocore is not installed."""

    def __str__(self) -> str:
        return "Unable to locate credentials"


def _no_credentials() -> Exception:
    try:
        from botocore.exceptions import NoCredentialsError
    except ImportError:
        return _NoCredentials()
    return NoCredentialsError()


def test_an_image_store_without_credentials_is_a_config_error(
        db_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    from dermsight.clinic.config import ClinicConfig, ClinicConfigError
    from dermsight.clinic.runtime import Clinic

    error = _no_credentials()

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(fsspec.core, "url_to_fs", refuse)
    config = ClinicConfig(database_url=f"sqlite:///{db_file}", images="s3://bucket/x")
    with pytest.raises(ClinicConfigError) as raised:
        Clinic.open(config)
    assert str(raised.value) == (f"cannot open the clinic image store s3://bucket/x: "
                                 f"{type(error).__name__}: Unable to locate credentials")


def test_a_bug_in_opening_the_image_store_keeps_its_traceback(
        db_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    from dermsight.clinic.config import ClinicConfig
    from dermsight.clinic.runtime import Clinic

    def bug(*_args: Any, **_kwargs: Any) -> Any:
        raise TypeError("a bug")

    monkeypatch.setattr(fsspec.core, "url_to_fs", bug)
    with pytest.raises(TypeError, match="a bug"):
        Clinic.open(ClinicConfig(database_url=f"sqlite:///{db_file}", images="s3://bucket/x"))


def test_sweep_with_an_image_store_without_credentials_is_one_line(
        db_file: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    error = _no_credentials()

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(fsspec.core, "url_to_fs", refuse)
    code, _out, err = _run(["clinic", "sweep", "--dry-run", "--database", str(db_file),
                            "--images", "s3://bucket/x"], capsys, monkeypatch)
    assert code == 2, err
    assert err == ("error: cannot open the clinic image store s3://bucket/x: "
                   f"{type(error).__name__}: Unable to locate credentials")


# --- 3. serve names its database and warns of a new one ------------------------------------------


def _serve(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
           ) -> int:
    """``dermsight serve ARGS`` up to its start-up lines: no model load, no port served (the
    fake ``serve_app`` opens the database, as the app's lifespan does, then says it is ready)."""
    from dermsight.clinic.db import Database
    from dermsight.web import app as web_app
    from dermsight.web import server
    from dermsight.web.settings import SERVE_LOGGER

    fake = SimpleNamespace(state=SimpleNamespace(
        model=SimpleNamespace(card=SimpleNamespace(name="model", version="1"))))

    def serve_app(_app: Any, _host: str, _port: int, settings: Any,
                  on_ready: Any = None) -> None:
        Database(settings.clinic.database_url).dispose()  # creates a missing SQLite file
        on_ready()

    monkeypatch.setattr(server, "serve_app", serve_app)
    monkeypatch.setattr(server, "configure_logging", lambda _level: None)
    monkeypatch.setattr(server, "limit_malloc_arenas", lambda: True)
    monkeypatch.setattr(web_app, "create_app", lambda _settings: fake)
    monkeypatch.setattr(logging.getLogger(SERVE_LOGGER), "propagate", True)
    code, _out, err = _run(["serve", "--port", "0", *args], capsys, monkeypatch)
    assert code == 0, err
    return code


def test_serve_warns_when_it_creates_a_new_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "ty").mkdir()
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    _serve(["--database", "ty/clinc.db"], monkeypatch, capsys)
    path = (tmp_path / "ty" / "clinc.db").resolve()
    assert path.exists()
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("INFO", f"clinic database: {path} (images: {path.with_name('clinc-images')})") in said
    assert ("WARNING", f"created a new, empty clinic database at {path} (check --database if "
                       "you expected existing records)") in said


def test_serve_names_an_existing_database_without_a_warning(
        db_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    _serve(["--database", str(db_file)], monkeypatch, capsys)
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("INFO", f"clinic database: {db_file.resolve()} (images: "
                    f"{db_file.resolve().with_name('clinic-images')})") in said
    assert not [m for level, m in said if level == "WARNING" and "created" in m]


def test_the_logged_database_and_image_store_hide_passwords() -> None:
    from dermsight.cli.serve import database_shown, images_shown

    assert (database_shown("postgresql+psycopg://derm:s3cret@db.example/dermsight")
            == "postgresql+psycopg://derm:***@db.example/dermsight")
    shown = database_shown("postgresql+psycopg://derm@db/dermsight?password=s3cret")
    assert "s3cret" not in shown
    assert images_shown("s3://key:s3cret@bucket/x") == "s3://key:***@bucket/x"
    assert images_shown("s3://bucket/x") == "s3://bucket/x"
    # a review found these shown: another libpq password key, an '@' in the password
    assert "s3cret" not in database_shown("postgresql+psycopg://u@h/db?sslpassword=s3cret")
    shown = database_shown("postgresql+psycopg://u:p@s3cret@h/db")
    assert "s3cret" not in shown
    assert "not shown" in shown


def test_only_database_faults_become_one_line() -> None:
    """A locked or unreachable database is the operator's to fix (one line, exit 2); a query
    dermsight built wrongly is a fault of dermsight's and keeps its traceback."""
    from sqlalchemy.exc import InvalidRequestError, OperationalError, ProgrammingError

    from dermsight.cli.clinic import _database_errors
    from dermsight.cli.errors import UserError

    with pytest.raises(UserError, match="database is locked"), _database_errors():
        raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    with pytest.raises(InvalidRequestError), _database_errors():
        raise InvalidRequestError('Entity namespace for "users" has no property "usernme"')
    with pytest.raises(ProgrammingError), _database_errors():
        raise ProgrammingError("SELECT x", {}, sqlite3.OperationalError("no such column: x"))


# --- 4. a COMMIT that fails ends the upgrade with its own message --------------------------------


def test_an_upgrade_whose_commit_fails_says_it_was_undone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.engine.default import DefaultDialect

    from dermsight.clinic.config import ClinicConfigError
    from dermsight.clinic.db import HEAD, Database, current_revision, table_names

    db = Database(f"sqlite:///{tmp_path / 'clinic.db'}")

    def full(_self: Any, _dbapi_connection: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(DefaultDialect, "do_commit", full)
    with pytest.raises(ClinicConfigError) as raised:
        db.upgrade()
    monkeypatch.undo()
    assert str(raised.value) == (
        f"the upgrade from revision none (a new database) to {HEAD} failed and was undone, the "
        "database is unchanged: (sqlite3.OperationalError) database or disk is full")
    assert current_revision(db.engine) is None
    assert not table_names(db.engine)
    db.dispose()


# --- 5. a misspelt DERMSIGHT_* variable ----------------------------------------------------------


def test_a_misspelt_variable_stops_clinic_commands(
        db_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    misspelt = "DERMSIGHT_CLINIC_IMAGES"[:-1]  # not spelt out: the known-names test reads this
    monkeypatch.setenv(misspelt, str(tmp_path / "real-images"))
    code, out, err = _run(["clinic", "sweep", "--dry-run", "--database", str(db_file)], capsys,
                          monkeypatch)
    assert code == 2, out
    assert err.startswith(f"error: unknown environment variable {misspelt}: did you mean "
                          "DERMSIGHT_CLINIC_IMAGES?")
    assert "\n" not in err


# --- 6. no terminal to answer a question ---------------------------------------------------------


def test_sweep_without_yes_and_without_a_terminal_is_refused(
        db_file: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = _run(["clinic", "sweep", "--database", str(db_file)], capsys, monkeypatch)
    assert code == 2, out
    assert err == ("error: stdin is not a terminal: add --yes to delete without asking (or "
                   "--dry-run to list)")
    assert out == ""


def test_create_user_without_a_terminal_needs_password_stdin(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "clinic.db"
    code, _out, err = _run(["clinic", "create-user", "--database", str(path), "--username",
                            "bob"], capsys, monkeypatch, f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 2, err
    assert err == ("error: stdin is not a terminal: give the password as the first line of "
                   "stdin with --password-stdin, or run the command in a terminal")
    assert not path.exists()


def test_set_password_without_a_terminal_needs_password_stdin(
        db_file: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, _out, err = _run(["clinic", "set-password", "ana", "--database", str(db_file)],
                           capsys, monkeypatch, f"{PASSWORD}x\n{PASSWORD}x\n")
    assert code == 2, err
    assert err.startswith("error: stdin is not a terminal: give the password")


def test_at_a_terminal_sweep_is_not_refused(
        db_file: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dermsight.cli import clinic

    monkeypatch.setattr(clinic, "_stdin_is_terminal", lambda: True)
    code, out, err = _run(["clinic", "sweep", "--database", str(db_file)], capsys, monkeypatch)
    assert code == 0, err
    assert out.startswith("0 unreferenced files")


# --- 7. no Alembic INFO lines about Alembic itself -----------------------------------------------


def test_an_upgrade_logs_no_alembic_noise(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """"Will assume non-transactional DDL" (twice per start) and "Context impl" are not logged;
    the lines naming each migration are."""
    from dermsight.clinic.db import Database

    caplog.set_level(logging.INFO)
    db = Database(f"sqlite:///{tmp_path / 'clinic.db'}")
    db.upgrade()
    db.upgrade()  # nothing to do
    db.dispose()
    messages = [r.getMessage() for r in caplog.records]
    noise = [m for m in messages
             if "transactional DDL" in m or "setup plugin" in m or "Context impl" in m]
    assert noise == []
    assert [m for m in messages if m.startswith("Running upgrade  -> 0001, ")]
