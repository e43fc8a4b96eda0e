"""Averaging draws of one recipe on the held-out clinic: the mean of the members' calibrated
probabilities for the first 1..K members, with ``heldout_seeds.py``'s figures, and the K-member
average against the mean of its members' figures (paired, group bootstrap: every draw scores the
average and each member on the same images).

    .venv/bin/python docs/experiments/v2.23/ensemble_curve.py \
        --out docs/experiments/v2.23/ensemble_isic2017_v2.4.json

``--member NAME=FILE`` (repeatable; FILE relative to docs/experiments/) averages those instead of
the seven stored draws.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight.evaluate.bootstrap import bootstrap

EXP = Path(__file__).resolve().parents[1]
#: the stored held-out ISIC 2017 probabilities of the v2.4 recipe's draws, in the order fixed
#: in docs/experiments/README.md ("Seven draws of the v2.4 recipe averaged")
MEMBERS = {
    "v2.12-s42-epoch": "v2.14/probs_isic2017_v2.12-s42-epoch_single.npz",
    "v2.12-s43-epoch": "v2.14/probs_isic2017_v2.12-s43-epoch_single.npz",
    "v2.4-s43": "v2.7/probs_isic2017_v2.4-s43_single.npz",
    "v2.4-s44": "v2.8/probs_isic2017_v2.4-s44_single.npz",
    "v2.4r-s43": "v2.9/probs_isic2017_v2.4r-s43_single.npz",
    "v2.4r-s44": "v2.9/probs_isic2017_v2.4r-s44_single.npz",
    "v2.23-alpha1-s42": "v2.23/probs_isic2017_v2.23-alpha1-s42_single.npz",
}


def _heldout_seeds() -> Any:
    """``docs/experiments/v2.7/heldout_seeds.py`` as a module (its figures, its loader)."""
    spec = importlib.util.spec_from_file_location("heldout_seeds",
                                                  EXP / "v2.7" / "heldout_seeds.py")
    if spec is None or spec.loader is None:
        raise SystemExit("docs/experiments/v2.7/heldout_seeds.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--member", action="append", default=[],
                    help="NAME=FILE under docs/experiments/ (default: the seven v2.4 draws)")
    args = ap.parse_args()
    members = dict(m.split("=", 1) for m in args.member) if args.member else MEMBERS
    hs = _heldout_seeds()
    df = pd.read_csv(hs.SHARED / "isic-subset" / "metadata.csv", dtype=str,
                     keep_default_na=False)
    df = df[df["source"] == "isic2017"].reset_index(drop=True)
    y, groups = df["diagnosis"].to_numpy(), df["group_id"].to_numpy()
    models = {}
    for name, file in members.items():
        m = hs._load(EXP / file, df)
        if m is None:
            raise SystemExit(f"{file} does not hold the ISIC 2017 images in this order")
        models[name] = m
    names = list(members)
    classes, excluded = models[names[0]]["classes"], models[names[0]]["excluded"]
    fns = {n: hs._metric(y, m) for n, m in models.items()}
    result: dict[str, Any] = {"members": names, "n_images": len(df), "n_boot": args.n_boot,
                              "curve": [], "single": {}}
    for n in names:
        result["single"][n] = bootstrap(fns[n], len(df), groups, n_boot=0)
    for k in range(1, len(names) + 1):
        avg = {"classes": classes, "excluded": excluded,
               "p": np.mean([models[n]["p"] for n in names[:k]], axis=0)}
        point = hs._metric(y, avg)(None)
        result["curve"].append({"k": k, **{key: float(v) for key, v in point.items()}})
        print(k, {key: round(float(v), 4) for key, v in point.items()}, flush=True)
    full = hs._metric(y, {"classes": classes, "excluded": excluded,
                          "p": np.mean([models[n]["p"] for n in names], axis=0)})

    def gain(w: npt.NDArray[np.float64] | None) -> dict[str, Any]:
        """The K-member average minus the mean of its members' figures."""
        ens = full(w)
        each = [fns[n](w) for n in names]
        return {key: ens[key] - float(np.mean([e[key] for e in each])) for key in ens}

    def over_best(w: npt.NDArray[np.float64] | None) -> dict[str, Any]:
        """The K-member average minus its best member (best on the full data, per figure)."""
        ens = full(w)
        return {key: ens[key] - fns[best[key]](w)[key] for key in ens}

    best = {key: max(names, key=lambda n: result["single"][n][key]["value"])
            for key in result["single"][names[0]]}
    result["average"] = bootstrap(full, len(df), groups, n_boot=args.n_boot, seed=0)
    result["average_minus_member_mean"] = bootstrap(gain, len(df), groups,
                                                    n_boot=args.n_boot, seed=0)
    result["best_member"] = best
    result["average_minus_best_member"] = bootstrap(over_best, len(df), groups,
                                                    n_boot=args.n_boot, seed=0)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for section in ("average", "average_minus_member_mean", "average_minus_best_member"):
        print(section, ", ".join(f"{k} {v['value']:+.3f} ({v['lo']:+.3f} to {v['hi']:+.3f})"
                                 for k, v in result[section].items()))


if __name__ == "__main__":
    main()
