"""How far the shipped network holds up when its input was saved with more compression than
its training images ("Compressed uploads" in docs/experiments/README.md).

Every image of the validation split (``configs/default-split.csv``; the figures the rule was
set on) is re-encoded from its stored file (JPEG quality 90) by Pillow at each level, decoded
the way an upload is (``decode_image``), and scored by the facade with its metadata. Each level
is compared
with the stored images, paired (the same images and resamples), by
:func:`dermsight.evaluate.compare_predictions` with the card's decision rule, refer threshold
and 1,000 group-bootstrap draws (``group_id``). ``--split test`` checks the finished rule once on
the test split, which set nothing.

    .venv/bin/python docs/experiments/compression/sweep.py --out docs/experiments/compression
    .venv/bin/python docs/experiments/compression/sweep.py --split test \
        --levels jpeg75,jpeg50,webp80 --out docs/experiments/compression/test
    .venv/bin/python docs/experiments/compression/sweep.py --levels jpeg85,jpeg80 \
        --out docs/experiments/compression/mid

writes ``sweep.json`` (every level's figures and paired differences) and caches the class
probabilities per level (``probs_<level>.npz``) so a re-run scores nothing again.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from dermsight import Dermsight
from dermsight.evaluate import compare_predictions, evaluate_predictions
from dermsight.evaluate.settings import EvalSettings
from dermsight.io.decode import decode_image
from dermsight.train.config import load_config
from dermsight.train.table import load_table, row_meta

ROOT = Path(__file__).resolve().parents[3]
#: (name, Pillow format, quality); "stored" is the file as it is (JPEG quality 90).
LEVELS: list[tuple[str, str | None, int | None]] = [
    ("stored", None, None),
    ("jpeg75", "JPEG", 75), ("jpeg50", "JPEG", 50), ("jpeg30", "JPEG", 30), ("jpeg15", "JPEG", 15),
    ("webp80", "WEBP", 80), ("webp50", "WEBP", 50), ("webp30", "WEBP", 30),
    ("jpeg90", "JPEG", 90),  # control, added after the figures above: re-saved at the same quality
]
#: Levels run only when named in --levels: JPEG 85 and 80, pre-registered in the session of
#: 2026-12-04 19:10 UTC ("Compressed uploads between JPEG 76 and 89"), written to compression/mid/.
NAMED_ONLY: list[tuple[str, str | None, int | None]] = [("jpeg85", "JPEG", 85),
                                                        ("jpeg80", "JPEG", 80)]
#: Levels reported for the record only, outside the pre-registered rule.
CONTROLS = ("jpeg90",)
KEYS = ("mel_auc", "malignant_auc", "balanced_accuracy", "refer_sensitivity",
        "refer_specificity")
DECIDING = ("mel_auc", "malignant_auc", "balanced_accuracy")


def validation_rows(split_name: str = "val") -> pd.DataFrame:
    """The rows of one split (``val``; ``test`` for the check on images the rule was not set on)
    of the default config's two data folders, read by the training code's own loader (the
    metadata normalised as for training), in the split file's order."""
    os.chdir(ROOT)  # the config's data roots are relative to the repository
    table = load_table(load_config(ROOT / "configs" / "default.yaml").data)
    split = pd.read_csv(ROOT / "configs" / "default-split.csv")
    split = split.loc[split["split"] == split_name, ["image_id", "diagnosis"]]
    df = split.merge(table.drop(columns="diagnosis"), on="image_id", how="left",
                     validate="one_to_one")
    if df["path"].isna().any():
        raise SystemExit(f"{split_name} images missing from ../shared/data")
    return df.reset_index(drop=True)


def encoded(path: str, fmt: str | None, quality: int | None) -> bytes:
    data = Path(path).read_bytes()
    if fmt is None:
        return data
    buf = io.BytesIO()
    with Image.open(io.BytesIO(data)) as im:
        im.convert("RGB").save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def score(model: Dermsight, df: pd.DataFrame, fmt: str | None, quality: int | None,
          name: str) -> tuple[np.ndarray, int]:
    probs, n_bytes = [], 0
    for i in tqdm(range(0, len(df), 64), desc=name, unit="batch"):
        part = df.iloc[i:i + 64]
        blobs = [encoded(p, fmt, quality) for p in part["path"]]
        n_bytes += sum(len(b) for b in blobs)
        out = model.predict_batch(
            [decode_image(b) for b in blobs],
            [row_meta(r) for _, r in part.iterrows()])
        probs += [[p.probabilities[c] for c in model.classes] for p in out]
    return np.asarray(probs, np.float64), n_bytes


def _ci(d: dict[str, Any], key: str) -> dict[str, Any]:
    v = d.get(key) or {}
    return {k: v.get(k) for k in ("value", "lo", "hi")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs/experiments/compression")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--split", choices=["val", "test"], default="val")
    ap.add_argument("--levels", help="comma-separated level names (default: all)")
    args = ap.parse_args()
    named = {"stored", *args.levels.split(",")} if args.levels else None
    levels = [lv for lv in LEVELS + NAMED_ONLY
              if (named is None and lv not in NAMED_ONLY) or (named and lv[0] in named)]
    args.out.mkdir(parents=True, exist_ok=True)
    df = validation_rows(args.split)
    model = Dermsight.load()
    card = model.card
    classes = list(model.classes)
    settings = EvalSettings(refer_threshold=card.thresholds.refer,
                            monitor_threshold=card.thresholds.monitor,
                            offsets=card.decision.offsets(classes),
                            malignant_excluded=tuple(card.malignant_excluded),
                            n_boot=args.n_boot)
    y, groups = df["diagnosis"].to_numpy(str), df["group_id"].astype(str).to_numpy(str)
    probs: dict[str, np.ndarray] = {}
    sizes: dict[str, float] = {}
    for name, fmt, quality in levels:
        cache = args.out / f"probs_{name}.npz"
        if cache.exists():
            z = np.load(cache, allow_pickle=False)
            probs[name], sizes[name] = z["p"], float(z["mean_bytes"])
            continue
        p, n_bytes = score(model, df, fmt, quality, name)
        probs[name], sizes[name] = p, n_bytes / len(df)
        np.savez_compressed(cache, image_id=df["image_id"].to_numpy(str),
                            classes=np.array(classes), p=p, mean_bytes=sizes[name])
    base = evaluate_predictions(y, probs["stored"], classes, groups, None, settings)
    rows = []
    for name, fmt, quality in levels:
        ev = base if name == "stored" else evaluate_predictions(
            y, probs[name], classes, groups, None, settings)
        row: dict[str, Any] = {"level": name, "format": fmt or "stored JPEG (quality 90)",
                               "quality": quality, "mean_kib": round(sizes[name] / 1024, 1),
                               "figures": {k: _ci(ev["ci"], k) for k in KEYS}}
        if name != "stored":
            diff = compare_predictions(y, probs[name], probs["stored"], classes, groups,
                                       settings)
            row["difference"] = {k: _ci(diff, k) for k in KEYS}
            row["sensitivity_difference"] = {
                c: _ci(diff, f"sensitivity_{c}")["value"] for c in classes}
            row["control"] = name in CONTROLS
            row["measured_worse"] = any(
                (d := row["difference"][k])["hi"] is not None and d["hi"] < 0 for k in DECIDING)
        rows.append(row)
    result = {"bundle": model.info, "split": f"{args.split} (configs/default-split.csv)",
              "n": len(df),
              "n_groups": base["n_groups"], "n_boot": args.n_boot,
              "rule": "measured worse: the paired interval of MEL AUC, malignant AUC or "
                      "balanced accuracy (suggested class) lies entirely below 0",
              "levels": rows}
    (args.out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        d = r.get("difference", {})
        print(r["level"], r["mean_kib"], "KiB",
              " ".join(f"{k}={r['figures'][k]['value']:.3f}"
                       + (f" ({d[k]['value']:+.3f} [{d[k]['lo']:+.3f},{d[k]['hi']:+.3f}])"
                          if d else "") for k in DECIDING),
              "WORSE" if r.get("measured_worse") else "")


if __name__ == "__main__":
    main()
