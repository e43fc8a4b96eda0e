"""What the by-source τ does to the rare classes on VALIDATION: per-class recall of the suggested
class under the pooled and the by-source τ, for the five plain held-out draws and the shipped
bundle ("Added: why the by-source τ is not shipped" in docs/experiments/README.md). The held-out
clinic (ISIC 2017) has only MEL / NV / BKL, so its gain says nothing about BCC, AK, DF, VASC or
SCC, which a collection such as the project's external atlas set does have; their recall is
measured here on the HAM10000 validation images (the only source that has them). Descriptive;
the test split is not read.

    .venv/bin/python docs/experiments/v2.29/rare_class_tau.py \
        --run plain-s42=runs/loso-wise-s42-isic2017 \
        --run plain-s43=runs/loso-teacher-s43-isic2017 \
        --run plain-s45=runs/loso-teacher-s45-isic2017 \
        --run plain-s47=runs/loso-plain-s47-isic2017 \
        --run plain-s48=runs/loso-plain-s48-isic2017 --shipped-cache runs/shipped_val_cache.npz \
        --out docs/experiments/v2.29/rare_class_tau.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dermsight.bundle import default_bundle_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "v2.27"))
from tau_by_source import Scored, load, load_run

REPO = Path(__file__).resolve().parents[3]
RARE = ("BCC", "AK", "DF", "VASC", "SCC")


def recalls(s: Scored) -> dict[str, Any]:
    """Per-class recall on the HAM10000 validation images under both refitted rules."""
    y = s.labels("val")
    sources = s.parts["val"]["source"].to_numpy(str)
    ham = sources == "ham10000"
    out: dict[str, Any] = {"n_ham10000_val": {c: int(np.sum(y[ham] == s.classes.index(c)))
                                              for c in s.classes[:-1]}}
    for name, by in (("pooled", None), ("by_source", sources)):
        rule, _ = s.refit(by)
        pred = rule.choose(s.probs["val"], s.classes)
        rec = {c: round(float(np.mean(pred[ham & (y == k)] == k)), 4)
               for k, c in enumerate(s.classes[:-1]) if np.any(ham & (y == k))}
        out[name] = {"tau": rule.tau, "recall_ham10000": rec,
                     "mean_rare_recall": round(float(np.mean([rec[c] for c in RARE])), 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", default=[], help="NAME=RUN_DIR")
    ap.add_argument("--shipped-cache", type=Path, required=True,
                    help="where the shipped bundle's validation probabilities are cached")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    doc: dict[str, Any] = {"rare": list(RARE), "runs": {}}
    scored = [(n, load_run(Path(r))) for n, r in (x.split("=", 1) for x in args.run)]
    scored.append(("shipped 2.4.1", load(default_bundle_path(), REPO / "configs" / "default.yaml",
                                         REPO / "configs" / "default-split.csv",
                                         args.shipped_cache, ("val",))))
    for name, s in scored:
        r = recalls(s)
        doc["runs"][name] = r
        print(name, {k: (r[k]["tau"], r[k]["mean_rare_recall"], r[k]["recall_ham10000"])
                     for k in ("pooled", "by_source")}, flush=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
