"""A UNK call limited to images whose colour and texture look like the collection UNK was learned
from ("A UNK call limited to images whose colour and texture look like UNK's collection" in
docs/experiments/README.md).

Per image, 13 statistics of the decoded RGB at 256 x 256 (``image_stats``). A logistic
regression (standardised, balanced class weights, C = 1) is fitted on the runs' TRAINING split,
``--unk-source`` images against all others; the level is the ``--quantile`` of its probability
over the VALIDATION images of that source. The gated rule is the card's decision rule, except
that where it names UNK for an image below the level the suggestion becomes the rule's best
class other than UNK. Probabilities come from ``unk_familiar.py``'s cache in each run folder
(run that script first); the runs must share one split.

    .venv/bin/python docs/experiments/v2.26/unk_collection.py \\
        --run v2.25-detach-s42=runs/loso-detach-s42-isic2017 \\
        --out docs/experiments/v2.26/unk_collection.json

The image statistics are cached in ``--cache`` (a file in /tmp by default).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from dermsight import Dermsight, gate
from dermsight.io.decode import decode_image
from dermsight.preprocess import LUMA

sys.path.insert(0, str(Path(__file__).parent))
from unk_familiar import DATA, _figures, _frames, _suggest

RING = 16  # outer ring width in pixels (at 256 x 256)


def image_stats(rgb: np.ndarray) -> np.ndarray:
    """The 13 statistics: the gate's five quality statistics, R/G/B mean and spread, the outer
    ring's mean luminance over the centre's, and the ring's share of near-black pixels."""
    q = gate.quality_stats(rgb)
    small = np.asarray(Image.fromarray(rgb).resize((256, 256), Image.Resampling.BILINEAR),
                       np.float32)
    grey = small @ LUMA
    ring = np.ones((256, 256), bool)
    ring[RING:-RING, RING:-RING] = False
    centre = grey[64:192, 64:192]
    return np.array([q.mean, q.std, q.clipped, np.log1p(q.sharpness), q.saturation,
                     *small.reshape(-1, 3).mean(0), *small.reshape(-1, 3).std(0),
                     grey[ring].mean() / max(float(centre.mean()), 1e-6),
                     float((grey[ring] < 20).mean())], np.float64)


def _stats(paths: list[Path], label: str) -> np.ndarray:
    return np.array([image_stats(decode_image(p)) for p in tqdm(paths, desc=label)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR")
    ap.add_argument("--unk-source", default="isic2020")
    ap.add_argument("--heldout", default="isic2017")
    ap.add_argument("--quantile", type=float, default=0.05)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/unk_collection_stats.npz"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    runs = [(n, Path(r)) for n, r in (s.split("=", 1) for s in args.run)]
    splits = {(r / "split.csv").read_bytes() for _, r in runs}
    if len(splits) != 1:
        raise SystemExit("the runs do not share one split")
    parts = _frames(runs[0][1], args.heldout)
    held_paths = [DATA / "images" / f"{x}.jpg" for x in parts["heldout"]["image_id"]]
    if args.cache.exists():
        z = np.load(args.cache, allow_pickle=False)
        x = {k: z[k] for k in ("train", "val", "heldout")}
    else:
        x = {"train": _stats(list(parts["train"]["path"]), "train"),
             "val": _stats(list(parts["val"]["path"]), "val"),
             "heldout": _stats(held_paths, "heldout")}
        np.savez_compressed(args.cache, **x)
    src = {k: parts[k]["source"].to_numpy(str) for k in ("train", "val")}
    detector = make_pipeline(StandardScaler(), LogisticRegression(
        C=1.0, class_weight="balanced", max_iter=1000))
    detector.fit(x["train"], (src["train"] == args.unk_source).astype(int))
    score = {k: detector.predict_proba(v)[:, 1] for k, v in x.items()}
    is_unk_source = src["val"] == args.unk_source
    level = float(np.quantile(score["val"][is_unk_source], args.quantile))
    doc: dict[str, Any] = {
        "features": 13, "n_train": len(x["train"]), "quantile": args.quantile,
        "level": round(level, 5),
        "validation_auc_collection": round(float(roc_auc_score(is_unk_source, score["val"])), 4),
        "share_above_level": {
            "validation_by_source": {s: round(float((score["val"][src["val"] == s] >= level)
                                                    .mean()), 4) for s in sorted(set(src["val"]))},
            "heldout": round(float((score["heldout"] >= level).mean()), 4)},
        "runs": {}}
    y_val = parts["val"]["diagnosis"].to_numpy(str)
    y_out = parts["heldout"]["diagnosis"].to_numpy(str)
    for name, run in runs:
        model = Dermsight.load(run / "bundle", threads=1)
        c = np.load(run / "unk_familiar_cache.npz", allow_pickle=False)
        assert list(c["val_id"]) == list(parts["val"]["image_id"])
        assert list(c["heldout_id"]) == list(parts["heldout"]["image_id"])
        classes = list(model.classes)
        out_classes = [k for k in classes if (y_out == k).any()]
        entry: dict[str, Any] = {}
        for rule, far_val, far_out in (("card_rule", None, None),
                                       ("gated", score["val"] < level,
                                        score["heldout"] < level)):
            s_out = _suggest(model, c["heldout_p"], far_out)
            held = _figures(y_out, s_out, out_classes)
            held["share_called_unk"] = round(float((s_out == "UNK").mean()), 4)
            entry[rule] = {"validation": _figures(y_val, _suggest(model, c["val_p"], far_val),
                                                  classes), "heldout": held}
        doc["runs"][name] = entry
        print(name, json.dumps(entry))
    print(json.dumps({k: v for k, v in doc.items() if k != "runs"}))
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
