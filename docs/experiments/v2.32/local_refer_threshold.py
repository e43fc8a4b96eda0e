"""Would a refer threshold refitted on a clinic's own labelled cases hold its sensitivity on the
clinic's other images? A simulation on the held-out ISIC 2017 clinic from stored probabilities
("Source-balanced weights on validation and with ISIC 2020 held out", docs/experiments/README.md;
descriptive, decides nothing).

For each stored held-out network and each clinic size n: 200 times, n of the clinic's images are
drawn by lesion group, the refer threshold is refitted on them as finalize fits it on validation
(the largest threshold whose sensitivity for melanoma, the clinic's one malignant class, reaches
0.95), and the other images are scored with it. Reported: the share of draws whose sensitivity on
the other images reaches 0.95 and 0.90, the median and 5th percentile of that sensitivity, the
median specificity; beside the network's own validation-fitted threshold on all images.

    .venv/bin/python docs/experiments/v2.32/local_refer_threshold.py \
        --run srcbal-s42=runs/loso-srcbal-s42-isic2017/bundle,docs/experiments/v2.31/probs_...npz \
        --run shipped-s42=-,docs/experiments/v2.23/probs_isic2017_v2.23-alpha1-s42_single.npz ... \
        --out docs/experiments/v2.32/local_refer_threshold.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from refer_operating_point import _malignant  # the same malignant share from stored probabilities

from dermsight.evaluate.metrics import rates_at_threshold
from dermsight.train.calibrate import threshold_for_sensitivity

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
SIZES = (100, 200, 400, 700)
TARGET = 0.95


def _one(score: npt.NDArray[np.float64], pos: npt.NDArray[np.bool_],
         groups: npt.NDArray[np.str_], t_val: float | None, draws: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    uniq = np.unique(groups)
    at_val = None if t_val is None else rates_at_threshold(pos, score, t_val)
    out: dict[str, Any] = {"validation_threshold": None if at_val is None else {
        "sensitivity": at_val[0], "specificity": at_val[1]}}
    for n in SIZES:
        sens, spec, n_mel = [], [], []
        for _ in range(draws):
            order = rng.permutation(uniq)
            fit = np.zeros(len(score), bool)
            for g in order:  # whole groups until n images
                if fit.sum() >= n:
                    break
                fit |= groups == g
            if pos[fit].sum() < 2:
                continue
            t = threshold_for_sensitivity(score[fit], pos[fit], TARGET)  # as finalize fits it
            s_rest, p_rest = rates_at_threshold(pos[~fit], score[~fit], t)
            sens.append(s_rest)
            spec.append(p_rest)
            n_mel.append(int(pos[fit].sum()))
        s = np.array(sens)
        out[str(n)] = {"draws": len(s), "median_melanomas_in_fit": float(np.median(n_mel)),
                       "share_reaching_0.95": float(np.mean(s >= TARGET)),
                       "share_reaching_0.90": float(np.mean(s >= 0.90)),
                       "median_sensitivity": float(np.median(s)),
                       "p05_sensitivity": float(np.quantile(s, 0.05)),
                       "median_specificity": float(np.median(spec))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True,
                    help="NAME=BUNDLE,PROBS.npz (BUNDLE '-': no validation threshold)")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    meta = pd.read_csv(SHARED / "isic-subset" / "metadata.csv").set_index("image_id")
    res: dict[str, Any] = {"target": TARGET, "sizes": list(SIZES), "runs": {}}
    for spec in a.run:
        name, files = spec.split("=", 1)
        bundle, npz = (Path(x) for x in files.split(","))
        ids, score = _malignant(npz)
        rows = meta.loc[[str(i) for i in ids]]
        pos = (rows["diagnosis"] == "MEL").to_numpy()
        t_val = None if str(bundle) == "-" else float(
            json.loads((bundle / "card.json").read_text())["thresholds"]["refer"])
        r = _one(score, pos, rows["group_id"].to_numpy(str), t_val, a.draws)
        res["runs"][name] = r
        print(name, json.dumps(r))
    a.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
