"""Operator-facing failures of ``dermsight serve``: clinic storage outages (503, not 500; a health
check that says so), a request log without raw paths, invalid limits and a weak API token
refused with one line and exit code 2."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

import api_support as support
from clinic_support import clinic_model, open_clinic  # noqa: F401 - fixture
from dermsight.web.middleware import LOG_LINE, PathTemplates, RequestLogMiddleware

API = "/api/v1"


# --- clinic storage failures: JSON 503 + Retry-After, one log line with class and code -------


class FailingFs:
    """An fsspec file system whose writes and reads fail with ``error``."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def fail(*_: Any, **__: Any) -> Any:
            raise self.error
        return fail


def _store(tmp_path: Path, error: OSError) -> Any:
    from dermsight.clinic.imagestore import ImageStore

    store = ImageStore(str(tmp_path / "images"))
    store.fs, store.local = FailingFs(error), False  # every access goes through ``fs``
    return store


def _storage_app(tmp_path: Path) -> FastAPI:
    from sqlalchemy.exc import OperationalError

    app = FastAPI()

    @app.get("/db")
    def db_down() -> None:
        raise OperationalError("SELECT * FROM patient WHERE ref = ?", ("SmithJohn",),
                               sqlite3.OperationalError("unable to open database file"))

    @app.get("/disk-full")
    def disk_full() -> None:
        _store(tmp_path, OSError(errno.ENOSPC, "No space left on device", "/x/SmithJohn")).put(
            b"image", ".jpg")

    @app.get("/read-only")
    def read_only() -> None:
        _store(tmp_path, PermissionError(errno.EACCES, "Permission denied")).put(b"image", ".jpg")

    @app.get("/removed")
    def removed() -> None:
        _store(tmp_path, FileNotFoundError(errno.ENOENT, "No such file or directory")).put(
            b"image", ".jpg")

    @app.get("/other-oserror")
    def other_oserror() -> None:
        raise PermissionError(errno.EACCES, "Permission denied", "/etc/SmithJohn")

    @app.get("/bug")
    def bug() -> None:
        raise KeyError("SmithJohn")

    app.add_middleware(RequestLogMiddleware)
    return app


@pytest.mark.parametrize(("path", "which", "code"), [
    ("/db", "database", "sqlite3.OperationalError"),
    ("/disk-full", "image store", "errno 28 (No space left on device)"),
    ("/read-only", "image store", "errno 13 (Permission denied)"),
    ("/removed", "image store", "errno 2 (No such file or directory)"),
])
def test_a_storage_outage_is_a_json_503_with_retry_after(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str, which: str,
        code: str) -> None:
    caplog.set_level(logging.INFO, logger="dermsight.web")
    with TestClient(_storage_app(tmp_path), raise_server_exceptions=False) as client:
        r = client.get(path)
    assert r.status_code == 503, r.text
    detail = r.json()["detail"]
    assert detail.startswith("clinic storage unavailable: ")
    assert detail.endswith("retry later")
    assert which in detail
    assert int(r.headers["retry-after"]) > 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert f"clinic storage unavailable ({which})" in errors[0]
    assert code.split(" (")[0].replace("sqlite3.", "") in errors[0]
    if which == "image store":
        assert code in errors[0]
    text = caplog.text
    assert "SmithJohn" not in text
    assert "SELECT" not in text
    assert "/x/" not in text


@pytest.mark.parametrize("path", ["/other-oserror", "/bug"])
def test_other_failures_stay_the_catch_all_500(tmp_path: Path, path: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dermsight.web")
    with TestClient(_storage_app(tmp_path), raise_server_exceptions=False) as client:
        r = client.get(path)
    assert r.status_code == 500
    assert r.json()["detail"].startswith("internal server error (request ")
    assert "SmithJohn" not in caplog.text


# --- /health reports the clinic storage -----------------------------------------------------


@pytest.fixture
def health_app(tmp_path: Path, clinic_model: Any) -> Iterator[tuple[TestClient, Any]]:  # noqa: F811
    from dermsight.web.routes.health import router
    from dermsight.web.settings import Settings

    clinic = open_clinic(f"sqlite:///{tmp_path / 'clinic.db'}", str(tmp_path / "images"))
    app = FastAPI()
    app.state.model = clinic_model
    app.state.settings = Settings()
    app.state.clinic = clinic
    app.include_router(router)
    with TestClient(app) as client:
        yield client, clinic
    clinic.close()


def _closed_port_engine() -> Any:
    from sqlalchemy import create_engine

    port = support.free_port()  # nothing listens there: "connection refused", as a stopped server
    return create_engine(f"postgresql+psycopg://dermsight@127.0.0.1:{port}/clinic",
                         connect_args={"connect_timeout": 2})


def test_health_is_ok_while_the_storage_works(health_app: tuple[TestClient, Any]) -> None:
    client, _ = health_app
    r = client.get(f"{API}/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_health_answers_503_while_the_database_is_down(
        health_app: tuple[TestClient, Any], caplog: pytest.LogCaptureFixture) -> None:
    client, clinic = health_app
    working = clinic.db.engine
    clinic.db.engine = _closed_port_engine()
    try:
        r = client.get(f"{API}/health")
        head = client.head(f"{API}/health")
    finally:
        clinic.db.engine.dispose()
        clinic.db.engine = working
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "storage unavailable"
    assert "database" in body["detail"]
    assert body["detail"].endswith("retry later")
    assert int(r.headers["retry-after"]) > 0
    assert head.status_code == 503
    assert head.content == b""
    assert client.get(f"{API}/health").status_code == 200  # back once the database is


def test_health_answers_503_while_the_image_folder_is_gone(
        health_app: tuple[TestClient, Any], tmp_path: Path) -> None:
    client, _ = health_app
    (tmp_path / "images").rename(tmp_path / "moved")
    r = client.get(f"{API}/health")
    assert r.status_code == 503
    assert "image store" in r.json()["detail"]


def test_health_does_not_hang_on_a_hung_image_folder(
        health_app: tuple[TestClient, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import threading
    import time

    from dermsight.web.routes import health

    release = threading.Event()
    on_loop: list[bool] = []

    def hung(clinic: Any) -> str | None:  # os.path.isdir on a hung network mount
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # a worker thread: no event loop runs here
            on_loop.append(False)
        release.wait(10)
        return None

    monkeypatch.setattr(health, "READY_TIMEOUT_S", 0.5)
    monkeypatch.setattr(health, "_images_check", hung)
    client, _ = health_app
    start = time.monotonic()
    try:
        r = client.get(f"{API}/health")
    finally:
        release.set()
    assert time.monotonic() - start < 5
    assert on_loop == [False]  # never on the event loop's thread
    assert r.status_code == 503
    assert "image store" in r.json()["detail"]
    assert int(r.headers["retry-after"]) > 0


# --- a SQLite SQL bug stays a 500; only SQLite outage codes are a 503 ------------------------


def _sqlite_error(sql: str, *, readonly: Path | None = None) -> Any:
    from sqlalchemy import create_engine

    if readonly is not None:
        engine = create_engine(f"sqlite:///file:{readonly}?mode=ro&uri=true")
    else:
        engine = create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    except Exception as exc:  # noqa: BLE001 - the error under test
        return exc
    finally:
        engine.dispose()
    raise AssertionError("no error")


@pytest.mark.parametrize("sql", ["SELEC 1", "SELECT * FROM no_such_table",
                                 "SELECT no_such_column"])
def test_a_sqlite_sql_bug_is_not_a_storage_outage(sql: str) -> None:
    from sqlalchemy.exc import OperationalError

    from dermsight.web.middleware import storage_failure

    exc = _sqlite_error(sql)
    assert isinstance(exc, OperationalError)
    assert exc.orig.sqlite_errorname == "SQLITE_ERROR"
    assert storage_failure(exc) is None


def test_a_sqlite_sql_bug_is_the_catch_all_500(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()

    @app.get("/sql-bug")
    def sql_bug() -> None:
        raise _sqlite_error("SELECT * FROM no_such_table")

    app.add_middleware(RequestLogMiddleware)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/sql-bug")
    assert r.status_code == 500
    assert r.json()["detail"].startswith("internal server error (request ")
    assert "retry-after" not in r.headers


def test_a_sqlite_outage_code_stays_a_storage_outage(tmp_path: Path) -> None:
    import sqlite3 as sq

    from dermsight.web.middleware import storage_failure

    db = tmp_path / "clinic.db"
    sq.connect(db).execute("CREATE TABLE t (x)").connection.commit()
    exc = _sqlite_error("INSERT INTO t VALUES (1)", readonly=db)
    assert exc.orig.sqlite_errorname == "SQLITE_READONLY"
    found = storage_failure(exc)
    assert found is not None
    assert found[0] == "database"
    assert "SQLITE_READONLY" in found[1]


# --- the request log names route templates, never a raw path ---------------------------------


def _log_app() -> FastAPI:
    app = FastAPI()
    clinic = APIRouter()

    @clinic.get("/patients/{patient_id}")
    def patient(patient_id: int) -> dict[str, int]:
        return {"id": patient_id}

    @app.get(f"{API}/reference/{{image_id}}.webp")
    def reference(image_id: str) -> dict[str, str]:
        return {"id": image_id}

    app.include_router(clinic, prefix=API)
    app.add_middleware(RequestLogMiddleware, templates=PathTemplates(lambda: app.router.routes))
    return app


@pytest.mark.parametrize(("path", "status", "logged"), [
    (f"{API}/patients/SmithJohn", 422, f"{API}/patients/{{patient_id}}"),
    (f"{API}/patients/42", 200, f"{API}/patients/42"),
    (f"{API}/patients/2147483647", 200, f"{API}/patients/2147483647"),
    # a personal identity number typed as an id: never in the log
    (f"{API}/patients/197503121234", 200, f"{API}/patients/{{patient_id}}"),
    (f"{API}/patients/2147483648", 200, f"{API}/patients/{{patient_id}}"),
    (f"{API}/reference/Smith%0AJohn.webp", 200, f"{API}/reference/{{image_id}}.webp"),
    ("/Smith/John", 404, "unmatched"),
])
def test_the_request_log_holds_no_raw_path(caplog: pytest.LogCaptureFixture, path: str,
                                           status: int, logged: str) -> None:
    caplog.set_level(logging.INFO, logger="dermsight.web")
    with TestClient(_log_app()) as client:
        r = client.get(path, headers={"X-Request-ID": "rid-1"})
    assert r.status_code == status
    [line] = [rec for rec in caplog.records if rec.msg == LOG_LINE]
    assert line.args is not None
    assert line.args[1] == logged
    assert "rid-1" in line.getMessage()
    assert "Smith" not in caplog.text
    assert "197503121234" not in caplog.text


# --- serve: invalid limits and a weak token: one line, exit code 2 ---------------------------


def _serve(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DERMSIGHT_")}
    full.update(env)
    # a missing bundle: a start that passed the checks ends at once (exit 3), never serves
    return subprocess.run([*support.dermsight_command(), "serve", "--model", "/nonexistent",
                           "--port", str(support.free_port()), *args],
                          env=full, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("name", "value"), [
    ("DERMSIGHT_MAX_DECODE_MB", "nan"), ("DERMSIGHT_MAX_DECODE_MB", "0"),
    ("DERMSIGHT_DECODE_MEMORY_MB", "nan"), ("DERMSIGHT_DECODE_MEMORY_MB", "0"),
    ("DERMSIGHT_MAX_IMAGE_BYTES", "-1"), ("DERMSIGHT_MAX_IMAGE_PIXELS", "-3"),
    ("DERMSIGHT_SECURE_COOKIE", "ture"),
])
def test_serve_refuses_an_invalid_variable_with_one_line(name: str, value: str) -> None:
    r = _serve([], {name: value})
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert name in lines[0]
    assert "Warning" not in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_refuses_a_short_token_beyond_loopback() -> None:
    r = _serve(["--host", "0.0.0.0"], {"DERMSIGHT_API_TOKEN": "x"})
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "at least 16 characters" in lines[0]
    assert "secrets.token_urlsafe" in lines[0]


def test_token_rules() -> None:
    from dermsight.web.settings import token_refusal

    assert token_refusal("127.0.0.1", "x") is None  # loopback accepts any
    assert token_refusal("0.0.0.0", None) is None  # no token: bind_refusal's business
    assert token_refusal("0.0.0.0", "x" * 15) is not None
    assert token_refusal("0.0.0.0", "x" * 16) is None


def test_an_invalid_decoder_limit_warns_at_the_first_decode_outside_serve(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dermsight.io import budget

    monkeypatch.setenv("DERMSIGHT_MAX_DECODE_MB", "nan")
    monkeypatch.setattr(budget, "ENV_ERRORS", {})
    assert budget.env_number("DERMSIGHT_MAX_DECODE_MB", 128) == 128
    with pytest.warns(UserWarning, match="DERMSIGHT_MAX_DECODE_MB='nan' is not a positive"):
        budget.decode_budget()
    assert budget.ENV_ERRORS == {}


def test_a_served_visit_upload_with_the_image_folder_gone_is_a_503(
        tmp_path: Path, data_dir: Path, metadata: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    from clinic_support import image_bytes, image_ids, served_clinic

    caplog.set_level(logging.INFO, logger="dermsight.web")
    with served_clinic(tmp_path) as h:
        lesion = h.lesion(h.patient("P-0001"))
        shutil.rmtree(tmp_path / "clinic-images")  # the folder removed under the server
        r = h.visit(lesion, image_bytes(data_dir, image_ids(metadata, "NV", 1)[0]))
    assert r.status_code == 503, r.text
    assert r.json()["detail"].startswith("clinic storage unavailable: the image store")
    assert "retry-after" in r.headers
    [line] = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert "FileNotFoundError errno 2 (No such file or directory)" in line
    assert str(tmp_path) not in caplog.text
    assert f"/api/v1/lesions/{lesion}/visits" in caplog.text
