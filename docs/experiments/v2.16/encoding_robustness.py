"""How the shipped model's test figures move when the same test images arrive re-encoded, as a
clinic's own image pipeline might send them: JPEG at quality 75 and 50, the WebP copy the GPU
runs trained on (quality 70, shorter side 192 px), and half the size (saved as JPEG 95). A
measurement, not a tuning: nothing is fitted on it ("A class-conditional source adversary",
point 7, in docs/experiments/README.md).

Each variant is decoded and scored through the facade (``Dermsight.predict_batch``, with the
images' metadata), like an upload; figures and paired differences against the originals come
from ``v2.7/heldout_seeds.py``'s code, with 1,000 group-bootstrap draws over ``group_id``:

    .venv/bin/python docs/experiments/v2.16/encoding_robustness.py \
        --out docs/experiments/v2.16/encoding_robustness.json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from dermsight import Dermsight
from dermsight.evaluate.bootstrap import bootstrap
from dermsight.train.config import load_config
from dermsight.train.table import load_table, row_meta

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "v2.7"))
from heldout_seeds import _difference, _metric

REPO = Path(__file__).resolve().parents[3]
#: name -> (format, quality, shorter side in px or a scale factor; None: as it is)
VARIANTS: dict[str, tuple[str, int, float | None] | None] = {
    "original": None,
    "jpeg_q75": ("JPEG", 75, None),
    "jpeg_q50": ("JPEG", 50, None),
    "webp_q70_192px": ("WEBP", 70, 192),
    "half_size_jpeg_q95": ("JPEG", 95, 0.5),
}


def reencode(path: str, variant: tuple[str, int, float | None] | None) -> bytes:
    data = Path(path).read_bytes()
    if variant is None:
        return data
    fmt, quality, size = variant
    im = Image.open(io.BytesIO(data)).convert("RGB")
    if size is not None:
        w, h = im.size
        s = size if size < 1 else min(1.0, size / min(w, h))
        if s < 1:
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, fmt, quality=quality)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--split", type=Path, default=REPO / "configs" / "default-split.csv")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    model = Dermsight.load(a.bundle) if a.bundle else Dermsight.load()
    cfg = load_config(REPO / "configs" / "default.yaml")
    table = load_table(cfg.data)
    split = pd.read_csv(a.split, dtype=str, keep_default_na=False)
    test = table.merge(split[split["split"] == "test"][["image_id"]], on="image_id")
    metas = [row_meta(r) for _, r in test.iterrows()]
    y = test["diagnosis"].to_numpy(str)
    groups = test[cfg.data.group_col].to_numpy(str)
    scored: dict[str, dict[str, Any]] = {}
    for name, variant in VARIANTS.items():
        probs = []
        paths = test["path"].tolist()
        for i in tqdm(range(0, len(paths), 64), desc=name):
            batch = [reencode(p, variant) for p in paths[i:i + 64]]
            probs += [[p.probabilities[c] for c in model.classes]
                      for p in model.predict_batch(batch, metas[i:i + 64])]
        scored[name] = {"classes": list(model.classes),
                        "excluded": list(model.card.malignant_excluded), "p": np.array(probs)}
    result: dict[str, Any] = {"bundle": str(a.bundle or "shipped"), "images": len(test),
                              "n_boot": a.n_boot, "figures": {}, "differences": {}}
    base = _metric(y, scored["original"])
    for name, m in scored.items():
        result["figures"][name] = bootstrap(_metric(y, m), len(y), groups, n_boot=a.n_boot)
        if name != "original":
            result["differences"][f"{name} - original"] = bootstrap(
                _difference(_metric(y, m), base), len(y), groups, n_boot=a.n_boot)
    a.out.write_text(json.dumps(result, indent=2))
    for kind in ("figures", "differences"):
        print(kind)
        for name, ci in result[kind].items():
            print(f"  {name}: " + ", ".join(
                f"{k} {v['value']:+.3f} ({v['lo']:+.3f} to {v['hi']:+.3f})"
                if kind == "differences" else f"{k} {v['value']:.3f} ({v['lo']:.3f}-{v['hi']:.3f})"
                for k, v in ci.items()))


if __name__ == "__main__":
    main()
