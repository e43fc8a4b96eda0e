"""The image copy the GPU runs trained on (only 64 MiB travel to the lent machine): every image of
a data folder re-encoded as WebP, quality 70, shorter side at most 192 px
(``encoding_robustness.reencode``), under its own file name (dermsight sniffs the format),
beside the same metadata.csv, so the split is the same.

    python docs/experiments/v2.16/to_webp.py ../shared/data/isic-subset .devcarry/data/isic-subset
    python docs/experiments/v2.16/to_webp.py ../shared/data/isic2020-sample \
        .devcarry/data/isic2020-sample
"""

import shutil
import sys
from pathlib import Path

from encoding_robustness import VARIANTS, reencode

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
(dst / "images").mkdir(parents=True, exist_ok=True)
shutil.copy(src / "metadata.csv", dst / "metadata.csv")
for f in sorted((src / "images").iterdir()):
    (dst / "images" / f.name).write_bytes(reencode(str(f), VARIANTS["webp_q70_192px"]))
