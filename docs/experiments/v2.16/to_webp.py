"""The image copy the GPU runs trained on (only 64 MiB travel to the lent machine): every image of
a data folder re-encoded as WebP, quality 70, shorter side at most 192 px, under its own file name
(dermsight sniffs the format), beside the same metadata.csv, so the split is the same.

    python docs/experiments/v2.16/to_webp.py ../shared/data/isic-subset .devcarry/data/isic-subset
    python docs/experiments/v2.16/to_webp.py ../shared/data/isic2020-sample \
        .devcarry/data/isic2020-sample
"""

import shutil
import sys
from pathlib import Path

from PIL import Image

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
(dst / "images").mkdir(parents=True, exist_ok=True)
shutil.copy(src / "metadata.csv", dst / "metadata.csv")
for f in sorted((src / "images").iterdir()):
    im = Image.open(f).convert("RGB")
    w, h = im.size
    s = 192 / min(w, h)
    if s < 1:
        im = im.resize((round(w * s), round(h * s)), Image.BICUBIC)
    im.save(dst / "images" / f.name, "WEBP", quality=70)
