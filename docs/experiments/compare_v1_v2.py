"""Compare two bundles on the VALIDATION images of a run's split (never the test split).

    .venv/bin/python docs/experiments/compare_v1_v2.py --split runs/v2/split.csv \
        --old src/dermsight/assets/default --new runs/v2/bundle \
        [--out docs/experiments/v1_vs_v2.json]

Scores every validation image of ``split.csv`` with both bundles through the serving facade
(decode -> preprocess -> ONNX Runtime -> temperature -> decision rule) and reports, per source and
for the isic-subset images together, melanoma AUC, malignant AUC, balanced accuracy over the
classes both models know, and the share of images each model would refer (risk tier "high").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermsight import Dermsight
from dermsight.evaluate.metrics import binary_auc
from dermsight.io.decode import decode_image
from dermsight.records import Metadata

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"


def _rows(split: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for folder in ("isic-subset", "isic2020-sample"):
        meta = pd.read_csv(DATA / folder / "metadata.csv", dtype=str, keep_default_na=False)
        meta = meta.rename(columns={"age_approx": "age", "anatom_site": "site"})
        meta["folder"] = folder
        frames.append(meta[["image_id", "age", "sex", "site", "folder"]])
    meta = pd.concat(frames)
    return split.merge(meta, on="image_id", how="left")


def _meta(row: pd.Series) -> Metadata:
    return Metadata.lenient(row.get("age"), row.get("sex"), row.get("site"))


def score(model: Dermsight, df: pd.DataFrame) -> dict[str, np.ndarray]:
    probs, preds, risks, p_mal = [], [], [], []
    for i in range(0, len(df), 64):
        part = df.iloc[i:i + 64]
        imgs = [decode_image(DATA / f / "images" / f"{x}.jpg")
                for f, x in zip(part["folder"], part["image_id"], strict=True)]
        out = model.predict_batch(imgs, [_meta(r) for _, r in part.iterrows()])
        probs += [[p.probabilities[c] for c in model.classes] for p in out]
        preds += [p.prediction for p in out]
        risks += [p.risk for p in out]
        p_mal += [p.malignant_probability for p in out]
    # p_mal: the bundle's malignant probability (the card's rule, dermsight.malignancy)
    return {"p": np.array(probs), "pred": np.array(preds), "risk": np.array(risks),
            "p_mal": np.array(p_mal)}


def summary(model: Dermsight, s: dict[str, np.ndarray], y: np.ndarray,
            shared: list[str]) -> dict[str, Any]:
    cls = model.classes
    mel = y == "MEL"
    mal = np.isin(y, ["MEL", "BCC", "SCC"])
    p_mal = s["p_mal"]
    recalls = [float(np.mean(s["pred"][y == c] == c)) for c in shared if np.any(y == c)]
    return {
        "n": int(len(y)), "n_mel": int(mel.sum()),
        "mel_auc": binary_auc(mel, s["p"][:, cls.index("MEL")]) if 0 < mel.sum() < len(y)
        else None,
        "malignant_auc": binary_auc(mal, p_mal) if 0 < mal.sum() < len(y) else None,
        "balanced_accuracy_shared_classes": float(np.mean(recalls)) if recalls else None,
        "refer_rate": float(np.mean(s["risk"] == "high")),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--old", type=Path, required=True)
    ap.add_argument("--new", type=Path, required=True)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    split = pd.read_csv(a.split, dtype=str, keep_default_na=False)
    val = _rows(split[split["split"] == "val"]).reset_index(drop=True)
    old, new = Dermsight.load(a.old), Dermsight.load(a.new)
    shared = [c for c in old.classes if c in new.classes]
    scores = {"old": score(old, val), "new": score(new, val)}
    y = val["diagnosis"].to_numpy()
    result: dict[str, Any] = {"old": str(a.old), "new": str(a.new), "shared_classes": shared}
    groups = {"isic-subset (all sources)": (val["folder"] == "isic-subset").to_numpy()}
    for src in sorted(val["source"].unique()):
        groups[src] = (val["source"] == src).to_numpy()
    for name, idx in groups.items():
        result[name] = {
            k: summary(m, {f: v[idx] for f, v in scores[k].items()}, y[idx], shared)
            for k, m in (("old", old), ("new", new))}
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
