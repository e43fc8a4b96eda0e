"""Label-shift adaptation without labels on a held-out clinic: the EM re-estimation of the
clinic's class priors (Saerens, Latinne & Decaestecker 2002), applied to one held-out network's
calibrated probabilities ("Label-shift adaptation" in docs/experiments/README.md).

The network's own prior is the mean of its calibrated probabilities on its validation split (a
sample of the training distribution; with class-weighted training the label frequencies are not
what the network assumes). EM then alternates: re-weight every held-out image's probabilities by
(clinic prior / network prior) and renormalise; set the clinic prior to the mean re-weighted
probability. Nothing uses a label of the clinic.

    .venv/bin/python docs/experiments/v2.18/label_shift_em.py \
        --run runs/loso-resave-s42-isic2017 --source isic2017 \
        --probs docs/experiments/v2.18/probs_isic2017_v2.18-s42_single.npz \
        --out docs/experiments/v2.18/label_shift_em_isic2017.json
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight import Dermsight, taxonomy
from dermsight.evaluate.bootstrap import bootstrap
from dermsight.evaluate.metrics import balanced_accuracy, binary_auc
from dermsight.malignancy import malignant_probability
from dermsight.train.config import load_config
from dermsight.train.table import load_table, row_meta

ROOT = Path(__file__).resolve().parents[3]
SHARED = ROOT.parent / "shared" / "data"
Metric = Callable[[npt.NDArray[np.float64] | None], dict[str, Any]]


def validation_probs(run: Path, model: Dermsight) -> np.ndarray:
    """The bundle's calibrated probabilities on its run's validation split."""
    os.chdir(ROOT)
    table = load_table(load_config(ROOT / "configs" / "default.yaml").data)
    split = pd.read_csv(run / "split.csv")
    val = split.loc[split["split"] == "val", ["image_id"]].merge(
        table, on="image_id", how="left", validate="one_to_one")
    probs = []
    for i in range(0, len(val), 64):
        part = val.iloc[i:i + 64]
        out = model.predict_batch(list(part["path"]), [row_meta(r) for _, r in part.iterrows()])
        probs += [[p.probabilities[c] for c in model.classes] for p in out]
    return np.asarray(probs, np.float64)


def em_priors(p: np.ndarray, prior: np.ndarray, iters: int = 1000, tol: float = 1e-8
              ) -> tuple[np.ndarray, np.ndarray, int]:
    """EM for the target priors: (adapted probabilities, target prior, iterations used)."""
    target = prior.copy()
    for it in range(1, iters + 1):
        q = p * (target / prior)
        q /= q.sum(axis=1, keepdims=True)
        new = q.mean(axis=0)
        if np.abs(new - target).max() < tol:
            return q, new, it
        target = new
    q = p * (target / prior)
    return q / q.sum(axis=1, keepdims=True), target, iters


def metric(y: np.ndarray, p: np.ndarray, model: Dermsight) -> Metric:
    classes = list(model.classes)
    present = [c for c in classes if c in set(y)]
    yi = np.array([present.index(c) for c in y])
    suggested = np.asarray(model.card.decision.choose(p, classes))
    names = np.array(classes)[suggested]
    cols = [classes.index(c) for c in present]
    sub = p[:, cols] / p[:, cols].sum(axis=1, keepdims=True)
    mel = p[:, classes.index("MEL")]
    mal = malignant_probability(p, classes, model.card.malignant, model.card.malignant_excluded)
    is_mal = np.isin(y, sorted(taxonomy.MALIGNANT))

    def fn(w: npt.NDArray[np.float64] | None) -> dict[str, Any]:
        ww = np.ones(len(y)) if w is None else w
        recalls = [ww[(y == c) & (names == c)].sum() / ww[y == c].sum() for c in present
                   if ww[y == c].sum() > 0]
        return {"mel_auc": binary_auc(y == "MEL", mel, w),
                "malignant_auc": binary_auc(is_mal, mal, w),
                "balanced_accuracy_suggested": float(np.mean(recalls)),
                "balanced_accuracy_present": balanced_accuracy(yi, sub, w)}

    return fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--data", default="isic-subset")
    ap.add_argument("--probs", type=Path, required=True, help="held-out probabilities (.npz)")
    ap.add_argument("--n-adapt", type=int, default=64,
                    help="also: priors estimated from this many images only (seeded order)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    model = Dermsight.load(a.run / "bundle")
    classes = list(model.classes)
    df = pd.read_csv(SHARED / a.data / "metadata.csv", dtype=str, keep_default_na=False)
    df = df[df["source"] == a.source].reset_index(drop=True)
    z = np.load(a.probs, allow_pickle=False)
    if list(z["image_id"]) != list(df["image_id"]) or list(z["classes"]) != classes:
        raise SystemExit(f"{a.probs} does not hold {a.source}'s images in order for this bundle")
    p = np.asarray(z["p"], np.float64)
    y, groups = df["diagnosis"].to_numpy(), df["group_id"].to_numpy()
    val = validation_probs(a.run, model)
    prior = val.mean(axis=0)
    q, target, iters = em_priors(p, prior)
    order = np.random.default_rng(0).permutation(len(p))[: a.n_adapt]
    _, target_few, iters_few = em_priors(p[order], prior)
    q_few = p * (target_few / prior)
    q_few /= q_few.sum(axis=1, keepdims=True)
    fns = {name: metric(y, probs, model) for name, probs in
           (("plain", p), ("em", q), (f"em{a.n_adapt}", q_few))}

    def diff(x: str, b: str) -> Metric:
        def fn(w: npt.NDArray[np.float64] | None) -> dict[str, Any]:
            mx, mb = fns[x](w), fns[b](w)
            return {k: mx[k] - mb[k] for k in mx}
        return fn

    boot = {"n_boot": a.n_boot, "seed": 0}
    truth = {c: float(np.mean(y == c)) for c in classes}
    result = {
        "run": str(a.run), "source": a.source, "n_images": len(df), "n_val": len(val),
        "classes": classes,
        "network_prior_validation_mean": dict(zip(classes, prior.round(4).tolist(), strict=True)),
        "clinic_prior_em": dict(zip(classes, target.round(4).tolist(), strict=True)),
        "em_iterations": iters,
        f"clinic_prior_em_{a.n_adapt}_images": dict(zip(classes, target_few.round(4).tolist(),
                                                        strict=True)),
        f"em_{a.n_adapt}_iterations": iters_few,
        "clinic_label_shares_not_used": truth,
        "figures": {k: bootstrap(f, len(y), groups, **boot) for k, f in fns.items()},
        "differences": {f"{k} - plain": bootstrap(diff(k, "plain"), len(y), groups, **boot)
                        for k in fns if k != "plain"},
    }
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    for section in ("figures", "differences"):
        for name, ci in result[section].items():
            print(section, name, {k: f"{v['value']:+.3f} ({v['lo']:+.3f}, {v['hi']:+.3f})"
                                  for k, v in ci.items()})
    print("priors", {c: (round(prior[i], 3), round(target[i], 3), round(truth[c], 3))
                     for i, c in enumerate(classes)})


if __name__ == "__main__":
    main()
