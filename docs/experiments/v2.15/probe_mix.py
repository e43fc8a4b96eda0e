"""The frozen-feature probe on an unseen clinic, alone and mixed with the fine-tuned network
("Frozen ImageNet features beside the fine-tuned network" in docs/experiments/README.md).
Scoring-time only for the network; the probe is the project's own fine-tuning baseline
(``dermsight.train.finalize.baseline.linear_probe``: frozen ImageNet backbone + metadata ->
logistic regression, C and imbalance chosen on validation, temperature fitted on validation),
fitted on the held-out run's own training split (rebuilt from its config and checked against
its ``split.csv``) and scored on the held-out source's images.

    .venv/bin/python docs/experiments/v2.15/probe_mix.py --run runs/loso212s42-isic2017-epoch \
        --source isic2017 --out docs/experiments/v2.15 \
        --network s42=docs/experiments/v2.14/probs_isic2017_v2.12-s42-epoch_single.npz \
        --network s43=docs/experiments/v2.14/probs_isic2017_v2.12-s43-epoch_single.npz

Writes, for ``v2.7/heldout_seeds.py --probs`` (image ids, classes, probabilities):
``probs_<source>_probe.npz`` and, per network and mixing weight w,
``probs_<source>_<name>-mix<w>.npz`` = (1 - w) x network + w x probe. Also ``probe_<source>.json``:
the probe's choice on validation and, on the run's validation images (in-distribution, the
training sources), the melanoma / malignant AUC of the network, the probe and each mix — the
cost of the mix where the network was trained.
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
from dermsight.evaluate.metrics import binary_auc
from dermsight.malignancy import malignant_probability
from dermsight.predict import softmax
from dermsight.train.config import load_config
from dermsight.train.finalize.baseline import linear_probe
from dermsight.train.finalize.scoring import load_parts
from dermsight.train.pipeline import prepare_data
from dermsight.train.table import EXTERNAL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "v2.7"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "v2.14"))
from adapt_bn import _score  # a bundle's probabilities through the facade
from heldout_seeds import SHARED  # the shared data folder

WEIGHTS = (0.25, 0.5, 0.75)


def _aucs(y: np.ndarray, p: np.ndarray, classes: list[str], excluded: list[str]
          ) -> dict[str, float]:
    mal = malignant_probability(p, classes, excluded=excluded)
    return {"mel_auc": binary_auc(y == "MEL", p[:, classes.index("MEL")]),
            "malignant_auc": binary_auc(np.isin(y, sorted(taxonomy.MALIGNANT)), mal)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True, help="a finished held-out run")
    ap.add_argument("--source", required=True)
    ap.add_argument("--data", default="isic-subset", help="the folder of ../shared/data "
                    "holding the held-out source (image order of heldout_seeds.py)")
    ap.add_argument("--network", action="append", default=[],
                    help="NAME=FILE.npz: a network's held-out probabilities (heldout_seeds.py)")
    ap.add_argument("--bundle", action="append", default=[],
                    help="NAME=BUNDLE: the same networks' bundles, for the validation figures")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(a.run / "config.json")
    cfg.evaluation.linear_probe = True  # load_parts: the whole training split
    df = prepare_data(cfg)
    saved = pd.read_csv(a.run / "split.csv", dtype=str, keep_default_na=False)
    if dict(zip(df["image_id"], df["split"], strict=True)) != dict(
            zip(saved["image_id"], saved["split"], strict=True)):
        raise SystemExit(f"the rebuilt split differs from {a.run / 'split.csv'}")
    parts = load_parts(cfg, df)
    ext = parts[EXTERNAL]
    if set(ext.df["source"]) != {a.source}:
        raise SystemExit(f"the run's held-out images are {set(ext.df['source'])}, not {a.source}")
    lp = linear_probe(cfg, {"train": parts["train"], "val": parts["val"], "test": ext})
    classes = list(cfg.data.classes)
    p_ext = softmax(lp["test_logits"], lp["temperature"])
    p_val = softmax(lp["val_logits"], lp["temperature"])

    # the image order of heldout_seeds.py: the data folder's table, this source's rows
    table = pd.read_csv(SHARED / a.data / "metadata.csv", dtype=str, keep_default_na=False)
    ids = table.loc[table["source"] == a.source, "image_id"].to_numpy(str)
    row = {x: i for i, x in enumerate(ext.df["image_id"])}
    p_ext = p_ext[[row[x] for x in ids]]
    excluded = cfg.malignant_excluded()
    np.savez_compressed(a.out / f"probs_{a.source}_probe.npz", image_id=ids,
                        classes=np.array(classes), excluded=np.array(excluded, dtype=str),
                        p=p_ext)
    for spec in a.network:
        name, file = spec.split("=", 1)
        z = np.load(file, allow_pickle=False)
        if list(z["image_id"]) != list(ids) or [str(c) for c in z["classes"]] != classes:
            raise SystemExit(f"{file}: not the {a.source} images / classes in this order")
        for w in WEIGHTS:
            np.savez_compressed(a.out / f"probs_{a.source}_{name}-mix{w}.npz", image_id=ids,
                                classes=z["classes"], excluded=z["excluded"],
                                p=(1 - w) * z["p"] + w * p_ext)

    y_val = np.array(classes)[parts["val"].labels]
    validation: dict[str, Any] = {"probe": _aucs(y_val, p_val, classes, excluded)}
    for spec in a.bundle:
        name, bundle = spec.split("=", 1)
        model, p_net, _, _ = _score(Path(bundle), parts["val"].images, parts["val"].metas)
        b_classes, b_excluded = list(model.classes), list(model.card.malignant_excluded)
        validation[name] = _aucs(y_val, p_net, b_classes, b_excluded)
        for w in WEIGHTS:
            validation[f"{name}-mix{w}"] = _aucs(y_val, (1 - w) * p_net + w * p_val,
                                                 b_classes, b_excluded)
    result = {"run": str(a.run), "source": a.source, "n_train": len(parts["train"].images),
              "n_val": len(parts["val"].images), "n_heldout": len(ids),
              "probe_choice": lp["chosen"], "probe_temperature": lp["temperature"],
              "imbalance_comparison_val_balanced_accuracy":
                  lp["imbalance_comparison_val_balanced_accuracy"],
              "validation_in_distribution": validation}
    (a.out / f"probe_{a.source}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
