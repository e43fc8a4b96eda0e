"""Each piece of the shipped recipe taken out, read against the shipped recipe's own held-out
draws ("Each piece of the recipe measured on the held-out clinic" in docs/experiments/README.md).

The reference is every stored held-out ISIC 2017 draw of the shipped recipe: the nine of
``v2.23/validation_vs_heldout.json`` (recipe v2.4) and the four later plain draws (``REFERENCE``).
For melanoma AUC and malignant AUC it gives their mean, standard deviation and the 95 %
prediction interval for one further draw, m ± t(0.975, n − 1) · s · √(1 + 1/n), and applies the
pre-registered decision to each ablation run (a folder written by ``v2.11/heldout_row.py``):
both AUCs below their intervals → "pays" (the piece helps the unseen clinic), both above →
"costs", otherwise "unresolved". It also gathers what the section reports beside the decision
(suggested-class balanced accuracy, refer sensitivity / specificity, the epoch kept and its
validation figures, τ).

    .venv/bin/python docs/experiments/v2.29/ablation.py \
        --run no-colour-constancy=docs/experiments/v2.29/nocc-s42 \
        --run basic-augmentations=docs/experiments/v2.29/basicaug-s42 \
        --out docs/experiments/v2.29/ablation.json

``--pair NAME=FOLDER,FOLDER[,...]`` reads two to four draws of one recipe by the mean of their
AUCs against the 95 % prediction interval for the mean of as many further reference draws,
m ± t(0.975, n − 1) · s · √(1/k + 1/n): "both above", "both below" or "unresolved".
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import t as student_t

HERE = Path(__file__).resolve().parent
EXP = HERE.parent
FIGURES = ("mel_auc", "malignant_auc")
#: the plain draws of the shipped recipe stored after the v2.23 scatter
REFERENCE = ("v2.23/teacher-s43", "v2.24/teacher-s45", "v2.27/plain-s47", "v2.27/plain-s48")


def _rule_power() -> Any:
    spec = importlib.util.spec_from_file_location("rule_power", EXP / "v2.23" / "rule_power.py")
    if spec is None or spec.loader is None:
        raise SystemExit("docs/experiments/v2.23/rule_power.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference() -> list[dict[str, Any]]:
    """Every stored held-out ISIC 2017 draw of the shipped recipe: name and its two AUCs."""
    rows = json.loads((EXP / "v2.23" / "validation_vs_heldout.json").read_text())["rows"]
    out = [{"run": r["run"], **{k: r["heldout_isic2017"][k] for k in FIGURES}}
           for r in rows if r["recipe"] == "v2.4"]
    heldout_row = _rule_power().heldout_row
    for folder in REFERENCE:
        out.append({"run": folder, **heldout_row(EXP / folder / "isic2017.json")})
    return out


#: how many draws a --pair may read, and the word in its output key
MEAN_OF = {2: "two", 3: "three", 4: "four"}


def intervals(ref: list[dict[str, Any]], level: float = 0.95, draws: int = 1
              ) -> dict[str, dict[str, float]]:
    """The prediction interval for the mean of ``draws`` further draws of the reference recipe:
    m ± t(level, n − 1) · s · √(1 / draws + 1 / n)."""
    out = {}
    for k in FIGURES:
        x = np.array([r[k] for r in ref])
        n, m, s = len(x), float(x.mean()), float(x.std(ddof=1))
        half = float(student_t.ppf(0.5 + level / 2, n - 1) * s * np.sqrt(1 / draws + 1 / n))
        out[k] = {"n": n, "mean": m, "sd": s, "lo": m - half, "hi": m + half, "half_width": half}
    return out


def position(figures: dict[str, float], pi: dict[str, dict[str, float]]) -> str:
    """Where both AUCs lie against their intervals: "both below", "both above" or "unresolved"."""
    if all(figures[k] < pi[k]["lo"] for k in FIGURES):
        return "both below"
    if all(figures[k] > pi[k]["hi"] for k in FIGURES):
        return "both above"
    return "unresolved"


def decide(figures: dict[str, float], pi: dict[str, dict[str, float]]) -> str:
    """The ablation's reading: a piece whose removal puts both AUCs below the spread pays."""
    return {"both below": "pays", "both above": "costs"}.get(position(figures, pi), "unresolved")


def run_figures(folder: Path) -> dict[str, Any]:
    """The held-out row, decision rule and kept epoch of one ablation run's folder."""
    card = json.loads((folder / "isic2017.json").read_text())
    row = next(r for r in card["rows"] if r["protocol"] == "leave_one_source_out"
               and r["source"] == "isic2017")
    m = {k: v["value"] for k, v in row["metrics"].items() if v is not None}
    best = card["train_summary"]["best_epoch"]
    log = [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines()
           if x.strip()]
    kept = next(r for r in log if r["epoch"] == best)
    return {**m, "tau": card["decision"]["tau"], "unk_margin": card["decision"]["margins"],
            "epoch_kept": best,
            "validation_at_kept_epoch": {k: kept[f"val_{k}"] for k in (
                "balanced_accuracy", "mel_auc", "malignant_auc")},
            "median_epoch_seconds": float(np.median([r["epoch_seconds"] for r in log]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", default=[], metavar="NAME=FOLDER",
                    help="an ablation run's folder from v2.11/heldout_row.py (repeatable)")
    ap.add_argument("--pair", action="append", default=[], metavar="NAME=FOLDER,FOLDER[,...]",
                    help="two to four draws of one recipe, read by the mean of their figures "
                         "against the interval for the mean of as many draws (repeatable)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    ref = reference()
    pi = intervals(ref)
    result: dict[str, Any] = {"reference": ref, "prediction_intervals_95": pi, "runs": {}}
    for k in FIGURES:
        p = pi[k]
        print(f"{k}: {p['n']} draws, mean {p['mean']:.3f}, sd {p['sd']:.3f}, "
              f"95 % prediction interval {p['lo']:.3f}-{p['hi']:.3f}")
    for spec in args.run:
        name, _, folder = spec.partition("=")
        figures = run_figures(Path(folder))
        figures["decision"] = decide(figures, pi)
        result["runs"][name] = figures
        print(f"{name}: melanoma AUC {figures['mel_auc']:.3f}, malignant AUC "
              f"{figures['malignant_auc']:.3f}, suggested balanced accuracy "
              f"{figures['balanced_accuracy']:.3f} -> {figures['decision']}")
    for spec in args.pair:
        name, _, folders = spec.partition("=")
        each = [run_figures(Path(f)) for f in folders.split(",")]
        if len(each) not in MEAN_OF:
            raise SystemExit(f"--pair {name}: give two to four folders, got {len(each)}")
        words = MEAN_OF[len(each)]
        pik = result.setdefault(f"prediction_intervals_95_mean_of_{words}",
                                intervals(ref, draws=len(each)))
        mean = {k: float(np.mean([e[k] for e in each])) for k in FIGURES}
        where = position(mean, pik)
        pair = {"draws": dict(zip(folders.split(","), each, strict=True)), "mean": mean,
                "position": where}
        result.setdefault("pairs", {})[name] = pair
        print(f"{name} (mean of {words}): melanoma AUC {mean['mel_auc']:.3f} "
              f"({pik['mel_auc']['lo']:.3f}-{pik['mel_auc']['hi']:.3f}), malignant AUC "
              f"{mean['malignant_auc']:.3f} ({pik['malignant_auc']['lo']:.3f}-"
              f"{pik['malignant_auc']['hi']:.3f}) -> {where}")
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
