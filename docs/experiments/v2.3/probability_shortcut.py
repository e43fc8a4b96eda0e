"""Where the UNK shortcut lives in a nine-class bundle's probabilities (the figures behind the
v2.3 decision in docs/experiments/README.md). Scores through the serving facade; fits nothing
except, with ``--refit-margin``, the UNK margin on the run's own validation images (exactly as
finalize does: ``dermsight.decision.fit_margins``, tolerance 0.01).

    # ISIC 2020 validation + test images: referrals and melanomas, for one or more bundles
    .venv/bin/python docs/experiments/v2.3/probability_shortcut.py isic2020 \
        --split runs/v2.3/split.csv --bundle src/dermsight/assets/default --bundle runs/v2.3/bundle

    # a held-out source (leave-one-source-out run): P(UNK), UNK calls, refer tier as is and with
    # UNK's share taken out, and (--refit-margin) the margin fit on older bundles
    .venv/bin/python docs/experiments/v2.3/probability_shortcut.py heldout \
        --split runs/loso23-isic2017/split.csv --bundle runs/loso23-isic2017/bundle [--refit-margin]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compare_v1_v2 import _rows, score

from dermsight import Dermsight
from dermsight.decision import DecisionRule, balanced_accuracy_of, fit_margins
from dermsight.evaluate.metrics import binary_auc

MALIGNANT = ("MEL", "BCC", "SCC")


def isic2020(split: pd.DataFrame, bundles: list[Path]) -> None:
    rows = split[(split["source"] == "isic2020") & split["split"].isin(["val", "test"])]
    df = _rows(rows).reset_index(drop=True)
    mel = df["diagnosis"].to_numpy() == "MEL"
    for b in bundles:
        model = Dermsight.load(b)
        s = score(model, df)
        risk = s["risk"]
        p_mal = s["p_mal"]  # the bundle's malignant probability, as its risk tier reads it
        print(f"{b}: {len(df)} ISIC 2020 val+test images, referred (high) {np.sum(risk == 'high')} "
              f"({np.mean(risk == 'high'):.3f}); melanomas ({mel.sum()}): "
              + ", ".join(f"{r} (P_mal {pm:.3f})"
                          for r, pm in zip(risk[mel], p_mal[mel], strict=True)))
        print("  suggested:", pd.Series(s["pred"]).value_counts().to_dict())


def _refer(p_mal: np.ndarray, pos: np.ndarray, thr: float) -> str:
    return (f"malignant AUC {binary_auc(pos, p_mal):.3f}, refer sensitivity "
            f"{np.mean(p_mal[pos] >= thr):.3f} / specificity {np.mean(p_mal[~pos] < thr):.3f}")


def heldout(split: pd.DataFrame, bundle: Path, refit_margin: bool) -> None:
    model = Dermsight.load(bundle)
    classes = list(model.classes)
    mal = [classes.index(c) for c in MALIGNANT]
    unk = classes.index("UNK")
    thr = model.card.thresholds.refer
    for part in ("external", "val"):
        df = _rows(split[split["split"] == part]).reset_index(drop=True)
        scored = score(model, df)
        probs = scored["p"]
        y = df["diagnosis"].to_numpy()
        pos = np.isin(y, MALIGNANT)
        p_mal = scored["p_mal"]  # the bundle's (the card's rule, dermsight.malignancy)
        renorm = probs[:, mal].sum(1) / np.clip(1 - probs[:, unk], 1e-9, None)
        name = "held-out source" if part == "external" else "validation"
        argmax_unk = np.mean(probs.argmax(1) == unk)
        suggested_unk = np.mean(scored["pred"] == "UNK")
        print(f"{name}: {len(df)} images, {pos.sum()} malignant; median P(UNK) "
              f"{np.median(probs[:, unk]):.3f}; plain arg-max UNK {argmax_unk:.3f}; "
              f"suggested UNK {suggested_unk:.3f}")
        print(f"  as is: {_refer(p_mal, pos, thr)}")
        print(f"  UNK's share taken out (same threshold): {_refer(renorm, pos, thr)}")
        if part == "external":
            ext_probs, ext_y = probs, y
        elif refit_margin:
            rule = DecisionRule(model.card.decision.rule, model.card.decision.tau,
                                model.card.decision.prior)  # the bundle's rule without margins
            labels = np.array([classes.index(c) for c in y])
            fitted, _ = fit_margins(rule, probs, labels, classes, ["UNK"], 0.01)
            for r, what in ((rule, "no margin"), (fitted, f"margins {fitted.margins}")):
                pred = np.array(classes)[r.choose(ext_probs, classes)]
                present = sorted(set(ext_y))
                bal = np.mean([np.mean(pred[ext_y == c] == c) for c in present])
                val_bal = balanced_accuracy_of(labels, r.choose(probs, classes), len(classes))
                print(f"  {what}: validation balanced accuracy {val_bal:.4f}; held-out called "
                      f"UNK {np.mean(pred == 'UNK'):.3f}, balanced accuracy {bal:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["isic2020", "heldout"])
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, action="append", required=True)
    ap.add_argument("--refit-margin", action="store_true")
    a = ap.parse_args()
    split = pd.read_csv(a.split, dtype=str, keep_default_na=False)
    if a.what == "isic2020":
        isic2020(split, a.bundle)
    else:
        heldout(split, a.bundle[0], a.refit_margin)


if __name__ == "__main__":
    main()
