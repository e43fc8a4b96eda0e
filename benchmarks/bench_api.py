"""End-to-end benchmark of the HTTP API (a real ``dermsight serve`` process on loopback).

    python benchmarks/bench_api.py           # full: 200 sequential, 8 x 5,000 load, 1 vs 2 threads
    python benchmarks/bench_api.py --quick   # fewer requests, for development

Measures, for a 256 px JPEG with the heatmap on:

* cold start: process start -> first successful ``POST /api/v1/predict``;
* sequential latency (one keep-alive client): p50 / p95 / mean;
* load: N concurrent keep-alive clients: throughput, p50 / p95 / p99, errors, server RSS at the
  start and the end of the load;
* ONNX Runtime intra-op threads 1 vs 2 (sequential latency and load throughput).

Writes ``benchmarks/results/api.json`` and prints a markdown table. The client uses only the
standard library (http.client in threads) so it takes as little CPU from the server as possible;
on a small machine the client still shares the CPUs, which the numbers include.
(PyTorch eager is not compared here: the model benchmark covers ORT vs eager.)
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DERMSIGHT_SHARED_DATA",
                          REPO.parent / "shared" / "data" / "isic-subset"))
RESULTS = REPO / "benchmarks" / "results" / "api.json"
TARGETS = {
    "seq_p50_ms": 30.0, "load_throughput_rps": 80.0, "load_p95_ms": 150.0,
    "rss_change_pct": 10.0, "rss_mb": 400.0, "cold_start_s": 3.0,
}


# --- helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lesion_jpeg(size: int = 256) -> bytes:
    """A real lesion image as a ``size`` px JPEG (quality 90). Stops when it is not there: a
    made-up picture would be refused by the gate, which is not the work being measured."""
    src = DATA / "images" / "ISIC_0000000.jpg"
    if not src.exists():
        raise SystemExit(f"bench_api: {src} not found: DERMSIGHT_SHARED_DATA must name the "
                         "isic-subset folder (the one holding images/); default "
                         "../shared/data/isic-subset")
    img = Image.open(src).convert("RGB")
    img = img.resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def multipart(image: bytes) -> tuple[bytes, str]:
    b = "benchBOUNDARY7"
    body = (
        f'--{b}\r\nContent-Disposition: form-data; name="age"\r\n\r\n55\r\n'
        f'--{b}\r\nContent-Disposition: form-data; name="sex"\r\n\r\nfemale\r\n'
        f'--{b}\r\nContent-Disposition: form-data; name="site"\r\n\r\nposterior torso\r\n'
        f'--{b}\r\nContent-Disposition: form-data; name="image"; filename="l.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + image + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def rss_mb(pid: int) -> float:
    try:
        import psutil

        return float(psutil.Process(pid).memory_info().rss) / 1e6
    except ImportError:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1e3
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (robust to other load on the machine)."""
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except ImportError:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    cold_start_s: float
    cold_start_cpu_s: float
    log: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Client:
    """One keep-alive HTTP/1.1 connection (stdlib only)."""

    def __init__(self, port: int, body: bytes, ctype: str, heatmap: bool = True) -> None:
        self.port, self.body = port, body
        self.headers = {"Content-Type": ctype, "Content-Length": str(len(body))}
        self.path = "/api/v1/predict" + ("" if heatmap else "?heatmap=false")
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self) -> tuple[int, float]:
        t0 = time.perf_counter()
        try:
            self.conn.request("POST", self.path, body=self.body, headers=self.headers)
            r = self.conn.getresponse()
            data = r.read()
            status = r.status
            if status == 200 and b'"probabilities"' not in data:
                status = -2
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            status = -1
        return status, (time.perf_counter() - t0) * 1000.0

    def close(self) -> None:
        self.conn.close()


def start_server(args: argparse.Namespace, threads: int, body: bytes, ctype: str,
                 log_dir: Path) -> Server:
    port = free_port()
    exe = Path(sys.executable).with_name("dermsight")
    cmd = [str(exe)] if exe.exists() else [
        sys.executable, "-c", "from dermsight.cli import main; main()"]
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads),
            "--log-level", "warning"]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if args.model:
        cmd += ["--model", str(args.model)]
    env = {k: v for k, v in os.environ.items() if k != "DERMSIGHT_API_TOKEN"}
    log = log_dir / f"server-threads{threads}.log"
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    deadline = t0 + 180
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}):\n{log.read_text()}")
        try:
            c = Client(port, body, ctype)
            status, _ = c.post()
            c.close()
            if status == 200:
                return Server(proc, port, time.perf_counter() - t0, cpu_s(proc.pid), log)
        except OSError:
            pass
        time.sleep(0.02)
    proc.kill()
    raise SystemExit("server did not answer within 180 s")


def sequential(server: Server, body: bytes, ctype: str, n: int, heatmap: bool = True
               ) -> dict[str, Any]:
    c = Client(server.port, body, ctype, heatmap)
    for _ in range(min(10, n)):
        c.post()
    cpu0 = cpu_s(server.proc.pid)
    lat, errors = [], 0
    for _ in range(n):
        status, ms = c.post()
        lat.append(ms)
        errors += status != 200
    cpu_ms = 1000.0 * (cpu_s(server.proc.pid) - cpu0) / n
    c.close()
    return {"requests": n, "errors": errors, "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95),
            "mean_ms": statistics.fmean(lat), "server_cpu_ms_per_request": cpu_ms}


def drive(pool: list[Client], total: int) -> tuple[list[float], int, float]:
    """Send ``total`` requests over the connections in ``pool``, one thread per connection."""
    lat: list[float] = []
    errors = [0]
    counter = [0]
    lock = threading.Lock()

    def worker(c: Client) -> None:
        mine: list[float] = []
        while True:
            with lock:
                if counter[0] >= total:
                    break
                counter[0] += 1
            status, ms = c.post()
            mine.append(ms)
            if status != 200:
                with lock:
                    errors[0] += 1
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker, args=(c,)) for c in pool]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors[0], time.perf_counter() - t0


def load(server: Server, body: bytes, ctype: str, clients: int, total: int) -> dict[str, Any]:
    pool = [Client(server.port, body, ctype) for _ in range(clients)]
    drive(pool, max(4 * clients, total // 20))  # warm-up: worker threads, arenas, connections
    rss_start = rss_mb(server.proc.pid)
    cpu0 = cpu_s(server.proc.pid)
    lat, errors, wall = drive(pool, total)
    rss_end = rss_mb(server.proc.pid)
    cpu_ms = 1000.0 * (cpu_s(server.proc.pid) - cpu0) / total
    for c in pool:
        c.close()
    return {
        "clients": clients, "requests": total, "errors": errors, "wall_s": wall,
        "throughput_rps": total / wall, "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95),
        "p99_ms": pct(lat, 99), "rss_start_mb": rss_start, "rss_end_mb": rss_end,
        "rss_change_pct": 100.0 * (rss_end - rss_start) / rss_start,
        "server_cpu_ms_per_request": cpu_ms,
    }


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests (development)")
    ap.add_argument("--model", type=Path, default=None, help="bundle (default: shipped model)")
    ap.add_argument("--seq", type=int, default=None, help="sequential requests (200)")
    ap.add_argument("--total", type=int, default=None, help="load requests (5000)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="ORT intra-op threads to compare; the first is the headline (1 2)")
    ap.add_argument("--workers", type=int, default=None, help="server --workers")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    n_seq = args.seq or (50 if args.quick else 200)
    n_load = args.total or (400 if args.quick else 5000)
    n_cmp = max(100, n_load // 5)

    image = lesion_jpeg(256)
    body, ctype = multipart(image)
    log_dir = REPO / "benchmarks" / "out"  # server logs (git-ignored)
    log_dir.mkdir(parents=True, exist_ok=True)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    runs: dict[str, Any] = {}
    for i, threads in enumerate(args.threads):
        server = start_server(args, threads, body, ctype, log_dir)
        try:
            entry: dict[str, Any] = {"ort_threads": threads, "cold_start_s": server.cold_start_s,
                                     "cold_start_cpu_s": server.cold_start_cpu_s}
            entry["sequential"] = sequential(server, body, ctype, n_seq)
            entry["sequential_no_heatmap"] = sequential(server, body, ctype,
                                                        max(20, n_seq // 4), heatmap=False)
            entry["load"] = load(server, body, ctype, args.clients, n_load if i == 0 else n_cmp)
        finally:
            server.stop()
        runs[str(threads)] = entry
        print(f"threads={threads}: seq p50 {entry['sequential']['p50_ms']:.1f} ms, "
              f"load {entry['load']['throughput_rps']:.1f} req/s", file=sys.stderr)

    head = runs[str(args.threads[0])]
    import onnxruntime

    result = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "loadavg_1m_before": load1,
            "loadavg_1m_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "image": {"size_px": 256, "format": "JPEG q90", "bytes": len(image), "heatmap": True,
                  "metadata": {"age": 55, "sex": "female", "site": "posterior torso"}},
        "targets": TARGETS,
        "headline": {
            "cold_start_s": head["cold_start_s"],
            "cold_start_cpu_s": head["cold_start_cpu_s"],
            "seq_server_cpu_ms": head["sequential"]["server_cpu_ms_per_request"],
            "load_server_cpu_ms": head["load"]["server_cpu_ms_per_request"],
            "seq_p50_ms": head["sequential"]["p50_ms"],
            "seq_p95_ms": head["sequential"]["p95_ms"],
            "load_throughput_rps": head["load"]["throughput_rps"],
            "load_p95_ms": head["load"]["p95_ms"],
            "load_errors": head["load"]["errors"],
            "rss_start_mb": head["load"]["rss_start_mb"],
            "rss_end_mb": head["load"]["rss_end_mb"],
            "rss_change_pct": head["load"]["rss_change_pct"],
        },
        "runs": runs,
    }
    from dermsight.bundle import load_bundle

    card = load_bundle(args.model).card
    result["model"] = {"name": card.name, "version": card.version,
                       "onnx_sha256": card.onnx_sha256,
                       "ood_gate": card.gate.get("ood_method", "none")}
    h = result["headline"]
    result["meets_targets"] = {
        "seq_p50": h["seq_p50_ms"] <= TARGETS["seq_p50_ms"],
        "throughput": h["load_throughput_rps"] >= TARGETS["load_throughput_rps"],
        "load_p95": h["load_p95_ms"] <= TARGETS["load_p95_ms"],
        "zero_errors": h["load_errors"] == 0,
        "rss_stable": abs(h["rss_change_pct"]) <= TARGETS["rss_change_pct"],
        "rss_small": h["rss_end_mb"] <= TARGETS["rss_mb"],
        "cold_start": h["cold_start_s"] <= TARGETS["cold_start_s"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown(result))
    print(f"\nwritten: {args.out}")


def markdown(r: dict[str, Any]) -> str:
    h, t = r["headline"], r["targets"]
    ok = r["meets_targets"]
    mark = {True: "yes", False: "**no**"}
    first = next(iter(r["runs"].values()))
    rows = [
        "| metric | value | target | met |",
        "|---|---|---|---|",
        f"| cold start (process -> first predict) | {h['cold_start_s']:.2f} s | "
        f"<= {t['cold_start_s']:.0f} s | {mark[ok['cold_start']]} |",
        f"| sequential p50 (256 px JPEG + heatmap, {first['sequential']['requests']} req) | "
        f"{h['seq_p50_ms']:.1f} ms | <= {t['seq_p50_ms']:.0f} ms | {mark[ok['seq_p50']]} |",
        f"| sequential p95 | {h['seq_p95_ms']:.1f} ms | | |",
        f"| server CPU per request (sequential / load) | {h['seq_server_cpu_ms']:.1f} / "
        f"{h['load_server_cpu_ms']:.1f} ms | | |",
        f"| cold start, server CPU time | {h['cold_start_cpu_s']:.2f} s | | |",
        f"| sequential p50 without heatmap | "
        f"{first['sequential_no_heatmap']['p50_ms']:.1f} ms | | |",
        f"| load {first['load']['clients']} concurrent clients, {first['load']['requests']} "
        f"requests in all: throughput | "
        f"{h['load_throughput_rps']:.1f} req/s | >= {t['load_throughput_rps']:.0f} | "
        f"{mark[ok['throughput']]} |",
        f"| load p95 | {h['load_p95_ms']:.1f} ms | <= {t['load_p95_ms']:.0f} ms | "
        f"{mark[ok['load_p95']]} |",
        f"| load errors | {h['load_errors']} | 0 | {mark[ok['zero_errors']]} |",
        f"| server RSS start -> end | {h['rss_start_mb']:.0f} -> {h['rss_end_mb']:.0f} MB "
        f"({h['rss_change_pct']:+.1f} %) | ±{t['rss_change_pct']:.0f} %, <= {t['rss_mb']:.0f} MB"
        f" | {mark[ok['rss_stable'] and ok['rss_small']]} |",
    ]
    rows += ["", "| ORT threads | seq p50 ms | seq p95 ms | seq CPU ms/req | load req/s | "
                 "load p95 ms | load CPU ms/req | requests |", "|---|---|---|---|---|---|---|---|"]
    for th, run in r["runs"].items():
        rows.append(f"| {th} | {run['sequential']['p50_ms']:.1f} | "
                    f"{run['sequential']['p95_ms']:.1f} | "
                    f"{run['sequential']['server_cpu_ms_per_request']:.1f} | "
                    f"{run['load']['throughput_rps']:.1f} | {run['load']['p95_ms']:.1f} | "
                    f"{run['load']['server_cpu_ms_per_request']:.1f} | {run['load']['requests']} |")
    m = r["machine"]
    rows += ["", f"model {r['model']['name']} {r['model']['version']} (OOD gate: "
                 f"{r['model']['ood_gate']}); {m['cpus']} CPUs, load average "
                 f"{m['loadavg_1m_before']:.1f} before / "
                 f"{m['loadavg_1m_after']:.1f} after (other work on the machine skews numbers)."]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
