"""Held-out figures of several bundles and of the mean of their probabilities, on one source of
the shared data (``--data``, default isic-subset) that none of them trained on ("Held-out seed
spread and a two-seed average" in docs/experiments/README.md). Every figure, single bundle or
average, comes from the same code:

- melanoma AUC (P(MEL)) and malignant AUC (the bundles' malignant probability, UNK left out of
  the denominator as the bundle says), with 95 % group-bootstrap intervals (``group_id``);
- balanced accuracy of the arg-max over the classes the source has and the model knows
  (MEL/NV/BKL for ISIC 2017);
- paired bootstrap differences: each bundle against the first, an average against each of its
  members, and the pairs named with ``--diff``.

    .venv/bin/python docs/experiments/v2.7/heldout_seeds.py --source isic2017 \
        --bundle v2.6-s42=runs/loso26-isic2017/bundle \
        --bundle v2.6-s43=runs/loso26s43-isic2017/bundle \
        --average v2.6-s42,v2.6-s43 --out docs/experiments/v2.7/heldout_isic2017.json

The class probabilities of each bundle are cached beside ``--out``
(``probs_<source>_<name>_<single|tta>.npz``), so re-running with other averages does not score
again. ``--tta`` scores with the facade's own test-time augmentation (``predict_batch(...,
tta=True)``: logits averaged over the 8 flips/rotations, as ``dermsight predict --tta`` and the
API's ``?tta=true`` serve it). ``--probs NAME=FILE.npz`` adds probabilities scored
elsewhere (the peer, ``peer_sklesion.py``). ``--no-metadata NAME=BUNDLE`` scores a bundle with
age, sex and site all unknown (cached as ``..._nometa.npz``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight import Dermsight, taxonomy
from dermsight.evaluate.bootstrap import bootstrap
from dermsight.evaluate.metrics import balanced_accuracy, binary_auc
from dermsight.io.decode import decode_image
from dermsight.malignancy import malignant_probability
from dermsight.records import Metadata

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
Metric = Callable[[npt.NDArray[np.float64] | None], dict[str, Any]]


def _score(bundle: Path, df: pd.DataFrame, tta: bool, metadata: bool = True
           ) -> tuple[list[str], list[str], np.ndarray]:
    images_dir = SHARED / df.attrs["data"] / "images"
    model = Dermsight.load(bundle)
    probs = []
    for i in range(0, len(df), 64):
        part = df.iloc[i:i + 64]
        out = model.predict_batch(
            [decode_image(images_dir / f"{x}.jpg") for x in part["image_id"]],
            [Metadata.lenient(r.get("age_approx"), r.get("sex"), r.get("anatom_site"))
             if metadata else Metadata() for _, r in part.iterrows()], tta=tta)
        probs += [[p.probabilities[c] for c in model.classes] for p in out]
    return list(model.classes), list(model.card.malignant_excluded), np.array(probs)


def _load(file: Path, df: pd.DataFrame) -> dict[str, Any] | None:
    z = np.load(file, allow_pickle=False)
    if list(z["image_id"]) != list(df["image_id"]):
        return None
    return {"classes": [str(c) for c in z["classes"]],
            "excluded": [str(c) for c in z["excluded"]], "p": z["p"]}


def _probs(name: str, bundle: Path, df: pd.DataFrame, cache: Path,
           tta: bool, metadata: bool = True) -> dict[str, Any]:
    file = cache / (f"probs_{_source(df)}_{name}_{'tta' if tta else 'single'}"
                    f"{'' if metadata else '_nometa'}.npz")
    if file.exists() and (cached := _load(file, df)) is not None:
        return cached
    classes, excluded, p = _score(bundle, df, tta, metadata)
    np.savez_compressed(file, image_id=df["image_id"].to_numpy(str), classes=np.array(classes),
                        excluded=np.array(excluded, dtype=str), p=p)
    return {"classes": classes, "excluded": excluded, "p": p}


def _source(df: pd.DataFrame) -> str:
    return str(df.attrs["source"])


def _metric(y: np.ndarray, m: dict[str, Any]) -> Metric:
    """The figures of one model; balanced accuracy over the source's classes that the model
    has (the arg-max over those only; images of other classes left out of it)."""
    classes, p = m["classes"], m["p"]
    present = [c for c in classes if c in set(y)]
    known = np.isin(y, present)
    mel = p[:, classes.index("MEL")]
    mal = malignant_probability(p, classes, excluded=m["excluded"])
    cols = [classes.index(c) for c in present]
    sub = p[:, cols] / p[:, cols].sum(axis=1, keepdims=True)
    y_sub = np.array([present.index(c) for c in y[known]])
    is_mal = np.isin(y, sorted(taxonomy.MALIGNANT))

    def fn(w: npt.NDArray[np.float64] | None) -> dict[str, Any]:
        return {"mel_auc": binary_auc(y == "MEL", mel, w),
                "malignant_auc": binary_auc(is_mal, mal, w),
                "balanced_accuracy_present": balanced_accuracy(
                    y_sub, sub[known], None if w is None else w[known])}

    return fn


def _difference(a: Metric, b: Metric) -> Metric:
    def fn(w: npt.NDArray[np.float64] | None) -> dict[str, Any]:
        ma, mb = a(w), b(w)
        return {k: None if ma[k] is None or mb[k] is None else ma[k] - mb[k] for k in ma}

    return fn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--data", default="isic-subset", help="a folder of ../shared/data")
    ap.add_argument("--bundle", action="append", default=[], help="NAME=PATH")
    ap.add_argument("--probs", action="append", default=[],
                    help="NAME=FILE.npz: probabilities scored elsewhere (peer_sklesion.py)")
    ap.add_argument("--average", action="append", default=[], help="NAME,NAME[,...]")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--diff", action="append", default=[],
                    help="NAME,NAME: also the paired difference first minus second")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--no-metadata", action="append", default=[],
                    help="NAME=PATH: a bundle scored with every metadata field unknown")
    ap.add_argument("--tta", action="store_true",
                    help="score with the facade's test-time augmentation (8 flips/rotations)")
    a = ap.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(SHARED / a.data / "metadata.csv", dtype=str, keep_default_na=False)
    df = df.rename(columns={"age": "age_approx", "site": "anatom_site"})
    df = df[df["source"] == a.source].reset_index(drop=True)
    df.attrs.update(data=a.data, source=a.source)
    y = df["diagnosis"].to_numpy()
    groups = df["group_id"].to_numpy()
    models: dict[str, dict[str, Any]] = {}
    for spec in a.bundle:
        name, path = spec.split("=", 1)
        models[name] = _probs(name, Path(path), df, a.out.parent, a.tta)
    for spec in a.no_metadata:
        name, path = spec.split("=", 1)
        models[name] = _probs(name, Path(path), df, a.out.parent, a.tta, metadata=False)
    for spec in a.probs:
        name, path = spec.split("=", 1)
        loaded = _load(Path(path), df)
        if loaded is None:
            raise SystemExit(f"{path} does not hold the {a.source} images in this order")
        models[name] = loaded
    classes = next(iter(models.values()))["classes"]
    for spec in a.average:
        names = spec.split(",")
        if any(models[n]["classes"] != classes for n in names):
            raise SystemExit("an average needs bundles with the same classes")
        models["mean(" + "+".join(names) + ")"] = {
            "classes": classes, "excluded": models[names[0]]["excluded"],
            "p": np.mean([models[n]["p"] for n in names], axis=0), "members": names}
    present = sorted(set(y))
    fns = {name: _metric(y, m) for name, m in models.items()}
    result: dict[str, Any] = {
        "source": a.source, "tta": a.tta, "n_images": len(df),
        "n_groups": int(pd.Series(groups).nunique()),
        "classes_present": present, "n_mel": int((y == "MEL").sum()),
        "n_malignant": int(np.isin(y, sorted(taxonomy.MALIGNANT)).sum()), "n_boot": a.n_boot,
        "data": a.data,
        "bundles": {s.split("=", 1)[0]: s.split("=", 1)[1]
                    for s in a.bundle + a.probs + a.no_metadata},
        "scored_without_metadata": [s.split("=", 1)[0] for s in a.no_metadata],
        "figures": {}, "differences": {},
    }
    for name, fn in fns.items():
        result["figures"][name] = bootstrap(fn, len(df), groups, n_boot=a.n_boot, seed=0)
    first = next(iter(fns))
    pairs = [(n, first) for n in fns if n != first and "members" not in models[n]]
    pairs += [(n, m) for n in fns for m in models[n].get("members", [])]
    pairs += [tuple(d.split(",", 1)) for d in a.diff]
    for x, ref in pairs:
        result["differences"][f"{x} - {ref}"] = bootstrap(
            _difference(fns[x], fns[ref]), len(df), groups, n_boot=a.n_boot, seed=0)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    for section in ("figures", "differences"):
        print(section)
        for name, cis in result[section].items():
            print(f"  {name}: " + ", ".join(
                f"{k} {v['value']:+.3f} ({v['lo']:+.3f} to {v['hi']:+.3f})"
                if section == "differences" else
                f"{k} {v['value']:.3f} ({v['lo']:.3f}-{v['hi']:.3f})" for k, v in cis.items()))


if __name__ == "__main__":
    main()
