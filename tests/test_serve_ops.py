"""``dermsight serve`` for operators: a health check that notices a full disk, flags and variables
combined field by field, no temporary file left by a failed image write, misspelt ``DERMSIGHT_*``
variables and an unusable ``FORWARDED_ALLOW_IPS`` refused (the names Kubernetes and Docker set
passed over), one log format on one line per record."""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import api_support as support
from clinic_support import clinic_model, open_clinic  # noqa: F401 - fixture

API = "/api/v1"
REPO = Path(__file__).resolve().parents[1]


def _enospc(*_: Any, **__: Any) -> Any:
    raise OSError(errno.ENOSPC, "No space left on device")


# --- the health check probes the storage and remembers the failures requests met ------------


@pytest.fixture
def health_app(tmp_path: Path, clinic_model: Any) -> Iterator[tuple[TestClient, Any]]:  # noqa: F811
    """The health route over clinic storage on SQLite, with the failure memory the app's lifespan
    sets up (``watch_storage``)."""
    from dermsight.web.routes import health
    from dermsight.web.settings import Settings

    clinic = open_clinic(f"sqlite:///{tmp_path / 'clinic.db'}", str(tmp_path / "images"))
    app = FastAPI()
    app.state.model = clinic_model
    app.state.settings = Settings()
    app.state.clinic = clinic
    # (looked up so that the tests below fail on their assertions, not here, without it)
    if (watch := getattr(health, "watch_storage", None)) is not None:
        app.state.storage_failures = watch(clinic)
    app.include_router(health.router)
    with TestClient(app) as client:
        yield client, clinic
    clinic.close()


def _temporary_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".tmp-")]


def test_health_is_503_while_the_image_disk_is_full_and_200_once_it_is_not(
        health_app: tuple[TestClient, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dermsight.clinic import imagestore
    from dermsight.web.routes import health

    # every check tests the folder (the interval between tests is tested on its own below)
    monkeypatch.setattr(health, "IMAGE_CHECK_INTERVAL_S", 0.0, raising=False)
    client, _ = health_app
    assert client.get(f"{API}/health").status_code == 200
    with monkeypatch.context() as m:
        m.setattr(imagestore.os, "fsync", _enospc)  # every write of the folder: disk full
        r = client.get(f"{API}/health")
        head = client.head(f"{API}/health")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "storage unavailable"
    assert body["detail"].startswith("clinic storage unavailable: the image store")
    assert "ENOSPC, no space left on device" in body["detail"]
    assert body["detail"].endswith("retry later")
    assert int(r.headers["retry-after"]) > 0
    assert head.status_code == 503
    assert str(tmp_path) not in r.text
    assert client.get(f"{API}/health").status_code == 200  # the disk has room again
    assert _temporary_files(tmp_path / "images") == []  # the probe leaves nothing behind


def test_health_remembers_a_database_write_refused_for_a_full_disk(
        health_app: tuple[TestClient, Any], caplog: pytest.LogCaptureFixture) -> None:
    """SQLite's ``SQLITE_FULL`` (here from ``max_page_count``, as from a full disk): a
    ``SELECT 1`` still works, so only the remembered failure tells the health check."""
    from sqlalchemy.exc import OperationalError

    client, clinic = health_app
    with clinic.db.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(OperationalError, match="full") as raised:
            conn.exec_driver_sql("CREATE TABLE filler AS SELECT zeroblob(100000) AS x")
        conn.rollback()
        conn.invalidate()  # the limit stays with this connection only
    assert raised.value.orig.sqlite_errorname == "SQLITE_FULL"  # type: ignore[union-attr]
    caplog.set_level(logging.INFO, logger="dermsight.web")
    r = client.get(f"{API}/health")
    assert r.status_code == 503, r.text
    detail = r.json()["detail"]
    assert detail.startswith("clinic storage unavailable: the database")
    assert "SQLITE_FULL" in detail
    assert any("SQLITE_FULL" in rec.getMessage() for rec in caplog.records
               if rec.levelno >= logging.ERROR)
    failures = client.app.state.storage_failures  # type: ignore[attr-defined]
    failures.memory_s = 0.2  # the failure is forgotten after the memory: the disk has room
    time.sleep(0.3)
    assert client.get(f"{API}/health").status_code == 200


def test_a_passing_lock_or_an_sql_bug_is_not_remembered() -> None:
    import sqlite3

    from dermsight.web.routes.health import unwritable_database

    def error(name: str) -> sqlite3.OperationalError:
        exc = sqlite3.OperationalError("x")
        exc.sqlite_errorname = name
        return exc

    assert unwritable_database(error("SQLITE_FULL")) == "SQLITE_FULL"
    assert unwritable_database(error("SQLITE_IOERR_WRITE")) == "SQLITE_IOERR_WRITE"
    assert unwritable_database(error("SQLITE_BUSY")) is None
    assert unwritable_database(error("SQLITE_ERROR")) is None


def test_health_reports_a_full_sqlite_disk_without_writing_there(
        health_app: tuple[TestClient, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = health_app
    real = os.statvfs

    def full(path: Any) -> Any:
        st = real(path)
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, 0, 0, st.f_files,
                                  st.f_ffree, st.f_favail, st.f_flag, st.f_namemax))

    monkeypatch.setattr(os, "statvfs", full)
    r = client.get(f"{API}/health")
    assert r.status_code == 503, r.text
    assert "the database" in r.json()["detail"]
    assert "no space left on its disk" in r.json()["detail"]


def test_the_served_app_remembers_an_upload_refused_for_a_full_disk(
        tmp_path: Path, data_dir: Path, metadata: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ``create_app`` (its lifespan sets the memory up): a visit whose image cannot be
    written is a 503, and the health check says so until the memory ends, the probe passing."""
    from clinic_support import image_bytes, image_ids, served_clinic
    from dermsight.clinic import imagestore

    with served_clinic(tmp_path) as h:
        lesion = h.lesion(h.patient("P-0001"))
        image = image_bytes(data_dir, image_ids(metadata, "NV", 1)[0])
        real_fsync = os.fsync

        def nearly_full(fd: int) -> None:  # a 4 KiB probe fits, a whole image does not
            if os.fstat(fd).st_size > 4096:
                _enospc()
            real_fsync(fd)

        with monkeypatch.context() as m:
            m.setattr(imagestore.os, "fsync", nearly_full)
            r = h.visit(lesion, image)
        assert r.status_code == 503, r.text
        health = h.client.get(f"{API}/health")
        assert health.status_code == 503, health.text
        assert "the image store" in health.json()["detail"]
        assert "ENOSPC" in health.json()["detail"]
        h.client.app.state.storage_failures.memory_s = 0.2
        time.sleep(0.3)
        assert h.client.get(f"{API}/health").status_code == 200
        assert h.visit(lesion, image).status_code == 201


def _count_probes(monkeypatch: pytest.MonkeyPatch, *, until: Any = None,
                  seconds: float = 0.0) -> dict[str, int]:
    """``ImageStore.probe`` counted: calls started, and those running now; each waits for the
    event ``until`` (a hung mount) or sleeps ``seconds`` (a slow fsync) first."""
    import threading

    from dermsight.clinic import imagestore

    real = imagestore.ImageStore.probe
    seen = {"started": 0, "running": 0}
    lock = threading.Lock()

    def probe(self: Any) -> None:
        with lock:
            seen["started"] += 1
            seen["running"] += 1
        try:
            if until is not None:
                until.wait(10)
            time.sleep(seconds)
            real(self)
        finally:
            with lock:
                seen["running"] -= 1

    monkeypatch.setattr(imagestore.ImageStore, "probe", probe)
    return seen


def _concurrent_health(app: Any, n: int) -> list[int]:
    """The status codes of ``n`` health checks sent at the same moment."""
    import asyncio

    import httpx

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = await asyncio.gather(*(client.get(f"{API}/health") for _ in range(n)))
        return [r.status_code for r in answers]

    return asyncio.run(main())


def test_concurrent_health_checks_share_one_test_write(
        health_app: tuple[TestClient, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The public route cannot make the image disk write and fsync at request rate: 20 checks at
    once share one test write, and the checks in the next seconds get its answer."""
    client, _ = health_app
    seen = _count_probes(monkeypatch, seconds=0.3)
    assert _concurrent_health(client.app, 20) == [200] * 20
    assert seen["started"] == 1
    for _ in range(5):
        assert client.get(f"{API}/health").status_code == 200
        assert client.head(f"{API}/health").status_code == 200
    assert seen["started"] == 1  # within the interval: the last answer
    client.app.state.image_folder_check.interval_s = 0.0  # type: ignore[attr-defined]
    assert client.get(f"{API}/health").status_code == 200
    assert seen["started"] == 2  # once it has passed: a new test write


def test_a_hung_image_folder_holds_one_thread_however_often_health_is_asked(
        health_app: tuple[TestClient, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A test write that hangs (a hung mount, an fsync that never returns) makes every check a
    503, at once after the first, and never starts a second write beside it."""
    import threading

    from dermsight.web.routes import health

    monkeypatch.setattr(health, "READY_TIMEOUT_S", 0.3)
    release = threading.Event()
    seen = _count_probes(monkeypatch, until=release)
    client, _ = health_app
    try:
        first = client.get(f"{API}/health")
        assert first.status_code == 503, first.text
        assert "no answer within 0.3 s" in first.json()["detail"]
        start = time.monotonic()
        later = [client.get(f"{API}/health").status_code for _ in range(10)]
        later += _concurrent_health(client.app, 10)
        waited = time.monotonic() - start
        assert later == [503] * 20
        assert seen == {"started": 1, "running": 1}
        assert waited < 3  # answered at once, not after a wait each
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while client.get(f"{API}/health").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.02)  # 503 at once until the hung write ends, then its answer
    assert client.get(f"{API}/health").status_code == 200
    assert seen["started"] == 1


def test_health_measures_a_symlinked_sqlite_database_on_its_own_disk(
        tmp_path: Path, clinic_model: Any,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite file linked from another filesystem: the free blocks counted are those of the
    disk the file is on, not of the folder holding the link."""
    from dermsight.web.routes import health
    from dermsight.web.settings import Settings

    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.mkdir()
    open_clinic(f"sqlite:///{real / 'clinic.db'}", str(tmp_path / "images")).close()
    (link / "clinic.db").symlink_to(real / "clinic.db")
    clinic = open_clinic(f"sqlite:///{link / 'clinic.db'}", str(tmp_path / "images"))
    statvfs = os.statvfs
    full_disk = os.path.realpath(real)

    def fake(path: Any) -> Any:  # the disk under real/ is full, the one under link/ is not
        st = statvfs(path)
        if not os.path.realpath(os.fspath(path)).startswith(full_disk):
            return st
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, 0, 0, st.f_files,
                                  st.f_ffree, st.f_favail, st.f_flag, st.f_namemax))

    monkeypatch.setattr(os, "statvfs", fake)
    app = FastAPI()
    app.state.model = clinic_model
    app.state.settings = Settings()
    app.state.clinic = clinic
    app.include_router(health.router)
    try:
        with TestClient(app) as client:
            r = client.get(f"{API}/health")
    finally:
        clinic.close()
    assert r.status_code == 503, r.text
    assert "no space left on its disk" in r.json()["detail"]


# --- a failed image write leaves no temporary file --------------------------------------------


@pytest.mark.parametrize("fails", ["fsync", "replace"])
def test_a_failed_image_write_leaves_no_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str) -> None:
    from dermsight.clinic import imagestore

    store = imagestore.ImageStore(str(tmp_path / "images"))
    seen: list[OSError] = []
    store.on_failure = seen.append
    monkeypatch.setattr(imagestore.os, fails, _enospc)
    with pytest.raises(OSError, match="No space left") as raised:
        store.put(b"image bytes", "jpg")
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert list((tmp_path / "images").iterdir()) == []
    assert [e.errno for e in seen] == [errno.ENOSPC]
    assert store.put(b"image bytes", "jpg") in os.listdir(tmp_path / "images")


# --- serve: flags and variables, misspelt variables, FORWARDED_ALLOW_IPS ---------------------


def _serve(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith("DERMSIGHT_") and k != "FORWARDED_ALLOW_IPS"}
    full.update(env)
    # a missing bundle: a start that passed the checks ends at once (exit 3), never serves
    return subprocess.run([*support.dermsight_command(), "serve", "--model", "/nonexistent",
                           "--port", str(support.free_port()), *args],
                          env=full, capture_output=True, text=True, timeout=120)


def _passed_the_checks(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 3, r.stdout + r.stderr
    assert "model bundle not found" in r.stderr


PG_URL = "postgresql+psycopg://dermsight@127.0.0.1:1/clinic"  # never connected: no bundle


@pytest.mark.parametrize("args", [["--images", "IMAGES"], ["--database", "DB"]])
def test_a_flag_combines_with_the_database_variable(tmp_path: Path, args: list[str]) -> None:
    """``DERMSIGHT_DATABASE_URL`` (PostgreSQL) with ``--images``: the folder comes from the flag;
    ``--database`` replaces the variable's database (the flag wins)."""
    given = {"IMAGES": str(tmp_path / "images"), "DB": str(tmp_path / "clinic.db")}
    _passed_the_checks(_serve([args[0], given[args[1]]], {"DERMSIGHT_DATABASE_URL": PG_URL}))


def test_images_without_a_database_is_refused(tmp_path: Path) -> None:
    r = _serve(["--images", str(tmp_path / "images")], {})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--images needs clinic storage" in r.stderr


def test_settings_take_the_command_s_clinic_storage_as_it_is() -> None:
    from dermsight.clinic.config import ClinicConfig
    from dermsight.web.settings import Settings

    env = {"DERMSIGHT_DATABASE_URL": PG_URL}
    clinic = ClinicConfig.resolve(images="/srv/images", env=env)
    assert clinic is not None
    assert Settings.from_env(env, clinic=clinic).clinic == clinic


@pytest.mark.parametrize(("env", "said"), [
    ({"DERMSIGHT_SESION_IDLE_MINUTES": "5"}, "did you mean DERMSIGHT_SESSION_IDLE_MINUTES"),
    ({"FORWARDED_ALLOW_IPS": "not-an-ip"}, "'not-an-ip' is not an IP address"),
    ({"FORWARDED_ALLOW_IPS": "10.0.0.1/24"}, "'10.0.0.1/24' is not a network"),
])
def test_serve_refuses_a_misspelt_variable_or_an_unusable_proxy_list(
        env: dict[str, str], said: str) -> None:
    r = _serve([], env)
    assert r.returncode == 2, r.stdout + r.stderr
    [line] = r.stderr.strip().splitlines()
    assert said in line
    assert next(iter(env)) in line
    assert "Traceback" not in r.stderr


#: what Kubernetes sets in every pod of a namespace with a Service named ``dermsight`` (port
#: 8000, named http) and one named ``dermsight-db``; what Docker's legacy links set
TOOL_ENV = {
    "DERMSIGHT_SERVICE_HOST": "10.96.0.12", "DERMSIGHT_SERVICE_PORT": "8000",
    "DERMSIGHT_SERVICE_PORT_HTTP": "8000", "DERMSIGHT_PORT": "tcp://10.96.0.12:8000",
    "DERMSIGHT_PORT_8000_TCP": "tcp://10.96.0.12:8000", "DERMSIGHT_PORT_8000_TCP_PROTO": "tcp",
    "DERMSIGHT_PORT_8000_TCP_PORT": "8000", "DERMSIGHT_PORT_8000_TCP_ADDR": "10.96.0.12",
    "DERMSIGHT_PORT_53_UDP_ADDR": "10.96.0.12", "DERMSIGHT_PORT_9_SCTP": "sctp://10.96.0.12:9",
    "DERMSIGHT_DB_SERVICE_HOST": "10.96.0.13", "DERMSIGHT_DB_PORT": "tcp://10.96.0.13:5432",
    "DERMSIGHT_DB_PORT_5432_TCP_ADDR": "10.96.0.13",
    "DERMSIGHT_NAME": "/web/dermsight", "DERMSIGHT_ENV_PATH": "/usr/bin",
}


def test_serve_starts_beside_the_names_kubernetes_and_docker_set() -> None:
    """A Kubernetes Service named ``dermsight`` must not put ``serve`` in a restart loop."""
    r = _serve([], TOOL_ENV)
    _passed_the_checks(r)
    assert not any(name in r.stdout + r.stderr for name in TOOL_ENV)  # not a word


@pytest.mark.parametrize("name", sorted(TOOL_ENV))
def test_a_name_a_deployment_tool_sets_is_neither_refused_nor_warned_of(name: str) -> None:
    from dermsight.web.settings import unknown_variable_refusal, warn_unknown_variables

    assert unknown_variable_refusal({name: TOOL_ENV[name]}) is None
    assert warn_unknown_variables({name: TOOL_ENV[name]}) == []


def test_no_known_variable_looks_like_a_deployment_tool_s() -> None:
    from dermsight.web.settings import KNOWN_VARIABLES, TOOL_VARIABLE

    assert [name for name in KNOWN_VARIABLES if TOOL_VARIABLE.fullmatch(name)] == []


@pytest.mark.parametrize(("name", "known"), [
    ("DERMSIGHT_SESION_IDLE_MINUTES", "DERMSIGHT_SESSION_IDLE_MINUTES"),
    ("DERMSIGHT_DB_URL", "DERMSIGHT_DATABASE_URL"),
    ("DERMSIGHT_TOKEN", "DERMSIGHT_API_TOKEN"),
    ("DERMSIGHT_SECURE_COOKIES", "DERMSIGHT_SECURE_COOKIE"),
])
def test_a_misspelt_setting_is_refused_naming_the_one_it_looks_like(name: str,
                                                                     known: str) -> None:
    from dermsight.web.settings import unknown_variable_refusal, warn_unknown_variables

    line = unknown_variable_refusal({name: "1", **TOOL_ENV})
    assert line is not None
    assert f"unknown environment variable {name}: did you mean {known}?" in line
    assert warn_unknown_variables({name: "1"}) == []  # refused, so not warned of too


def test_serve_warns_of_a_name_close_to_no_setting_and_starts() -> None:
    """``DERMSIGHT_ENVIRONMENT`` (an operator's own label) looks like no setting: one warning
    line, in the log's format, and the start goes on."""
    r = _serve([], {"DERMSIGHT_ENVIRONMENT": "production"})
    _passed_the_checks(r)
    said = [line for line in (r.stdout + r.stderr).splitlines() if "DERMSIGHT_ENVIRONMENT" in line]
    assert len(said) == 1, r.stdout + r.stderr
    assert LINE.match(said[0])
    assert " WARNING dermsight.serve: DERMSIGHT_ENVIRONMENT is not a dermsight setting: " \
        "ignored" in said[0]


def test_uvicorn_s_lowest_version_takes_networks_in_the_proxy_list() -> None:
    """``forwarded_ips_refusal`` accepts networks (``10.1.0.0/24``): uvicorn reads them as such
    only from 0.31.0 on (before, as text matching no address), so the package requires it."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    [spec] = [d for d in deps if re.match(r"uvicorn\b", d)]
    lowest = re.search(r">=\s*([\d.]+)", spec)
    assert lowest is not None, spec
    assert tuple(int(p) for p in lowest.group(1).split(".")) >= (0, 31)


def test_serve_accepts_every_variable_the_project_knows() -> None:
    from dermsight.web.settings import KNOWN_VARIABLES

    env = {name: "" for name in KNOWN_VARIABLES}  # empty: each one's default
    env["FORWARDED_ALLOW_IPS"] = "10.0.0.5, 10.1.0.0/24,::1"
    _passed_the_checks(_serve([], env))


def test_the_known_variables_are_the_ones_the_project_reads() -> None:
    """Every ``DERMSIGHT_*`` name in the sources, tests, tools and docs is known (``serve`` would
    refuse or warn of it otherwise) or one a deployment tool sets (the docs name some), and every
    known one is used somewhere."""
    from dermsight.web.settings import KNOWN_VARIABLES, TOOL_VARIABLE

    used: set[str] = set()
    roots = [REPO / d for d in ("src", "tests", "tools", "benchmarks", "docs", ".ci",
                                "frontend/src", "frontend/e2e")]
    files = [REPO / "README.md", REPO / "Makefile", REPO / "CONTRIBUTING.md",
             REPO / "frontend" / "README.md"]
    for root in roots:
        if root.is_dir():
            files += [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                      and p.suffix in (".py", ".md", ".ts", ".tsx", ".yml", ".yaml", ".sh",
                                       ".toml", ".cfg", ".txt", ".json", "")]
    for path in files:
        if path.name == Path(__file__).name or not path.is_file():
            continue
        used |= set(re.findall(r"DERMSIGHT_[A-Z0-9_]*[A-Z0-9]",
                               path.read_text(encoding="utf-8", errors="replace")))
    used = {name for name in used if not TOOL_VARIABLE.fullmatch(name)}
    assert used - KNOWN_VARIABLES == set()
    assert KNOWN_VARIABLES - used == set()


# --- one log format, one line per record ------------------------------------------------------

LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 "
                  r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S")


def test_the_formatter_writes_utc_and_one_line_per_record() -> None:
    from dermsight.web.server import OneLineFormatter

    try:
        raise ValueError("first\nsecond")
    except ValueError:
        record = logging.LogRecord("alembic.runtime.migration", logging.INFO, __file__, 1,
                                   "Running upgrade -> 0001, %s", ("base tables\nand more",),
                                   sys.exc_info())
    record.created = 1796636607.821  # 2026-12-07T09:43:27.821 UTC
    text = OneLineFormatter().format(record)
    assert "\n" not in text
    assert text.startswith("2026-12-07T09:43:27.821+00:00 INFO alembic.runtime.migration: "
                           "Running upgrade -> 0001, base tables\\nand more\\nTraceback")
    assert "ValueError: first\\nsecond" in text


def test_a_captured_warning_ends_without_a_line_break() -> None:
    """``logging.captureWarnings`` logs ``warnings.formatwarning``'s text, which ends in a line
    break: not written as a literal ``\\n`` at the end of the line."""
    import warnings

    from dermsight.web.server import OneLineFormatter

    text = warnings.formatwarning("careful", UserWarning, "x.py", 1, "warnings.warn('careful')")
    assert text.endswith("\n")
    record = logging.LogRecord("py.warnings", logging.WARNING, __file__, 1, "%s", (text,), None)
    line = OneLineFormatter().format(record)
    assert line.endswith("UserWarning: careful\\n  warnings.warn('careful')"), line


def test_the_server_log_has_one_format(tmp_path: Path) -> None:
    """A real ``serve`` with clinic storage (Alembic's migrations log too): every line of its
    output, uvicorn's and the start-up lines included, is one record in the one format."""
    db = f"sqlite:///{tmp_path / 'clinic.db'}"
    server = support.start_server(tmp_path / "run", extra_args=["--database", db])
    try:
        assert server.client().get(f"{API}/health").status_code == 200
    finally:
        server.stop()
    lines = server.log().splitlines()
    assert lines
    bad = [line for line in lines if not LINE.match(line)]
    assert bad == [], "\n".join(bad[:10])
    text = "\n".join(lines)
    assert " INFO dermsight.serve: serving " in text
    assert " INFO alembic.runtime.migration: Running upgrade  -> 0001" in text
    assert " INFO uvicorn.error: Shutting down" in text
