"""Does an update that ``dermsight bundle adapt`` accepts hold on the clinic's other images?
(docs/experiments/README.md, "Does an accepted local update hold on the clinic's other images?")

For each plain held-out ISIC 2017 draw (its stored ``dermsight batch`` scores of the 1,430
held-out images, written by ``adapt_demo.py``), each n and 20 seeded draws of lesion groups
reaching n images: the command's own steps on those n cases (``assess_update`` with its
defaults; ``fit_update`` on all n), then the suggested class on the remaining images with and
without the update. Run from the repository root after ``adapt_demo.py``:

    .venv/bin/python docs/experiments/v2.28/adapt_holdout.py --scores /tmp/adapt-demo \
        --out docs/experiments/v2.28/adapt_holdout_kept.json
    # the first design (adapt_holdout.json): add --first-design
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dermsight.batch.store import read_output
from dermsight.bundle import load_bundle
from dermsight.decision import DecisionRule
from dermsight.local_update import (
    LocalCases,
    UpdateRefused,
    assess_update,
    cases_from_scores,
    fit_update,
    update_classes,
)

RUNS = {"plain s42": "runs/loso-wise-s42-isic2017", "plain s43": "runs/loso-teacher-s43-isic2017",
        "plain s45": "runs/loso-teacher-s45-isic2017", "plain s47": "runs/loso-plain-s47-isic2017",
        "plain s48": "runs/loso-plain-s48-isic2017"}
SIZES = (100, 200, 400, 700)
DRAWS = 20
THREE = ("MEL", "NV", "BKL")


def subset(cases: LocalCases, mask: np.ndarray) -> LocalCases:
    return LocalCases(probs=cases.probs[mask], labels=cases.labels[mask],
                      groups=cases.groups[mask])


def draw_groups(groups: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A mask of whole groups in a seeded random order until ``n`` images are reached."""
    uniq, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    taken = order[np.cumsum(sizes[order]) - sizes[order] < n]
    return np.isin(inverse, taken)


def figures(pred: np.ndarray, y: np.ndarray, members: list[int]) -> tuple[float, float]:
    recalls = [float(np.mean(pred[y == k] == k)) for k in members]
    return float(np.mean(recalls)), recalls[0]  # balanced accuracy, melanoma recall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scores", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--first-design", action="store_true",
                    help="the update as first built: malignant suggestions not kept")
    args = ap.parse_args()
    rows = []
    for label, run in RUNS.items():
        card = load_bundle(f"{run}/bundle").card
        classes = card.classes
        frame = read_output(args.scores / f"{label.replace(' ', '-')}-all.scores")
        cases = cases_from_scores(frame, classes)
        members = [classes.index(c) for c in THREE]
        rule = card.decision
        # the command keeps the card's malignant suggestions; --first-design: the first design's
        # update, which kept none (docs/experiments: before "malignant suggestions kept")
        kept = () if args.first_design else tuple(card.malignant)
        for n in SIZES:
            for d in tqdm(range(DRAWS), desc=f"{label} n={n}", leave=False):
                mask = draw_groups(cases.groups, n, seed=1000 * n + d)
                local, rest = subset(cases, mask), subset(cases, ~mask)
                try:
                    a = assess_update(local, rule, classes, kept=kept)
                    accepted, reasons = a.accepted, a.reasons
                except UpdateRefused as exc:
                    accepted, reasons = False, [str(exc)]
                names = update_classes(local, classes)
                upd = fit_update(local.probs, local.labels, classes, names, kept=kept,
                                 name="x", created="")
                with_rule = DecisionRule(rule.rule, rule.tau, rule.prior, rule.margins,
                                         local=upd)
                y = rest.labels
                ba0, mel0 = figures(rule.choose(rest.probs, classes), y, members)
                ba1, mel1 = figures(with_rule.choose(rest.probs, classes), y, members)
                rows.append({"run": label, "n": n, "draw": d, "cases": len(local),
                             "accepted": accepted, "reasons": reasons,
                             "update_classes": names, "rest_images": len(rest),
                             "rest_balanced_accuracy": [round(ba0, 4), round(ba1, 4)],
                             "rest_mel_recall": [round(mel0, 4), round(mel1, 4)]})
        print(label, flush=True)
    acc = [r for r in rows if r["accepted"]]
    gain = [r["rest_balanced_accuracy"][1] - r["rest_balanced_accuracy"][0] for r in acc]
    mel = [r["rest_mel_recall"][1] - r["rest_mel_recall"][0] for r in acc]
    summary = {
        "accepted": len(acc), "cases": len(rows),
        "accepted_gaining_share": float(np.mean([g > 0 for g in gain])) if acc else None,
        "accepted_mel_fall_over_0.05_share": float(np.mean([m < -0.05 for m in mel]))
        if acc else None,
        "per_n": {},
    }
    for n in SIZES:
        at = [r for r in rows if r["n"] == n]
        a_ = [r for r in at if r["accepted"]]
        ref = [r for r in at if not r["accepted"]]

        def mean_gain(rs: list[dict]) -> float | None:
            return (round(float(np.mean([r["rest_balanced_accuracy"][1]
                                         - r["rest_balanced_accuracy"][0] for r in rs])), 4)
                    if rs else None)

        def mean_mel(rs: list[dict]) -> float | None:
            return (round(float(np.mean([r["rest_mel_recall"][1] - r["rest_mel_recall"][0]
                                         for r in rs])), 4) if rs else None)

        summary["per_n"][str(n)] = {
            "accepted": len(a_), "of": len(at),
            "accepted_mean_gain": mean_gain(a_), "accepted_mean_mel_change": mean_mel(a_),
            "accepted_gaining": sum(r["rest_balanced_accuracy"][1]
                                    > r["rest_balanced_accuracy"][0] for r in a_),
            "refused_mean_gain_if_applied": mean_gain(ref),
            "refused_mean_mel_change_if_applied": mean_mel(ref),
        }
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
