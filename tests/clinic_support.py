"""Fixtures and helpers for the clinic storage tests (no tests here).

* ``pg_cluster`` (session): a throwaway PostgreSQL cluster (initdb + pg_ctl) in a temporary
  folder, listening on a unix socket only. Skipped with a reason when the server binaries are
  absent; with ``CI=true`` their absence FAILS the tests instead. As root, the cluster runs as
  the ``postgres`` user (initdb refuses root), else as ``nobody``.
* ``db_url``: a fresh, empty database, once on SQLite and once on PostgreSQL.
* ``clinic_model``: the shipped model, loaded once.
* ``ClinicHarness`` / ``harness``: a bare FastAPI app with only the clinic routers mounted, a
  TestClient and helpers to make users, log in and upload real images.

Test modules import the fixtures they use by name (``from clinic_support import ...``).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

PG_USER = "dermsight"
_db_counter = itertools.count()


def pg_bin_dir() -> Path | None:
    given = os.environ.get("DERMSIGHT_PG_BIN")
    candidates = [given] if given else sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                               reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_cluster_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    user = "postgres"
    try:
        import pwd

        pwd.getpwnam(user)
    except KeyError:
        user = "nobody"
    return ["runuser", "-u", user, "--", *cmd]


@dataclass
class PgCluster:
    socket_dir: Path

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@/{database}?host={self.socket_dir}"

    def new_database(self) -> str:
        from sqlalchemy import create_engine, text

        name = f"clinic_{os.getpid()}_{next(_db_counter)}"
        engine = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)


PG_MISSING = ("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's "
              "'postgresql' package (make system-deps) to run the PostgreSQL storage tests")


@contextmanager
def running_pg_cluster(bindir: Path) -> Iterator[PgCluster]:
    """A throwaway cluster from ``bindir`` (``pg_bin_dir()``), stopped and removed on exit.
    Also used outside pytest (``benchmarks/bench_clinic.py``)."""
    # a short folder: unix socket paths are limited to ~107 bytes
    root = Path(tempfile.mkdtemp(prefix="dspg-", dir="/tmp"))
    root.chmod(0o777)
    data, log = root / "data", root / "server.log"
    subprocess.run(_as_cluster_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                                     "-U", PG_USER, "-E", "UTF8", "--no-sync"]),
                   check=True, capture_output=True)
    opts = (f"-k {root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
            "-c max_connections=200")
    subprocess.run(_as_cluster_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log),
                                     "-o", opts, "-w", "-t", "60", "start"]),
                   check=True, capture_output=True)
    try:
        yield PgCluster(root)
    finally:
        subprocess.run(_as_cluster_user([str(bindir / "pg_ctl"), "-D", str(data), "-m",
                                         "immediate", "stop"]), capture_output=True,
                       check=False)
        shutil.rmtree(root, ignore_errors=True)


#: a test parametrised over ``db_url`` that runs on SQLite only
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    bindir = pg_bin_dir()
    if bindir is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(PG_MISSING)
        pytest.skip(PG_MISSING)
    with running_pg_cluster(bindir) as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'clinic.db'}"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()


@pytest.fixture(scope="session")
def clinic_model() -> Any:
    from dermsight.predict import Dermsight

    return Dermsight.load()


# --- real images -----------------------------------------------------------------------------


def image_ids(metadata: pd.DataFrame, diagnosis: str, n: int) -> list[str]:
    ids = sorted(metadata.loc[metadata["diagnosis"] == diagnosis, "image_id"])
    return ids[:: max(1, len(ids) // n)][:n]


def image_bytes(data_dir: Path, image_id: str) -> bytes:
    return (data_dir / "images" / f"{image_id}.jpg").read_bytes()


# --- an app with only the clinic routes ----------------------------------------------------------

API = "/api/v1"
PASSWORD = "correct horse battery"


@dataclass
class ClinicHarness:
    clinic: Any
    client: Any
    csrf: dict[str, str] = field(default_factory=dict)

    def add_user(self, username: str, role: str = "clinician") -> Any:
        from dermsight.clinic.accounts import create_user

        with self.clinic.db.session() as s:
            return create_user(s, username, PASSWORD, role)

    def login(self, username: str, password: str = PASSWORD) -> str:
        r = self.client.post(f"{API}/auth/login",
                             json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        token: str = r.json()["csrf_token"]
        self.client.headers["X-CSRF-Token"] = token
        return token

    def post(self, path: str, **kw: Any) -> Any:
        return self.client.post(f"{API}{path}", **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(f"{API}{path}", **kw)

    def patient(self, ref: str) -> int:
        r = self.post("/patients", json={"ref": ref})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def lesion(self, patient_id: int, **body: Any) -> int:
        r = self.post(f"/patients/{patient_id}/lesions",
                      json={"body_site": "posterior torso", "side": "left", **body})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def visit(self, lesion_id: int, image: bytes, **fields: str) -> Any:
        return self.post(f"/lesions/{lesion_id}/visits",
                         files={"image": ("lesion.jpg", image, "image/jpeg")},
                         data={"age": "55", "sex": "female", "site": "posterior torso",
                               **fields})


def make_app(clinic: Any, model: Any) -> Any:
    from fastapi import FastAPI

    from dermsight.web.clinic.mount import include_clinic
    from dermsight.web.deps import Workers
    from dermsight.web.routes.metrics import ServiceMetrics
    from dermsight.web.settings import Settings

    app = FastAPI()
    app.state.model = model
    app.state.metrics = ServiceMetrics()
    app.state.settings = replace(Settings(), workers=2)
    app.state.workers = Workers(2)
    app.state.clinic = clinic
    include_clinic(app, API)
    return app


def open_clinic(db_url: str, images: str, **config: Any) -> Any:
    from dermsight.clinic.config import ClinicConfig
    from dermsight.clinic.runtime import Clinic

    return Clinic.open(ClinicConfig(database_url=db_url, images=images, **config))


@pytest.fixture
def harness(db_url: str, tmp_path: Path, clinic_model: Any) -> Iterator[ClinicHarness]:
    from fastapi.testclient import TestClient

    clinic = open_clinic(db_url, str(tmp_path / "images"))
    with TestClient(make_app(clinic, clinic_model)) as client:
        yield ClinicHarness(clinic, client)
    clinic.close()


@contextmanager
def served_clinic(tmp_path: Path, **settings: Any) -> Iterator[ClinicHarness]:
    """The served app (``create_app``, as ``dermsight serve --database``) with clinic storage
    on a SQLite file in ``tmp_path``, an admin signed in; ``settings``: other ``Settings``
    fields (e.g. ``api_token``)."""
    from fastapi.testclient import TestClient

    from dermsight.clinic.config import ClinicConfig
    from dermsight.web.app import create_app
    from dermsight.web.settings import Settings

    config = ClinicConfig.resolve(database=f"sqlite:///{tmp_path / 'clinic.db'}", env={})
    app = create_app(replace(Settings(), workers=1, clinic=config, **settings))
    with TestClient(app) as client:
        h = ClinicHarness(client.app.state.clinic, client)  # type: ignore[attr-defined]
        h.add_user("admin", role="admin")
        h.login("admin")
        yield h


def unassessable_jpeg() -> bytes:
    """A photo the gate refuses ("cannot assess"): a black frame."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (600, 450)).save(buf, format="JPEG")
    return buf.getvalue()
