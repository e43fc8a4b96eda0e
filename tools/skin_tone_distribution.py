"""ITA skin-tone bands over the shared data, per source: writes docs/skin-tone.json and .md.

    .venv/bin/python tools/skin_tone_distribution.py [--data ../shared/data] [--out docs]

Every image of ``isic-subset`` and ``isic2020-sample`` is decoded with the serving decoder and
its ITA estimated with :func:`dermsight.skintone.ita_degrees`; nothing is trained or tuned.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight.evaluate.skin_tone import band_ranges
from dermsight.io.decode import decode_image
from dermsight.skintone import BANDS, DARKER_BANDS, NOT_ESTIMABLE, ita_band, ita_degrees

COLUMNS = (*BANDS, NOT_ESTIMABLE)
SETS = ("isic-subset", "isic2020-sample")
COMMAND = ".venv/bin/python tools/skin_tone_distribution.py"


def _one(path: Path) -> tuple[float | None, float]:
    img = decode_image(path)
    t = time.perf_counter()
    ita = ita_degrees(img)
    return ita, time.perf_counter() - t


def measure(data: Path, workers: int) -> tuple[pd.DataFrame, float]:
    frames = []
    for name in SETS:
        meta = pd.read_csv(data / name / "metadata.csv", dtype=str, keep_default_na=False)
        meta["dataset"] = name
        meta["path"] = [str(data / name / "images" / f"{i}.jpg") for i in meta["image_id"]]
        frames.append(meta[["dataset", "image_id", "source", "diagnosis", "path"]])
    df = pd.concat(frames, ignore_index=True)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        out = list(pool.map(_one, map(Path, df["path"])))
    df["ita"] = [v for v, _ in out]
    df["band"] = [ita_band(v) for v in df["ita"]]
    per_image_ms = 1000.0 * float(np.median([s for _, s in out]))
    return df.drop(columns="path"), per_image_ms


def table(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (dataset, source), part in df.groupby(["dataset", "source"], sort=True):
        counts = Counter(part["band"])
        out[f"{dataset}/{source}"] = {b: int(counts.get(b, 0)) for b in COLUMNS}
    counts = Counter(df["band"])
    out["all"] = {b: int(counts.get(b, 0)) for b in COLUMNS}
    return out


def markdown(tab: dict[str, dict[str, int]], df: pd.DataFrame, ms: float) -> str:
    ranges = band_ranges()
    head = ["source", *(f"{b} ({ranges[b]})" for b in BANDS), NOT_ESTIMABLE, "total",
            "tan + brown + dark"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, counts in tab.items():
        total = sum(counts.values())
        darker = sum(counts[b] for b in DARKER_BANDS)
        est = total - counts[NOT_ESTIMABLE]
        share = f"{darker:,} ({100.0 * darker / est:.1f} % of estimable)" if est else "0"
        name = f"**{key}**" if key == "all" else key
        lines.append("| " + " | ".join([name, *(f"{counts[b]:,}" for b in COLUMNS),
                                        f"{total:,}", share]) + " |")
    allc = tab["all"]
    n, n_na = sum(allc.values()), allc[NOT_ESTIMABLE]
    darker = sum(allc[b] for b in DARKER_BANDS)
    est = df["ita"].dropna()
    na_share = df.groupby("source")["band"].apply(lambda b: float((b == NOT_ESTIMABLE).mean()))
    na_text = ", ".join(f"{src} {100.0 * v:.0f} %" for src, v in na_share.items()
                        if (df["source"] == src).sum() >= 100)
    return f"""# Skin tone in the shared data (ITA, estimated from the images)

There are no skin-type (Fitzpatrick) labels in the ISIC data. dermsight estimates the
**individual typology angle** (ITA = arctan((L* − 50) / b*), in degrees) from the non-lesion skin
pixels of each image ([`dermsight.skintone`](../src/dermsight/skintone.py)) and groups it into the
Del Bino bands. This is the distribution over **all** shared images, per source.

**How few darker-skin images exist:** of {n:,} images, a tone could be estimated for
{n - n_na:,}; only **{darker:,}** ({100.0 * darker / (n - n_na):.1f} % of those) fall in the
tan, brown or dark bands (tan {allc['tan']:,}, brown {allc['brown']:,}, dark {allc['dark']:,}).
Performance on darker skin therefore cannot be measured with this data; the per-band test table
in the model card and report shows the counts and withholds metrics under 30 images. The same
table is in the report of `dermsight evaluate` / `dermsight batch --evaluate` for a new labelled
cohort (`by_ita` in `OUT.evaluation.json`), from the `ita` / `ita_band` columns that batch scoring
writes for every scored image ([batch.md](batch.md)).

{chr(10).join(lines)}

Median ITA of the estimable images: {float(est.median()):.1f}° (10th–90th percentile
{float(est.quantile(0.1)):.1f}° to {float(est.quantile(0.9)):.1f}°).

**Read with care.**

* ITA here comes from dermoscopic colour, not a colorimeter: the instrument's lighting, exposure
  and white balance shift it. Many images have a blue, grey or purple cast (skin b* ≤ 0); ITA is
  then undefined and the image is counted as *not estimable* ({n_na:,} images,
  {100.0 * n_na / n:.0f} %; {na_text}). No tone is invented for them.
* **The darker bands overstate darker skin.** L* depends on exposure: a dim image of light skin
  has a low L* and lands in *brown* or *dark*. Looking at random samples (2026-12-01), most ISIC
  2020 images estimated *dark* or *brown* were dim or hair-covered, reddish light skin, and the
  few *brown* ISIC 2017 images were dim, grey-cast photographs of light skin. Read the tan, brown
  and dark counts as an upper bound on darker-skin images, not as a count of them.
* The bands are coarse (Del Bino: very light > 55°, light 41–55°, intermediate 28–41°, tan
  10–28°, brown −30–10°, dark ≤ −30°); a boundary value belongs to the darker band.

Reproduce (about 1 minute on 2 cores; median ITA time {ms:.2f} ms per 256 px image, decoding
excluded, {platform.machine()}):

```bash
{COMMAND}
```

Per-source counts are also in [`skin-tone.json`](skin-tone.json).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2]
                    / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    df, ms = measure(args.data, args.workers)
    tab = table(df)
    payload = {"command": COMMAND, "bands": band_ranges(), "counts": tab,
               "n_images": int(len(df)), "median_ita_ms_per_image": round(ms, 3)}
    (args.out / "skin-tone.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "skin-tone.md").write_text(markdown(tab, df, ms))
    print(markdown(tab, df, ms))


if __name__ == "__main__":
    main()
