"""``dermsight clinic upgrade | create-user | set-password | unlock | disable | enable | purge |
sweep``: administer the clinic database.

Each command takes ``--database URL`` (else ``DERMSIGHT_DATABASE_URL``); a PostgreSQL database
also needs the image folder (``--images`` / ``DERMSIGHT_CLINIC_IMAGES``) for ``purge`` and
``sweep``. User
errors (bad URL, taken username, weak password, unknown user), a database that refuses the work
(locked by another process: ``_database_errors``), an unknown ``DERMSIGHT_*`` variable close to
a known one, and a question with no terminal to answer it (``_stdin_is_terminal``) print one
line and exit 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from dermsight.cli.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session as DbSession

    from dermsight.clinic.accounts import Ended
    from dermsight.clinic.config import ClinicConfig
    from dermsight.clinic.db import Database
    from dermsight.clinic.models import User

clinic_app = typer.Typer(help="Clinic case storage: migrations, accounts, retention, image sweep.",
                         no_args_is_help=True)

DatabaseOpt = Annotated[str | None, typer.Option(
    "--database", help="database: a file path, sqlite:///path or postgresql+psycopg://... "
                       "(default: $DERMSIGHT_DATABASE_URL)")]
ImagesOpt = Annotated[str | None, typer.Option(
    "--images", help="image folder or s3://bucket/prefix (default: $DERMSIGHT_CLINIC_IMAGES, "
                     "for SQLite a folder beside the database file)")]


def _config(database: str | None, images: str | None = None,
            retention_days: int | None = None, require_images: bool = True) -> ClinicConfig:
    from dermsight.clinic.config import ClinicConfig, ClinicConfigError
    from dermsight.web.settings import unknown_variable_refusal

    # a misspelt DERMSIGHT_* name (the image folder's without its S) would be ignored: refused,
    # as by serve
    if (why := unknown_variable_refusal(os.environ)) is not None:
        raise UserError(why)
    try:
        config = ClinicConfig.resolve(database=database, images=images,
                                      retention_days=retention_days,
                                      require_images=require_images)
    except ClinicConfigError as exc:
        raise UserError(str(exc)) from exc
    if config is None:
        raise UserError("no database: give --database URL or set DERMSIGHT_DATABASE_URL")
    return config


def _stdin_is_terminal() -> bool:
    """Whether stdin is a terminal, where someone can answer a question (not cron's
    ``/dev/null``, a pipe or a file)."""
    return sys.stdin is not None and sys.stdin.isatty()


def _require_terminal(why: str) -> None:
    """``UserError`` (exit 2, before any work) when a question would be asked with no terminal
    to answer it: it would read the end of input and stop as if interrupted (exit 130)."""
    if not _stdin_is_terminal():
        raise UserError(f"stdin is not a terminal: {why}")


def _database_error(exc: SQLAlchemyError) -> str:
    """One line for a database that refused the work: the driver's message (its first line),
    never the SQL statement or its parameters (a new password's hash)."""
    from dermsight.clinic.db import SQLITE_LOCK_TIMEOUT_S

    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    detail = text.splitlines()[0] if text else type(cause).__name__
    if "locked" in detail:  # SQLite: another connection kept its write lock past the wait
        detail += (f" (another process, such as a dermsight upgrade or purge or an sqlite3 "
                   f"shell, kept it locked for {SQLITE_LOCK_TIMEOUT_S} s; try again)")
    return f"database error: {detail}"


@contextmanager
def _database_errors() -> Iterator[None]:
    """Around a command's work on the database: an ``OperationalError`` or ``InterfaceError``
    (a database locked by another process, a lost connection, a full disk) becomes one line
    (``_database_error``), exit 2. Other SQLAlchemy errors (a query the code built wrongly, a
    column the schema lacks: ``ProgrammingError``, ``InvalidRequestError``) are faults of
    dermsight's, not the operator's: they keep their traceback."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        raise UserError(_database_error(exc)) from None  # the statement stays out of any log


def _database(config: ClinicConfig, migrate: bool = False, create: bool = False) -> Database:
    """Connect. ``migrate`` (``clinic upgrade``): bring the schema to this release's. Otherwise
    the database must be at it already (``db.require_current``: one line saying to run
    ``clinic upgrade``), so that a command that looks or changes rows never migrates behind the
    back of running instances; ``create`` (``create-user``, the documented first step of a new
    clinic) also creates the schema of an empty database. Without either, a SQLite file that
    does not exist is refused rather than created empty."""
    from sqlalchemy.exc import SQLAlchemyError

    from dermsight.clinic.config import ClinicConfigError, sqlite_path
    from dermsight.clinic.db import Database, current_revision, require_current, table_names

    path = sqlite_path(config.database_url)
    if not (migrate or create) and path is not None and not path.exists():
        raise UserError(f"cannot open the database: the file {path} does not exist (check "
                        "--database; a new clinic starts with `dermsight clinic create-user`)")
    try:
        db = Database(config.database_url)
    except (ClinicConfigError, SQLAlchemyError) as exc:
        raise UserError(f"cannot open the database: {str(exc).splitlines()[0]}") from exc
    try:
        if migrate or (create and current_revision(db.engine) is None
                       and not table_names(db.engine)):
            db.upgrade()
        else:
            require_current(db.engine)
    except (ClinicConfigError, SQLAlchemyError) as exc:
        db.dispose()
        raise UserError(f"cannot open the database: {str(exc).splitlines()[0]}") from exc
    return db


@clinic_app.command("upgrade")
def upgrade(database: DatabaseOpt = None) -> None:
    """Create or migrate the clinic database to the current schema (idempotent)."""
    from dermsight.clinic.db import current_revision

    db = _database(_config(database, require_images=False), migrate=True)
    typer.echo(f"clinic database at revision {current_revision(db.engine)}")
    db.dispose()


@clinic_app.command("create-user")
def create_user(
    username: Annotated[str, typer.Option("--username", help="login name")],
    role: Annotated[str, typer.Option("--role", help="clinician | admin")] = "clinician",
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="read the password from the first line of stdin")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Create an account (the first one: --role admin). Asks for the password."""
    from dermsight.clinic import accounts, audit

    config = _config(database, require_images=False)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        _require_terminal(_NO_PASSWORD_PROMPT)
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    db = _database(config, create=True)
    try:
        with _database_errors(), db.session() as s:
            user = accounts.create_user(s, username, password, role)
            audit.record(s, None, "create", "user", user.id)
    except accounts.AccountError as exc:
        raise UserError(str(exc)) from exc
    finally:
        db.dispose()
    typer.echo(f"created {user.role} {user.username!r} (id {user.id})")


#: why a password is not asked for when stdin is not a terminal
_NO_PASSWORD_PROMPT = ("give the password as the first line of stdin with --password-stdin, or "
                       "run the command in a terminal")

# --- account administration: set-password, unlock, disable, enable ------------------------------

UserArg = Annotated[str, typer.Argument(
    metavar="USER", help="the account's user name (any case, as at sign-in)")]


def _account(s: DbSession, username: str) -> User:
    """The account ``username`` names (ignoring case, as login finds it); one line and exit 2
    when there is none."""
    from dermsight.clinic import accounts

    user = accounts.find_user(s, username)
    if user is None:
        raise UserError(f"no user named {username.strip()!r} in this database (usernames "
                        "ignore case; the admin page lists them)")
    return user


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ended(ended: Ended) -> str:
    def n(count: int, what: str) -> str:
        return f"{count} {what}" if count == 1 else f"{count} {what}s"

    return f"ended {n(ended.sessions, 'session')} and revoked {n(ended.tokens, 'API token')}"


@clinic_app.command("set-password")
def set_password(
    username: UserArg,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="read the password from the first line of stdin")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Give an account a new password (asked for twice; the rules of create-user). Ends all
    its sessions and revokes its API tokens."""
    from dermsight.clinic import accounts, audit

    config = _config(database, require_images=False)
    if not password_stdin:
        _require_terminal(_NO_PASSWORD_PROMPT)
    db = _database(config)
    try:
        with _database_errors(), db.session() as s:
            name = _account(s, username).username
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
        with _database_errors(), db.session() as s:
            user = _account(s, username)
            ended = accounts.set_password(s, user, password)
            audit.record(s, None, "set_password", "user", user.id)
            locked = accounts.locked_until(s, [user.username]).get(user.username)
    except accounts.AccountError as exc:
        raise UserError(str(exc)) from exc
    finally:
        db.dispose()
    typer.echo(f"new password set for {name!r}; {_ended(ended)}")
    if locked is not None:
        typer.echo(f"{name!r} is still locked by its failed logins until {_utc(locked)}: "
                   f"`dermsight clinic unlock {name}` ends the lock now")


@clinic_app.command("unlock")
def unlock(username: UserArg, database: DatabaseOpt = None) -> None:
    """Clear an account's failed logins, which ends a lock they put on it (5 within 15
    minutes). A lock of a client address (20 failures from it) is not an account's and
    stays."""
    from dermsight.clinic import accounts, audit

    db = _database(_config(database, require_images=False))
    try:
        with _database_errors(), db.session() as s:
            user = _account(s, username)
            until = accounts.locked_until(s, [user.username]).get(user.username)
            accounts.unlock(s, user)
            audit.record(s, None, "unlock", "user", user.id)
            name = user.username
    finally:
        db.dispose()
    if until is None:
        typer.echo(f"{name!r} was not locked (its recent failed logins are cleared)")
    else:
        typer.echo(f"unlocked {name!r} (it was locked until {_utc(until)})")


@clinic_app.command("disable")
def disable(username: UserArg, database: DatabaseOpt = None) -> None:
    """Disable an account: it can no longer sign in; all its sessions end and its API tokens
    are revoked (enable brings none of them back)."""
    from dermsight.clinic import accounts, audit

    db = _database(_config(database, require_images=False))
    try:
        with _database_errors(), db.session() as s:
            user = _account(s, username)
            ended = accounts.disable(s, user)
            audit.record(s, None, "disable", "user", user.id)
            name = user.username
    except accounts.AccountError as exc:
        raise UserError(str(exc)) from exc
    finally:
        db.dispose()
    typer.echo(f"disabled {name!r}; {_ended(ended)}")


@clinic_app.command("enable")
def enable(username: UserArg, database: DatabaseOpt = None) -> None:
    """Let a disabled account sign in again (with its password; no earlier session or API
    token comes back)."""
    from dermsight.clinic import accounts, audit

    db = _database(_config(database, require_images=False))
    try:
        with _database_errors(), db.session() as s:
            user = _account(s, username)
            was_active = user.active
            if not was_active:
                accounts.enable(s, user)
                audit.record(s, None, "enable", "user", user.id)
            name = user.username
    finally:
        db.dispose()
    if was_active:
        typer.echo(f"{name!r} is active already: nothing changed")
    else:
        typer.echo(f"enabled {name!r}: it signs in with its password (no earlier session or "
                   "API token comes back)")


@clinic_app.command("purge")
def purge(
    retention_days: Annotated[int | None, typer.Option(
        "--retention-days", min=1,
        help="delete visits stored more than this many days ago (default: "
             "$DERMSIGHT_RETENTION_DAYS)")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="list what would be deleted (counts and ids), delete nothing")] = False,
    database: DatabaseOpt = None,
    images: ImagesOpt = None,
) -> None:
    """Delete visits past the retention period, with their image files, then lesions left
    without visits or a diagnosis and patients left without lesions (emptied by this purge, or
    created before the retention period and empty)."""
    from dermsight.clinic.retention import purge_once
    from dermsight.clinic.rights import purge_plan
    from dermsight.clinic.runtime import Clinic

    config = _config(database, images, retention_days)
    if config.retention_days is None:
        raise UserError("no retention period: give --retention-days N or set "
                        "DERMSIGHT_RETENTION_DAYS")
    _database(config).dispose()  # at this release's revision, else refused: never migrated
    clinic = Clinic.open(config, migrate=False, sweep=False)
    with closing(clinic), _database_errors():
        if dry_run:
            plan = purge_plan(clinic, config.retention_days, dry_run=True)
        else:
            done = purge_once(clinic, config.retention_days)  # takes turns with running servers
    if dry_run:
        typer.echo(f"dry run, nothing deleted: {plan.counts('would purge')} (visits stored "
                   f"more than {config.retention_days} days ago; lesions and patients left "
                   "empty, by this purge or created that long ago)")
        for name, ids in (("visit", plan.visit_ids), ("lesion", plan.lesion_ids),
                          ("patient", plan.patient_ids)):
            if ids:
                typer.echo(f"{name} ids: {' '.join(map(str, ids))}")
        return
    if done is None:
        typer.echo("another instance is purging right now: nothing done")
        return
    typer.echo(f"{done.counts()} (visits stored more than {config.retention_days} days ago; "
               "lesions and patients left empty, by this purge or created that long ago)")


@clinic_app.command("sweep")
def sweep(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="list the unreferenced image files, delete nothing")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="delete without asking")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="delete even when the files look like a database/image store "
                        "mismatch (e.g. an older database backup)")] = False,
    database: DatabaseOpt = None,
    images: ImagesOpt = None,
) -> None:
    """List or delete the image files no visit references (older than
    $DERMSIGHT_CLINIC_SWEEP_GRACE_S). Only the store's own files are ever deleted."""
    from dermsight.clinic.runtime import Clinic

    config = _config(database, images)
    if not (yes or dry_run):  # cron's stdin: the question would read its end, as a Ctrl-C
        _require_terminal("add --yes to delete without asking (or --dry-run to list)")
    _database(config).dispose()  # at this release's revision, else refused: never migrated
    clinic = Clinic.open(config, migrate=False, sweep=False)
    with closing(clinic), _database_errors():
        found = clinic.sweep(dry_run=True, force=force)
        for name in found.unreferenced:
            typer.echo(name)
        typer.echo(f"{len(found.unreferenced)} unreferenced files; {found.foreign} other files "
                   "in the folder (never deleted)")
        if found.refused is not None:
            typer.echo(f"looks like a database/image store mismatch: {found.refused}", err=True)
        if dry_run or not found.unreferenced:
            return
        if found.refused is not None:
            raise UserError("nothing deleted: check that this database belongs to this image "
                            "store (restore both together); --force deletes anyway")
        if not yes and not typer.confirm(f"delete {len(found.unreferenced)} files?"):
            raise UserError("nothing deleted")
        done = clinic.sweep(force=force)
    typer.echo(f"deleted {len(done.removed)} files")


def register(app: typer.Typer) -> None:
    app.add_typer(clinic_app, name="clinic")
