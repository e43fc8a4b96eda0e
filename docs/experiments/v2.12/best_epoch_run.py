"""Make a run folder whose ``best.pt`` is a weight-averaging run's best single epoch
(``best_epoch.pt``, the epoch ``select_metric`` chose), so that ``--stage finalize`` turns it into
the bundle the same run would have given without ``train.swa_from`` (averaging does not change
training: same seed, split and trajectory). Its held-out figures then pair with the average's.

    .venv/bin/python docs/experiments/v2.12/best_epoch_run.py runs/loso212s43-isic2017 \
        runs/loso212s43-isic2017-epoch
    dermsight train --config runs/loso212s43-isic2017-epoch/config.json \
        --out runs/loso212s43-isic2017-epoch --stage finalize --set train.swa_from=0
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path, help="finished run trained with train.swa_from > 0")
    ap.add_argument("out", type=Path, help="new run folder")
    a = ap.parse_args()
    summary = json.loads((a.run / "train_summary.json").read_text())
    if summary.get("kept") != "swa" or not (a.run / "best_epoch.pt").exists():
        raise SystemExit(f"{a.run} did not keep averaged weights (no best_epoch.pt)")
    a.out.mkdir(parents=True, exist_ok=False)
    for name in ("config.json", "split.csv", "train_log.jsonl"):
        shutil.copy2(a.run / name, a.out / name)
    shutil.copy2(a.run / "best_epoch.pt", a.out / "best.pt")
    single = {"best_epoch": summary["best_single_epoch"],
              "best_val_score": summary["best_single_val_score"],
              "select_metric": summary["select_metric"],
              "train_seconds": summary.get("train_seconds"),
              "note": f"the best single epoch of {a.run.name}, whose bundle kept the average"}
    (a.out / "train_summary.json").write_text(json.dumps(single, indent=2))
    print(f"{a.out}: epoch {single['best_epoch']} as best.pt")


if __name__ == "__main__":
    main()
