"""Clinic storage with real ``dermsight serve`` processes: two instances on one PostgreSQL serve
the same cases (sessions shared through the database); a server killed with SIGKILL while visits
are being uploaded leaves no half-written visit and, after the restart's sweep, no orphan file;
the CLI creates users and purges visits past the retention period."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import api_support
from clinic_support import API, PASSWORD, ClinicHarness, PgCluster, image_bytes, image_ids

pytestmark = pytest.mark.slow


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*api_support.dermsight_command(), *args], input=stdin, text=True,
                          capture_output=True, timeout=120, check=False)


def create_user(database: str, username: str, role: str = "clinician") -> None:
    r = cli("clinic", "create-user", "--database", database, "--username", username, "--role",
            role, "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert f"created {role} '{username}'" in r.stdout


def serve(workdir: Path, database: str, images: Path) -> api_support.Server:
    return api_support.start_server(
        workdir, env={"OMP_NUM_THREADS": "1", "DERMSIGHT_WORKERS": "2",
                      "DERMSIGHT_CLINIC_SWEEP_GRACE_S": "0"},
        extra_args=["--database", database, "--images", str(images)])


def login(server: api_support.Server, username: str) -> httpx.Client:
    c = httpx.Client(base_url=server.base + API, timeout=120)
    r = c.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


def upload(c: httpx.Client, lesion_id: int, image: bytes) -> httpx.Response:
    return c.post(f"/lesions/{lesion_id}/visits",
                  files={"image": ("l.jpg", image, "image/jpeg")}, data={"age": "40"})


def test_two_instances_on_one_postgresql(
        pg_cluster: PgCluster, tmp_path: Path, data_dir: Path,
        metadata: pd.DataFrame) -> None:
    url = pg_cluster.new_database()
    create_user(url, "ana")
    images = tmp_path / "images"  # one folder shared by both instances
    a = serve(tmp_path / "a", url, images)
    b = serve(tmp_path / "b", url, images)
    try:
        assert httpx.get(f"{a.base}{API}/health").json()["clinic"] is True
        ca = login(a, "ana")
        pid = ca.post("/patients", json={"ref": "TWO-1"}).json()["id"]
        lid = ca.post(f"/patients/{pid}/lesions", json={"side": "left"}).json()["id"]
        # the same session (cookie + CSRF token) is valid on the other instance
        cb = httpx.Client(base_url=b.base + API, timeout=120, cookies=ca.cookies,
                          headers={"X-CSRF-Token": ca.headers["X-CSRF-Token"]})
        ids = image_ids(metadata, "NV", 2)
        r = upload(cb, lid, image_bytes(data_dir, ids[0]))
        assert r.status_code == 201, r.text
        visit_b = r.json()
        r = upload(ca, lid, image_bytes(data_dir, ids[1]))
        assert r.status_code == 201, r.text
        for c in (ca, cb):
            lesion = c.get(f"/lesions/{lid}").json()
            assert [v["id"] for v in lesion["visits"]] == \
                sorted([visit_b["id"], r.json()["id"]])
            img = c.get(visit_b["image_url"].removeprefix(API))
            assert img.status_code == 200
        assert [p["ref"] for p in cb.get("/patients").json()] == ["TWO-1"]
        # logging out on one instance ends the session on both
        assert cb.post("/auth/logout").status_code == 204
        assert ca.get("/patients").status_code == 401
    finally:
        a.stop()
        b.stop()
    for s in (a, b):
        assert "Traceback" not in s.log()


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return conn.execute("SELECT id, image_key, heatmap_key FROM visits").fetchall()


def test_sigkill_during_uploads_leaves_no_half_visit_and_no_orphan(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame) -> None:
    db = tmp_path / "clinic.db"
    images = tmp_path / "images"
    create_user(str(db), "ana")
    pool = [image_bytes(data_dir, i) for code in ("NV", "BKL", "MEL")
            for i in image_ids(metadata, code, 12)]
    server = serve(tmp_path / "s0", str(db), images)
    c = login(server, "ana")
    pid = c.post("/patients", json={"ref": "KILL-1"}).json()["id"]
    lid = c.post(f"/patients/{pid}/lesions", json={}).json()["id"]
    orphans_seen = 0
    for rnd in range(3):
        done = threading.Event()
        first_ok = threading.Event()

        def worker(k: int, client: httpx.Client, stop: threading.Event = done,
                   ok: threading.Event = first_ok, r_: int = rnd) -> None:
            j = k
            while not stop.is_set():
                try:
                    r = upload(client, lid, pool[(r_ * 7 + j) % len(pool)])
                except httpx.HTTPError:
                    return  # the server died under us
                if r.status_code == 201:
                    ok.set()
                j += 4

        threads = [threading.Thread(target=worker, args=(k, c)) for k in range(4)]
        for t in threads:
            t.start()
        assert first_ok.wait(120), server.log()
        time.sleep(0.15 * (rnd + 1))
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(30)
        done.set()
        for t in threads:
            t.join(60)
        # straight after the kill: every stored visit is whole (its files exist)
        rows = _rows(db)
        present = _files(images)
        for _, image_key, heatmap_key in rows:
            assert image_key in present
            assert heatmap_key is None or heatmap_key in present
        referenced = {k for _, i, h in rows for k in (i, h) if k}
        orphans_seen += len(present - referenced)
        # the restart sweeps files no visit references (and temporary files)
        server = serve(tmp_path / f"s{rnd + 1}", str(db), images)
        c = login(server, "ana")
        rows = _rows(db)
        referenced = {k for _, i, h in rows for k in (i, h) if k}
        assert _files(images) == referenced
        lesion = c.get(f"/lesions/{lid}").json()
        assert len(lesion["visits"]) == len(rows)
        assert c.get(lesion["visits"][-1]["image_url"].removeprefix(API)).status_code == 200
    server.stop()
    print(f"visits stored: {len(rows)}; files left by the kills and swept: {orphans_seen}")


def test_retention_purge_by_the_cli(
        harness: ClinicHarness, tmp_path: Path, data_dir: Path,
        metadata: pd.DataFrame, db_url: str) -> None:
    h = harness
    h.add_user("ana")
    h.login("ana")
    old_patient = h.patient("OLD-1")
    old_lesion = h.lesion(old_patient)
    keep_lesion = h.lesion(h.patient("NEW-1"))
    ids = image_ids(metadata, "NV", 2)
    old = h.visit(old_lesion, image_bytes(data_dir, ids[0])).json()
    new = h.visit(keep_lesion, image_bytes(data_dir, ids[1])).json()
    from sqlalchemy import text

    with h.clinic.db.engine.begin() as conn:
        conn.execute(text("UPDATE visits SET created_at = :t WHERE id = :i"),
                     {"t": "2020-01-01T00:00:00+00:00", "i": old["id"]})
    folder = tmp_path / "images"
    before = _files(folder)
    r = cli("clinic", "purge", "--database", db_url, "--images", str(folder),
            "--retention-days", "30")
    assert r.returncode == 0, r.stderr
    # the lesion and patient it left empty are counted too (the line said only visits)
    assert "purged 1 visit, 1 lesion and 1 patient (visits stored more than 30 days ago" \
        in r.stdout
    assert h.get(f"/patients/{old_patient}").status_code == 404  # left empty: removed
    assert [v["id"] for v in h.get(f"/lesions/{keep_lesion}").json()["visits"]] == [new["id"]]
    gone = before - _files(folder)
    assert gone
    assert h.get(old["image_url"].removeprefix(API)).status_code == 404
    r = cli("clinic", "purge", "--database", db_url, "--images", str(folder))
    assert r.returncode == 2
    assert "no retention period" in r.stderr
