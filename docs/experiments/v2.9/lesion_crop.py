"""A lesion-centred scoring view ("A lesion-centred scoring view" in docs/experiments/README.md):
crop each image to a square around its darkest central blob before the unchanged serving facade,
and compare with the whole view on one part of a run's split.

    .venv/bin/python docs/experiments/v2.9/lesion_crop.py --bundle src/dermsight/assets/default \
        --split configs/default-split.csv --part val \
        --out docs/experiments/v2.9/lesion_crop_v2.4_val.json
    .venv/bin/python docs/experiments/v2.9/lesion_crop.py --bundle runs/loso24s43-isic2017/bundle \
        --split runs/loso24s43-isic2017/split.csv --part external --out ...

The crop (fixed before any figure of it was computed), on a copy subsampled to at most 128 px:
lesion candidates are the pixels that ``dermsight.skintone``'s skin rules call neither
vignette (L* < 25 in a region reaching the image border, dilated 3 px) nor highlight, and that
fall in the darker class of its Otsu split of L* (no clear split: no crop). Of their 8-connected
components, the largest that reaches into the central square of half the side is the lesion
(none: no crop). Its bounding
box, centred, widened to a square of ``MARGIN`` x its longer side, is the crop; as a fraction of
the image's shorter side it is floored at ``FLOOR``, and at ``KEEP_WHOLE`` or more the whole view
is kept. The square is moved inside the image where it overhangs and resized back to the
shorter side (bicubic).

For each view and source: melanoma AUC, malignant AUC (the bundle's malignant probability;
malignant = MEL/BCC/SCC), balanced accuracy of the suggested class over the classes present,
the share called UNK; for the lesion view also the share of images cropped and the quartiles of
the kept fraction.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "v2.1"))
from compare_v1_v2 import DATA, _meta, _rows
from field_of_view import crop_square, figures_by_source, print_rows, score

from dermsight import Dermsight
from dermsight.io.decode import decode_image
from dermsight.skintone import (
    BRIGHT_L,
    DARK_L,
    DARK_MARGIN,
    MAX_SIDE,
    SATURATED,
    _dilate,
    _otsu_split,
    srgb_to_lab,
)

MARGIN = 1.3
FLOOR = 0.6
KEEP_WHOLE = 0.9


def lesion_square(image: npt.NDArray[np.uint8]) -> tuple[int, int, int] | None:
    """``(top, left, side)`` of the lesion-centred square in ``image`` pixels, or None (whole
    view)."""
    h, w = image.shape[:2]
    step = max(1, int(np.ceil(max(h, w) / MAX_SIDE)))
    small = np.ascontiguousarray(image[::step, ::step, :3])
    lab = srgb_to_lab(small)
    lightness = lab[..., 0]
    dark, _ = ndimage.label(lightness < DARK_L)
    rim = np.unique(np.concatenate([dark[0], dark[-1], dark[:, 0], dark[:, -1]]))
    vignette = np.isin(dark, rim[rim > 0])  # dark regions that reach the border only
    usable = ~_dilate(vignette, DARK_MARGIN) & ~(
        (lightness > BRIGHT_L) | (small.max(axis=-1) >= SATURATED))
    if not usable.any():
        return None
    split = _otsu_split(lightness[usable])
    if split is None:
        return None
    labels, n = ndimage.label(usable & (lightness < split), structure=np.ones((3, 3), bool))
    if n == 0:
        return None
    sh, sw = labels.shape
    centre = labels[sh // 4:sh - sh // 4, sw // 4:sw - sw // 4]
    central = np.unique(centre[centre > 0])
    if not len(central):
        return None
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, central)
    blob = labels == central[int(np.argmax(sizes))]
    rows, cols = np.flatnonzero(blob.any(axis=1)), np.flatnonzero(blob.any(axis=0))
    # the box in full-size pixels (each kept pixel stands for a step x step cell)
    y0, y1 = rows[0] * step, min(h, (rows[-1] + 1) * step)
    x0, x1 = cols[0] * step, min(w, (cols[-1] + 1) * step)
    short = min(h, w)
    fraction = max(FLOOR, MARGIN * max(y1 - y0, x1 - x0) / short)
    if fraction >= KEEP_WHOLE:
        return None
    side = int(round(fraction * short))
    top = int(np.clip(round((y0 + y1) / 2 - side / 2), 0, h - side))
    left = int(np.clip(round((x0 + x1) / 2 - side / 2), 0, w - side))
    return top, left, side


def lesion_view(image: npt.NDArray[np.uint8]) -> tuple[np.ndarray, float]:
    """The lesion-centred square back at the shorter side, and the fraction kept (1.0: whole)."""
    box = lesion_square(image)
    if box is None:
        return image, 1.0
    return crop_square(image, *box), box[2] / min(image.shape[:2])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--part", default="val", help="val | external (a held-out source)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    split = pd.read_csv(a.split, dtype=str, keep_default_na=False)
    df = _rows(split[split["split"] == a.part]).reset_index(drop=True)
    model = Dermsight.load(a.bundle)
    y, src = df["diagnosis"].to_numpy(), df["source"].to_numpy()
    metas = [_meta(r) for _, r in df.iterrows()]
    images = [decode_image(DATA / f / "images" / f"{x}.jpg")
              for f, x in zip(df["folder"], df["image_id"], strict=True)]
    views = [lesion_view(im) for im in images]
    fractions = np.array([v[1] for v in views])
    out: dict[str, Any] = {"bundle": str(a.bundle), "part": a.part, "margin": MARGIN,
                           "floor": FLOOR, "keep_whole": KEEP_WHOLE, "views": {}}
    for view, shown in (("whole", images), ("lesion", [v[0] for v in views])):
        rows = figures_by_source(y, src, *score(model, shown, metas))
        if view == "lesion":
            for s, row in rows.items():
                f = fractions if s == "all" else fractions[src == s]
                row["share_cropped"] = float(np.mean(f < 1.0))
                row["fraction_quartiles"] = [float(q) for q in np.quantile(f, [.25, .5, .75])]
        print_rows(view, rows)
        out["views"][view] = rows
    a.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
