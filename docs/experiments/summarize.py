"""Summarise the model experiments in this folder: one markdown table + one plot.

    python docs/experiments/summarize.py

Reads ``*.jsonl`` (the ``train_log.jsonl`` each training run writes, copied here) and
``runs.json`` (what each run changed and the command that reproduces it); prints the table of
``README.md`` with the commands, and writes ``val_curves.png`` beside them. Validation numbers
only: the test split is scored by ``dermsight train`` itself, for the model it finalizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent


def main() -> None:
    runs = json.loads((HERE / "runs.json").read_text())
    rows = ["| run | change from the default config | epochs run | best epoch (val balanced "
            "accuracy) | val balanced accuracy | val MEL AUC | val malignant AUC | val NLL | "
            "mean s / epoch |", "|---|---|---|---|---|---|---|---|---|"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for run in runs:
        log = [json.loads(x) for x in (HERE / run["log"]).read_text().splitlines() if x.strip()]
        best = max(log, key=lambda e: e["val_balanced_accuracy"])
        secs = sum(e["epoch_seconds"] for e in log) / len(log)
        rows.append(
            f"| {run['name']} | {run['change']} | {len(log)} of {run['planned_epochs']} | "
            f"{best['epoch']} | {best['val_balanced_accuracy']:.3f} | {best['val_mel_auc']:.3f} | "
            f"{best['val_malignant_auc']:.3f} | {best['val_nll']:.3f} | {secs:.0f} |")
        ep = [e["epoch"] for e in log]
        axes[0].plot(ep, [e["val_balanced_accuracy"] for e in log], marker="o", label=run["name"])
        axes[1].plot(ep, [e["val_malignant_auc"] for e in log], marker="o", label=run["name"])
    for ax, title in zip(axes, ("validation balanced accuracy", "validation malignant AUC"),
                         strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "val_curves.png", dpi=110)
    cmds = "\n".join(f"- {r['name']}: `{r['command']}`" for r in runs)
    print("\n".join(rows) + "\n\nCommands:\n\n" + cmds)


if __name__ == "__main__":
    main()
