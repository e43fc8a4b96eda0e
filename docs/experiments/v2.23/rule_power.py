"""How often would the one-seed held-out rule pass a recipe, for a given true gain?

The rule (every held-out recipe since LP-FT): a single run is a candidate only if its held-out
ISIC 2017 melanoma AUC exceeds 0.771 and its malignant AUC exceeds 0.770 (the two tops of the v2.4
recipe's first six runs; the suggested-class condition is left out here). This reads every stored
v2.4-recipe run from ``validation_vs_heldout.json`` (v2.23: nine runs), fits a bivariate normal
to their two AUCs (mean, standard deviations, correlation) and gives the probability that one run
of a recipe whose two AUCs are both shifted by ``gain`` (same spread) passes both bars.
Descriptive: nine runs, some of them reruns of one seed on other thread counts or machines, and a
normal shape assumed. It also sets the three runs of v2.6 ("more frozen", the recipe closest to
a gain) against the nine: the difference of means with Welch's 95 % interval.

    .venv/bin/python docs/experiments/v2.23/rule_power.py
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import multivariate_normal, ttest_ind

HERE = Path(__file__).resolve().parent
BARS = np.array([0.771, 0.770])  # melanoma AUC, malignant AUC
GAINS = (0.0, 0.01, 0.02, 0.03, 0.04)
#: v2.6's held-out ISIC 2017 runs, seeds 42 / 43 / 44 (folders under docs/experiments/)
MORE_FROZEN = ("v2.6/loso_isic2017.json", "v2.7/loso26s43/isic2017.json",
               "v2.8/loso26s44/isic2017.json")
FIGURES = ("mel_auc", "malignant_auc")  # as validation_vs_heldout.FIGURES


@cache
def _scatter() -> Any:
    """``v2.21/validation_vs_heldout.py`` as a module, loaded once."""
    spec = importlib.util.spec_from_file_location(
        "validation_vs_heldout", HERE.parent / "v2.21" / "validation_vs_heldout.py")
    if spec is None or spec.loader is None:
        raise SystemExit("docs/experiments/v2.21/validation_vs_heldout.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def heldout_row(path: Path) -> dict[str, float]:
    """The leave-ISIC-2017-out figures of a stored card excerpt, read by the 32-run scatter's
    own ``heldout`` (``v2.21/validation_vs_heldout.py``)."""
    return dict(_scatter().heldout(json.loads(path.read_text()), str(path)))


def main() -> None:
    rows = json.loads((HERE / "validation_vs_heldout.json").read_text())["rows"]
    xy = np.array([[r["heldout_isic2017"]["mel_auc"], r["heldout_isic2017"]["malignant_auc"]]
                   for r in rows if r["recipe"] == "v2.4"])
    mean, cov = xy.mean(0), np.cov(xy.T)
    sd = np.sqrt(np.diag(cov))
    out = {"n_runs": len(xy), "mean": mean.tolist(), "sd": sd.tolist(),
           "correlation": float(cov[0, 1] / (sd[0] * sd[1])), "bars": BARS.tolist(),
           "p_pass": {}}
    for g in GAINS:
        # P(X > bars) = P(-X < -bars) for X ~ N(mean + g, cov)
        p = float(multivariate_normal(-(mean + g), cov).cdf(-BARS))
        out["p_pass"][f"{g:+.2f}"] = p
        print(f"gain {g:+.2f} on both AUCs: P(one run passes both bars) = {p:.2f}")
    print(f"v2.4 runs: {len(xy)}, mean {np.round(mean, 3)}, sd {np.round(sd, 3)}, "
          f"correlation {out['correlation']:+.2f}")
    frozen = np.array([[heldout_row(HERE.parent / f)[k] for k in FIGURES] for f in MORE_FROZEN])
    out["more_frozen_vs_v2_4"] = {}
    for j, k in enumerate(FIGURES):
        t = ttest_ind(frozen[:, j], xy[:, j], equal_var=False)
        ci = t.confidence_interval(0.95)
        diff = float(frozen[:, j].mean() - xy[:, j].mean())
        out["more_frozen_vs_v2_4"][k] = {"v2_6_runs": frozen[:, j].tolist(), "difference": diff,
                                         "welch_95": [float(ci.low), float(ci.high)]}
        print(f"v2.6 (3 runs) - v2.4 (9 runs), {k}: {diff:+.3f} "
              f"({ci.low:+.3f} to {ci.high:+.3f}, Welch)")
    (HERE / "rule_power.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
