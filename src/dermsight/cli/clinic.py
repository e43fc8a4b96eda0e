"""``dermsight clinic upgrade | create-user | purge | sweep``: administer the clinic database.

Each command takes ``--database URL`` (else ``DERMSIGHT_DATABASE_URL``); a PostgreSQL database
also needs the image folder (``--images`` / ``DERMSIGHT_CLINIC_IMAGES``) for ``purge`` and
``sweep``. User
errors (bad URL, taken username, weak password) print one line and exit 2.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from dermsight.cli.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from dermsight.clinic.config import ClinicConfig
    from dermsight.clinic.db import Database

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

    try:
        config = ClinicConfig.resolve(database=database, images=images,
                                      retention_days=retention_days,
                                      require_images=require_images)
    except ClinicConfigError as exc:
        raise UserError(str(exc)) from exc
    if config is None:
        raise UserError("no database: give --database URL or set DERMSIGHT_DATABASE_URL")
    return config


def _database(config: ClinicConfig) -> Database:
    """Connect and migrate (every command works on the current schema)."""
    from sqlalchemy.exc import SQLAlchemyError

    from dermsight.clinic.config import ClinicConfigError
    from dermsight.clinic.db import Database

    try:
        db = Database(config.database_url)
        db.upgrade()
    except (ClinicConfigError, SQLAlchemyError) as exc:
        raise UserError(f"cannot open the database: {str(exc).splitlines()[0]}") from exc
    return db


@clinic_app.command("upgrade")
def upgrade(database: DatabaseOpt = None) -> None:
    """Create or migrate the clinic database to the current schema (idempotent)."""
    from dermsight.clinic.db import current_revision

    db = _database(_config(database, require_images=False))
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
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    db = _database(config)
    try:
        with db.session() as s:
            user = accounts.create_user(s, username, password, role)
            audit.record(s, None, "create", "user", user.id)
    except accounts.AccountError as exc:
        raise UserError(str(exc)) from exc
    finally:
        db.dispose()
    typer.echo(f"created {user.role} {user.username!r} (id {user.id})")


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
    """Delete visits past the retention period, with their image files (and lesions and
    patients left empty)."""
    from dermsight.clinic.retention import purge_once
    from dermsight.clinic.rights import purge_plan
    from dermsight.clinic.runtime import Clinic

    config = _config(database, images, retention_days)
    if config.retention_days is None:
        raise UserError("no retention period: give --retention-days N or set "
                        "DERMSIGHT_RETENTION_DAYS")
    _database(config).dispose()
    clinic = Clinic.open(config, sweep=False)
    try:
        if dry_run:
            plan = purge_plan(clinic, config.retention_days, dry_run=True)
        else:
            n = purge_once(clinic, config.retention_days)  # takes turns with running servers
    finally:
        clinic.close()
    if dry_run:
        typer.echo(f"dry run, nothing deleted: would purge {len(plan.visit_ids)} visits, "
                   f"{len(plan.lesion_ids)} lesions and {len(plan.patient_ids)} patients "
                   f"(visits older than {config.retention_days} days)")
        for name, ids in (("visit", plan.visit_ids), ("lesion", plan.lesion_ids),
                          ("patient", plan.patient_ids)):
            if ids:
                typer.echo(f"{name} ids: {' '.join(map(str, ids))}")
        return
    if n is None:
        typer.echo("another instance is purging right now: nothing done")
        return
    typer.echo(f"purged {n} visits older than {config.retention_days} days")


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
    _database(config).dispose()
    clinic = Clinic.open(config, sweep=False)
    try:
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
    finally:
        clinic.close()
    typer.echo(f"deleted {len(done.removed)} files")


def register(app: typer.Typer) -> None:
    app.add_typer(clinic_app, name="clinic")
