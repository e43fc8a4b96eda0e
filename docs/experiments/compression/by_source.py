"""Where the pooled malignant-AUC loss of a re-saved level comes from: the malignant AUC within
each source, stored vs re-saved, paired (1,000 group-bootstrap draws), and each source's mean
malignant probability. Reads the probabilities ``sweep.py`` cached; scores nothing. Added after
the JPEG 85 results (post hoc; it decides nothing).

    .venv/bin/python docs/experiments/compression/by_source.py \
        docs/experiments/compression/mid jpeg85          # validation
    .venv/bin/python docs/experiments/compression/by_source.py \
        docs/experiments/compression/test-mid jpeg85     # test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dermsight import Dermsight

ROOT = Path(__file__).resolve().parents[3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("level")
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    card = Dermsight.load().card
    stored = np.load(args.folder / "probs_stored.npz")
    level = np.load(args.folder / f"probs_{args.level}.npz")
    ids, classes = stored["image_id"], [str(c) for c in stored["classes"]]
    if not (ids == level["image_id"]).all():
        raise SystemExit("the two probability files hold different images")
    split = pd.read_csv(ROOT / "configs" / "default-split.csv").set_index("image_id")
    df = split.loc[ids].reset_index()
    # the card's malignant probability: MEL + BCC + SCC among the specific diagnoses
    keep = [i for i, c in enumerate(classes) if c not in card.malignant_excluded]
    mal = [keep.index(classes.index(c)) for c in ("MEL", "BCC", "SCC")]

    def malignant(p: np.ndarray) -> np.ndarray:
        q = p[:, keep] / p[:, keep].sum(1, keepdims=True)
        return q[:, mal].sum(1)

    y = df["diagnosis"].isin(["MEL", "BCC", "SCC"]).to_numpy()
    pa, pb = malignant(stored["p"]), malignant(level["p"])
    rng = np.random.default_rng(0)
    rows = []
    for src, g in [("all", df), *df.groupby("source")]:
        ix = g.index.to_numpy()
        yy, a, b = y[ix], pa[ix], pb[ix]
        row = {"source": src, "n": len(ix), "n_malignant": int(yy.sum()),
               "mean_malignant_stored": round(float(a.mean()), 4),
               "mean_malignant_resaved": round(float(b.mean()), 4)}
        if yy.any() and not yy.all():
            groups = g["group_id"].to_numpy()
            members = {u: np.flatnonzero(groups == u) for u in np.unique(groups)}
            names = list(members)
            draws = []
            for _ in range(args.n_boot):
                s = np.concatenate([members[u] for u in rng.choice(names, len(names))])
                if yy[s].any() and not yy[s].all():
                    draws.append(roc_auc_score(yy[s], b[s]) - roc_auc_score(yy[s], a[s]))
            row["malignant_auc_difference"] = {
                "value": round(roc_auc_score(yy, b) - roc_auc_score(yy, a), 4),
                "lo": round(float(np.percentile(draws, 2.5)), 4),
                "hi": round(float(np.percentile(draws, 97.5)), 4)}
        rows.append(row)
        print(json.dumps(row))
    (args.folder / f"by_source_{args.level}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
