"""The "Model v2.5" rule's figures for one candidate: a full run and its leave-ISIC-2017-out run,
each finalized (``bundle/`` inside). Runs the experiment scripts the earlier rules used and writes
their outputs plus ``rule.json`` (the figures each condition reads) into ``--out``.

    .venv/bin/python docs/experiments/v2.5/judge.py --run runs/v2.5 \
        --loso runs/loso25-isic2017 --out docs/experiments/v2.5/v2.5

The reference is the shipped bundle (``--baseline``, default ``src/dermsight/assets/default``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

EXP = Path(__file__).resolve().parents[1]
REPO = EXP.parents[1]


def _run(*args: str) -> str:
    res = subprocess.run([sys.executable, *args], cwd=REPO, check=True, capture_output=True,
                         text=True)
    return res.stdout


def _heldout_row(card: dict[str, Any], source: str) -> dict[str, float | None]:
    for row in card["cross_source"]["rows"]:
        if row["protocol"] == "leave_one_source_out" and row["source"] == source:
            return {k: (v or {}).get("value") for k, v in row["metrics"].items()}
    raise SystemExit(f"no leave-one-source-out row for {source} in the card")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--loso", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--baseline", type=Path, default=Path("src/dermsight/assets/default"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    bundle, loso = str(a.run / "bundle"), str(a.loso / "bundle")

    val_file = a.out / "validation_vs_shipped.json"
    _run(str(EXP / "compare_v1_v2.py"), "--split", str(a.run / "split.csv"),
         "--old", str(a.baseline), "--new", bundle, "--out", str(val_file))
    restricted = _run(str(EXP / "v2/loso/restricted_balanced_accuracy.py"), "--bundle", loso,
                      "--source", "isic2017")
    referrals = _run(str(EXP / "v2.3/probability_shortcut.py"), "isic2020",
                     "--split", str(a.run / "split.csv"), "--bundle", bundle)
    heldout = _run(str(EXP / "v2.3/probability_shortcut.py"), "heldout",
                   "--split", str(a.loso / "split.csv"), "--bundle", loso)
    for name, text in (("restricted_isic2017.txt", restricted),
                       ("isic2020_referrals.txt", referrals), ("heldout_isic2017.txt", heldout)):
        (a.out / name).write_text(text)

    val = json.loads(val_file.read_text())["isic-subset (all sources)"]["new"]
    unk = re.search(r"suggested class.*?UNK ([0-9.]+)", restricted)
    referred = re.search(r"melanomas \((\d+)\): (.*)", referrals)
    others = re.search(r"referred \(high\) (\d+) \(([0-9.]+)\)", referrals)
    sens = re.findall(r"as is: .*?refer sensitivity ([0-9.]+)", heldout)
    card = json.loads((a.loso / "bundle" / "card.json").read_text())
    row = _heldout_row(card, "isic2017")
    rule = {
        "run": str(a.run), "loso": str(a.loso),
        "val_mel_auc": val["mel_auc"], "val_malignant_auc": val["malignant_auc"],
        "val_balanced_accuracy_shared_classes": val["balanced_accuracy_shared_classes"],
        "heldout_unk_share_suggested": float(unk.group(1)) if unk else None,
        "isic2020_melanomas": referred.group(2) if referred else None,
        "isic2020_melanomas_referred": referred.group(2).count("high") if referred else None,
        "isic2020_referred_share": float(others.group(2)) if others else None,
        "heldout_refer_sensitivity": float(sens[0]) if sens else None,
        "heldout_val_refer_sensitivity": float(sens[1]) if len(sens) > 1 else None,
        "heldout_mel_auc": row["mel_auc"], "heldout_malignant_auc": row["malignant_auc"],
        "heldout_balanced_accuracy": row["balanced_accuracy"],
        "heldout_refer_specificity": row["refer_specificity"],
    }
    (a.out / "rule.json").write_text(json.dumps(rule, indent=2) + "\n")
    print(json.dumps(rule, indent=2))


if __name__ == "__main__":
    main()
