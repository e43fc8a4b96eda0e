"""How well a held-out run's bundle names UNK on its own VALIDATION split (never the test split):
UNK recall of the suggested class, the UNK-vs-rest AUC of P(UNK), and the suggested class's
recall per class, from the run's ``split.csv`` ("UNK learned on the features without shaping
them" in docs/experiments/README.md).

    .venv/bin/python docs/experiments/v2.25/val_unk.py \
        --run v2.23-alpha1-s42=runs/loso-wise-s42-isic2017 \
        --run v2.25-detach-s42=runs/loso-detach-s42-isic2017 \
        --out docs/experiments/v2.25/val_unk.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight import Dermsight
from dermsight.evaluate.metrics import binary_auc
from dermsight.io.decode import decode_image
from dermsight.train.config import load_config
from dermsight.train.table import load_table, row_meta


def _validation(run: Path) -> pd.DataFrame:
    """The run's validation images, read through the training loader (every data folder's
    metadata normalised as training saw it), in ``split.csv`` as the run recorded it."""
    split = pd.read_csv(run / "split.csv")
    val = set(split.loc[split["split"] == "val", "image_id"])
    df = load_table(load_config(run / "config.json").data)
    return df[df["image_id"].isin(val)].reset_index(drop=True)


def _score(run: Path, df: pd.DataFrame) -> tuple[list[str], np.ndarray, list[str]]:
    model = Dermsight.load(run / "bundle")
    probs: list[list[float]] = []
    suggested: list[str] = []
    for i in range(0, len(df), 64):
        part = df.iloc[i:i + 64]
        out = model.predict_batch([decode_image(p) for p in part["path"]],
                                  [row_meta(r) for _, r in part.iterrows()])
        probs += [[p.probabilities[c] for c in model.classes] for p in out]
        suggested += [p.prediction for p in out]
    return list(model.classes), np.array(probs), suggested


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    doc: dict[str, object] = {}
    for spec in args.run:
        name, run = spec.split("=", 1)
        df = _validation(Path(run))
        classes, p, suggested = _score(Path(run), df)
        y = df["diagnosis"].to_numpy(str)
        s = np.array(suggested)
        recall = {c: round(float((s[y == c] == c).mean()), 4) for c in classes if (y == c).any()}
        unk = (y == "UNK").astype(int)
        doc[name] = {"n_val": len(df), "n_unk": int(unk.sum()),
                     "unk_auc": round(float(binary_auc(unk, p[:, classes.index("UNK")])), 4),
                     "suggested_recall": recall,
                     "suggested_balanced_accuracy": round(float(np.mean(list(recall.values()))), 4),
                     "suggested_unk_share_of_non_unk":
                         round(float((s[unk == 0] == "UNK").mean()), 4)}
        print(name, doc[name])
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
