"""The running clinic: database + image store (+ its config), opened once per process; the model
is the served app's own (``app.state.model``), not held here."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from dermsight.clinic.config import ClinicConfig, ClinicConfigError
from dermsight.clinic.db import Database
from dermsight.clinic.imagestore import ImageStore
from dermsight.clinic.models import Visit

log = logging.getLogger("dermsight.clinic")


@dataclass
class Clinic:
    config: ClinicConfig
    db: Database
    images: ImageStore

    @classmethod
    def open(cls, config: ClinicConfig, migrate: bool = True, sweep: bool = True) -> Clinic:
        """Connect, run the migrations, delete image files left by an interrupted upload.
        ``ClinicConfigError`` (one line) when the database or the image store cannot be used."""
        from sqlalchemy.exc import SQLAlchemyError

        db = Database(config.database_url)
        try:
            if migrate:
                db.upgrade()
            images = ImageStore(config.images, config.storage_options)
        except ClinicConfigError:  # a migration that cannot be applied says why itself
            db.dispose()
            raise
        except (SQLAlchemyError, OSError) as exc:
            db.dispose()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClinicConfigError(f"cannot open the clinic storage: {first}") from exc
        clinic = cls(config, db, images)
        if sweep:
            removed = clinic.sweep()
            if removed:
                log.info("removed %d image files no visit references", len(removed))
        return clinic

    def referenced_keys(self) -> set[str]:
        with self.db.session() as s:
            keys = set(s.scalars(select(Visit.image_key)))
            keys |= {k for k in s.scalars(select(Visit.heatmap_key)) if k}
        return keys

    def sweep(self, grace_s: float | None = None) -> list[str]:
        grace = self.config.sweep_grace_s if grace_s is None else grace_s
        return self.images.sweep(self.referenced_keys(), grace)

    def delete_unreferenced(self, keys: set[str]) -> None:
        """After rows are gone: delete those of ``keys`` no remaining visit uses."""
        if keys:
            self.images.delete(sorted(keys - self.referenced_keys()))

    def close(self) -> None:
        self.db.dispose()
