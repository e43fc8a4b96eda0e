"""Engine, sessions and migrations of the clinic database.

SQLite runs in WAL mode with foreign keys on and a busy timeout (several threads of one server
write at once); PostgreSQL is used as is (several app instances share it). ``taken_ignoring_case``
compares names ignoring case the same way on both (``casekey``), whatever the database's locale.
"""

from __future__ import annotations

import contextlib
import os
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, inspect, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from dermsight.clinic.config import ClinicConfigError, is_sqlite, sqlite_path

HEAD = "0004"

#: the name ``casekey`` has in SQL on the clinic's SQLite connections
CASEKEY_SQL = "dermsight_casekey"
#: any character outside ASCII (PostgreSQL regular expression; NUL cannot be stored there)
_NON_ASCII = r"[^\x01-\x7f]"


def casekey(name: str) -> str:
    """``name`` as compared ignoring case: Unicode's canonical caseless match (NFD, full case
    folding, NFD again). ``Özil`` is ``özil``, ``STRASSE`` is ``straße``, ``ΟΔΟΣ`` is ``οδος``,
    and an ``é`` typed as one character is the ``e`` + combining accent some systems send.
    Only case is folded: ``é`` is not ``e``, a dotless i (U+0131) is not ``i``, a fullwidth P
    (U+FF30) is not ``P``."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


def _sql_casekey(value: Any) -> Any:
    return casekey(value) if isinstance(value, str) else value


def taken_ignoring_case(db: Session, column: InstrumentedAttribute[str], name: str) -> str | None:
    """A value of ``column`` (a unique name: ``User.username``, ``Patient.ref``) equal to
    ``name`` by ``casekey``, else None. Neither database's ``lower()`` will do: SQLite's folds
    ASCII only, PostgreSQL's follows the database's locale (ASCII only under ``C``), and
    neither folds ``ß`` to ``ss`` or matches a composed ``é`` with a decomposed one. SQLite
    compares with ``casekey`` itself (``CASEKEY_SQL``, on every connection); elsewhere the
    rows that can match (an ASCII value equal to the key once ASCII letters are lowered, or any
    value with a non-ASCII character) are compared here. A full scan either way, as the
    ``lower()`` comparison was: the rule is not an index (docs/clinic.md)."""
    key = casekey(name)
    if db.get_bind().dialect.name == "sqlite":
        stmt = select(column).where(getattr(func, CASEKEY_SQL)(column) == key)
    else:  # for an ASCII value casekey is the ASCII lower case: lower() under the C collation
        stmt = select(column).where(or_(func.lower(column.collate("C")) == key,
                                        column.regexp_match(_NON_ASCII)))
    return next((taken for taken in db.scalars(stmt) if casekey(taken) == key), None)


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
            dbapi_conn.create_function(CASEKEY_SQL, 1, _sql_casekey, deterministic=True)

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
