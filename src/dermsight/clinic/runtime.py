"""The running clinic: database + image store (+ its config), opened once per process; the model
is the served app's own (``app.state.model``), not held here."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from dermsight.clinic.cases import count_rows
from dermsight.clinic.config import ClinicConfig, ClinicConfigError
from dermsight.clinic.db import Database
from dermsight.clinic.imagestore import ImageStore, Unreferenced
from dermsight.clinic.models import Visit

log = logging.getLogger("dermsight.clinic")

#: the start-up sweep deletes at most this many unreferenced image files: four uploads cut off
#: at once (an image and a heatmap each). More looks like a database that does not belong to
#: this image store (an older backup, another clinic's): nothing is deleted then
SWEEP_SAFE_FILES = 8


def _visit_count(db: Database) -> int:
    """How many visits the database holds."""
    with db.session() as s:
        return count_rows(s, Visit)


@dataclass
class SweepResult:
    """What a sweep found and did (file names are content hashes: no patient data)."""

    #: unreferenced files (and stale temporary files) older than the grace period
    unreferenced: list[str] = field(default_factory=list)
    #: those deleted (empty when refused or a dry run)
    removed: list[str] = field(default_factory=list)
    #: files in the folder that are not the store's own (never deleted)
    foreign: int = 0
    #: why nothing was deleted although files are unreferenced (None: not refused)
    refused: str | None = None


#: errors of dermsight's own code (a bug: they keep their traceback), not of the storage it uses
PROGRAMMING_ERRORS: tuple[type[Exception], ...] = (
    AssertionError, AttributeError, LookupError, NameError, TypeError)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def image_store_error(images: str, exc: Exception) -> ClinicConfigError:
    """One line for an image store that cannot be used: ``exc`` of fsspec or of the S3 client
    (botocore's ``NoCredentialsError``, ``EndpointConnectionError``, a refused bucket), a
    local folder's ``OSError``, an unknown protocol: its class (the S3 client's say what went
    wrong) and the first line of its message."""
    detail = (_first_line(exc) if isinstance(exc, OSError)
              else f"{type(exc).__name__}: {_first_line(exc)}")
    return ClinicConfigError(f"cannot open the clinic image store {images}: {detail}")


def _local_folder(images: str) -> Path | None:
    if "://" not in images:
        return Path(images).expanduser()
    if images.startswith("file://"):
        return Path(images.removeprefix("file://")).expanduser()
    return None


@dataclass
class Clinic:
    config: ClinicConfig
    db: Database
    images: ImageStore

    @classmethod
    def open(cls, config: ClinicConfig, migrate: bool = True, sweep: bool = True) -> Clinic:
        """Connect, run the migrations, delete image files left by an interrupted upload.
        ``ClinicConfigError`` (one line) when the database or the image store cannot be used
        (``image_store_error``: S3 without credentials, an endpoint that cannot be reached)."""
        from sqlalchemy.exc import SQLAlchemyError

        db = Database(config.database_url)
        try:
            if migrate:
                db.upgrade()
            cls._check_folder(config, db)
        except ClinicConfigError:  # a migration that cannot be applied says why itself
            db.dispose()
            raise
        except (SQLAlchemyError, OSError) as exc:
            db.dispose()
            raise ClinicConfigError(f"cannot open the clinic storage: {_first_line(exc)}") from exc
        try:
            clinic = cls(config, db, ImageStore(config.images, config.storage_options))
            if sweep:
                result = clinic.sweep()
                if result.removed:
                    log.info("removed %d image files no visit references", len(result.removed))
        except SQLAlchemyError as exc:  # the sweep's query
            db.dispose()
            raise ClinicConfigError(f"cannot open the clinic storage: {_first_line(exc)}") from exc
        except Exception as exc:  # the image store's (fsspec, the S3 client): not only OSError
            db.dispose()
            if isinstance(exc, PROGRAMMING_ERRORS):
                raise
            raise image_store_error(config.images, exc) from exc
        return clinic

    @staticmethod
    def _check_folder(config: ClinicConfig, db: Database) -> None:
        """A local image folder that does not exist is created only for a database with no
        visit: otherwise the images are elsewhere (an unmounted share, a folder not restored)
        and new uploads would land beside them."""
        folder = _local_folder(config.images)
        if folder is None or folder.exists():
            return
        visits = _visit_count(db)
        if visits:
            raise ClinicConfigError(
                f"the image folder {folder} does not exist, but the database references "
                f"{visits} visit images: mount it or restore it (or, if the images are truly "
                "gone, create it empty deliberately)")

    def referenced_keys(self) -> set[str]:
        with self.db.session() as s:
            keys = set(s.scalars(select(Visit.image_key)))
            keys |= {k for k in s.scalars(select(Visit.heatmap_key)) if k}
        return keys

    def _mismatch(self, found: Unreferenced) -> str | None:
        """Why the unreferenced files look like a database that does not match this image store
        (None: they look like interrupted uploads)."""
        n = len(found.files)
        if not n:
            return None
        if n > SWEEP_SAFE_FILES:
            return (f"{n} of the store's {found.own_total} image files are referenced by no "
                    f"visit (more than the {SWEEP_SAFE_FILES} interrupted uploads leave)")
        if not _visit_count(self.db):
            return (f"the database has no visit, but the image store holds {n} image files "
                    "(is this the database of this image store?)")
        return None

    def sweep(self, grace_s: float | None = None, dry_run: bool = False,
              force: bool = False) -> SweepResult:
        """Delete the store's own files no visit references, older than the grace period.
        Refused (nothing deleted, a warning logged) when they look like a database/store
        mismatch (``_mismatch``), unless ``force``. Files that are not the store's own are
        never deleted (counted, one warning)."""
        grace = self.config.sweep_grace_s if grace_s is None else grace_s
        found = self.images.unreferenced(self.referenced_keys(), grace)
        result = SweepResult(unreferenced=[*found.files, *found.temporary],
                             foreign=found.foreign)
        if found.foreign:
            log.warning("the image folder holds %d files that are not dermsight images; "
                        "they were left alone (keep other files out of this folder)",
                        found.foreign)
        result.refused = None if force else self._mismatch(found)
        if result.refused is not None:
            log.warning("image sweep refused, nothing was deleted: %s. Restore the database "
                        "and the image store together; to delete these files deliberately run "
                        "'dermsight clinic sweep --dry-run', then 'dermsight clinic sweep --yes "
                        "--force'", result.refused)
            # stale temporary files are never a visit's: they go anyway
            if not dry_run:
                result.removed = self.images.remove(found.temporary)
            return result
        if not dry_run:
            result.removed = self.images.remove(result.unreferenced)
        return result

    def delete_unreferenced(self, keys: set[str]) -> None:
        """After rows are gone: delete those of ``keys`` no remaining visit uses."""
        if keys:
            self.images.delete(sorted(keys - self.referenced_keys()))

    def close(self) -> None:
        self.db.dispose()
