"""Does the validation split predict the unseen clinic? Every stored held-out ISIC 2017 run.

For each run with ISIC 2017 held out of training whose held-out figures and per-epoch training
log are committed under docs/experiments/, this reads the validation melanoma / malignant AUC of
the epoch the run kept (``best_epoch`` from its training summary, else the last epoch its log
marks "best") and the same figures on the held-out ISIC 2017 images (1,430 images, 257
melanomas). It writes one scatter plot per figure and a JSON table with Spearman's rank
correlation. Post hoc and descriptive: the runs are not independent draws (they share seeds,
splits and most of a recipe), so no interval is claimed for the correlation.

Runs left out on purpose: the SWA runs (``v2.12/loso212s4?``: the averaged weights' validation
figures are not in the log; their best-epoch twins ``-epoch`` are in), the "last epoch" rereads
(``v2.5/v2.4-last``, ``v2.5-last``: the same trainings as two runs here), and the 8-class or
pre-v2.4 runs (``v2/``, ``v2.1``–``v2.3``: another class set and another UNK handling).

    .venv/bin/python docs/experiments/v2.21/validation_vs_heldout.py

``--with-later --out docs/experiments/v2.23`` adds the held-out runs stored after this figure
was first drawn (``LATER_RUNS``) and writes there, leaving the 28-run files here as they were.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent
EXP = HERE.parent

#: (label, recipe, folder under docs/experiments/) — the v2.4 recipe's runs first. A folder holds
#: ``isic2017.json`` (held-out figures) and ``train_log.jsonl`` unless ``OTHER_NAMES`` says else.
RUNS: list[tuple[str, str, str]] = [
    ("2.4.0 s42", "v2.4", "v2.4/loso"), ("2.4.1 s42", "v2.4", "v2.4.1/loso"),
    ("s43", "v2.4", "v2.7/loso24s43"), ("s44", "v2.4", "v2.8/loso24s44"),
    ("s43 rerun", "v2.4", "v2.9/loso24s43r"), ("s44 rerun", "v2.4", "v2.9/loso24s44r"),
    ("s42 seeded", "v2.4", "v2.12/loso212s42-epoch"),
    ("s43 seeded", "v2.4", "v2.12/loso212s43-epoch"),
    ("192 px", "other", "v2.5/v2.5"),
    ("more frozen s43", "other", "v2.7/loso26s43"), ("more frozen s44", "other", "v2.8/loso26s44"),
    ("Lite1 s43", "other", "v2.8/loso28s43"), ("Lite1 s44", "other", "v2.8/loso28s44"),
    ("LP-FT", "other", "v2.10/loso210s43"),
    ("MixStyle s43", "other", "v2.11/loso211s43"), ("MixStyle s44", "other", "v2.11/loso211s44"),
    ("RandConv", "other", "v2.14/loso214s42"), ("wide field", "other", "v2.15/loso215s42"),
    ("adversary 1", "other", "v2.16/loso216s42"),
    ("adversary 1 (GPU)", "other", "v2.16/loso216-gpuA1s42"),
    ("adversary 3 (GPU)", "other", "v2.16/loso216-gpuB3s42"),
    ("winners' aug", "other", "v2.17/loso217s42"),
    ("lossy re-saves", "other", "v2.18/loso-resave-s42"),
    ("label smoothing", "other", "v2.19/loso-ls-s42"), ("mixup", "other", "v2.19/loso-mixup-s42"),
    ("128 px", "other", "v2.20/128-s42"), ("mixup sparing UNK", "other", "v2.20/mixspare-s42"),
    ("Lite2", "other", "v2.21/lite2-s42"),
]
#: held-out runs stored after the 28-run figure (2026-12-05)
LATER_RUNS: list[tuple[str, str, str]] = [
    ("frozen BN stats", "other", "v2.21/frozenbn-s42"),
    ("SAM", "other", "v2.22/sam-s42"), ("stochastic depth", "other", "v2.22/droppath-s42"),
    ("s42, 2 threads", "v2.4", "v2.23/alpha1-s42"),
]
#: folders written before the per-run layout: (held-out figures, training log)
OTHER_NAMES = {
    "v2.4/loso": ("isic2017.json", "isic2017_train_log.jsonl"),
    "v2.4.1/loso": ("isic2017.json", "isic2017_train_log.jsonl"),
    "v2.5/v2.5": ("loso_isic2017.json", "loso_isic2017_train_log.jsonl"),
}
FIGURES = ("mel_auc", "malignant_auc")


def _find(obj: Any, pred: Any) -> Any:
    """The first dict inside ``obj`` (depth first) for which ``pred`` holds."""
    if isinstance(obj, dict):
        if pred(obj):
            return obj
        children = list(obj.values())
    elif isinstance(obj, list):
        children = obj
    else:
        return None
    for child in children:
        hit = _find(child, pred)
        if hit is not None:
            return hit
    return None


def heldout(figures: dict[str, Any], where: str) -> dict[str, float]:
    row = _find(figures, lambda d: d.get("source") == "isic2017"
                and d.get("protocol") == "leave_one_source_out")
    if row is None:
        raise SystemExit(f"{where}: no leave-one-source-out ISIC 2017 row")
    return {k: float(row["metrics"][k]["value"]) for k in FIGURES}


def kept_epoch(figures: dict[str, Any], log: list[dict[str, Any]]) -> int:
    summary = _find(figures, lambda d: "best_epoch" in d)
    if summary is not None:
        return int(summary["best_epoch"])
    return max(int(r["epoch"]) for r in log if r.get("best"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--with-later", action="store_true", help="add LATER_RUNS")
    ap.add_argument("--out", type=Path, default=HERE, help="folder for the PNG and JSON")
    args = ap.parse_args()
    rows = []
    for label, recipe, folder in RUNS + (LATER_RUNS if args.with_later else []):
        names = OTHER_NAMES.get(folder, ("isic2017.json", "train_log.jsonl"))
        figures, log_file = (f"{folder}/{n}" for n in names)
        log = [json.loads(x) for x in (EXP / log_file).read_text().splitlines() if x.strip()]
        held = json.loads((EXP / figures).read_text())
        epoch = kept_epoch(held, log)
        val = next(r for r in log if int(r["epoch"]) == epoch)
        rows.append({"run": label, "recipe": recipe, "figures": figures, "epoch": epoch,
                     "validation": {k: float(val[f"val_{k}"]) for k in FIGURES},
                     "heldout_isic2017": heldout(held, figures)})
    out: dict[str, Any] = {"n_runs": len(rows), "rows": rows, "spearman": {}}
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, k in zip(axes, FIGURES, strict=True):
        x = [r["validation"][k] for r in rows]
        y = [r["heldout_isic2017"][k] for r in rows]
        rho, p = spearmanr(x, y)
        out["spearman"][k] = {"rho": float(rho), "p_if_independent": float(p)}
        for r in rows:
            v2_4 = r["recipe"] == "v2.4"
            ax.scatter(r["validation"][k], r["heldout_isic2017"][k], s=36,
                       c="tab:blue" if v2_4 else "tab:orange", marker="o" if v2_4 else "s")
            if not v2_4:
                ax.annotate(r["run"], (r["validation"][k], r["heldout_isic2017"][k]),
                            fontsize=7, xytext=(3, 2), textcoords="offset points")
        name = "melanoma AUC" if k == "mel_auc" else "malignant AUC"
        ax.set_xlabel(f"validation {name} (kept epoch; the training sources)")
        ax.set_ylabel(f"held-out ISIC 2017 {name} (a clinic never trained on)")
        ax.set_title(f"{name}: Spearman rho {rho:+.2f} over {len(rows)} runs")
        ax.grid(alpha=0.3)
    n_v24 = sum(r["recipe"] == "v2.4" for r in rows)
    axes[0].scatter([], [], c="tab:blue", marker="o", label=f"v2.4 recipe (shipped), {n_v24} runs")
    axes[0].scatter([], [], c="tab:orange", marker="s", label="other recipes, one point per run")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Each stored run with ISIC 2017 held out: its validation figure against its "
                 "figure on the held-out clinic", fontsize=11)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "validation_vs_heldout.png", dpi=110)
    (args.out / "validation_vs_heldout.json").write_text(json.dumps(out, indent=1) + "\n")
    for k, s in out["spearman"].items():
        print(f"{k}: Spearman rho {s['rho']:+.3f} over {len(rows)} runs")


if __name__ == "__main__":
    main()
