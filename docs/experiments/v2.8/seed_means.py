"""Mean and range over seeds of the held-out figures in the cards' leave-one-source-out rows
("Three held-out seeds per recipe" and "EfficientNet-Lite1" in docs/experiments/README.md).

Each ``--recipe NAME=FILE[,FILE...]`` names one recipe and the committed files holding its
held-out rows, one file per seed (a card, or an experiment file with ``rows`` or
``leave_one_source_out``). Printed and written to ``--out``: per seed, and over the seeds the
mean and range, of the melanoma AUC, the malignant AUC, the balanced accuracy of the suggested
class and the refer sensitivity / specificity on ``--source``; with ``--against A,B`` also the
difference of the means A - B::

    .venv/bin/python docs/experiments/v2.8/seed_means.py --source isic2017 \\
        --recipe v2.4=CARD_S42,FILE_S43,FILE_S44 --recipe v2.6=... --against v2.6,v2.4 \\
        --out docs/experiments/v2.8/seed_means_v24_v26.json

(the files of each committed comparison: docs/experiments/README.md, under its result).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

METRICS = ("mel_auc", "malignant_auc", "balanced_accuracy", "refer_sensitivity",
           "refer_specificity")


def heldout_row(path: Path, source: str) -> dict[str, Any]:
    """The leave-one-source-out row of ``source`` in a card or an experiment file."""
    doc = json.loads(path.read_text())
    if "cross_source" in doc:
        rows = doc["cross_source"]["rows"]
    else:
        rows = doc.get("rows") or doc.get("leave_one_source_out") or []
    found = [r for r in rows
             if r["protocol"] == "leave_one_source_out" and r["source"] == source]
    if len(found) != 1:
        raise SystemExit(f"{path}: {len(found)} leave-one-source-out rows for {source!r}")
    return found[0]


def summarise(files: list[Path], source: str) -> dict[str, Any]:
    rows = [heldout_row(f, source) for f in files]
    seeds = [(r.get("run") or {}).get("seed") for r in rows]
    out: dict[str, Any] = {"files": [str(f) for f in files], "seeds": seeds, "metrics": {}}
    for m in METRICS:
        values = [r["metrics"][m]["value"] for r in rows]
        out["metrics"][m] = {"per_seed": values, "mean": sum(values) / len(values),
                             "min": min(values), "max": max(values)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--recipe", action="append", required=True, help="NAME=FILE[,FILE...]")
    ap.add_argument("--against", action="append", default=[], help="A,B: mean of A minus B")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    recipes = {}
    for spec in args.recipe:
        name, files = spec.split("=", 1)
        recipes[name] = summarise([Path(f) for f in files.split(",")], args.source)
    result: dict[str, Any] = {"source": args.source, "recipes": recipes, "differences": {}}
    for name, r in recipes.items():
        print(f"{name} (seeds {r['seeds']})")
        for m, v in r["metrics"].items():
            per = " / ".join(f"{x:.3f}" for x in v["per_seed"])
            print(f"  {m:18s} {per}   mean {v['mean']:.4f}  range {v['min']:.3f}-{v['max']:.3f}")
    for pair in args.against:
        a, b = pair.split(",")
        diff = {m: recipes[a]["metrics"][m]["mean"] - recipes[b]["metrics"][m]["mean"]
                for m in METRICS}
        result["differences"][f"{a} - {b}"] = diff
        print(f"{a} - {b} (means): " + ", ".join(f"{m} {d:+.4f}" for m, d in diff.items()))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
