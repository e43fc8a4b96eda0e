"""Score the issue's peer, the PyPI package ``sklesion`` (a Keras Xception + metadata model trained
on HAM10000 at 254 px), on the shared images of one source that it never trained on, and save its
class probabilities in dermsight's class codes for ``heldout_seeds.py --probs``.

It needs TensorFlow, which dermsight does not use, so it runs in a virtual environment of its own:

    python3.11 -m venv /tmp/peer && /tmp/peer/bin/pip install sklesion==0.2.2
    /tmp/peer/bin/python docs/experiments/v2.7/peer_sklesion.py --data isic-subset \
        --source isic2017 --out docs/experiments/v2.7/peer_isic2017.npz

The peer's own preprocessing (``SkinLesionClassifier.preprocess``: JPEG decode, bilinear resize of
the whole image to 254 x 254, one-hot sex and body site, age / 90 with a missing flag) is rebuilt
for batches here; ``--check N`` first compares N images with the package's one-image
``predict_P``. Body sites are mapped to the peer's five: upper extremity -> arm, head/neck ->
head-or-neck, lower extremity and oral/genital -> leg-or-genital, any torso -> trunk, else unknown.
Its seven classes map to AK, BCC, BKL, DF, MEL, NV, VASC (no SCC, no UNK).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pandas as pd
import tensorflow as tf
from sklesion.model import SkinLesionClassifier

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
CODES = {"akiec": "AK", "bcc": "BCC", "bkl": "BKL", "df": "DF", "mel": "MEL", "nv": "NV",
         "vasc": "VASC"}
SITES = {"upper extremity": "arm", "head/neck": "head-or-neck", "lower extremity":
         "leg-or-genital", "oral/genital": "leg-or-genital", "torso": "trunk",
         "anterior torso": "trunk", "posterior torso": "trunk", "lateral torso": "trunk"}


def _rows(data: str, source: str | None) -> pd.DataFrame:
    df = pd.read_csv(SHARED / data / "metadata.csv", dtype=str, keep_default_na=False)
    df = df.rename(columns={"age": "age_approx", "site": "anatom_site"})
    if source:
        df = df[df["source"] == source]
    return df.reset_index(drop=True)


def _meta(row: pd.Series) -> dict[str, object]:
    age = row.get("age_approx", "")
    sex = row.get("sex", "")
    return {"age": float(age) if age not in ("", "nan") else None,
            "sex": sex if sex in ("female", "male") else "unknown",
            "location": SITES.get(row.get("anatom_site", ""), "unknown")}


def _meta_vector(clf: SkinLesionClassifier, meta: dict[str, object]) -> list[float]:
    props = clf.model_props
    age = props["age_mean"] if meta["age"] is None else meta["age"]
    return [*props["oh_map"]["sex"][meta["sex"]], *props["oh_map"]["loc"][meta["location"]],
            float(age) / props["age_max"], float(meta["age"] is None)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="isic-subset | isic2020-sample")
    ap.add_argument("--source", default=None)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--check", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    df = _rows(a.data, a.source)
    clf = SkinLesionClassifier()
    order = [CODES[clf.model_props["i_cl_map"][i]] for i in range(7)]
    size = [int(s) for s in clf.model_props["img_shape"]]
    files = [SHARED / a.data / "images" / f"{x}.jpg" for x in df["image_id"]]
    metas = [_meta(r) for _, r in df.iterrows()]
    probs = []
    for i in range(0, len(df), a.batch):
        images = tf.stack([tf.image.resize(tf.image.decode_jpeg(f.read_bytes(), channels=3), size)
                           for f in files[i:i + a.batch]])
        vec = tf.constant([_meta_vector(clf, m) for m in metas[i:i + a.batch]], tf.float32)
        probs.append(clf.model.predict_on_batch((images, vec)))
        print(f"{min(i + a.batch, len(df))}/{len(df)}", flush=True)
    p = np.concatenate(probs).astype(np.float64)
    for j in range(min(a.check, len(df))):
        ref = clf.predict_P({"image": files[j].read_bytes(), "meta": metas[j]})[0]
        if not np.allclose(ref, p[j], atol=1e-4):
            raise SystemExit(f"batch scoring differs from the package's predict_P on {files[j]}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, image_id=df["image_id"].to_numpy(str), classes=np.array(order),
                        excluded=np.array([], dtype=str), p=p)
    print(f"{len(df)} images -> {a.out}")


if __name__ == "__main__":
    main()
