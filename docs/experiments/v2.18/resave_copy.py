"""A copy of one source's images of a data folder, each re-saved once more by Pillow as JPEG or
lossy WebP at one quality, under its own file name (dermsight sniffs the format), beside the same
metadata.csv: for scoring the held-out clinic as compressed uploads ("Lossy re-saves while
training" in docs/experiments/README.md).

    python docs/experiments/v2.18/resave_copy.py ../shared/data/isic-subset /tmp/isic2017-jpeg50 \
        --source isic2017 --format JPEG --quality 50
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

import pandas as pd
from PIL import Image

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("src", type=Path)
ap.add_argument("dst", type=Path)
ap.add_argument("--source", required=True)
ap.add_argument("--format", choices=["JPEG", "WEBP"], required=True)
ap.add_argument("--quality", type=int, required=True)
a = ap.parse_args()
(a.dst / "images").mkdir(parents=True, exist_ok=True)
shutil.copy(a.src / "metadata.csv", a.dst / "metadata.csv")
meta = pd.read_csv(a.src / "metadata.csv", dtype=str, keep_default_na=False)
for image_id in meta.loc[meta["source"] == a.source, "image_id"]:
    buf = io.BytesIO()
    with Image.open(a.src / "images" / f"{image_id}.jpg") as im:
        im.convert("RGB").save(buf, format=a.format, quality=a.quality)
    (a.dst / "images" / f"{image_id}.jpg").write_bytes(buf.getvalue())
