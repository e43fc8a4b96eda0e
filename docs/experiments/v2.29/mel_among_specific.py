"""Post hoc, after the ablation results: does taking a piece out move the clinic's melanoma
ranking itself, or only how much probability UNK takes? For each stored held-out ISIC 2017
draw with cached probabilities: melanoma AUC of P(MEL) (the rule's figure), melanoma AUC of
P(MEL) / (1 − P(UNK)) (melanoma among the eight specific diagnoses, as the malignant
probability is taken), and the mean P(UNK) of the clinic's melanomas and of its other lesions.

    .venv/bin/python docs/experiments/v2.29/mel_among_specific.py \
        --out docs/experiments/v2.29/mel_among_specific.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight.evaluate.metrics import binary_auc

EXP = Path(__file__).resolve().parent.parent
REPO = EXP.parent.parent
META = REPO.parent / "shared" / "data" / "isic-subset" / "metadata.csv"
#: (name, recipe, probabilities file under docs/experiments) — the shipped recipe's draws with
#: stored probabilities, the two ablations, then the dermoscopy effects at double strength (v2.30)
DRAWS = (
    ("s42 seeded", "shipped recipe", "v2.12/probs_isic2017_v2.12-s42-epoch_single.npz"),
    ("s43 seeded", "shipped recipe", "v2.12/probs_isic2017_v2.12-s43-epoch_single.npz"),
    ("s42, 2 threads", "shipped recipe", "v2.23/probs_isic2017_v2.23-alpha1-s42_single.npz"),
    ("s43, 2 threads", "shipped recipe", "v2.23/probs_isic2017_v2.23-teacher-s43_single.npz"),
    ("s45, 2 threads", "shipped recipe", "v2.24/probs_isic2017_v2.24-teacher-s45_single.npz"),
    ("no colour constancy, s42", "ablation", "v2.29/probs_isic2017_v2.29-nocc-s42_single.npz"),
    ("no colour constancy, s43", "ablation", "v2.29/probs_isic2017_v2.29-nocc-s43_single.npz"),
    ("basic augmentations, s42", "ablation",
     "v2.29/probs_isic2017_v2.29-basicaug-s42_single.npz"),
    ("dermoscopy effects x2, s42", "double strength",
     "v2.30/probs_isic2017_v2.30-derm2-s42_single.npz"),
    ("dermoscopy effects x2, s43", "double strength",
     "v2.30/probs_isic2017_v2.30-derm2-s43_single.npz"),
    ("source-balanced weights, s42", "source balance",
     "v2.31/probs_isic2017_v2.31-srcbal-s42_single.npz"),
    ("source-balanced weights, s43", "source balance",
     "v2.31/probs_isic2017_v2.31-srcbal-s43_single.npz"),
    ("source-balanced weights, s45", "source balance",
     "v2.31/probs_isic2017_v2.31-srcbal-s45_single.npz"),
)


def figures(path: Path, labels: pd.Series) -> dict[str, float]:
    z = np.load(path, allow_pickle=False)
    classes = [str(c) for c in z["classes"]]
    p = z["p"].astype(np.float64)
    y = labels.loc[[str(i) for i in z["image_id"]]].to_numpy() == "MEL"
    mel, unk = p[:, classes.index("MEL")], p[:, classes.index("UNK")]
    return {"mel_auc": binary_auc(y, mel),
            "mel_auc_among_specific": binary_auc(y, mel / np.clip(1 - unk, 1e-12, None)),
            "mean_p_unk_melanomas": float(unk[y].mean()),
            "mean_p_unk_others": float(unk[~y].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    labels = pd.read_csv(META, usecols=["image_id", "diagnosis"]).set_index("image_id")[
        "diagnosis"]
    rows = []
    for name, recipe, rel in DRAWS:
        f = figures(EXP / rel, labels)
        rows.append({"draw": name, "recipe": recipe, "file": rel, **f})
        print(f"{name:28s} MEL AUC {f['mel_auc']:.3f}  among specific "
              f"{f['mel_auc_among_specific']:.3f}  mean P(UNK) melanomas "
              f"{f['mean_p_unk_melanomas']:.3f}, others {f['mean_p_unk_others']:.3f}")
    args.out.write_text(json.dumps({"rows": rows}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
