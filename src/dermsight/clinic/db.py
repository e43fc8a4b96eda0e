"""Engine, sessions and migrations of the clinic database.

SQLite runs in WAL mode with foreign keys on and a busy timeout (several threads of one server
write at once); PostgreSQL is used as is (several app instances share it). Names unique ignoring
case (``Patient.ref``, ``User.username``) keep their ``casekey`` in a column of their own
(``ref_key``, ``username_key``: set by the model, unique index, revision 0005), so both databases
compare them the same way whatever their locale, and refuse a second spelling even when two
requests race (``taken_ignoring_case``, ``add_unique``, ``insert_or_found``).

Migrations (``upgrade``) run as one transaction on both databases, so a failed upgrade leaves
the database as it was, and one instance at a time: PostgreSQL under an advisory lock
(``UPGRADE_LOCK_KEY``), SQLite under its write lock, taken by ``BEGIN IMMEDIATE`` before the
revision is read. Commands that only look or change rows call ``require_current`` instead: they
never migrate.
"""

from __future__ import annotations

import contextlib
import logging
import os
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker
from sqlalchemy.pool import NullPool

from dermsight.clinic.config import ClinicConfigError, is_sqlite, sqlite_path

HEAD = "0009"
#: PostgreSQL advisory lock key held while one instance migrates ("drmu"; the purge holds
#: ``retention.PURGE_LOCK_KEY``, "drms")
UPGRADE_LOCK_KEY = 0x64726D75
#: seconds a SQLite migration waits for the write lock (another instance's upgrade, a write)
SQLITE_LOCK_TIMEOUT_S = 30

#: the name ``casekey`` has in SQL on the clinic's SQLite connections (for ad-hoc queries;
#: the stored key columns make the application itself need it nowhere)
CASEKEY_SQL = "dermsight_casekey"
#: the longest ``casekey`` of a 64-character name: one character folds and decomposes to at
#: most 4 (U+1FAF: omega with psili, perispomeni and prosgegrammeni)
KEY_LENGTH = 256
T = TypeVar("T")


def casekey(name: str) -> str:
    """``name`` as compared ignoring case: Unicode's canonical caseless match (NFD, full case
    folding, NFD again). ``Özil`` is ``özil``, ``STRASSE`` is ``straße``, ``ΟΔΟΣ`` is ``οδος``,
    and an ``é`` typed as one character is the ``e`` + combining accent some systems send.
    Only case is folded: ``é`` is not ``e``, a dotless i (U+0131) is not ``i``, a fullwidth P
    (U+FF30) is not ``P``."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


#: letters of other alphabets (Cyrillic, Greek) that look like a Latin letter in one of their
#: cases, by that Latin letter, as case folding writes them (small: Cyrillic U+0440 stands for
#: its capital U+0420 too, both drawn like ``P`` / ``p``). Written as escapes: the source shows
#: no look-alike.
LOOKALIKES: dict[int, str] = str.maketrans({
    # Cyrillic
    "\u0430": "a", "\u0432": "b", "\u0435": "e", "\u0455": "s", "\u0456": "i", "\u0458": "j",
    "\u043a": "k", "\u043c": "m", "\u043d": "h", "\u043e": "o", "\u0440": "p", "\u0441": "c",
    "\u0442": "t", "\u0445": "x", "\u0443": "y", "\u04af": "y", "\u04cf": "i", "\u051b": "q",
    "\u051d": "w", "\u04bb": "h", "\u0501": "d",
    # Greek
    "\u03b1": "a", "\u03b2": "b", "\u03b5": "e", "\u03b6": "z", "\u03b7": "h", "\u03b9": "i",
    "\u03ba": "k", "\u03bc": "m", "\u03bd": "n", "\u03bf": "o", "\u03c1": "p", "\u03c4": "t",
    "\u03c5": "y", "\u03c7": "x", "\u03b3": "y", "\u03f2": "c", "\u03f3": "j",
})
#: the letters whose small form looks like another Latin letter than their capital (Greek nu,
#: U+03BD, like ``v``; its capital like ``N``): a second key (``lookalike_keys``)
SMALL_LOOKALIKES: dict[int, str] = {**LOOKALIKES, **str.maketrans({
    "\u03bd": "v", "\u03c5": "u", "\u03b7": "n", "\u04cf": "l"})}


def lookalike_keys(name: str) -> set[str]:
    """``name`` as it looks, ignoring case: compatibility forms folded (NFKD: a fullwidth P,
    U+FF30, or a superscript one is its plain letter or digit), case folded, letters of other
    alphabets drawn like a Latin one replaced by it (``LOOKALIKES``: Cyrillic U+0420 is ``p``;
    ``SMALL_LOOKALIKES`` for the second key), then ``casekey``. Two names whose keys meet look
    alike in a list (or would, in another case). Accents stay (``é`` is not ``e``), and so do
    letters and digits that differ in shape (``0`` and ``O``, ``1`` and ``l``)."""
    folded = unicodedata.normalize("NFKD", name).casefold()
    return {casekey(folded.translate(LOOKALIKES)), casekey(folded.translate(SMALL_LOOKALIKES))}


def _sql_casekey(value: Any) -> Any:
    return casekey(value) if isinstance(value, str) else value


def key_column(column: InstrumentedAttribute[str]) -> InstrumentedAttribute[str]:
    """The stored ``casekey`` of a name unique ignoring case: ``<column>_key`` beside it."""
    key: InstrumentedAttribute[str] = getattr(column.class_, f"{column.key}_key")
    return key


def taken_ignoring_case(db: Session, column: InstrumentedAttribute[str], name: str) -> str | None:
    """The value of ``column`` (a name unique ignoring case: ``User.username``, ``Patient.ref``)
    equal to ``name`` by ``casekey``, else None: one lookup in the unique index on its stored
    key (``key_column``). Neither database's ``lower()`` would do: SQLite's folds ASCII only,
    PostgreSQL's follows the database's locale (ASCII only under ``C``), and neither folds
    ``ß`` to ``ss`` or matches a composed ``é`` with a decomposed one."""
    return db.scalar(select(column).where(key_column(column) == casekey(name)).limit(1))


def insert_or_found(db: Session, row: object, found: Callable[[], T | None]) -> T | None:
    """Insert ``row`` (flushed now): None once inserted. When the database refuses it (an
    ``IntegrityError``: a unique index, another request won a race since the caller's check)
    the unit of work is rolled back (PostgreSQL answers nothing more in a failed transaction;
    the caller's error would roll it back anyway) and ``found()``, run after the rollback, says
    what holds the place ``row`` wanted; when it finds nothing the refusal was something else
    and the ``IntegrityError`` propagates. The one race-safe insert of the clinic
    (``add_unique``, ``cases._add_first``)."""
    try:
        db.add(row)
        db.flush()
    except IntegrityError:
        db.rollback()
        taken = found()
        if taken is None:
            raise
        return taken
    return None


def add_unique(db: Session, row: object, column: InstrumentedAttribute[str], name: str
               ) -> str | None:
    """Insert ``row``, whose ``column`` is ``name`` (checked free by ``taken_ignoring_case``):
    None once inserted, or the value that took ``name``'s key since the check (another request
    won the race; the unique index refused this one), by ``insert_or_found``."""
    return insert_or_found(db, row, lambda: taken_ignoring_case(db, column, name))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_LOCK_TIMEOUT_S * 1000}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten with zeros
    cur.close()
    dbapi_conn.create_function(CASEKEY_SQL, 1, _sql_casekey, deterministic=True)


def make_engine(url: str) -> Engine:
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None and not path.parent.is_dir():
            raise ClinicConfigError(f"the database folder {path.parent} does not exist")
        if path is not None:  # a new file is the server user's only (SQLite's -wal/-shm follow)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": SQLITE_LOCK_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_pragmas)
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


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """One transaction for a whole upgrade, held by this instance alone; committed when the block
    ends, rolled back (the database as before) when it raises.

    SQLite: Python's sqlite3 (before 3.16) begins a transaction only before INSERT / UPDATE /
    DELETE, so each CREATE / ALTER would commit on its own. The migration therefore runs on a
    connection of its own with the driver's transaction control off (``isolation_level =
    None``) and SQLAlchemy emitting ``BEGIN IMMEDIATE`` itself (SQLAlchemy's recipe,
    "Enabling Non-Legacy SQLite Transactional Modes"): the DDL is part of the transaction, and
    the write lock is taken before the revision is read (another instance's upgrade is waited
    for, up to ``SQLITE_LOCK_TIMEOUT_S``). An in-memory database (tests only) cannot be opened
    twice: it migrates on the engine's own connection, as before.
    PostgreSQL: DDL is transactional; ``pg_advisory_xact_lock(UPGRADE_LOCK_KEY)`` makes a second
    instance wait for the first one's commit (released with the transaction)."""
    if not is_sqlite(str(engine.url)):
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": UPGRADE_LOCK_KEY})
            yield conn
        return
    if sqlite_path(str(engine.url)) is None:
        with engine.begin() as conn:
            yield conn
        return
    migrating = create_engine(engine.url, poolclass=NullPool,
                              connect_args={"check_same_thread": False,
                                            "timeout": SQLITE_LOCK_TIMEOUT_S})

    @event.listens_for(migrating, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        _sqlite_pragmas(dbapi_conn, record)
        dbapi_conn.isolation_level = None  # no implicit BEGIN / COMMIT by the driver

    @event.listens_for(migrating, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with migrating.begin() as conn:
            yield conn
    finally:
        migrating.dispose()


def _revision_of(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from alembic.util.exc import CommandError

    try:
        return MigrationContext.configure(conn).get_current_revision()
    except CommandError as exc:  # e.g. two rows in alembic_version (edited by hand)
        raise ClinicConfigError(
            f"cannot read the database's revision ({str(exc).splitlines()[0]}): its "
            "alembic_version table should hold one row; restore a backup, or repair the "
            "table") from exc


def _newer(at: str, head: str | None) -> ClinicConfigError:
    return ClinicConfigError(
        f"the database is at revision {at}, newer than this dermsight (head {head}): run the "
        "newer version, or restore a backup made for this one")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (Alembic, programmatic; idempotent), in one transaction
    taken by one instance at a time (``_migration_connection``): a migration that fails leaves
    the database as it was, and an instance that waited for another's upgrade finds the
    database upgraded and does nothing.
    ``ClinicConfigError`` (one line) when the database is at a revision this code does not know
    (made by a newer dermsight), when a migration refuses (revision 0005's clashing names), and
    when the database refuses a statement of it (the change undone)."""
    _quiet_alembic()  # before Alembic's first import, which sets up its plugins
    from alembic import command
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(None))
    head = script.get_current_head()
    target = head if revision == "head" else revision
    at: str | None = None
    read = False
    try:  # around the whole block: its end commits, and a COMMIT can fail too (a full disk)
        with _migration_connection(engine) as conn:
            at = _revision_of(conn)  # read under the lock: another instance may have upgraded
            read = True
            if at is not None and at not in {s.revision for s in script.walk_revisions()}:
                raise _newer(at, head)
            command.upgrade(_alembic_config(conn), revision)
    except SQLAlchemyError as exc:
        if not read:  # the lock or the revision could not be had: nothing was tried
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClinicConfigError(
            f"the upgrade from revision {at or 'none (a new database)'} to {target} failed "
            f"and was undone, the database is unchanged: {first}") from exc


def _alembic_noise(record: logging.LogRecord) -> bool:
    """False for Alembic's INFO lines about itself, logged at every start: "Context impl
    SQLiteImpl." and "Will assume non-transactional DDL.", which describes Alembic's own
    handling of SQLite, not ``upgrade``'s (one transaction: ``_migration_connection``). Its
    "Running upgrade 0008 -> 0009" lines stay."""
    return not (record.levelno <= logging.INFO and isinstance(record.msg, str)
                and record.msg.startswith(("Context impl ", "Will assume ")))


def _quiet_alembic() -> None:
    """Leave out of the log Alembic's INFO lines that only describe Alembic (``_alembic_noise``;
    the seven "setup plugin" lines of its first import), which read as if the upgrade were
    not one transaction. Its warnings, and the lines naming each migration run, stay. A
    ``alembic.runtime.plugins`` logger whose level an operator set is left as it is."""
    plugins = logging.getLogger("alembic.runtime.plugins")
    if plugins.level == logging.NOTSET:
        plugins.setLevel(logging.WARNING)
    migration = logging.getLogger("alembic.runtime.migration")
    if _alembic_noise not in migration.filters:
        migration.addFilter(_alembic_noise)


def require_current(engine: Engine) -> None:
    """``ClinicConfigError`` (one line, saying what to do) unless the database is at ``HEAD``:
    the commands that look or change rows (``clinic sweep``, ``purge``, ``create-user``) never
    migrate; that is ``serve``'s start and ``dermsight clinic upgrade``, after the instances of
    the earlier release are stopped."""
    at = current_revision(engine)
    if at == HEAD:
        return
    if at is None:
        if not table_names(engine):
            raise ClinicConfigError(
                "the database is empty (no clinic tables yet): run `dermsight clinic upgrade` "
                "first")
        raise ClinicConfigError(
            "the database has tables but no dermsight revision: is it the clinic database?")
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(None))
    if at not in {s.revision for s in script.walk_revisions()}:
        raise _newer(at, HEAD)
    raise ClinicConfigError(
        f"the database is at revision {at}, this release needs {HEAD}: stop the running "
        "instances of the earlier release and run `dermsight clinic upgrade`")


def current_revision(engine: Engine) -> str | None:
    _quiet_alembic()
    with engine.connect() as conn:
        return _revision_of(conn)


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
