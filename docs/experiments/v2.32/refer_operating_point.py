"""Is the source-balanced networks' more specific refer tier on the held-out clinic a better tier,
or the same trade-off curve read at another point? ("Source-balanced weights on validation and
with ISIC 2020 held out", docs/experiments/README.md.)

For each seed: the source-balanced network's refer threshold (its bundle, fitted on its own
validation split) gives its operating point on the held-out ISIC 2017 images (sensitivity for
melanoma, the clinic's one malignant class; specificity on the nevi and keratoses). The shipped
recipe's draw of the same seed is read at the **same specificity** (its threshold moved to
match) and at its **own** operating point; 1,000 group-bootstrap draws (``group_id``) give
paired intervals for the sensitivity difference at equal specificity.

    V=docs/experiments
    .venv/bin/python $V/v2.32/refer_operating_point.py --pair \
        s42=runs/loso-srcbal-s42-isic2017/bundle,$V/v2.31/probs_isic2017_v2.31-srcbal-s42_single.npz,\
    $V/v2.23/probs_isic2017_v2.23-alpha1-s42_single.npz \
        --out $V/v2.32/refer_operating_point.json   # one --pair per seed
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight.evaluate.bootstrap import bootstrap
from dermsight.evaluate.metrics import rates_at_threshold
from dermsight.malignancy import malignant_probability

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
F = npt.NDArray[np.float64]


def _malignant(npz: Path) -> tuple[npt.NDArray[np.str_], F]:
    d = np.load(npz, allow_pickle=True)
    p = malignant_probability(d["p"], list(d["classes"]), excluded=list(d["excluded"]))
    assert p is not None
    return d["image_id"], p


def _threshold_at_spec(score: F, pos: npt.NDArray[np.bool_], spec: float, w: F) -> float:
    """The lowest threshold whose weighted specificity reaches ``spec``."""
    neg, wn = score[~pos], w[~pos]
    order = np.argsort(neg)
    cum = np.cumsum(wn[order]) / wn.sum()
    i = int(np.searchsorted(cum, spec - 1e-12))
    return float(np.nextafter(neg[order][min(i, len(neg) - 1)], np.inf))


def _pair(bundle: Path, new_npz: Path, ref_npz: Path, n_boot: int) -> dict[str, Any]:
    card = json.loads((bundle / "card.json").read_text())
    t_new = float(card["thresholds"]["refer"])
    ids, new = _malignant(new_npz)
    ref_ids, ref = _malignant(ref_npz)
    assert list(ids) == list(ref_ids), "the two probability files hold different images"
    meta = pd.read_csv(SHARED / "isic-subset" / "metadata.csv").set_index("image_id")
    rows = meta.loc[list(ids)]
    pos = (rows["diagnosis"] == "MEL").to_numpy()
    groups = rows["group_id"].to_numpy()

    def metric(w: F | None) -> dict[str, float]:
        ww = np.ones(len(new)) if w is None else w
        sens_new, spec_new = rates_at_threshold(pos, new, t_new, ww)
        assert sens_new is not None
        assert spec_new is not None
        t_ref = _threshold_at_spec(ref, pos, spec_new, ww)
        sens_ref, spec_ref = rates_at_threshold(pos, ref, t_ref, ww)
        assert sens_ref is not None
        return {"sens_new": sens_new, "spec_new": spec_new, "sens_ref_at_spec_new": sens_ref,
                "spec_ref_matched": spec_ref, "sens_diff_at_equal_spec": sens_new - sens_ref}

    ci = bootstrap(metric, len(new), groups, n_boot=n_boot, seed=0)
    return {"refer_threshold_new": t_new, "n_melanomas": int(pos.sum()),
            "n_others": int((~pos).sum()), **ci}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", action="append", required=True,
                    help="NAME=NEW_BUNDLE,NEW_PROBS.npz,REFERENCE_PROBS.npz")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    out: dict[str, Any] = {}
    for spec in a.pair:
        name, files = spec.split("=", 1)
        bundle, new_npz, ref_npz = (Path(x) for x in files.split(","))
        out[name] = _pair(bundle, new_npz, ref_npz, a.n_boot)
        r = out[name]
        d = r["sens_diff_at_equal_spec"]
        print(f"{name}: source-balanced sens {r['sens_new']['value']:.3f} / spec "
              f"{r['spec_new']['value']:.3f}; shipped recipe at that specificity sens "
              f"{r['sens_ref_at_spec_new']['value']:.3f}; difference "
              f"{d['value']:+.3f} ({d['lo']:+.3f} to {d['hi']:+.3f})")
    a.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
