"""What a 400k-image batch job costs around scoring: listing, resume bookkeeping, memory.

    python benchmarks/bench_batch_scale.py                 # 400,000 rows, 3 repeats (medians)
    python benchmarks/bench_batch_scale.py --n 50000 --repeat 1   # quick

Scoring itself (~120 images/s on 2 cores) is not what is measured: every run scores only
``--limit 100`` new rows. What is measured is what a user pays before and around them, on inputs
of ``--n`` rows built cheaply in a temporary folder (removed at the end):

* ``folder``: a tree of ``--n`` hard links to the shared ISIC JPEGs (40 subfolders of 10,000);
* ``manifest.csv``: ``--n`` rows (id, path, age, sex) pointing at the shared JPEGs;
* an output folder holding the first ``n - 100`` rows as done, written as 1,024-row Parquet parts
  cloned (ids and paths replaced) from a real part that ``dermsight batch`` wrote, so it has the
  project's own schema and model columns (``--heatmaps`` variant: each row names its overlay).

Scenarios (each a fresh ``dermsight batch ... --limit 100 -q`` process under ``/usr/bin/time
-v``: wall time and peak RSS): a fresh output (time to the first 100 scored rows) for the
manifest and the folder, and a resume with ``n - 100`` rows done for the manifest (with and
without ``--heatmaps``) and the folder. Results: ``benchmarks/results/batch_scale.json`` (medians
over ``--repeat`` runs, every run kept) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_batch import DEFAULT_DATA, REPO  # beside this script: the same data and paths

RESULTS = REPO / "benchmarks" / "results" / "batch_scale.json"
PART_ROWS = 1024
NEW_ROWS = 100

TARGET_WALL_S = 60.0
TARGET_RSS_MB = 1024.0


def machine() -> dict[str, Any]:
    """``bench_batch``'s machine description, with the pandas version (the resume bookkeeping)."""
    from bench_batch import machine as batch_machine

    info = batch_machine()
    try:
        import pandas

        info["pandas"] = pandas.__version__
    except ImportError:
        pass
    return info


def build_inputs(images: list[Path], n: int, work: Path) -> tuple[Path, Path]:
    """A folder tree of ``n`` hard links and a ``n``-row manifest, both over ``images``."""
    folder = work / "folder"
    folder.mkdir()
    lines = ["id,path,age,sex\n"]
    for i in range(n):
        src = images[i % len(images)]
        sub = folder / f"d{i // 10_000:03d}"
        if i % 10_000 == 0:
            sub.mkdir()
        os.link(src, sub / f"IMG_{i:07d}.jpg")
        lines.append(f"IMG_{i:07d},{src},{40 + i % 40},{'male' if i % 2 else 'female'}\n")
    manifest = work / "manifest.csv"
    manifest.write_text("".join(lines))
    return folder, manifest


def done_output(template: Path, images: list[Path], folder: Path | None, n_done: int,
                dest: Path, heatmaps: bool) -> None:
    """An output folder holding the first ``n_done`` input rows as done: 1,024-row parts cloned
    from the real part in ``template`` (ids, paths and, with ``heatmaps``, overlay names set)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = pq.read_table(next(template.glob("part-*.parquet")))
    dest.mkdir()

    def put(t: pa.Table, name: str, values: list[str]) -> pa.Table:
        f = t.schema.field(name)
        return t.set_column(t.schema.get_field_index(name), f, pa.array(values, f.type))

    for p, start in enumerate(range(0, n_done, PART_ROWS)):
        idx = range(start, min(n_done, start + PART_ROWS))
        t = base.take(pa.array([i % base.num_rows for i in idx]))
        ids = [f"IMG_{i:07d}" for i in idx]
        t = put(t, "id", ids)
        t = put(t, "path", [str(images[i % len(images)]) for i in idx] if folder is None
                else [str(folder / f"d{i // 10_000:03d}" / f"IMG_{i:07d}.jpg") for i in idx])
        if heatmaps:
            t = put(t, "heatmap", [f"{i}.png" for i in ids])
        pq.write_table(t, dest / f"part-20260101000000-bench0-{p:05d}.parquet",
                       compression="zstd")


def timed_batch(args: list[str]) -> dict[str, Any]:
    """One ``dermsight batch`` process under ``/usr/bin/time -v``: wall s, peak RSS MB."""
    exe = Path(sys.executable).with_name("dermsight")
    cmd = ["/usr/bin/time", "-v", str(exe), "batch", *args, "--limit", str(NEW_ROWS), "-q"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    done = re.search(r"(\d+) already done", proc.stdout)
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(int(rss.group(1)) / 1024, 1)
            if rss else None, "skipped": int(done.group(1)) if done else None}


def table(results: dict[str, Any]) -> str:
    lines = [f"| scenario ({results['n']:,} rows, --limit {NEW_ROWS}) | wall s | peak RSS MB |",
             "|---|---:|---:|"]
    for name, r in results["scenarios"].items():
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400_000, help="rows of the synthetic inputs")
    ap.add_argument("--repeat", type=int, default=3, help="runs per scenario (median kept)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    images = sorted((args.data / "images").glob("*.jpg"))
    if not images:
        raise SystemExit(f"no JPEGs under {args.data / 'images'}")
    results: dict[str, Any] = {
        "n": args.n, "new_rows": NEW_ROWS, "repeat": args.repeat, "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "scenarios": {},
    }
    work = Path(tempfile.mkdtemp(prefix="dermsight-bench-scale-"))
    try:
        t0 = time.perf_counter()
        folder, manifest = build_inputs(images, args.n, work)
        results["build_inputs_s"] = round(time.perf_counter() - t0, 1)
        # one real part per input kind: the template of the synthetic done outputs
        templates = {}
        for kind, inp in (("manifest", manifest), ("folder", folder)):
            templates[kind] = work / f"template-{kind}"
            timed_batch([str(inp), "--out", str(templates[kind])])
        n_done = args.n - NEW_ROWS
        done = {
            "manifest": (templates["manifest"], None, False),
            "manifest-heatmaps": (templates["manifest"], None, True),
            "folder": (templates["folder"], folder, False),
        }
        for name, (template, tree, heat) in done.items():
            done_output(template, images, tree, n_done, work / f"done-{name}", heat)
        scenarios: dict[str, tuple[list[str], str | None]] = {
            "fresh, manifest.csv": ([str(manifest)], None),
            "fresh, folder tree": ([str(folder)], None),
            f"resume {n_done:,} done, manifest.csv": ([str(manifest)], "manifest"),
            f"resume {n_done:,} done, manifest.csv --heatmaps":
                ([str(manifest), "--heatmaps", str(work / "heatmaps")], "manifest-heatmaps"),
            f"resume {n_done:,} done, folder tree": ([str(folder)], "folder"),
        }
        for name, (inp_args, start) in scenarios.items():
            runs = []
            for _ in range(args.repeat):
                out = work / "out"
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(work / "heatmaps", ignore_errors=True)
                if start is not None:
                    shutil.copytree(work / f"done-{start}", out)
                runs.append(timed_batch([*inp_args[:1], "--out", str(out), *inp_args[1:]]))
            results["scenarios"][name] = {
                "wall_s": statistics.median(r["wall_s"] for r in runs),
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
                "skipped": runs[0]["skipped"], "runs": runs,
            }
            print(f"{name}: {results['scenarios'][name]['wall_s']} s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    worst = results["scenarios"].values()
    results["checks"] = {
        f"wall <= {TARGET_WALL_S:.0f} s": all(r["wall_s"] <= TARGET_WALL_S for r in worst),
        f"peak RSS <= {TARGET_RSS_MB:.0f} MB": all(r["peak_rss_mb"] <= TARGET_RSS_MB
                                                   for r in worst),
    }
    results["load_avg_at_end"] = os.getloadavg()
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
