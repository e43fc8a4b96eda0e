"""Balanced accuracy of a bundle on one source of isic-subset, the arg-max taken over only the
classes that source has (e.g. MEL/NV/BKL for ISIC 2017), beside the plain arg-max's share of
each other class. Scores through the serving facade.

    .venv/bin/python docs/experiments/v2/loso/restricted_balanced_accuracy.py \
        --bundle runs/loso-isic2017/bundle --source isic2017
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight import Dermsight
from dermsight.io.decode import decode_image
from dermsight.records import Metadata

DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "isic-subset"


def _meta(row: pd.Series) -> Metadata:
    return Metadata.lenient(row.get("age_approx"), row.get("sex"), row.get("anatom_site"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    model = Dermsight.load(a.bundle)
    df = pd.read_csv(DATA / "metadata.csv", dtype=str, keep_default_na=False)
    df = df[df["source"] == a.source].reset_index(drop=True)
    probs, suggested = [], []
    for i in range(0, len(df), 64):
        part = df.iloc[i:i + 64]
        out = model.predict_batch([decode_image(DATA / "images" / f"{x}.jpg")
                                   for x in part["image_id"]],
                                  [_meta(r) for _, r in part.iterrows()])
        probs += [[p.probabilities[c] for c in model.classes] for p in out]
        suggested += [p.prediction for p in out]  # the card's decision rule
    p = np.array(probs)
    y = df["diagnosis"].to_numpy()
    present = sorted(set(y), key=model.classes.index)
    cols = [model.classes.index(c) for c in present]
    pred = np.array(present)[p[:, cols].argmax(1)]
    recalls = {c: float(np.mean(pred[y == c] == c)) for c in present}
    plain = np.array(model.classes)[p.argmax(1)]
    print(f"{a.source}: {len(y)} images; arg-max over {'/'.join(present)} only: balanced "
          f"accuracy {np.mean(list(recalls.values())):.3f}, recalls "
          + ", ".join(f"{c} {r:.3f}" for c, r in recalls.items()))
    others = pd.Series(plain[~np.isin(plain, present)]).value_counts()
    print("plain arg-max, share given to classes the source does not have: "
          + (", ".join(f"{c} {n / len(y):.3f}" for c, n in others.items()) or "none"))
    rule = np.array(suggested)
    others = pd.Series(rule[~np.isin(rule, present)]).value_counts()
    rec = {c: float(np.mean(rule[y == c] == c)) for c in present}
    print(f"suggested class (the card's decision rule): balanced accuracy "
          f"{np.mean(list(rec.values())):.3f}; share given to classes the source does not have: "
          + (", ".join(f"{c} {n / len(y):.3f}" for c, n in others.items()) or "none"))


if __name__ == "__main__":
    main()
