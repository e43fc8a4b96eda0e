"""Engine, sessions and migrations of the clinic database.

SQLite runs in WAL mode with foreign keys on and a busy timeout (several threads of one server
write at once); PostgreSQL is used as is (several app instances share it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from dermsight.clinic.config import ClinicConfigError, is_sqlite, sqlite_path

HEAD = "0004"


def make_engine(url: str) -> Engine:
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None and not path.parent.is_dir():
            raise ClinicConfigError(f"the database folder {path.parent} does not exist")
        if path is not None:  # a new file is the server user's only (SQLite's -wal/-shm follow)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten with zeros
            cur.close()

        return engine
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    except ImportError as exc:  # pragma: no cover - psycopg is a pinned dependency
        raise ClinicConfigError(f"cannot use {url.split(':', 1)[0]}: {exc}") from exc


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location",
                        str(resources.files("dermsight.clinic") / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (Alembic, programmatic; idempotent)."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


class Database:
    """One engine + a session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    def upgrade(self) -> None:
        upgrade(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any exception."""
        s = self._factory()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def scrub(self) -> None:
        """After a deletion: SQLite copies the WAL (which still holds the deleted rows' earlier
        versions) into the file and truncates it; with ``secure_delete`` the file then holds
        no trace of them. (PostgreSQL: dead rows are gone after (auto)vacuum.) Best effort:
        readers active at this moment can keep part of the WAL until the next checkpoint."""
        if is_sqlite(self.url):
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def dispose(self) -> None:
        self.engine.dispose()
