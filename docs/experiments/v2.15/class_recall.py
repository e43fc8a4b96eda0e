"""Per-class recall of the arg-max over one source's classes (MEL/NV/BKL for ISIC 2017) — the
three numbers behind the held-out "balanced accuracy over MEL/NV/BKL" — for stored held-out
probabilities and, for comparison, for a bundle on the same source's images in a split it was
*not* trained on but whose camera it saw in training (its own validation split). Also the
training split's class counts per source, i.e. which cameras each class was learned from.
A diagnostic ("Frozen ImageNet features beside the fine-tuned network", Result); it decides nothing.

    .venv/bin/python docs/experiments/v2.15/class_recall.py --source isic2017 \
        --probs s42=docs/experiments/v2.14/probs_isic2017_v2.12-s42-epoch_single.npz \
        --probs s43=docs/experiments/v2.14/probs_isic2017_v2.12-s43-epoch_single.npz \
        --heldout-split runs/loso212s42-isic2017-epoch/split.csv \
        --bundle shipped=src/dermsight/assets/default --split configs/default-split.csv \
        --stored --out docs/experiments/v2.15/class_recall_isic2017.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermsight import taxonomy
from dermsight.io.decode import decode_image
from dermsight.records import Metadata

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "v2.7"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "v2.14"))
from adapt_bn import _score  # a bundle's probabilities through the facade
from heldout_seeds import SHARED  # the shared data folder


def _recall(y: np.ndarray, p: np.ndarray, classes: list[str], present: list[str]
            ) -> dict[str, Any]:
    pred = np.array(present)[p[:, [classes.index(c) for c in present]].argmax(axis=1)]
    known = np.isin(y, present)
    table = pd.crosstab(pd.Series(y[known], name="truth"), pd.Series(pred[known], name="called"))
    return {"recall": {c: float(np.mean(pred[y == c] == c)) for c in present},
            "n": {c: int(np.sum(y == c)) for c in present},
            "confusion": {t: {c: int(table.loc[t].get(c, 0)) for c in present}
                          for t in table.index}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--data", default="isic-subset")
    ap.add_argument("--probs", action="append", default=[], help="NAME=FILE.npz (held out)")
    ap.add_argument("--stored", action="store_true",
                    help="also every stored single-network file docs/experiments/*/probs_"
                         "<source>_*_single.npz (no TTA, adaptation or no-metadata variants)")
    ap.add_argument("--heldout-split", type=Path, required=True,
                    help="split.csv of the held-out run: its training counts")
    ap.add_argument("--bundle", required=True, help="NAME=BUNDLE trained with the source")
    ap.add_argument("--split", type=Path, required=True, help="that bundle's split.csv")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    df = pd.read_csv(SHARED / a.data / "metadata.csv", dtype=str, keep_default_na=False)
    df = df[df["source"] == a.source].reset_index(drop=True)
    y = df["diagnosis"].to_numpy()
    present = [c for c in taxonomy.CLASS_CODES if c in set(y)]
    result: dict[str, Any] = {"source": a.source, "classes": present, "held_out": {}}
    specs = list(a.probs)
    if a.stored:
        here = Path(__file__).resolve().parents[1]
        specs += [f"{f.parent.name}/{f.stem}={f}"
                  for f in sorted(here.glob(f"*/probs_{a.source}_*_single.npz"))
                  if "adapt" not in f.stem]
    for spec in specs:
        name, file = spec.split("=", 1)
        z = np.load(file, allow_pickle=False)
        if list(z["image_id"]) != list(df["image_id"]):
            raise SystemExit(f"{file}: not the {a.source} images in table order")
        result["held_out"][name] = _recall(y, z["p"], [str(c) for c in z["classes"]], present)
    split = pd.read_csv(a.heldout_split, dtype=str, keep_default_na=False)
    train = split[split["split"] == "train"]
    result["heldout_run_training_counts"] = {
        c: train.loc[train["diagnosis"] == c, "source"].value_counts().to_dict() for c in present}

    name, bundle = a.bundle.split("=", 1)
    own = pd.read_csv(a.split, dtype=str, keep_default_na=False)
    val_ids = set(own.loc[(own["split"] == "val") & (own["source"] == a.source), "image_id"])
    val = df[df["image_id"].isin(val_ids)].reset_index(drop=True)
    model, p, _, _ = _score(
        Path(bundle),
        [decode_image(SHARED / a.data / "images" / f"{x}.jpg") for x in val["image_id"]],
        [Metadata.lenient(r.get("age_approx"), r.get("sex"), r.get("anatom_site"))
         for _, r in val.iterrows()])
    result["seen_camera_validation"] = {name: _recall(val["diagnosis"].to_numpy(), p,
                                                      list(model.classes), present)}
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()
