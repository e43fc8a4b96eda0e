"""A picture of what ``train.siim2020_augment`` shows the network: four training images of four
sources, each as the default recipe's augmentation and as the winners' list draws it (same crop
and flips, same seeds). Illustration only; decides nothing.

    .venv/bin/python docs/experiments/v2.17/augment_examples.py \
        --out docs/experiments/v2.17/augment_examples.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from dermsight.io.decode import decode_image
from dermsight.preprocess import InputSpec
from dermsight.train.augment import Augment

SOURCES = ("ham10000", "isic2017", "isic2019", "isic_archive")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("../shared/data/isic-subset"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--draws", type=int, default=4)
    a = ap.parse_args()
    meta = pd.read_csv(a.data / "metadata.csv")
    spec = InputSpec(size=160)
    rows = []
    for source in SOURCES:
        pick = meta[meta["source"].astype(str).str.lower() == source]
        if pick.empty:
            continue
        row = pick.sort_values("image_id").iloc[len(pick) // 2]
        img = decode_image(a.data / "images" / f"{row['image_id']}.jpg")
        tiles = []
        for kind in (Augment(dermoscopy=True), Augment(dermoscopy=True, siim2020=True)):
            tiles += [kind(img, spec, np.random.default_rng(seed)) for seed in range(a.draws)]
        rows.append(np.concatenate(tiles, axis=1))
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    draw = ImageDraw.Draw(grid)
    draw.text((4, 2), "default (dermoscopy effects)", fill=(255, 255, 0))
    draw.text((4 + 160 * a.draws, 2), "+ SIIM-ISIC 2020 1st-place list", fill=(255, 255, 0))
    grid.save(a.out, quality=85)
    print(f"wrote {a.out} ({len(rows)} sources x {2 * a.draws} draws)")


if __name__ == "__main__":
    main()
