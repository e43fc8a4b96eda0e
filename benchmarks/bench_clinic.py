"""Clinic load benchmark: real ``dermsight serve --database ...`` processes on loopback.

    python benchmarks/bench_clinic.py           # PostgreSQL + SQLite, 8 clients x 2,000 visits
    python benchmarks/bench_clinic.py --quick   # 200 visits per backend (development)
    python benchmarks/bench_clinic.py --backends sqlite
    python benchmarks/bench_clinic.py --total 8000 --server-env MALLOC_ARENA_MAX=2  # RSS

For each storage backend (a throwaway PostgreSQL cluster started from the Debian server binaries,
the same code the tests use; a SQLite file), one server is started with an image folder, a
clinician is created with ``dermsight clinic create-user``, and N concurrent clients (each logged
in with its own session cookie + CSRF token, one patient and five lesions each) create visits:
``POST /api/v1/lesions/{id}/visits`` with a real image of the shared ISIC subset (a different
image for every request) and its age / sex / site, which decodes, assesses (prediction, heatmap,
embedding), stores the PNGs and writes the row. Measured:

* latency p50 / p95 / p99, throughput and errors (anything but 201 is an error) of the visits;
* the same clients' stateless ``POST /api/v1/predict`` (same images, heatmap on) on the same
  server, right after: how much the clinic adds per request;
* server RSS sampled every 0.2 s during the visits: start / peak / end and the slope (MB per
  1,000 visits, least squares, whole run and second half);
* server CPU per visit, load average before / during / after (the machine may be shared);
* afterwards, straight from the database and the image folder: one row per 201, every row's
  files present, no file that no row references;
* in this process, one thread, the CPU time of each step a visit takes (``clinic.visits``:
  prediction with and without the heatmap, the PNG encodings, files + row):
  where the server's CPU per visit goes.

Writes ``benchmarks/results/clinic.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests")]

from bench_api import DATA, cpu_s, pct, rss_mb  # noqa: E402

import api_support  # noqa: E402  (tests/: starts a real `dermsight serve`)
from clinic_support import PASSWORD, pg_bin_dir, running_pg_cluster  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "clinic.json"
TARGETS = {"errors": 0, "p95_ms": 300.0, "rss_change_pct": 10.0}
API = "/api/v1"
LESIONS_PER_CLIENT = 5
BOUNDARY = "clinicBENCH9"
USER = "bench"


# --- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    image_id: str
    image: bytes  # the JPEG file
    body: bytes  # the multipart body: age, sex, site (when usable) + the image


def _form(fields: dict[str, str], image: bytes) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="l.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return b"".join(parts) + head + image + f"\r\n--{BOUNDARY}--\r\n".encode()


def uploads(n: int) -> list[Upload]:
    """``n`` different real images, spread over the classes, with their own age / sex / site
    (values the clinic would refuse are left out, as a clinician would leave them empty)."""
    from dermsight.records import Metadata

    if not (DATA / "metadata.csv").is_file():
        raise SystemExit(f"shared data not found at {DATA} (set DERMSIGHT_SHARED_DATA)")
    md = pd.read_csv(DATA / "metadata.csv", dtype=str, keep_default_na=False)
    md = md[md["near_dup_of"] == ""].sort_values("image_id")  # no near-duplicate images
    rows = md.sample(n=min(n, len(md)), random_state=1)  # the subset's own class mix
    out = []
    for _, row in rows.iterrows():
        fields = {}
        for name, col in (("age", "age_approx"), ("sex", "sex"), ("site", "anatom_site")):
            try:
                Metadata.parse(**{name: row[col]})
                if row[col]:
                    fields[name] = row[col]
            except ValueError:
                pass
        image = (DATA / "images" / f"{row['image_id']}.jpg").read_bytes()
        out.append(Upload(row["image_id"], image, _form(fields, image)))
    if len(out) < n:
        raise SystemExit(f"only {len(out)} images in {DATA}, {n} needed")
    return out


class Client:
    """One keep-alive HTTP/1.1 connection with its own clinic session (stdlib only, so the
    client takes as little CPU from the server as possible)."""

    def __init__(self, port: int, k: int) -> None:
        self.port, self.k = port, k
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers: dict[str, str] = {}
        status, data = self.call("POST", "/auth/login", json.dumps(
            {"username": USER, "password": PASSWORD}).encode(), "application/json")
        if status != 200:
            raise SystemExit(f"login failed ({status}): {data[:300]!r}")
        self.headers["X-CSRF-Token"] = json.loads(data)["csrf_token"]
        _, data = self.call("POST", "/patients", json.dumps({"ref": f"BENCH-{k}"}).encode(),
                            "application/json")
        patient = json.loads(data)["id"]
        self.lesions = []
        for j in range(LESIONS_PER_CLIENT):
            _, data = self.call("POST", f"/patients/{patient}/lesions", json.dumps(
                {"body_site": "posterior torso", "side": "left", "location": f"mole {j}"}
            ).encode(), "application/json")
            self.lesions.append(int(json.loads(data)["id"]))
        self.sent = 0

    def call(self, method: str, path: str, body: bytes, ctype: str) -> tuple[int, bytes]:
        headers = {**self.headers, "Content-Type": ctype, "Content-Length": str(len(body))}
        try:
            self.conn.request(method, API + path, body=body, headers=headers)
            r = self.conn.getresponse()
            data = r.read()
            cookie = r.getheader("set-cookie")
            if cookie:
                self.headers["Cookie"] = cookie.split(";", 1)[0]
            return r.status, data
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            return -1, repr(exc).encode()

    def visit(self, up: Upload) -> tuple[bool, float]:
        lesion = self.lesions[self.sent % len(self.lesions)]
        self.sent += 1
        t0 = time.perf_counter()
        status, data = self.call("POST", f"/lesions/{lesion}/visits", up.body,
                                 f"multipart/form-data; boundary={BOUNDARY}")
        ok = status == 201 and b'"image_url"' in data
        return ok, (time.perf_counter() - t0) * 1000.0

    def predict(self, up: Upload) -> tuple[bool, float]:
        t0 = time.perf_counter()
        status, data = self.call("POST", "/predict", up.body,
                                 f"multipart/form-data; boundary={BOUNDARY}")
        ok = status == 200 and b'"probabilities"' in data
        return ok, (time.perf_counter() - t0) * 1000.0

    def close(self) -> None:
        self.conn.close()


@dataclass
class Run:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    done: int = 0
    wall_s: float = 0.0
    first_errors: list[str] = field(default_factory=list)


def drive(pool: list[Client], work: list[Upload], stateless: bool = False,
          run: Run | None = None) -> Run:
    """Every upload of ``work`` once, over the clients in ``pool`` (one thread each)."""
    run = Run() if run is None else run
    lock, it = threading.Lock(), iter(work)

    def worker(c: Client) -> None:
        while True:
            with lock:
                up = next(it, None)
            if up is None:
                return
            ok, ms = c.predict(up) if stateless else c.visit(up)
            with lock:
                run.latencies_ms.append(ms)
                run.done += 1
                if not ok:
                    run.errors += 1
                    if len(run.first_errors) < 5:
                        run.first_errors.append(up.image_id)

    threads = [threading.Thread(target=worker, args=(c,)) for c in pool]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.wall_s = time.perf_counter() - t0
    return run


class RssSampler:
    """Samples the server's RSS (and the requests done so far) every ``every_s`` seconds."""

    def __init__(self, pid: int, run: Run, every_s: float = 0.2) -> None:
        self.pid, self.run, self.every_s = pid, run, every_s
        self.samples: list[tuple[float, int, float]] = []  # (s, requests done, RSS MB)
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - t0, self.run.done, rss_mb(self.pid)))
            if len(self.samples) % 25 == 1:
                self.loads.append(os.getloadavg()[0])
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((self.samples[-1][0] + self.every_s, self.run.done,
                             rss_mb(self.pid)))

    def summary(self) -> dict[str, Any]:
        done = np.array([s[1] for s in self.samples], dtype=float)
        rss = np.array([s[2] for s in self.samples], dtype=float)

        def slope(sel: np.ndarray) -> float:  # MB per 1,000 requests
            if sel.sum() < 3 or np.ptp(done[sel]) == 0:
                return float("nan")
            return float(np.polyfit(done[sel], rss[sel], 1)[0] * 1000.0)

        half = done >= done[-1] / 2
        return {
            "samples": len(rss), "start_mb": float(rss[0]), "peak_mb": float(rss.max()),
            "end_mb": float(rss[-1]), "change_pct": float(100.0 * (rss[-1] - rss[0]) / rss[0]),
            "slope_mb_per_1000": slope(np.ones_like(done, dtype=bool)),
            "slope_second_half_mb_per_1000": slope(half),
            "trace": [[round(t, 2), int(d), round(r, 1)] for t, d, r in
                      self.samples[:: max(1, len(self.samples) // 60)]],
        }


# --- storage backends ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    url: str
    postmaster: int | None = None  # PostgreSQL: its server process (its CPU is counted too)

    def db_cpu_s(self) -> float:
        """CPU seconds of the PostgreSQL server and its backends so far (0 for SQLite, whose
        work is done inside the app process)."""
        if self.postmaster is None:
            return 0.0
        import psutil

        root = psutil.Process(self.postmaster)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total


@contextlib.contextmanager
def backend(name: str, workdir: Path) -> Iterator[Backend]:
    if name == "sqlite":
        yield Backend(f"sqlite:///{workdir / 'clinic.db'}")
        return
    bindir = pg_bin_dir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found (make system-deps)")
    with running_pg_cluster(bindir) as cluster:
        pid_file = cluster.socket_dir / "data" / "postmaster.pid"  # clinic_support's layout
        pid = int(pid_file.read_text().split()[0]) if pid_file.is_file() else None
        yield Backend(cluster.new_database(), pid)


def integrity(url: str, images: Path) -> dict[str, Any]:
    """One row per created visit, every row's files present, no file no row references."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT image_key, heatmap_key FROM visits")).all()
    engine.dispose()
    referenced = {k for row in rows for k in row if k}
    files = {p.name for p in images.iterdir() if p.is_file()}
    return {"visit_rows": len(rows), "files": len(files),
            "missing_files": len(referenced - files), "orphan_files": len(files - referenced)}


def create_user(url: str) -> None:
    r = subprocess.run([*api_support.dermsight_command(), "clinic", "create-user", "--database",
                        url, "--username", USER, "--role", "clinician", "--password-stdin"],
                       input=PASSWORD + "\n", text=True, capture_output=True, timeout=120,
                       check=False)
    if r.returncode != 0:
        raise SystemExit(f"create-user failed: {r.stderr.strip()}")


def server_env(args: argparse.Namespace) -> dict[str, str]:
    env = {}
    for item in args.server_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--server-env wants KEY=VALUE, not {item!r}")
        env[key] = value
    return env


def bench_backend(name: str, args: argparse.Namespace, work: list[Upload],
                  warm: list[Upload], baseline: list[Upload]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-clinic-{name}-") as tmp, \
            backend(name, Path(tmp)) as db:
        url = db.url
        images = Path(tmp) / "images"
        create_user(url)
        extra = ["--database", url, "--images", str(images), "--log-level", "warning"]
        if args.workers:
            extra += ["--workers", str(args.workers)]
        server = api_support.start_server(REPO / "benchmarks" / "out" / f"clinic-{name}",
                                          env=server_env(args), extra_args=extra)
        try:
            pool = [Client(server.port, k) for k in range(args.clients)]
            warm_run = drive(pool, warm)
            run = Run()
            cpu0, db0 = cpu_s(server.proc.pid), db.db_cpu_s()
            load0 = os.getloadavg()[0]
            with RssSampler(server.proc.pid, run) as sampler:
                measured = drive(pool, work, run=run)
            cpu_ms = 1000.0 * (cpu_s(server.proc.pid) - cpu0) / len(work)
            db_ms = 1000.0 * (db.db_cpu_s() - db0) / len(work)
            stateless = drive(pool, baseline, stateless=True)
            for c in pool:
                c.close()
            check = integrity(url, images)
        finally:
            server.stop()
        log = server.log()
    lat = measured.latencies_ms
    ok = len(work) - measured.errors
    result: dict[str, Any] = {
        "backend": name, "clients": args.clients, "warmup_visits": len(warm),
        "warmup_errors": warm_run.errors, "requests": len(work), "errors": measured.errors,
        "failed_images": measured.first_errors, "wall_s": measured.wall_s,
        "throughput_rps": len(work) / measured.wall_s, "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99), "max_ms": max(lat),
        "mean_ms": statistics.fmean(lat), "server_cpu_ms_per_visit": cpu_ms,
        "postgresql_cpu_ms_per_visit": db_ms if name == "postgresql" else None,
        "loadavg_1m_at_start": load0, "loadavg_1m_during": sampler.loads,
        "rss": sampler.summary(),
        "stateless_predict": {
            "requests": len(baseline), "errors": stateless.errors,
            "p50_ms": pct(stateless.latencies_ms, 50), "p95_ms": pct(stateless.latencies_ms, 95),
            "throughput_rps": len(baseline) / stateless.wall_s},
        "integrity": {**check, "expected_rows": ok + len(warm) - warm_run.errors},
        "server_log_tracebacks": log.count("Traceback"),
    }
    result["visit_vs_predict_p50"] = result["p50_ms"] / result["stateless_predict"]["p50_ms"]
    r = result["rss"]
    i = result["integrity"]
    result["meets_targets"] = {
        "zero_errors": measured.errors == 0 and warm_run.errors == 0,
        "p95": result["p95_ms"] <= TARGETS["p95_ms"],
        "rss_flat": abs(r["change_pct"]) <= TARGETS["rss_change_pct"],
        "integrity": i["visit_rows"] == i["expected_rows"] and i["missing_files"] == 0
        and i["orphan_files"] == 0,
    }
    print(f"{name}: p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, "
          f"{result['throughput_rps']:.1f} visits/s, errors {measured.errors}, RSS "
          f"{r['start_mb']:.0f} -> {r['peak_mb']:.0f} -> {r['end_mb']:.0f} MB", file=sys.stderr)
    return result


# --- where a visit's CPU goes ------------------------------------------------------------------


def profile_steps(work: list[Upload], n: int) -> dict[str, float]:
    """Median CPU ms (this thread) of each step ``clinic.visits.assess`` / ``store_visit`` take,
    on ``n`` of the benchmark's images, one at a time (SQLite, local image folder)."""
    import datetime as dt

    from dermsight import heatmap as hm
    from dermsight.clinic.accounts import create_user as add_user
    from dermsight.clinic.config import ClinicConfig
    from dermsight.clinic.models import Lesion, Patient
    from dermsight.clinic.runtime import Clinic
    from dermsight.clinic.visits import HEATMAP_PX, assess, png_bytes, store_visit
    from dermsight.predict import Dermsight
    from dermsight.records import Metadata

    model = Dermsight.load()
    meta = Metadata.parse(age="55", sex="female", site="posterior torso")
    steps: dict[str, list[float]] = {}

    def timed(name: str, fn: Any, *args: Any, **kw: Any) -> Any:
        c0 = time.thread_time()
        out = fn(*args, **kw)
        steps.setdefault(name, []).append(1000.0 * (time.thread_time() - c0))
        return out

    with tempfile.TemporaryDirectory(prefix="bench-clinic-profile-") as tmp:
        clinic = Clinic.open(ClinicConfig(database_url=f"sqlite:///{tmp}/c.db",
                                          images=f"{tmp}/images"))
        with clinic.db.session() as s:
            user = add_user(s, USER, PASSWORD, "clinician")
            patient = Patient(ref="PROFILE")
            s.add(patient)
            s.flush()
            lesion = Lesion(patient_id=patient.id)
            s.add(lesion)
            s.flush()
            lesion_id = lesion.id
        for up in work[:n]:
            image = up.image
            pred = timed("predict_with_heatmap", model.predict, image, meta=meta, heatmap=True)
            timed("predict_without_heatmap", model.predict, image, meta=meta, heatmap=False)
            timed("image_png", png_bytes, pred.image)
            timed("heatmap_png", lambda cam: hm.heatmap_png(cam, size=HEATMAP_PX),
                  pred.cam)
            a = timed("assess_total", assess, model, image, meta)
            timed("store_visit_sqlite", store_visit, clinic, model, a, lesion_id=lesion_id,
                  meta=meta, taken_at=dt.date.today(), note=None, user=user)
        clinic.close()
    return {k: statistics.median(v) for k, v in steps.items()}


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 visits per backend (development)")
    ap.add_argument("--total", type=int, default=None, help="measured visits per backend (2000)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    ap.add_argument("--backends", nargs="+", choices=["postgresql", "sqlite"],
                    default=["postgresql", "sqlite"])
    ap.add_argument("--workers", type=int, default=None, help="server --workers (its default)")
    ap.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable for the server (e.g. MALLOC_ARENA_MAX=2)")
    ap.add_argument("--profile", type=int, default=100,
                    help="images for the per-step CPU profile (100; 0: none)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    total = args.total or (200 if args.quick else 2000)
    # warm-up as in bench_api: worker threads, arenas, connections, the DB pool
    n_warm, n_base = max(4 * args.clients, total // 20), max(4 * args.clients, total // 5)
    (REPO / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    pool = uploads(n_warm + total)
    warm, work = pool[:n_warm], pool[n_warm:]
    baseline = work[:n_base]
    load_before = os.getloadavg()[0]
    runs = {b: bench_backend(b, args, work, warm, baseline) for b in args.backends}
    steps = profile_steps(work, args.profile) if args.profile else {}
    import onnxruntime

    from dermsight.bundle import load_bundle

    card = load_bundle(None).card
    result = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "loadavg_1m_before": load_before, "loadavg_1m_after": os.getloadavg()[0],
        },
        "model": {"name": card.name, "version": card.version},
        "images": {"source": "isic-subset (shared data), one different image per request",
                   "count": len(pool),
                   "mean_bytes": statistics.fmean(len(u.body) for u in pool)},
        "targets": TARGETS,
        "server_env": server_env(args),
        "runs": runs,
        "cpu_ms_per_step": steps,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown(result))
    print(f"\nwritten: {args.out}")


def markdown(r: dict[str, Any]) -> str:
    mark = {True: "yes", False: "**no**"}
    rows = ["| backend | visits | errors | p50 / p95 / p99 ms | visits/s | "
            "CPU ms/visit: app (+ DB) | "
            "RSS start / peak / end MB (slope MB per 1k) | predict p50 / p95 ms | "
            "integrity | targets met |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, x in r["runs"].items():
        rss, i, m = x["rss"], x["integrity"], x["meets_targets"]
        rows.append(
            f"| {name} | {x['requests']} ({x['clients']} clients) | {x['errors']} | "
            f"{x['p50_ms']:.0f} / {x['p95_ms']:.0f} / {x['p99_ms']:.0f} | "
            f"{x['throughput_rps']:.1f} | {x['server_cpu_ms_per_visit']:.0f}"
            + (f" (+ {x['postgresql_cpu_ms_per_visit']:.0f})"
               if x["postgresql_cpu_ms_per_visit"] is not None else "") + " | "
            f"{rss['start_mb']:.0f} / {rss['peak_mb']:.0f} / {rss['end_mb']:.0f} "
            f"({rss['slope_mb_per_1000']:+.1f}; "
            f"2nd half {rss['slope_second_half_mb_per_1000']:+.1f}) | "
            f"{x['stateless_predict']['p50_ms']:.0f} / "
            f"{x['stateless_predict']['p95_ms']:.0f} | "
            f"{i['visit_rows']} rows, {i['missing_files']} missing, {i['orphan_files']} orphan | "
            f"errors {mark[m['zero_errors']]}, p95 {mark[m['p95']]}, RSS {mark[m['rss_flat']]} |")
    if r["cpu_ms_per_step"]:
        rows += ["", "| step (one thread, median CPU) | ms |", "|---|---|"]
        rows += [f"| {k} | {v:.1f} |" for k, v in r["cpu_ms_per_step"].items()]
    mach = r["machine"]
    loads = [v for x in r["runs"].values() for v in x["loadavg_1m_during"]]
    rows += ["", f"{mach['cpus']} CPUs; load average {mach['loadavg_1m_before']:.1f} before, "
                 f"{min(loads, default=float('nan')):.1f}-{max(loads, default=float('nan')):.1f} "
                 f"during, {mach['loadavg_1m_after']:.1f} after (other work on the machine "
                 "skews the numbers)."]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
