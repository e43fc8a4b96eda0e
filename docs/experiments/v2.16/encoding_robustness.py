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

The same code scores a black-and-white copy of the validation images (the ``colourless`` gate
check, "Black-and-white images" in docs/experiments/README.md; the output also gives the share of
each variant the gate refuses):

    .venv/bin/python docs/experiments/v2.16/encoding_robustness.py --part val \
        --variants original greyscale_jpeg_q95 --out docs/experiments/v2.34/greyscale_val.json

and recoloured copies (a sepia tone, a tinted black-and-white copy, swapped colour channels, a
negative: "Sepia-toned and other recoloured images" in docs/experiments/README.md), e.g.

    .venv/bin/python docs/experiments/v2.16/encoding_robustness.py --part val \
        --variants original sepia_jpeg_q95 --out docs/experiments/v2.35/sepia_val.json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from dermsight import Dermsight
from dermsight.evaluate.bootstrap import bootstrap
from dermsight.evaluate.negatives import RECOLOURINGS, recolour
from dermsight.train.config import load_config
from dermsight.train.table import load_table, row_meta

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "v2.7"))
from heldout_seeds import _difference, _metric

REPO = Path(__file__).resolve().parents[3]


class Variant(NamedTuple):
    fmt: str
    quality: int
    size: float | None  # shorter side in px or a scale factor; None: as it is
    grey: bool = False  # saved as one luminance channel (a black-and-white photo)
    #: colours changed as ``dermsight.evaluate.negatives.recolour`` does (sepia, tinted_grey,
    #: swapped_channels, negative), seeded per file
    recolour: str | None = None


#: name -> how the file is re-encoded (None: the original file)
VARIANTS: dict[str, Variant | None] = {
    "original": None,
    "jpeg_q75": Variant("JPEG", 75, None),
    "jpeg_q50": Variant("JPEG", 50, None),
    "webp_q70_192px": Variant("WEBP", 70, 192),
    "half_size_jpeg_q95": Variant("JPEG", 95, 0.5),
    "greyscale_jpeg_q95": Variant("JPEG", 95, None, grey=True),
    **{f"{how}_jpeg_q95": Variant("JPEG", 95, None, recolour=how) for how in RECOLOURINGS},
}
#: the variants scored when --variants is not given (the v2.16 measurement)
DEFAULT_VARIANTS = ["original", "jpeg_q75", "jpeg_q50", "webp_q70_192px", "half_size_jpeg_q95"]


def reencode(path: str, variant: Variant | None) -> bytes:
    data = Path(path).read_bytes()
    if variant is None:
        return data
    fmt, quality, size, grey, how = variant
    im = Image.open(io.BytesIO(data)).convert("L" if grey else "RGB")
    if how is not None:
        rng = np.random.default_rng(zlib.crc32(Path(path).name.encode()))
        im = Image.fromarray(recolour(np.asarray(im), how, rng))
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
    ap.add_argument("--part", default="test", choices=["train", "val", "test"],
                    help="which part of the split to score")
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS),
                    help="the first one is the reference of the paired differences")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    model = Dermsight.load(a.bundle) if a.bundle else Dermsight.load()
    cfg = load_config(REPO / "configs" / "default.yaml")
    table = load_table(cfg.data)
    split = pd.read_csv(a.split, dtype=str, keep_default_na=False)
    test = table.merge(split[split["split"] == a.part][["image_id"]], on="image_id")
    metas = [row_meta(r) for _, r in test.iterrows()]
    y = test["diagnosis"].to_numpy(str)
    groups = test[cfg.data.group_col].to_numpy(str)
    scored: dict[str, dict[str, Any]] = {}
    refused: dict[str, float] = {}
    for name in a.variants:
        probs, blocked = [], []
        paths = test["path"].tolist()
        for i in tqdm(range(0, len(paths), 64), desc=name):
            batch = [reencode(p, VARIANTS[name]) for p in paths[i:i + 64]]
            preds = model.predict_batch(batch, metas[i:i + 64])
            probs += [[p.probabilities[c] for c in model.classes] for p in preds]
            blocked += [not p.assessable for p in preds]
        scored[name] = {"classes": list(model.classes),
                        "excluded": list(model.card.malignant_excluded), "p": np.array(probs)}
        refused[name] = float(np.mean(blocked))
    result: dict[str, Any] = {"bundle": str(a.bundle or "shipped"), "part": a.part,
                              "images": len(test), "n_boot": a.n_boot,
                              "refused_by_gate": refused, "figures": {}, "differences": {}}
    ref = a.variants[0]
    base = _metric(y, scored[ref])
    for name, m in scored.items():
        result["figures"][name] = bootstrap(_metric(y, m), len(y), groups, n_boot=a.n_boot)
        if name != ref:
            result["differences"][f"{name} - {ref}"] = bootstrap(
                _difference(_metric(y, m), base), len(y), groups, n_boot=a.n_boot)
    a.out.write_text(json.dumps(result, indent=2))
    print("refused by the gate: " + ", ".join(f"{k} {v:.1%}" for k, v in refused.items()))
    for kind in ("figures", "differences"):
        print(kind)
        for name, ci in result[kind].items():
            print(f"  {name}: " + ", ".join(
                f"{k} {v['value']:+.3f} ({v['lo']:+.3f} to {v['hi']:+.3f})"
                if kind == "differences" else f"{k} {v['value']:.3f} ({v['lo']:.3f}-{v['hi']:.3f})"
                for k, v in ci.items()))


if __name__ == "__main__":
    main()
