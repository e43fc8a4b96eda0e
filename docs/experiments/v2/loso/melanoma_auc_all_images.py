"""Melanoma AUC of a bundle over every image of a data folder (any other diagnosis, UNK included,
counts as not melanoma), the malignant AUC and the share of images each risk tier gets. For an
8-class bundle on the SIIM-ISIC 2020 sample, whose UNK images are not a class it knows.

    .venv/bin/python docs/experiments/v2/loso/melanoma_auc_all_images.py \
        --bundle src/dermsight/assets/default --folder ../shared/data/isic2020-sample
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight import Dermsight
from dermsight.evaluate.metrics import binary_auc
from dermsight.io.decode import decode_image
from dermsight.records import Metadata


def _meta(row: pd.Series) -> Metadata:
    return Metadata.lenient(row.get("age"), row.get("sex"), row.get("site"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--folder", type=Path, required=True)
    a = ap.parse_args()
    model = Dermsight.load(a.bundle)
    df = pd.read_csv(a.folder / "metadata.csv", dtype=str, keep_default_na=False)
    df = df.rename(columns={"age_approx": "age", "anatom_site": "site"})
    probs, risks = [], []
    for i in range(0, len(df), 64):
        part = df.iloc[i:i + 64]
        out = model.predict_batch([decode_image(a.folder / "images" / f"{x}.jpg")
                                   for x in part["image_id"]],
                                  [_meta(r) for _, r in part.iterrows()])
        probs += [[p.probabilities[c] for c in model.classes] for p in out]
        risks += [p.risk for p in out]
    p = np.array(probs)
    mel = (df["diagnosis"] == "MEL").to_numpy()
    mal = df["diagnosis"].isin(["MEL", "BCC", "SCC"]).to_numpy()
    p_mal = p[:, [model.classes.index(c) for c in ("MEL", "BCC", "SCC")]].sum(1)
    print(f"{len(df)} images, {int(mel.sum())} melanomas: melanoma AUC "
          f"{binary_auc(mel, p[:, model.classes.index('MEL')]):.3f}, malignant AUC "
          f"{binary_auc(mal, p_mal):.3f}")
    print("risk tiers: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                     pd.Series(risks).value_counts(normalize=True).items()))


if __name__ == "__main__":
    main()
