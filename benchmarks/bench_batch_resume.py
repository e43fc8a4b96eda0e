"""What a resumed batch job pays to open its output: the reads of the rows already there.

    python benchmarks/bench_batch_resume.py --pre /tmp/pre/src     # 400,000 rows, 5 repeats
    python benchmarks/bench_batch_resume.py --pre /tmp/pre/src --n 50000 --repeat 2   # quick

``--pre``: the ``src`` folder of the code to compare with (e.g. ``git archive HEAD src | tar -x
-C /tmp/pre``); without it only this checkout is timed.

An output folder of ``--n`` rows is built once in a temporary folder (removed at the end) with
the project's own writer (``PartStore.write``, 1,024-row Parquet parts, the bundle's classes and
model columns): random probabilities, risk tiers and flags, an overlay name per row and 0.5 %
error rows (of inputs no longer listed, so nothing is removed or rewritten). What is timed, in a
fresh process per repeat (old and new code alternating, one warm-up each so the page cache is
warm for both), is what ``run_local`` does with that output besides scoring: open the store
(column check, model and TTA checks), ``prepare_resume`` (the keys of the done rows; the input
listing, ``--n`` rows without pixels, is read to find error rows to retry), the overlay names
(``--heatmaps``) and the summary's "output total" counts. Results:
``benchmarks/results/batch-resume-open.json`` (medians, every run kept, the ratio; ``--results``
writes them elsewhere, e.g. for a quick check: ``--n 2000 --repeat 1 --results /tmp/r.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_batch import REPO, machine

RESULTS = REPO / "benchmarks" / "results" / "batch-resume-open.json"
PART_ROWS = 1024
ERROR_EVERY = 200  # 0.5 % error rows

#: run in a fresh process with the code under test first on sys.path; prints one JSON line
WORKER = r"""
import json, resource, sys, time
from pathlib import Path
out = Path(sys.argv[1])
from dermsight.batch import store as store_mod
from dermsight.batch.resume import prepare_resume
from dermsight.bundle import default_bundle_path, load_bundle

card = load_bundle(default_bundle_path()).card
n = int(sys.argv[2])
error_every = int(sys.argv[3])
listing = [{"id": f"ISIC_{i:07d}", "path": f"/data/images/ISIC_{i:07d}.jpg"}
           for i in range(n) if i % error_every]
reads = {"n": 0}
real = store_mod._read_part
def counting(path, cols):
    reads["n"] += 1
    return real(path, cols)
store_mod._read_part = counting
model = {"name": card.name, "version": card.version}
t0 = time.perf_counter()
new = hasattr(store_mod, "OutputContents")
extra = {"heatmaps": True} if new else {}
with store_mod.PartStore(out, "parquet", card.classes, model=model, tta=False, **extra) as st:
    t_open = time.perf_counter()
    resume = prepare_resume(st, lambda: iter(listing), None)
    t_resume = time.perf_counter()
    names = st.contents.take_heatmaps() if new else store_mod.output_heatmaps(out)
    t_names = time.perf_counter()
    total = st.contents.tally() if new else store_mod.tally(out)
    t_total = time.perf_counter()
print(json.dumps({
    "code": store_mod.__file__, "open_s": t_open - t0, "prepare_resume_s": t_resume - t_open,
    "heatmap_names_s": t_names - t_resume, "summary_total_s": t_total - t_names,
    "total_s": t_total - t0, "part_reads": reads["n"],
    "skipped": sum(resume.done.values()),
    "heatmap_names": len(names), "output_total": total,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build_output(out: Path, n: int) -> None:
    """``n`` schema-valid rows as ``PartStore`` writes them (1,024-row Parquet parts)."""
    import numpy as np
    import pandas as pd

    from dermsight.batch.schema import RISK_TIERS, output_columns, rows_to_frame
    from dermsight.batch.store import PartStore
    from dermsight.bundle import default_bundle_path, load_bundle

    bundle = load_bundle(default_bundle_path())
    card = bundle.card
    classes = list(card.classes)
    rng = np.random.default_rng(0)
    flags = np.array([None, None, None, None, "compressed", "blurred;out_of_distribution",
                      "not_dermoscopic"], dtype=object)
    with PartStore(out, "parquet", classes) as store:
        for start in range(0, n, PART_ROWS):
            i = np.arange(start, min(start + PART_ROWS, n))
            ids = [f"ISIC_{k:07d}" for k in i]
            err = i % ERROR_EVERY == 0
            probs = rng.dirichlet(np.ones(len(classes)), size=len(i))
            df = pd.DataFrame({"id": ids, "path": [f"/data/images/{k}.jpg" for k in ids]})
            for j, c in enumerate(classes):
                df[f"p_{c}"] = np.where(err, np.nan, probs[:, j])
            df["prediction"] = np.where(err, None, np.array(classes)[probs.argmax(1)])
            df["malignant_probability"] = rng.random(len(i))
            df["risk"] = np.where(err, None, rng.choice(np.array(RISK_TIERS), len(i)))
            df["flags"] = rng.choice(flags, len(i))
            df["ood_score"] = rng.normal(size=len(i))
            df["ita"] = rng.uniform(-30, 60, len(i))
            df["ita_band"] = "intermediate"
            df["heatmap"] = np.where(err, None, [f"{k}.png" for k in ids])
            df["error"] = np.where(err, "cannot decode image: not a JPEG", None)
            df["age"], df["sex"], df["site"] = 45.0, "female", "anterior torso"
            df["label"], df["group"], df["source"] = "NV", None, "ISIC 2019"
            df["card_sha256"] = bundle.card_sha256
            df["model_name"], df["model_version"], df["tta"] = card.name, card.version, "false"
            store.write(rows_to_frame(df[output_columns(classes)].to_dict("records"), classes))


def run_once(src: Path, out: Path, n: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run([sys.executable, "-c", WORKER, str(out), str(n), str(ERROR_EVERY)],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the worker on {src} exited with {proc.returncode}:\n"
                         f"{proc.stderr[-3000:]}")
    result = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    result.pop("code", None)  # a path of this machine; the run's label says which code it is
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pre", type=Path, help="the src folder of the code to compare with")
    ap.add_argument("--results", type=Path, default=RESULTS,
                    help="where the JSON results go (default: %(default)s)")
    args = ap.parse_args()
    codes = {"after": REPO / "src", **({"before": args.pre} if args.pre else {})}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in codes}
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        out = Path(tmp) / "out"
        t0 = time.perf_counter()
        build_output(out, args.n)
        build_s = time.perf_counter() - t0
        for src in codes.values():  # warm-up: page cache, bytecode
            run_once(src, out, args.n)
        for _ in range(args.repeat):
            for name, src in codes.items():
                runs[name].append(run_once(src, out, args.n))
                print(name, json.dumps({k: v for k, v in runs[name][-1].items()
                                        if k.endswith("_s") or k == "part_reads"}),
                      flush=True)
    keys = ["open_s", "prepare_resume_s", "heatmap_names_s", "summary_total_s", "total_s",
            "peak_rss_mb", "part_reads"]
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in keys}
               for name, rs in runs.items()}
    result: dict[str, Any] = {
        "what": "open + prepare_resume + overlay names + summary totals of a resumed output",
        "rows": args.n, "parts": -(-args.n // PART_ROWS), "error_rows_every": ERROR_EVERY,
        "repeat": args.repeat, "build_s": round(build_s, 1), "machine": machine(),
        "medians": medians, "runs": runs,
    }
    if "before" in medians:
        before, after = medians["before"]["total_s"], medians["after"]["total_s"]
        result["ratio_before_over_after"] = round(before / after, 2)
        same = {k: runs["before"][0][k] == runs["after"][0][k]
                for k in ("skipped", "heatmap_names", "output_total")}
        result["same_results"] = same
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"medians": medians, "ratio": result.get("ratio_before_over_after"),
                      "same_results": result.get("same_results")}, indent=2))


if __name__ == "__main__":
    main()
