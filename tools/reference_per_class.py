"""Choose the reference set's images-per-class cap on the VALIDATION split (never on test).

Rule (written before the run): among the caps below, take the one with the highest mean
precision@5 over the classes of the validation queries (every class counts the same, so the
rare classes are not drowned by nevi), as long as the reference set stays under 15 MB; a tie
(within 0.005) goes to the smaller set.

    .venv/bin/python tools/reference_per_class.py --data ../shared/data/isic-subset

A bundle trained on several data folders needs ``--data`` once for each (as ``dermsight reference
build``), e.g. ``--data ../shared/data/isic-subset --data ../shared/data/isic2020-sample``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dermsight import similar
from dermsight.bundle import default_bundle_path
from dermsight.evaluate.retrieval import retrieval_metrics
from dermsight.predict import Dermsight
from dermsight.reference_build import embed_rows, load_split, select_reference

CAPS = (150, 300, 600, 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, action="append",
                    help="data folder; once per folder the bundle was trained on "
                         "(default ../shared/data/isic-subset)")
    ap.add_argument("--split", type=Path, default=Path("configs/default-split.csv"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model = Dermsight.load(default_bundle_path(), threads=1)
    classes = list(model.classes)
    df = load_split(args.data or [Path("../shared/data/isic-subset")], args.split,
                    model.card.extra)
    biggest = select_reference(df[df["split"] == "train"], classes, max(CAPS), args.seed)
    bank = similar.normalize(np.concatenate([e for e, _, _ in embed_rows(model, biggest, False)]))
    val = df[df["split"] == "val"].reset_index(drop=True)
    val_emb = np.concatenate([e for e, _, _ in embed_rows(model, val, False)])
    rows = []
    for cap in CAPS:
        # the same seed-fixed order, so a smaller cap is a prefix of each class of the biggest
        picked = select_reference(df[df["split"] == "train"], classes, cap, args.seed)
        idx = np.flatnonzero(biggest["image_id"].isin(set(picked["image_id"])).to_numpy())
        m = retrieval_metrics(val_emb, list(val["diagnosis"]), bank[idx].astype(np.float16),
                              list(biggest["diagnosis"].iloc[idx]), classes)
        rows.append({"per_class": cap, "n_reference": len(idx),
                     "val_precision_at_5_mean_over_classes":
                         round(m["precision_at_k"]["mean_over_classes"], 4),
                     "val_precision_at_5_mean_over_queries":
                         round(m["precision_at_k"]["mean_over_queries"], 4),
                     "val_knn_vote_balanced_accuracy":
                         round(m["knn_vote"]["balanced_accuracy"], 4)})
        print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
