"""The retention period, applied by the server itself: with ``dermsight serve --retention-days N``
(or ``DERMSIGHT_RETENTION_DAYS``) the lifespan purges visits stored more than N days ago, then
lesions and patients left empty (``rights.purge_plan``), once at start, before the first request,
and then every ``RETENTION_EVERY_S`` while it runs.

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
from dermsight.clinic.rights import Purged, purge_plan
from dermsight.clinic.runtime import Clinic

log = logging.getLogger("dermsight.clinic")

#: seconds between two purges of a running server (a day)
RETENTION_EVERY_S = 86400.0
#: PostgreSQL advisory lock key held while one instance purges ("drms")
PURGE_LOCK_KEY = 0x64726D73


def purge_once(clinic: Clinic, days: int) -> Purged | None:
    """Purge now; what was deleted (``rights.Purged``: the visits', lesions' and patients' ids),
    or None when another instance is purging."""
    if is_sqlite(clinic.db.url):
        return purge_plan(clinic, days)
    with clinic.db.engine.connect() as conn:
        if not conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": PURGE_LOCK_KEY}):
            return None
        try:
            return purge_plan(clinic, days)
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PURGE_LOCK_KEY})
            conn.commit()


def purge_logged(clinic: Clinic, days: int) -> None:
    """``purge_once``, with its outcome in the server log (counts only, never a row's data)."""
    try:
        done = purge_once(clinic, days)
    except Exception as exc:  # noqa: BLE001 - logged, tried again at the next turn
        log.error("retention purge failed (%s); tried again at the next turn",
                  type(exc).__name__)
        return
    if done is None:
        log.info("retention purge skipped: another instance is purging")
    elif done.visit_ids or done.lesion_ids or done.patient_ids:
        log.info("retention: %s (%d days)", done.counts(), days)


async def retention_loop(clinic: Clinic, days: int) -> None:
    """Every ``RETENTION_EVERY_S`` (read at each turn), purge in a worker thread; runs until
    cancelled (a purge in progress finishes first)."""
    while True:
        await anyio.sleep(RETENTION_EVERY_S)
        await anyio.to_thread.run_sync(purge_logged, clinic, days)
