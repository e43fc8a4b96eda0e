"""The retention period, applied by the server itself: with ``dermsight serve --retention-days N``
(or ``DERMSIGHT_RETENTION_DAYS``) the lifespan purges visits stored more than N days ago
(``rights.purge_expired``) once at start, before the first request, and then every
``RETENTION_EVERY_S`` while it runs.

Several instances on one PostgreSQL database: a purge holds a session advisory lock
(``PURGE_LOCK_KEY``); an instance that finds it taken skips its turn (the other one is purging
the same rows). On SQLite, the database's write lock serialises purges; a purge that comes second
finds the rows gone. A failed purge is logged (the exception's type only) and tried again at the
next turn; it never stops the server.
"""

from __future__ import annotations

import logging

import anyio
import anyio.to_thread
from sqlalchemy import text

from dermsight.clinic.config import is_sqlite
from dermsight.clinic.rights import purge_expired
from dermsight.clinic.runtime import Clinic

log = logging.getLogger("dermsight.clinic")

#: seconds between two purges of a running server (a day)
RETENTION_EVERY_S = 86400.0
#: PostgreSQL advisory lock key held while one instance purges ("drms")
PURGE_LOCK_KEY = 0x64726D73


def purge_once(clinic: Clinic, days: int) -> int | None:
    """Purge now; the number of visits deleted, or None when another instance is purging."""
    if is_sqlite(clinic.db.url):
        return purge_expired(clinic, days)
    with clinic.db.engine.connect() as conn:
        if not conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": PURGE_LOCK_KEY}):
            return None
        try:
            return purge_expired(clinic, days)
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PURGE_LOCK_KEY})
            conn.commit()


def purge_logged(clinic: Clinic, days: int) -> None:
    """``purge_once``, with its outcome in the server log (counts only, never a row's data)."""
    try:
        n = purge_once(clinic, days)
    except Exception as exc:  # noqa: BLE001 - logged, tried again at the next turn
        log.error("retention purge failed (%s); tried again at the next turn",
                  type(exc).__name__)
        return
    if n is None:
        log.info("retention purge skipped: another instance is purging")
    elif n:
        log.info("retention: purged %d visits stored more than %d days ago", n, days)


async def retention_loop(clinic: Clinic, days: int) -> None:
    """Every ``RETENTION_EVERY_S`` (read at each turn), purge in a worker thread; runs until
    cancelled (a purge in progress finishes first)."""
    while True:
        await anyio.sleep(RETENTION_EVERY_S)
        await anyio.to_thread.run_sync(purge_logged, clinic, days)
