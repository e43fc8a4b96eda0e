"""How the field of view drives the UNK shortcut: score a bundle with the image centre-cropped
to a fraction of its side (zoomed in) before the serving facade, on one part of a run's split.

    .venv/bin/python docs/experiments/v2.1/field_of_view.py --bundle runs/loso21-isic2017/bundle \
        --split runs/loso21-isic2017/split.csv --part external
    .venv/bin/python docs/experiments/v2.1/field_of_view.py --bundle runs/v2.1/bundle \
        --split runs/v2.1/split.csv --part val

For each fraction: the share of images whose suggested class (the card's decision rule) is UNK,
the balanced accuracy of the suggested class over the classes present, and the melanoma AUC,
for every source in the part (``--no-metadata``: every image scored without metadata). A
diagnostic, not a tuning step: the shipped preprocessing is not changed by it.

Added for the v2.9 experiment ("A closer view at scoring time only" in
docs/experiments/README.md): ``--fractions`` (default 1.0, 0.85, 0.7), the malignant AUC (the
bundle's malignant probability, malignant = MEL/BCC/SCC, UNK counted as not malignant) beside the
melanoma AUC, and an ``all`` row over every source of the part.

    .venv/bin/python docs/experiments/v2.1/field_of_view.py --bundle src/dermsight/assets/default \
        --split configs/default-split.csv --part val --fractions 1.0,0.9,0.8,0.7
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compare_v1_v2 import DATA, _meta, _rows

from dermsight import Dermsight, taxonomy
from dermsight.evaluate.metrics import binary_auc
from dermsight.io.decode import decode_image
from dermsight.records import Metadata

FRACTIONS = (1.0, 0.85, 0.7)


def crop_square(image: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """The ``side`` x ``side`` square at ``(top, left)``, back at the image's short side."""
    crop = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
    return np.asarray(crop.resize((min(image.shape[:2]),) * 2, Image.Resampling.BICUBIC))


def zoom(image: np.ndarray, fraction: float) -> np.ndarray:
    """The centre square of ``fraction`` x the short side, back at the original short side."""
    h, w = image.shape[:2]
    side = int(min(h, w) * fraction)
    return crop_square(image, (h - side) // 2, (w - side) // 2, side)


def score(model: Dermsight, images: list[np.ndarray], metas: list[Metadata]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Suggested class, P(MEL) and the malignant probability of each image, by the facade."""
    pred, p_mel, p_mal = [], [], []
    for i in range(0, len(images), 64):
        out = model.predict_batch(images[i:i + 64], metas[i:i + 64])
        pred += [p.prediction for p in out]
        p_mel += [p.probabilities["MEL"] for p in out]
        p_mal += [p.malignant_probability for p in out]
    return np.array(pred), np.array(p_mel), np.array(p_mal)


def figures_by_source(y: np.ndarray, src: np.ndarray, pred: np.ndarray, p_mel: np.ndarray,
                      p_mal: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per source and over ``all``: counts, share called UNK, balanced accuracy of the suggested
    class over the classes present, melanoma and malignant AUCs (None with < 2 positives)."""
    is_mal = np.isin(y, sorted(taxonomy.MALIGNANT))
    rows = {}
    for s in [*sorted(set(src)), "all"]:
        k = np.ones(len(src), bool) if s == "all" else src == s
        present = sorted(set(y[k]))
        mel, mal = y[k] == "MEL", is_mal[k]
        rows[s] = {
            "n": int(k.sum()), "n_mel": int(mel.sum()),
            "unk_share": float(np.mean(pred[k] == "UNK")),
            "balanced_accuracy": float(np.mean([np.mean(pred[k][y[k] == c] == c)
                                                for c in present])),
            "mel_auc": binary_auc(mel, p_mel[k]) if 2 <= mel.sum() < k.sum() else None,
            "n_malignant": int(mal.sum()),
            "malignant_auc": binary_auc(mal, p_mal[k]) if 2 <= mal.sum() < k.sum() else None,
        }
    return rows


def print_rows(label: str, rows: dict[str, dict[str, Any]]) -> None:
    for s, row in rows.items():
        print(f"{label} {s}: " + ", ".join(
            f"{m} {v:.3f}" if isinstance(v, float) else f"{m} {v}" for m, v in row.items()),
            flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--part", default="val", help="val | external (a held-out source)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-metadata", action="store_true",
                    help="score every image without age, sex and site")
    ap.add_argument("--fractions", default=",".join(str(f) for f in FRACTIONS),
                    help="comma-separated fractions of the side to keep")
    a = ap.parse_args()
    split = pd.read_csv(a.split, dtype=str, keep_default_na=False)
    df = _rows(split[split["split"] == a.part]).reset_index(drop=True)
    model = Dermsight.load(a.bundle)
    images = [decode_image(DATA / f / "images" / f"{x}.jpg")
              for f, x in zip(df["folder"], df["image_id"], strict=True)]
    metas = [Metadata() if a.no_metadata else _meta(r) for _, r in df.iterrows()]
    y, src = df["diagnosis"].to_numpy(), df["source"].to_numpy()
    result: dict[str, Any] = {"bundle": str(a.bundle), "part": a.part, "by_fraction": {}}
    for frac in [float(f) for f in a.fractions.split(",")]:
        rows = figures_by_source(y, src, *score(model, [zoom(im, frac) for im in images], metas))
        print_rows(f"fraction {frac:.2f}", rows)
        result["by_fraction"][f"{frac:.2f}"] = rows
    if a.out:
        a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
