"""How many of a clinic's own labelled images would a held-out network need? ("A clinic's own
labelled cases: updating the network's output on them" in docs/experiments/README.md.)
Scoring-time only: no network weight changes.

The held-out source's images are split in two folds by ``group_id`` (the seeded permutation of
``v2.14/adapt_bn.py``). Each fold is scored by an update fitted on ``n`` labelled images drawn at
random (seeded) from the OTHER fold — so no image is scored by an update that saw it — for each
bundle and each ``n`` in ``--sizes``, ``--draws`` draws each. Two updates, over the classes the
source has (MEL/NV/BKL for ISIC 2017), both multinomial logistic regression with balanced
class weights, their settings fixed before any result:

- ``recalibrate``: on the network's 9 log-probabilities (C = 1);
- ``revise``: on the network's pooled image features (the bundle's ``embedding`` output,
  standardised on the local images) + encoded metadata + the 9 log-probabilities (C = 0.01).

    .venv/bin/python docs/experiments/v2.15/local_update.py --source isic2017 \
        --bundle s42=runs/loso212s42-isic2017-epoch/bundle \
        --bundle s43=runs/loso212s43-isic2017-epoch/bundle --out docs/experiments/v2.15

Writes ``probs_<source>_<name>-<update><n>.npz`` (draw 0, for ``v2.7/heldout_seeds.py --probs``;
classes = the source's classes) and ``local_update_<source>.json``: per bundle, update and n,
the melanoma AUC and the arg-max balanced accuracy of every draw, their mean / min / max, and
the network alone on the same images.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from dermsight import Dermsight, taxonomy
from dermsight.evaluate.metrics import balanced_accuracy, binary_auc
from dermsight.predict import softmax
from dermsight.preprocess import encode_meta
from dermsight.records import Metadata
from dermsight.train.data import load_images
from dermsight.train.finalize.scoring import infer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "v2.7"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "v2.14"))
from adapt_bn import group_folds  # the two group folds of the AdaBN section
from heldout_seeds import SHARED  # the shared data folder

UPDATES = {"recalibrate": 1.0, "revise": 0.01}  # update -> inverse regularisation C
SUMMARY = {"mean": np.mean, "min": np.min, "max": np.max}


def _features(update: str, logp: np.ndarray, emb: np.ndarray, meta: np.ndarray) -> np.ndarray:
    return logp if update == "recalibrate" else np.concatenate([emb, meta, logp], axis=1)


def _fit_predict(update: str, x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray,
                 n_classes: int) -> np.ndarray:
    scaler = StandardScaler().fit(x_fit)
    clf = LogisticRegression(C=UPDATES[update], class_weight="balanced", max_iter=5000)
    clf.fit(scaler.transform(x_fit), y_fit)
    p = np.zeros((len(x), n_classes))
    p[:, clf.classes_] = clf.predict_proba(scaler.transform(x))
    return p


def _figures(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """MEL AUC (class 0 = MEL) and the arg-max balanced accuracy over the present classes."""
    return {"mel_auc": binary_auc(y == 0, p[:, 0]), "balanced_accuracy": balanced_accuracy(y, p)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--data", default="isic-subset")
    ap.add_argument("--bundle", action="append", required=True, help="NAME=BUNDLE (held out)")
    ap.add_argument("--sizes", default="25,50,100,200,400")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    df = pd.read_csv(SHARED / a.data / "metadata.csv", dtype=str, keep_default_na=False)
    df = df.rename(columns={"age": "age_approx", "site": "anatom_site"})
    df = df[df["source"] == a.source].reset_index(drop=True)
    present = [c for c in taxonomy.CLASS_CODES if c in set(df["diagnosis"])]
    if present[0] != "MEL":
        raise SystemExit(f"{a.source} has no melanomas")
    y = np.array([present.index(c) for c in df["diagnosis"]])
    images = load_images([str(SHARED / a.data / "images" / f"{x}.jpg") for x in df["image_id"]])
    metas = [Metadata.lenient(r.get("age_approx"), r.get("sex"), r.get("anatom_site"))
             for _, r in df.iterrows()]
    fold = group_folds(df["group_id"].to_numpy())
    sizes = [int(s) for s in a.sizes.split(",")]
    result: dict[str, Any] = {"source": a.source, "classes": present, "n_images": len(df),
                              "fold_sizes": [int((fold == k).sum()) for k in (0, 1)],
                              "draws": a.draws, "C": UPDATES, "bundles": {}}
    for spec in a.bundle:
        name, bundle = spec.split("=", 1)
        model = Dermsight.load(Path(bundle))
        out = infer(model, images, metas, desc=f"score {name}")
        p_net = softmax(out["logits"], model.card.temperature)
        logp = np.log(np.clip(p_net, 1e-12, None))
        meta = np.stack([encode_meta(m, model.card.meta_spec) for m in metas])
        cols = [list(model.classes).index(c) for c in present]
        sub = p_net[:, cols] / p_net[:, cols].sum(axis=1, keepdims=True)
        entry: dict[str, Any] = {  # MEL AUC of P(MEL) as served, and among the three
            "network": {**_figures(y, sub), "mel_auc_unrestricted":
                        binary_auc(y == 0, p_net[:, list(model.classes).index("MEL")])}}
        print(name, "network", {k: round(v, 3) for k, v in entry["network"].items()}, flush=True)
        for update in UPDATES:
            x = _features(update, logp, out["embedding"], meta)
            for n in sizes:
                draws = []
                for d in range(a.draws):
                    p = np.zeros((len(df), len(present)))
                    for k in (0, 1):
                        pool = np.flatnonzero(fold != k)
                        pick = np.random.default_rng([d, k, n]).choice(pool, n, replace=False)
                        idx = np.flatnonzero(fold == k)
                        p[idx] = _fit_predict(update, x[pick], y[pick], x[idx], len(present))
                    draws.append(_figures(y, p))
                    if d == 0:
                        np.savez_compressed(
                            a.out / f"probs_{a.source}_{name}-{update}{n}.npz",
                            image_id=df["image_id"].to_numpy(str), classes=np.array(present),
                            excluded=np.array([], dtype=str), p=p)
                entry[f"{update}{n}"] = {
                    "draws": draws,
                    **{f"{m}_{stat}": float(f([dr[m] for dr in draws]))
                       for m in ("mel_auc", "balanced_accuracy") for stat, f in SUMMARY.items()}}
                print(name, update, n, {k: round(v, 3) for k, v in entry[f"{update}{n}"].items()
                                        if k != "draws"}, flush=True)
        result["bundles"][name] = entry
    (a.out / f"local_update_{a.source}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
