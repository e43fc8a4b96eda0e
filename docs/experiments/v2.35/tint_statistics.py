"""Can a simple image statistic tell a single-tint copy (sepia) from a real dermoscopic image?

On 1,200 images drawn (seed 0) from each folder of ../shared/data and their sepia copies (the CSS
``sepia(1)`` tone, ``negatives.recolour``, saved as JPEG 95 as an upload would be), at 256 px:

* ``coloured_after_cc``: the share of pixels with a channel spread > ``gate.COLOUR_SPREAD`` after
  Shades of Gray colour constancy (the serving preprocessing's ``shades_of_gray``): a single tint
  is a colour cast, which colour constancy should remove;
* ``chroma_spread``: the spread of the pixels' rg-chromaticity (square root of the trace of its
  covariance) over pixels neither dark nor clipped (brightest channel 40-250): one tint gives one
  chromaticity.

    .venv/bin/python docs/experiments/v2.35/tint_statistics.py \
        --out docs/experiments/v2.35/tint_statistics.json
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dermsight.evaluate.negatives import recolour
from dermsight.gate import COLOUR_SPREAD
from dermsight.preprocess import shades_of_gray

FOLDERS = ("../shared/data/isic-subset", "../shared/data/isic2020-sample")
QUANTILES = (0.0, 0.001, 0.01, 0.05, 0.5, 0.95, 0.99, 1.0)


def at_256(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB").resize((256, 256), Image.Resampling.BILINEAR),
                      np.float32)


def coloured_after_cc(small: np.ndarray) -> float:
    cc = shades_of_gray(small.astype(np.uint8))
    return float(np.mean(cc.max(axis=2) - cc.min(axis=2) > COLOUR_SPREAD))


def chroma_spread(small: np.ndarray) -> float:
    mx = small.max(axis=2)
    keep = (mx > 40) & (mx < 250)
    if keep.sum() < 100:
        return float("nan")
    rg = (small[..., :2] / np.maximum(small.sum(axis=2), 1e-6)[..., None])[keep]
    return float(np.sqrt(np.trace(np.cov(rg.T))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-folder", type=int, default=1200)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for root in FOLDERS:
        md = pd.read_csv(f"{root}/metadata.csv")
        md = md.iloc[rng.choice(len(md), min(len(md), a.per_folder), replace=False)]
        for iid, src in zip(md["image_id"], md["source"], strict=True):
            im = Image.open(f"{root}/images/{iid}.jpg").convert("RGB")
            buf = io.BytesIO()
            Image.fromarray(recolour(np.asarray(im), "sepia", rng)).save(buf, "JPEG", quality=95)
            sepia = at_256(Image.open(buf))
            small = at_256(im)
            rows.append({"source": src, "coloured_after_cc": coloured_after_cc(small),
                         "sepia_coloured_after_cc": coloured_after_cc(sepia),
                         "chroma_spread": chroma_spread(small),
                         "sepia_chroma_spread": chroma_spread(sepia)})
    df = pd.DataFrame(rows)
    out = {"images": len(df), "quantiles": list(QUANTILES),
           **{c: [float(v) for v in df[c].quantile(QUANTILES)]
              for c in df.columns if c != "source"},
           "smallest_by_source": df.groupby("source")[["coloured_after_cc", "chroma_spread"]]
           .min().to_dict()}
    for stat in ("coloured_after_cc", "chroma_spread"):
        floor = float(df[stat].min())
        out[f"sepia_below_smallest_real_{stat}"] = float((df[f"sepia_{stat}"] < floor).mean())
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
