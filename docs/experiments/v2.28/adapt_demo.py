"""The pre-registered demonstration of ``dermsight bundle adapt`` (docs/experiments/README.md,
"A clinic's own cases as a command"): the five plain held-out ISIC 2017 draws adapted on the
held-out clinic (all 1,430 images, and one seeded draw of lesion groups reaching 400 and 200
images), and the shipped bundle on its own test split's HAM10000 images (negative control).

Runs the command itself (a subprocess per case) and collects each ``OUT.assessment.json`` into
one JSON. Run from the repository root:

    .venv/bin/python docs/experiments/v2.28/adapt_demo.py --work /tmp/adapt-demo \
        --out docs/experiments/v2.28/adapt_demo_kept.json

(``adapt_demo.json``: the same run with the command as first built, at commit 0f533ed, before
malignant suggestions were kept.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path("../shared/data/isic-subset")
RUNS = {"plain s42": "runs/loso-wise-s42-isic2017", "plain s43": "runs/loso-teacher-s43-isic2017",
        "plain s45": "runs/loso-teacher-s45-isic2017", "plain s47": "runs/loso-plain-s47-isic2017",
        "plain s48": "runs/loso-plain-s48-isic2017"}
SIZES = (None, 400, 200)  # None: every held-out ISIC 2017 image


def clinic_folder(rows: pd.DataFrame, folder: Path) -> Path:
    """A data folder (metadata.csv + images/) holding ``rows`` of the shared set."""
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_csv(folder / "metadata.csv", index=False)
    link = folder / "images"
    if not link.exists():
        link.symlink_to((DATA / "images").resolve())
    return folder


def group_draw(rows: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """Whole lesion groups in a seeded random order until ``n`` images are reached."""
    groups = rows["group_id"].drop_duplicates().to_numpy()
    order = np.random.default_rng(seed).permutation(len(groups))
    taken, total = [], 0
    sizes = rows.groupby("group_id").size()
    for g in groups[order]:
        if total >= n:
            break
        taken.append(g)
        total += int(sizes[g])
    return rows[rows["group_id"].isin(taken)]


def adapt(bundle: str, data: Path, out: Path, name: str) -> dict:
    for p in (out, out.with_name(out.name + ".scores")):
        shutil.rmtree(p, ignore_errors=True)
    exe = Path(sys.executable).with_name("dermsight")
    r = subprocess.run([str(exe), "bundle", "adapt", str(data), "--bundle", bundle, "--out",
                        str(out), "--name", name], capture_output=True, text=True, check=False,
                       env={**os.environ, "TQDM_DISABLE": "1"})
    report = out.with_name(out.name + ".assessment.json")
    result = json.loads(report.read_text()) if report.exists() else None
    return {"exit_code": r.returncode, "assessment": result,
            "stderr_tail": r.stderr.strip().splitlines()[-1:] if r.returncode else []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    meta = pd.read_csv(DATA / "metadata.csv")
    clinic = meta[meta["source"] == "isic2017"]
    folders = {}
    for n in SIZES:
        rows = clinic if n is None else group_draw(clinic, n)
        folders[n] = (len(rows), clinic_folder(rows, args.work / f"isic2017-{n or 'all'}"))
    results = []
    for label, run in RUNS.items():
        for n, (n_rows, folder) in folders.items():
            work = args.work / f"{label.replace(' ', '-')}-{n or 'all'}"
            res = adapt(f"{run}/bundle", folder, work, "ISIC 2017 (held out)")
            results.append({"run": label, "images": n_rows, **res})
            a = res["assessment"] or {}
            print(label, n_rows, res["exit_code"], a.get("balanced_accuracy", {}).get("updated"),
                  flush=True)
    split = pd.read_csv("configs/default-split.csv")
    test_ids = set(split.loc[split["split"] == "test", "image_id"])
    ham = meta[(meta["source"] == "ham10000") & meta["image_id"].isin(test_ids)]
    folder = clinic_folder(ham, args.work / "ham10000-test")
    res = adapt("src/dermsight/assets/default", folder, args.work / "shipped-ham10000-test",
                "HAM10000 test split")
    results.append({"run": "shipped 2.4.1 (negative control)", "images": len(ham), **res})
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
