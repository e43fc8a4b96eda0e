"""Make a run folder whose ``best.pt`` is another run's last-epoch EMA weights (``last.pt``), so
``dermsight train --stage finalize --set train.select_metric=last`` turns it into the bundle a
run trained with ``train.select_metric: last`` would give (the selection does not change
training: same seed, split and trajectory).

    .venv/bin/python docs/experiments/v2.5/last_epoch_run.py runs/v2.4 runs/v2.4-last
    dermsight train --config configs/v2.4.yaml --out runs/v2.4-last --stage finalize \
        --set train.select_metric=last
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path, help="finished training run (last.pt, config.json, ...)")
    ap.add_argument("out", type=Path, help="new run folder")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=False)
    for name in ("config.json", "split.csv", "train_log.jsonl"):
        shutil.copy2(a.run / name, a.out / name)
    ck = torch.load(a.run / "last.pt", map_location="cpu", weights_only=False)
    if ck.get("ema") is None:
        raise SystemExit(f"{a.run}/last.pt holds no EMA weights (train.ema_decay was 0)")
    torch.save({"model": ck["ema"], "epoch": ck["epoch"]}, a.out / "best.pt")
    summary = json.loads((a.run / "train_summary.json").read_text())
    summary.update(best_epoch=ck["epoch"] + 1, best_val_score=None, select_metric="last")
    (a.out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{a.out}: epoch {ck['epoch'] + 1} (EMA) as best.pt")


if __name__ == "__main__":
    main()
