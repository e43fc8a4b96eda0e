"""How much of a bundle's pooled validation AUC comes from telling the sources apart?

    .venv/bin/python docs/experiments/v2.33/source_pairs.py --split runs/v2.32-srcbal/split.csv \
        --bundle shipped=src/dermsight/assets/default --bundle srcbal=runs/v2.32-srcbal/bundle \
        --diff srcbal,shipped --out docs/experiments/v2.33/source_pairs.json

A pooled AUC over the isic-subset validation images counts every (positive, negative) pair,
also pairs whose two images come from different collections. Where a collection's images are
nearly all one class (the ``isic_archive`` rows are nearly all melanomas), ranking a pair across
collections can be won by recognising the collection. This splits the pooled AUC into the
**within-source** pairs (both images from the same collection: the lesion has to be ranked
against others from the same camera) and the **between-source** pairs, for melanoma and for the
bundle's malignant probability, and gives paired group-bootstrap differences between bundles
(``dermsight.evaluate.bootstrap``, seed 0 for each difference).
Validation images only (the test split is never read). Images are scored through the serving
facade by ``compare_v1_v2.score``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermsight import Dermsight
from dermsight.evaluate.bootstrap import bootstrap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import compare_v1_v2 as cmp

MALIGNANT = ["MEL", "BCC", "SCC"]


def pair_aucs(pos: np.ndarray, score: np.ndarray, source: np.ndarray,
              w: np.ndarray | None = None) -> dict[str, float]:
    """AUC over all pairs, within-source pairs and between-source pairs (ties count 1/2).

    ``w`` weights each image (bootstrap multiplicity); a pair's weight is the product."""
    w = np.ones(len(pos)) if w is None else w
    sp, sn = score[pos], score[~pos]
    wp, wn = w[pos], w[~pos]
    win = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    pw = wp[:, None] * wn[None, :]
    same = source[pos][:, None] == source[~pos][None, :]
    out = {}
    for name, mask in (("pooled", np.ones_like(same)), ("within_source", same),
                       ("between_source", ~same)):
        den = float((pw * mask).sum())
        out[name] = float((win * pw * mask).sum() / den) if den > 0 else float("nan")
    out["within_share_of_pairs"] = float((pw * same).sum() / pw.sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--bundle", action="append", required=True, help="NAME=BUNDLE_DIR")
    ap.add_argument("--diff", action="append", default=[], help="A,B: paired A - B")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    split = pd.read_csv(a.split, dtype=str, keep_default_na=False)
    val = cmp._rows(split[split["split"] == "val"])
    val = val[val["folder"] == "isic-subset"].reset_index(drop=True)
    y, source = val["diagnosis"].to_numpy(), val["source"].to_numpy()
    targets = {"MEL": y == "MEL", "malignant": np.isin(y, MALIGNANT)}
    scores: dict[str, dict[str, np.ndarray]] = {}
    for spec in a.bundle:
        name, path = spec.split("=", 1)
        model = Dermsight.load(path)
        s = cmp.score(model, val)
        scores[name] = {"MEL": s["p"][:, model.classes.index("MEL")], "malignant": s["p_mal"]}
    np.savez_compressed(a.out.with_suffix(".npz"), image_id=val["image_id"].to_numpy(),
                        **{f"{n}_{t}": v for n, d in scores.items() for t, v in d.items()})
    result: dict[str, Any] = {
        "split": str(a.split), "n": int(len(val)),
        "per_source": {s: {t: int(targets[t][source == s].sum()) for t in targets}
                       | {"n": int((source == s).sum())} for s in sorted(set(source))},
        "bundles": {n: {t: pair_aucs(targets[t], d[t], source) for t in targets}
                    for n, d in scores.items()},
    }
    parts = ("pooled", "within_source", "between_source")
    for spec in a.diff:
        x, z = spec.split(",")

        def diff(w: np.ndarray | None, x: str = x, z: str = z) -> dict[str, float]:
            out = {}
            for t in targets:
                ax = pair_aucs(targets[t], scores[x][t], source, w)
                az = pair_aucs(targets[t], scores[z][t], source, w)
                out |= {f"{t}|{k}": ax[k] - az[k] for k in parts}
            return out

        ci = bootstrap(diff, len(val), val["group_id"].to_numpy(), n_boot=a.n_boot, seed=0)
        result[f"{x} - {z}"] = {
            t: {k: {"point": ci[f"{t}|{k}"]["value"],
                    "ci95": [ci[f"{t}|{k}"]["lo"], ci[f"{t}|{k}"]["hi"]]} for k in parts}
            for t in targets}
    text = json.dumps(result, indent=2)
    print(text)
    a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
