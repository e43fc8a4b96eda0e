"""``GET /api/v1/health``: liveness, storage readiness and the model's identity (public, for load
balancers); ``HEAD`` answers the same status and headers without the body (uptime checkers).

Without clinic storage the answer is 200 whenever the process serves requests. With clinic
storage on, each check also

* asks the database a ``SELECT 1``;
* for an image folder on this machine: checks that it exists and may be written, then writes,
  fsyncs and deletes a 4 KiB probe file there (``ImageStore.probe``: no patient data; a full
  disk or a read-only mount fails it). This step runs at most once every
  ``IMAGE_CHECK_INTERVAL_S`` and one at a time (``ImageFolderCheck``): the checks in between get
  its last answer, those that come while it runs wait for it, and while one has run past
  ``READY_TIMEOUT_S`` (a hung mount) every check fails at once without starting another, so the
  public route cannot make the disk fsync at request rate or pile up blocked threads;
* for a SQLite database: checks that its disk has a free block left (``os.statvfs``);
* remembers the storage failures requests met (``StorageFailures``: a database write that
  failed with ``SQLITE_FULL`` or PostgreSQL's ``disk_full``, an image that could not be written
  or read): for ``FAILURE_MEMORY_S`` after the last one the check fails too, since a
  ``SELECT 1`` or a 4 KiB probe can succeed on storage that refuses a visit's write.

Each step runs in a worker thread, at most ``READY_TIMEOUT_S``, so a hung network mount holds no
other request. When one fails the answer is a 503 ``{"status": "storage unavailable", "detail":
...}`` with ``Retry-After`` (the detail names the store and the reason: an error code, never a
path or a message that could quote data), so a load balancer takes the instance out while the
storage is down (the other fields as usual)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from dermsight import __version__
from dermsight.predict import Dermsight
from dermsight.web.deps import ModelDep, SettingsDep
from dermsight.web.middleware import STORAGE_DETAILS, STORAGE_RETRY_AFTER_S, storage_failure
from dermsight.web.routes import API
from dermsight.web.schemas import RETRY_AFTER, ErrorResponse, HealthResponse
from dermsight.web.settings import MIB, Settings

router = APIRouter(prefix=API, tags=["service"])
log = logging.getLogger("dermsight.web")

#: the longest a health check waits for the database's answer (and for the image folder's)
READY_TIMEOUT_S = 3.0
#: the image folder's check (its test write) runs at most once in this many seconds
IMAGE_CHECK_INTERVAL_S = 5.0
STORAGE_DOWN = "storage unavailable"


#: how long a storage failure met by a request keeps the health check at 503 (as long as the
#: ``Retry-After`` of the requests' own 503)
FAILURE_MEMORY_S = float(STORAGE_RETRY_AFTER_S)

#: SQLite result codes (primary part) that say the database cannot be written now, as opposed to
#: a passing lock (``SQLITE_BUSY``, ``SQLITE_LOCKED``: another writer) or an SQL bug
SQLITE_UNWRITABLE = frozenset({"SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY",
                               "SQLITE_CANTOPEN", "SQLITE_CORRUPT", "SQLITE_NOTADB",
                               "SQLITE_PERM"})
#: PostgreSQL SQLSTATEs of the same kind: disk full, I/O error, a read-only server (a standby)
POSTGRES_UNWRITABLE = frozenset({"53100", "58030", "25006"})


def _errno_reason(exc: OSError) -> str:
    """``ENOSPC, no space left on device``: the code and its text, never the path."""
    code = errno.errorcode.get(exc.errno, "no errno") if exc.errno is not None else "no errno"
    text = os.strerror(exc.errno).lower() if exc.errno is not None else type(exc).__name__
    return f"{code}, {text}"


def unwritable_database(exc: BaseException) -> str | None:
    """The code of a DB-API error that says the database cannot be written now
    (``SQLITE_FULL``, SQLSTATE 53100, ...), else None."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None)
        if isinstance(name, str) and "_".join(name.split("_")[:2]) in SQLITE_UNWRITABLE:
            return name
        return None
    state = getattr(exc, "sqlstate", None)
    return f"SQLSTATE {state}" if state in POSTGRES_UNWRITABLE else None


@dataclass
class StorageFailures:
    """The last clinic storage failure requests met, per store (``"database"``, ``"image
    store"``): when (``time.monotonic``) and why (an error code). ``watch_storage`` feeds it."""

    memory_s: float = FAILURE_MEMORY_S
    last: dict[str, tuple[float, str]] = field(default_factory=dict)

    def record(self, which: str, reason: str) -> None:
        self.last[which] = (time.monotonic(), reason)

    def database_error(self, context: Any) -> None:
        """SQLAlchemy's ``handle_error`` event: remember an error that says the database cannot
        be written (``unwritable_database``); never raises."""
        code = unwritable_database(context.original_exception)
        if code is not None:
            self.record("database", code)

    def image_error(self, exc: OSError) -> None:
        """``ImageStore.on_failure``: an image that could not be written or read."""
        self.record("image store", _errno_reason(exc))

    def recent(self) -> tuple[str, str] | None:
        """(which store, reason) of a failure less than ``memory_s`` ago, else None."""
        now = time.monotonic()
        for which, (at, reason) in list(self.last.items()):
            if now - at < self.memory_s:
                return which, f"a request failed {now - at:.0f} s ago: {reason}"
        return None


def watch_storage(clinic: Any) -> StorageFailures:
    """A ``StorageFailures`` fed by ``clinic``'s database (every error of its engine) and image
    store (``ImageStore.on_failure``); the app's lifespan puts it on ``app.state``."""
    from sqlalchemy import event

    failures = StorageFailures()
    event.listen(clinic.db.engine, "handle_error", failures.database_error)
    clinic.images.on_failure = failures.image_error
    return failures


def _database_check(clinic: Any) -> str | None:
    """Why the database cannot be used (an error code), or None; a failed ``SELECT 1`` raises."""
    with clinic.db.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    from dermsight.clinic.config import sqlite_path

    path = sqlite_path(str(clinic.config.database_url))
    if path is None:
        return None
    try:
        # the database file's own disk, a symlink to another filesystem followed (SQLite writes
        # the file it resolves to, and its journal beside it); its folder while there is no file
        disk = os.statvfs(os.path.realpath(path) if path.exists() else path.parent)
    except OSError as exc:
        return f"its folder cannot be read: {_errno_reason(exc)}"
    free = disk.f_bfree if os.geteuid() == 0 else disk.f_bavail  # root may use the reserve
    return "no space left on its disk" if free == 0 else None


def _images_check(clinic: Any) -> str | None:
    """Why the local image folder cannot be used (an error code, never the path), or None (also
    for S3)."""
    images = clinic.images
    if not getattr(images, "local", False):
        return None
    folder = images.fs._strip_protocol(images.root)
    if not os.path.isdir(folder):
        return "folder missing"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "folder not writable"
    try:
        images.probe()
    except OSError as exc:
        return f"a test write failed: {_errno_reason(exc)}"
    return None


class ImageFolderCheck:
    """``_images_check`` of one clinic's image folder, run in a thread of its own at most once
    every ``interval_s`` and never two at a time: a health check within ``interval_s`` of the
    last run's end gets its answer; one that comes while a run is going waits for that run (at
    most ``READY_TIMEOUT_S`` from its start); once a run has gone past ``READY_TIMEOUT_S`` (a hung
    mount) each check answers "no answer" at once, without starting another, until it ends."""

    def __init__(self, clinic: Any, interval_s: float | None = None) -> None:
        self.clinic = clinic
        self.interval_s = IMAGE_CHECK_INTERVAL_S if interval_s is None else interval_s
        self._lock = threading.Lock()
        self._running: Future[str | None] | None = None
        self._started = 0.0  # time.monotonic() when the running check started
        self._last: tuple[float, str | None] | None = None  # (when the last one ended, answer)

    def _run(self, answer: Future[str | None]) -> None:
        why: str | None = "the check ended without an answer"
        try:
            why = _images_check(self.clinic)  # looked up here: the tests replace it
        except Exception as exc:  # noqa: BLE001 - any failure of the check means "not ready"
            why = f"the check failed: {type(exc).__name__}"
        finally:
            with self._lock:
                self._last = (time.monotonic(), why)
                self._running = None
            answer.set_result(why)

    async def problem(self) -> str | None:
        """Why the folder cannot be used now (an error code, never a path), or None."""
        timeout = READY_TIMEOUT_S
        now = time.monotonic()
        with self._lock:
            if self._running is None:
                if self._last is not None and now - self._last[0] < self.interval_s:
                    return self._last[1]
                self._running = Future()
                self._running.set_running_or_notify_cancel()  # a waiter's timeout cancels none
                self._started = now
                try:
                    threading.Thread(target=self._run, args=(self._running,), daemon=True,
                                     name="dermsight-image-check").start()
                except RuntimeError as exc:  # "can't start new thread"
                    self._running = None
                    return f"the check could not start: {type(exc).__name__}"
            running, left = self._running, timeout - (now - self._started)
        if left > 0:
            with anyio.move_on_after(left):
                return await asyncio.wrap_future(running)
        return f"no answer within {timeout:g} s"  # _images_problem logs it


def _image_folder_check(request: Request, clinic: Any) -> ImageFolderCheck:
    """The app's ``ImageFolderCheck`` of ``clinic`` (made at the first health check)."""
    check: ImageFolderCheck | None = getattr(request.app.state, "image_folder_check", None)
    if check is None or check.clinic is not clinic:
        check = request.app.state.image_folder_check = ImageFolderCheck(clinic)
    return check


def _detail(which: str, reason: str | None = None) -> str:
    """``STORAGE_DETAILS[which]`` with ``reason`` before its closing "retry later"."""
    detail = STORAGE_DETAILS[which]
    if reason is None:
        return detail
    return f"{detail.removesuffix(', retry later')} ({reason}), retry later"


async def _database_problem(clinic: Any) -> str | None:
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            why = await anyio.to_thread.run_sync(_database_check, clinic, abandon_on_cancel=True)
    except TimeoutError:
        log.error("health: clinic database did not answer within %g s", READY_TIMEOUT_S)
        return _detail("database", f"no answer within {READY_TIMEOUT_S:g} s")
    except Exception as exc:  # noqa: BLE001 - any failure of the check means "not ready"
        found = storage_failure(exc)
        log.error("health: clinic database unavailable: %s",
                  found[1] if found else type(exc).__name__)
        return STORAGE_DETAILS["database"]
    if why is not None:
        log.error("health: clinic database unavailable: %s", why)
        return _detail("database", why)
    return None


async def _images_problem(check: ImageFolderCheck) -> str | None:
    # a hung network mount blocks os.path.isdir / os.access: never on the event loop
    why = await check.problem()
    if why is not None:
        log.error("health: clinic image store unavailable: %s", why)
        return _detail("image store", why)
    return None


async def storage_problem(request: Request) -> str | None:
    """The ``detail`` of a 503 when the clinic storage cannot be used now, else None (also when
    clinic storage is off). Logs one line: which store, the error's class and code only."""
    clinic = getattr(request.app.state, "clinic", None)
    if clinic is None:
        return None
    problem = (await _database_problem(clinic)
               or await _images_problem(_image_folder_check(request, clinic)))
    if problem is not None:
        return problem
    failures: StorageFailures | None = getattr(request.app.state, "storage_failures", None)
    if failures is not None and (recent := failures.recent()) is not None:
        which, why = recent
        log.error("health: clinic %s unavailable: %s", which, why)
        return _detail(which, why)
    return None


def _health(model: Dermsight, settings: Settings) -> dict[str, Any]:
    return {"status": "ok", "model": model.info, "dermsight": __version__,
            "clinic": settings.clinic is not None,
            "max_upload_mb": settings.max_upload_bytes / MIB}


def _unavailable(answer: dict[str, Any], detail: str) -> JSONResponse:
    body = {**jsonable_encoder(HealthResponse.model_validate(answer)),
            "status": STORAGE_DOWN, "detail": detail}
    return JSONResponse(body, status_code=503,
                        headers={"Retry-After": str(STORAGE_RETRY_AFTER_S)})


@router.get("/health", response_model=HealthResponse, summary="Liveness and model identity",
            description="Public (no token). With clinic storage on it also checks the storage "
                        "(a `SELECT 1` on the database, free space on a SQLite database's disk, "
                        "and a 4 KiB test file written and deleted in a local image folder "
                        f"at most once every {IMAGE_CHECK_INTERVAL_S:g} s (the checks in "
                        "between get its last answer), each at most 3 s), and a storage "
                        "failure a request met in the last "
                        f"{FAILURE_MEMORY_S:g} s (a write refused on a full disk) counts too: "
                        "when that fails the answer is a 503 with `Retry-After` and "
                        '`{"status": "storage unavailable", "detail": ...}` (the detail says '
                        "which store and why). "
                        "`HEAD /api/v1/health` is served too, for uptime "
                        "checkers: the same status and headers, no body; it is not listed as "
                        "an operation of its own in this document.",
            responses={503: {"model": ErrorResponse, "headers": RETRY_AFTER,
                             "description": "server busy (`detail` only), or the clinic "
                                            "storage is unavailable (`status` \"storage "
                                            "unavailable\", `detail` and the fields above)"}})
async def health(request: Request, model: ModelDep, settings: SettingsDep) -> Any:
    answer = _health(model, settings)
    problem = await storage_problem(request)
    return answer if problem is None else _unavailable(answer, problem)


@router.head("/health", include_in_schema=False)
async def health_head(request: Request, model: ModelDep, settings: SettingsDep) -> Response:
    """GET's status, type and length, without the body."""
    answer = _health(model, settings)
    problem = await storage_problem(request)
    if problem is not None:
        full = _unavailable(answer, problem)
        return Response(status_code=503, media_type="application/json",
                        headers={"content-length": str(len(full.body)),
                                 "Retry-After": str(STORAGE_RETRY_AFTER_S)})
    body = JSONResponse(jsonable_encoder(HealthResponse.model_validate(answer))).body
    return Response(media_type="application/json", headers={"content-length": str(len(body))})
