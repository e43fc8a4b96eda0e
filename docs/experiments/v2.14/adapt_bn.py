"""BatchNorm adaptation on an unseen clinic's unlabelled images ("The unseen clinic's own batch
statistics" in docs/experiments/README.md). Scoring-time only: no weight changes, no labels.

The held-out source's images are split in two folds by ``group_id`` (a seeded permutation of the
groups). For each fold, the run's network (``best.pt``) is adapted on the OTHER fold's images —
every BatchNorm layer of the backbone gets its running statistics reset and re-estimated as the
plain average over those images (``momentum=None``, train mode for those layers only, batches of
32, serving preprocessing, no augmentation) — exported to ONNX into a copy of the run's bundle
(same card: temperature, decision rule, thresholds, gate) and scored on THIS fold through the
serving facade. The unadapted bundle scores every image the same way, for the paired figures.

    .venv/bin/python docs/experiments/v2.14/adapt_bn.py --run runs/loso212s42-isic2017-epoch \
        --source isic2017 --name s42 --out docs/experiments/v2.14            # + --n-adapt 64

Writes ``probs_<source>_<name>[-adapt|-adapt64]_single.npz`` (for ``v2.7/heldout_seeds.py
--probs``: image ids, classes, probabilities) with the suggested classes and refer calls beside,
and ``suggested_<source>_<name>.json``: the suggested class's balanced accuracy over the
source's classes (predictions of other classes count wrong), the share called UNK, refer
sensitivity / specificity, plain and adapted, and the paired differences (1,000 group-bootstrap
draws).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dermsight import Dermsight, taxonomy
from dermsight.bundle import write_manifest
from dermsight.evaluate.bootstrap import bootstrap
from dermsight.evaluate.metrics import balanced_accuracy
from dermsight.preprocess import InputSpec, MetaSpec, encode_meta, preprocess
from dermsight.records import Metadata
from dermsight.train.config import load_config
from dermsight.train.data import load_images
from dermsight.train.export import export_onnx
from dermsight.train.finalize.scoring import load_network
from dermsight.train.network import LesionNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "v2.7"))
from heldout_seeds import SHARED, _difference  # the shared data folder and paired differences

BATCH = 32


def adapt_batchnorm(net: LesionNet, images: list[np.ndarray], metas: list[Metadata],
                    spec: InputSpec, meta_spec: MetaSpec) -> int:
    """Re-estimate the backbone's BatchNorm running statistics on ``images`` (plain average
    over batches); everything else stays. Returns the number of layers adapted."""
    layers = [m for m in net.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    net.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the adaptation batches
        m.train()
    with torch.no_grad():
        for i in range(0, len(images), BATCH):
            x = np.stack([preprocess(im, spec) for im in images[i:i + BATCH]])
            mt = np.stack([encode_meta(m, meta_spec) for m in metas[i:i + BATCH]])
            net(torch.from_numpy(x), torch.from_numpy(mt))
    net.eval()
    return len(layers)


def group_folds(groups: np.ndarray) -> np.ndarray:
    """Two folds (0 / 1) by group: a seeded permutation (seed 0) of the sorted unique groups,
    its first half fold 0."""
    uniq = np.unique(groups)
    perm = np.random.default_rng(0).permutation(len(uniq))
    fold_of_group = dict(zip(uniq[perm], (np.arange(len(uniq)) >= len(uniq) // 2).astype(int),
                             strict=True))
    return np.array([fold_of_group[g] for g in groups])


def _score(bundle: Path, images: list[np.ndarray], metas: list[Metadata]
           ) -> tuple[Dermsight, np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities, suggested classes and refer calls of a bundle through the facade."""
    model = Dermsight.load(bundle)
    probs, pred, refer = [], [], []
    for i in range(0, len(images), 64):
        for p in model.predict_batch(images[i:i + 64], metas[i:i + 64]):
            probs.append([p.probabilities[c] for c in model.classes])
            pred.append(p.prediction)
            refer.append(p.malignant_probability >= model.card.thresholds.refer)
    return model, np.array(probs), np.array(pred), np.array(refer)


def _save(file: Path, df: pd.DataFrame, model: Dermsight, p: np.ndarray, pred: np.ndarray,
          refer: np.ndarray) -> None:
    np.savez_compressed(file, image_id=df["image_id"].to_numpy(str),
                        classes=np.array(model.classes),
                        excluded=np.array(model.card.malignant_excluded, dtype=str), p=p,
                        prediction=pred, refer=refer)


def _figures(y: np.ndarray, pred: np.ndarray, refer: np.ndarray
             ) -> Callable[[np.ndarray | None], dict[str, Any]]:
    present = sorted(set(y))
    codes = {c: i for i, c in enumerate(present)}
    yi = np.array([codes[c] for c in y])
    pi = np.array([codes.get(c, -1) for c in pred])  # another class: wrong for every class
    mal = np.isin(y, sorted(taxonomy.MALIGNANT))

    # the suggested class as one-hot "probabilities", a last column for classes the source
    # does not have (no truth there: always wrong)
    onehot = np.eye(len(present) + 1)[np.where(pi < 0, len(present), pi)]

    def fn(w: np.ndarray | None) -> dict[str, Any]:
        ww = np.ones(len(y)) if w is None else w
        every_class = all(np.sum(ww * (yi == c)) > 0 for c in range(len(present)))
        return {"suggested_balanced_accuracy":  # undefined in a draw without some class
                balanced_accuracy(yi, onehot, w) if every_class else None,
                "share_unk": float(np.sum(ww * (pred == "UNK")) / ww.sum()),
                "refer_sensitivity": float(np.sum(ww * (refer & mal)) / np.sum(ww * mal)),
                "refer_specificity": float(np.sum(ww * (~refer & ~mal)) / np.sum(ww * ~mal))}

    return fn


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True, help="finished run: best.pt + bundle/")
    ap.add_argument("--source", required=True)
    ap.add_argument("--data", default="isic-subset", help="a folder of ../shared/data")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", type=Path, required=True, help="folder for the results")
    ap.add_argument("--n-adapt", type=int, default=0,
                    help="adapt on only this many images of the other fold (0: all of it)")
    ap.add_argument("--n-boot", type=int, default=1000)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    cfg = load_config(a.run / "config.json")
    meta_spec = MetaSpec()
    df = pd.read_csv(SHARED / a.data / "metadata.csv", dtype=str, keep_default_na=False)
    df = df.rename(columns={"age": "age_approx", "site": "anatom_site"})
    df = df[df["source"] == a.source].reset_index(drop=True)
    images = load_images([str(SHARED / a.data / "images" / f"{x}.jpg") for x in df["image_id"]])
    metas = [Metadata.lenient(r.get("age_approx"), r.get("sex"), r.get("anatom_site"))
             for _, r in df.iterrows()]
    groups = df["group_id"].to_numpy()
    uniq = np.unique(groups)
    fold = group_folds(groups)

    plain_file = a.out / f"probs_{a.source}_{a.name}_single.npz"
    model, p_plain, pred_plain, refer_plain = _score(a.run / "bundle", images, metas)
    _save(plain_file, df, model, p_plain, pred_plain, refer_plain)

    p = np.zeros_like(p_plain)
    pred = np.empty(len(df), dtype=f"<U{max(len(c) for c in model.classes)}")
    refer = np.zeros(len(df), dtype=bool)
    n_layers, adapt_counts = 0, []
    for k in (0, 1):
        other = np.flatnonzero(fold != k)
        if a.n_adapt:
            other = np.random.default_rng(0).permutation(other)[:a.n_adapt]
        adapt_counts.append(len(other))
        net = load_network(cfg, a.run, meta_spec)
        n_layers = adapt_batchnorm(net, [images[i] for i in other], [metas[i] for i in other],
                                   cfg.input.spec(), meta_spec)
        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / "bundle"
            shutil.copytree(a.run / "bundle", bundle)
            export_onnx(net, cfg.input.spec().size, bundle / "model.onnx")
            write_manifest(bundle)
            idx = np.flatnonzero(fold == k)
            _, pk, predk, referk = _score(bundle, [images[i] for i in idx],
                                          [metas[i] for i in idx])
        p[idx], pred[idx], refer[idx] = pk, predk, referk
    tag = f"adapt{a.n_adapt}" if a.n_adapt else "adapt"
    _save(a.out / f"probs_{a.source}_{a.name}-{tag}_single.npz", df, model, p, pred, refer)

    y = df["diagnosis"].to_numpy()
    f_plain, f_adapt = _figures(y, pred_plain, refer_plain), _figures(y, pred, refer)
    result = {
        "run": str(a.run), "source": a.source, "n_images": len(df),
        "n_groups": len(uniq), "fold_sizes": [int((fold == k).sum()) for k in (0, 1)],
        "adaptation_images_per_fold": adapt_counts, "batchnorm_layers_adapted": n_layers,
        "n_boot": a.n_boot,
        "plain": bootstrap(f_plain, len(df), groups, n_boot=a.n_boot, seed=0),
        tag: bootstrap(f_adapt, len(df), groups, n_boot=a.n_boot, seed=0),
        f"{tag} - plain": bootstrap(_difference(f_adapt, f_plain), len(df), groups,
                                    n_boot=a.n_boot, seed=0),
    }
    (a.out / f"suggested_{a.source}_{a.name}-{tag}.json").write_text(
        json.dumps(result, indent=2) + "\n")
    for key in ("plain", tag, f"{tag} - plain"):
        print(key + ": " + ", ".join(f"{k} {_f(v['value'])} ({_f(v['lo'])} to {_f(v['hi'])})"
                                     for k, v in result[key].items()))


if __name__ == "__main__":
    main()
