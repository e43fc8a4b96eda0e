"""Which τ the by-source criterion would give the **shipped** bundle, on its own validation split
(``configs/default-split.csv``; the test split is not read). The pooled refit must reproduce the
card's τ and UNK margin ("τ chosen by each validation source's balanced accuracy" in
docs/experiments/README.md).

    .venv/bin/python docs/experiments/v2.27/shipped_tau.py \
        --out docs/experiments/v2.27/shipped_tau.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermsight import Dermsight
from dermsight.bundle import default_bundle_path
from dermsight.decision import (
    balanced_accuracy_of,
    fit_decision_rule,
    fit_margins,
    source_mean_balanced_accuracy,
)
from dermsight.train.config import load_config
from dermsight.train.table import load_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tau_by_source import _per_source, _probs

REPO = Path(__file__).resolve().parents[3]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    bundle = default_bundle_path()
    model = Dermsight.load(bundle)
    card = json.loads((bundle / "card.json").read_text(encoding="utf-8"))
    cfg = load_config(REPO / "configs" / "default.yaml")
    split = pd.read_csv(REPO / "configs" / "default-split.csv")
    ids = split.loc[split["split"] == "val", "image_id"]
    val = load_table(cfg.data).set_index("image_id").loc[ids].reset_index()
    classes = list(model.classes)
    p = _probs(model, val)
    y = np.array([classes.index(c) for c in val["diagnosis"]], np.int64)
    src = val["source"].to_numpy(str)
    prior = card["decision"]["prior"]
    doc: dict[str, Any] = {"card": {"tau": card["decision"]["tau"],
                                    "margins": card["decision"].get("margins")},
                           "n_val": int(len(y))}
    for name, sources in (("pooled", None), ("by_source", src)):
        rule, curve = fit_decision_rule(p, y, classes, prior, sources=sources)
        rule, _ = fit_margins(rule, p, y, classes, cfg.calibration.margin_classes,
                              cfg.calibration.margin_tolerance)
        pred = rule.choose(p, classes)
        doc[name] = {"tau": rule.tau, "margins": rule.active_margins, "curve": curve,
                     "val_balanced_accuracy": round(balanced_accuracy_of(y, pred, len(classes)), 4),
                     "val_source_mean": round(source_mean_balanced_accuracy(
                         y, pred, src, len(classes)), 4),
                     "val_by_source": _per_source(y, pred, src, len(classes))}
        print(name, {k: v for k, v in doc[name].items() if k != "curve"})
    print("card", doc["card"])
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
