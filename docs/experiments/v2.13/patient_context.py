"""Patient context on the ISIC 2020 patients ("Patient context on the ISIC 2020 patients" in
docs/experiments/README.md): does ranking a lesion against the same patient's other lesions
rank the unseen clinic's melanomas better than the network's own P(MEL)?

    s_i = logit P(MEL)_i - mean over the patient's other images j of logit P(MEL)_j

defined for patients with >= 2 images. Melanoma AUCs with 95 % bootstrap intervals over patients
(every image of a drawn patient goes in, so s_i is the same in every draw), and the paired
difference s minus plain P(MEL) on the same network. Nothing is fitted.

    .venv/bin/python docs/experiments/v2.13/patient_context.py \
        --bundle s42=runs/loso241s42-isic2020/bundle --bundle s43=runs/loso241s43-isic2020/bundle \
        --out docs/experiments/v2.13/patient_context.json

Each bundle scores the images through the serving facade with ``v2.7/heldout_seeds.py``'s own
scoring, cached beside ``--out`` (``probs_isic2020_<name>_single.npz``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight.evaluate.bootstrap import bootstrap
from dermsight.evaluate.metrics import binary_auc
from dermsight.malignancy import malignant_probability

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "v2.7"))
from heldout_seeds import SHARED, _probs  # the held-out scoring of v2.7

DATA = "isic2020-sample"
Floats = npt.NDArray[np.float64]
Metric = Callable[[Floats | None], dict[str, Any]]
EPS = 1e-6


def logit(p: Floats) -> Floats:
    p = np.clip(p, EPS, 1 - EPS)
    return np.asarray(np.log(p) - np.log1p(-p), np.float64)


def relative(z: Floats, patients: npt.NDArray[np.str_]) -> Floats:
    """z_i minus the mean of z over the other images of i's patient (NaN for a lone image)."""
    out = np.full(len(z), np.nan)
    for p in np.unique(patients):
        idx = np.flatnonzero(patients == p)
        if len(idx) >= 2:
            out[idx] = z[idx] - (z[idx].sum() - z[idx]) / (len(idx) - 1)
    return out


def standardised(z: Floats, patients: npt.NDArray[np.str_]) -> Floats:
    """``relative`` divided by the standard deviation of the patient's other logits (>= 3)."""
    out = np.full(len(z), np.nan)
    for p in np.unique(patients):
        idx = np.flatnonzero(patients == p)
        if len(idx) < 3:
            continue
        for i in idx:
            others = z[idx[idx != i]]
            out[i] = (z[i] - others.mean()) / max(float(others.std(ddof=1)), EPS)
    return out


def rank_in_patient(z: Floats, patients: npt.NDArray[np.str_]) -> Floats:
    """The within-patient rank of z scaled to 0..1 (ties averaged; NaN for a lone image)."""
    out = np.full(len(z), np.nan)
    for p in np.unique(patients):
        idx = np.flatnonzero(patients == p)
        if len(idx) >= 2:
            out[idx] = (pd.Series(z[idx]).rank().to_numpy() - 1) / (len(idx) - 1)
    return out


def auc_of(y: npt.NDArray[np.bool_], s: Floats, keep: npt.NDArray[np.bool_]) -> Metric:
    def fn(w: Floats | None) -> dict[str, Any]:
        return {"auc": binary_auc(y[keep], s[keep], None if w is None else w[keep])}
    return fn


def difference(a: Metric, b: Metric) -> Metric:
    def fn(w: Floats | None) -> dict[str, Any]:
        x, y = a(w)["auc"], b(w)["auc"]
        return {"auc": None if x is None or y is None else x - y}
    return fn


def figures(name: str, bundle: Path, df: pd.DataFrame, out: Path, n_boot: int) -> dict[str, Any]:
    m = _probs(name, bundle, df, out.parent, tta=False)
    classes, excluded, p = m["classes"], m["excluded"], m["p"]
    patients = df["patient_id"].to_numpy(str)
    groups = df["group_id"].to_numpy(str)
    y = df["diagnosis"].to_numpy(str) == "MEL"
    mel = logit(p[:, classes.index("MEL")])
    mal_p = malignant_probability(p, classes, excluded=excluded)
    mal = logit(np.asarray(mal_p, np.float64))
    rel_mel, std_mel = relative(mel, patients), standardised(mel, patients)
    multi = ~np.isnan(rel_mel)
    scores = {
        "plain_mel_all": (mel, np.ones(len(df), bool)),
        "plain_mel": (mel, multi),
        "relative_mel": (rel_mel, multi),
        "plain_malignant": (mal, multi),
        "relative_malignant": (relative(mal, patients), multi),
        "standardised_mel": (std_mel, ~np.isnan(std_mel)),
        "rank_mel": (rank_in_patient(mel, patients), multi),
    }
    fns = {k: auc_of(y, s, keep) for k, (s, keep) in scores.items()}
    res: dict[str, Any] = {
        "bundle": str(bundle),
        "n_images": {k: int(keep.sum()) for k, (_, keep) in scores.items()},
        "n_mel": {k: int(y[keep].sum()) for k, (_, keep) in scores.items()},
        "figures": {k: bootstrap(fn, len(df), groups, n_boot=n_boot, seed=0)["auc"]
                    for k, fn in fns.items()},
        "differences": {},
    }
    for a, b in (("relative_mel", "plain_mel"), ("relative_malignant", "plain_malignant"),
                 ("rank_mel", "plain_mel")):
        res["differences"][f"{a} - {b}"] = bootstrap(
            difference(fns[a], fns[b]), len(df), groups, n_boot=n_boot, seed=0)["auc"]
    keep = scores["standardised_mel"][1]
    res["differences"]["standardised_mel - plain_mel (same images)"] = bootstrap(
        difference(fns["standardised_mel"], auc_of(y, mel, keep)), len(df), groups,
        n_boot=n_boot, seed=0)["auc"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", action="append", required=True, help="NAME=PATH")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-boot", type=int, default=1000)
    a = ap.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(SHARED / DATA / "metadata.csv", dtype=str, keep_default_na=False)
    # heldout_seeds' scoring reads the isic-subset column names
    df = df.rename(columns={"age": "age_approx", "site": "anatom_site"})
    df.attrs.update(data=DATA, source="isic2020")
    result = {"data": DATA, "n_boot": a.n_boot,
              "n_patients": int(df["patient_id"].nunique()), "runs": {}}
    for spec in a.bundle:
        name, path = spec.split("=", 1)
        r = figures(name, Path(path), df, a.out, a.n_boot)
        result["runs"][name] = r
        print(name)
        for section in ("figures", "differences"):
            for k, v in r[section].items():
                print(f"  {k}: {v['value']:+.3f} ({v['lo']:+.3f} to {v['hi']:+.3f})")
    a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
