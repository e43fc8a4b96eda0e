"""Batch scoring throughput: local runner vs Spark local[2] on the same JPEGs, in one run.

    python benchmarks/bench_batch.py                # 5,000 images (the target measurement)
    python benchmarks/bench_batch.py --n 500        # quick run while the CPU is busy
    python benchmarks/bench_batch.py --sweep        # also local runs with other thread counts

Each engine runs in its own fresh subprocess (so the peak RSS is the runner's own, and no warm
caches are shared), on a folder of ``--n`` 256 px JPEGs copied from the shared ISIC subset, no TTA,
with the default bundle. Results: ``benchmarks/results/batch.json`` and a markdown table on
stdout. Targets: local >= 120 images/s; Spark >= 0.6 x local (excluding JVM start-up); local
peak RSS <= 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("DERMSIGHT_SHARED_DATA",
                                   REPO.parent / "shared" / "data" / "isic-subset"))
RESULTS = REPO / "benchmarks" / "results" / "batch.json"

TARGET_LOCAL_IPS = 120.0
TARGET_SPARK_RATIO = 0.6
TARGET_RSS_MB = 1024.0

# Runs inside the child process: one engine, prints one JSON line with its measurements.
_CHILD = r"""
import json, os, resource, sys, time

def tree():
    # this process and all its descendants (the JVM, the Python daemon and workers for Spark)
    kids = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            kids.setdefault(int(fields[1]), []).append(int(pid))
        except OSError:
            pass
    out, todo = [], [os.getpid()]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out

def tree_usage():
    tick = os.sysconf("SC_CLK_TCK")
    cpu = hwm = 0.0
    for pid in tree():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm += int(line.split()[1]) / 1024
        except OSError:
            pass
    return cpu, hwm

t_start = time.perf_counter()
engine, folder, out, opts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
spark = None
startup, cpu0 = 0.0, 0.0
if engine == "local":
    from dermsight.batch.local import run_local
    from dermsight.batch.options import ScoreOptions
    s = run_local(folder, out, ScoreOptions(**opts), progress=False)
    elapsed = s.elapsed_s
else:
    from dermsight.batch.options import ScoreOptions
    from dermsight.batch.spark import get_session, run_spark
    t0 = time.perf_counter()
    spark = get_session(opts.pop("master", None))  # the JVM start-up, measured on its own
    startup = time.perf_counter() - t0
    cpu0 = tree_usage()[0]
    s = run_spark(folder, out, ScoreOptions(**opts))  # the session above, left running
    elapsed = startup + s.elapsed_s
cpu_s, tree_hwm = tree_usage()
if spark is not None:
    spark.stop()
print("RESULT " + json.dumps({
    "scored": s.scored, "errors": s.errors, "elapsed_s": elapsed, "startup_s": startup,
    "startup_cpu_s": cpu0,
    "process_s": time.perf_counter() - t_start,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "tree_peak_rss_mb": tree_hwm, "tree_cpu_s": cpu_s,
}))
"""


def prepare_images(data: Path, n: int, work: Path) -> Path:
    """``n`` shared JPEGs (sorted ids, cycling if n exceeds the set) in a folder of their own."""
    folder = work / f"images-{n}"
    if folder.is_dir() and len(list(folder.iterdir())) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    files = sorted((data / "images").glob("*.jpg"))
    if not files:
        raise SystemExit(f"no images in {data / 'images'}")
    for k in range(n):
        src = files[k % len(files)]
        name = src.name if k < len(files) else f"{src.stem}_r{k // len(files)}.jpg"
        shutil.copyfile(src, folder / name)
    return folder


def run_engine(engine: str, folder: Path, out: Path, opts: dict[str, Any],
               timeout: float) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, engine, str(folder), str(out), json.dumps(opts)],
        capture_output=True, text=True, timeout=timeout,
    )
    wall = time.perf_counter() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{engine} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    res: dict[str, Any] = json.loads(line[len("RESULT "):])
    res["wall_s"] = wall
    busy = res["elapsed_s"] - res["startup_s"]
    res["images_per_s"] = res["scored"] / busy if busy > 0 else 0.0
    res["images_per_s_incl_startup"] = res["scored"] / res["elapsed_s"]
    # CPU of every process of the run (Spark: JVM + Python workers), after session start-up
    res["cpu_ms_per_image"] = (1000 * (res["tree_cpu_s"] - res["startup_cpu_s"])
                               / max(res["scored"], 1))
    res["options"] = opts
    return res


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count()),
        "load_avg_at_start": os.getloadavg(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime
        import pyarrow

        info["onnxruntime"] = onnxruntime.__version__
        info["pyarrow"] = pyarrow.__version__
        import pyspark

        info["pyspark"] = pyspark.__version__
    except ImportError:
        pass
    return info


def table(results: dict[str, Any]) -> str:
    rows = [
        "| run | images | images/s | images/s incl. start-up | start-up s | wall s | "
        "CPU ms/image (all processes, excl. start-up) | peak RSS MB (runner) | "
        "sum of peak RSS MB (all processes) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["runs"].items():
        rows.append(
            f"| {name} | {r['scored']} | {r['images_per_s']:.1f} | "
            f"{r['images_per_s_incl_startup']:.1f} | {r['startup_s']:.1f} | {r['wall_s']:.1f} | "
            f"{r['cpu_ms_per_image']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['tree_peak_rss_mb']:.0f} |"
        )
    c = results["checks"]
    rows.append("")
    rows.append(f"- local images/s: {c['local_images_per_s']:.1f} "
                f"(target >= {TARGET_LOCAL_IPS:.0f}: {'met' if c['local_ok'] else 'NOT met'})")
    if "spark_ratio" in c:
        rows.append(f"- Spark / local (excl. JVM start-up): {c['spark_ratio']:.2f} "
                    f"(target >= {TARGET_SPARK_RATIO}: "
                    f"{'met' if c['spark_ok'] else 'NOT met'})")
    rows.append(f"- local peak RSS: {c['local_peak_rss_mb']:.0f} MB "
                f"(target <= {TARGET_RSS_MB:.0f}: {'met' if c['rss_ok'] else 'NOT met'})")
    if "spark_cpu_ratio" in c:
        rows.append(f"- CPU time per image, local / Spark: {c['spark_cpu_ratio']:.2f} (the "
                    "throughput ratio the two would reach on idle cores; robust to other load)")
    load = results["machine"]["load_avg_at_start"]
    rows.append(f"- load average at start: {load[0]:.1f} (1 min) on "
                f"{results['machine']['cpus']} CPUs; at end: {results['load_avg_at_end'][0]:.1f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="images (default 5000)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-spark", action="store_true", help="local runner only")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--sweep", action="store_true",
                    help="also local runs with 1 decode thread and with 4")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="dermsight-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    folder = prepare_images(args.data, args.n, work)
    results: dict[str, Any] = {
        "benchmark": "batch", "n_images": args.n,
        "image_source": os.path.relpath(args.data / "images"),
        "tta": False, "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": {},
    }
    runs = results["runs"]
    runs["local"] = run_engine("local", folder, work / "out-local", {}, args.timeout)
    if args.sweep:
        runs["local workers=1"] = run_engine("local", folder, work / "out-w1", {"workers": 1},
                                             args.timeout)
        runs["local workers=4"] = run_engine("local", folder, work / "out-w4", {"workers": 4},
                                             args.timeout)
    if not args.no_spark:
        runs[f"spark {args.master}"] = run_engine(
            "spark", folder, work / "out-spark", {"master": args.master}, args.timeout)
    local = runs["local"]
    checks: dict[str, Any] = {
        "local_images_per_s": local["images_per_s"],
        "local_ok": local["images_per_s"] >= TARGET_LOCAL_IPS,
        "local_peak_rss_mb": local["peak_rss_mb"],
        "rss_ok": local["peak_rss_mb"] <= TARGET_RSS_MB,
    }
    if not args.no_spark:
        spark = runs[f"spark {args.master}"]
        checks["spark_ratio"] = spark["images_per_s"] / max(local["images_per_s"], 1e-9)
        checks["spark_ratio_incl_startup"] = (spark["images_per_s_incl_startup"]
                                              / max(local["images_per_s"], 1e-9))
        checks["spark_ok"] = checks["spark_ratio"] >= TARGET_SPARK_RATIO
        checks["spark_cpu_ratio"] = local["cpu_ms_per_image"] / max(spark["cpu_ms_per_image"],
                                                                    1e-9)
    results["checks"] = checks
    results["load_avg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nresults: {args.out}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
