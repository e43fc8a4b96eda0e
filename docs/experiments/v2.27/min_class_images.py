"""How much the by-source τ depends on its one free setting, the smallest number of a source's
validation images for a class to count (10 in the pre-registered criterion): τ and the clinic's
suggested-class balanced accuracy at 5, 10 and 20 for every stored held-out run, from the
probabilities ``tau_by_source.py`` cached in each run folder. A sensitivity check written after
the result; it decides nothing.

    .venv/bin/python docs/experiments/v2.27/min_class_images.py \
        --run loso-wise-s42=runs/loso-wise-s42-isic2017 ... \
        --out docs/experiments/v2.27/min_class_images.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dermsight.evaluate.metrics import balanced_accuracy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tau_by_source import load_run

SETTINGS = (5, 10, 20)


def analyse(run: Path) -> dict[str, Any]:
    s = load_run(run)
    sv = s.parts["val"]["source"].to_numpy(str)
    ye = s.labels("external")
    out: dict[str, Any] = {}
    for m in (None, *SETTINGS):
        rule, _ = s.refit(None) if m is None else s.refit(sv, m)
        ba = balanced_accuracy(ye, s.probs["external"], None, rule.offsets(s.classes))
        out["pooled" if m is None else str(m)] = {"tau": rule.tau,
                                                  "clinic_balanced_accuracy": round(ba or 0, 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    doc: dict[str, Any] = {}
    for spec in args.run:
        name, run = spec.split("=", 1)
        doc[name] = analyse(Path(run))
        print(name, doc[name], flush=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
