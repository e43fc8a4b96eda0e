"""Re-measure the shipped gate's figures with the black-and-white check (``greyscale``).

The shipped card's ``gate.v2_evaluation`` was written by training's finalize step before the
``greyscale`` quality check existed. This script runs that same step (``gate_refit.fit_for_run``,
as ``train/finalize/gating.py`` calls it) on the shipped network's own split twice: once with the
check off (``min_coloured`` 0, as finalize ran then) and once as shipped (the card's value). The
first run must reproduce the card's gate arrays and figures — that checks the re-measurement
itself; the second gives the figures of the gate as it now serves. The gate's fitted head does not
depend on the quality checks (they only block images before it), so both runs fit the same head.

The shipped card's gate-v1 comparison figures were afterwards set to the ``as_shipped`` run's
(commit 8db904f), so a re-run's ``card`` entry differs from the committed output in those
(``v1_false_accept``) only; both runs reproduce it exactly (re-checked at 13:58 UTC).

    .venv/bin/python docs/experiments/v2.35/gate_bw_remeasure.py --out docs/experiments/v2.35/gate
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from dermsight.predict import Dermsight
from dermsight.train.gate_refit import fit_for_run, gate_v1, scored_parts


def held_out_kinds(ev: dict[str, Any]) -> dict[str, Any]:
    """Per kind held out of the fit: how many of its images the refitted gate let through."""
    return {kind: v["false_accept"] for kind, v in ev["held_out_false_accept"].items()}


def compare_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest absolute difference per array present in both."""
    return {k: float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))))
            for k in sorted(set(a) & set(b)) if np.asarray(a[k]).shape == np.asarray(b[k]).shape}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--split", default="configs/default-split.csv")
    ap.add_argument("--bundle", default=None, help="default: the shipped bundle")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    model = Dermsight.load(args.bundle)
    gate = model.card.gate
    shipped_arrays = dict(model.bundle.gate_arrays)
    _, v1_arrays = gate_v1(model)
    # the shipped split, scored as finalize scores it (refused if the config prepares another)
    parts = scored_parts(Path(args.config), Path(args.split), model)

    results: dict[str, Any] = {"card": gate["v2_evaluation"]}
    for name, min_coloured in (("check_off", 0.0), ("as_shipped", float(
            gate["quality"]["min_coloured"]))):
        # finalize passes the card's gate section so far (v1 + quality) and scores the negatives
        # with the serving model, whose card's quality thresholds decide what is blocked
        gate["quality"] = {**gate["quality"], "min_coloured": min_coloured}
        v1_cfg, _ = gate_v1(model)
        cfg_v2, arrays, ev = fit_for_run(model, v1_cfg, v1_arrays, parts["train"],
                                         parts["val"], parts["test"], seed=parts["seed"])
        results[name] = ev
        results[f"{name}_threshold"] = {k: cfg_v2[k] for k in cfg_v2 if "threshold" in k}
        results[f"{name}_max_abs_diff_to_shipped_arrays"] = compare_arrays(arrays,
                                                                           shipped_arrays)
        print(name, json.dumps(results[f"{name}_threshold"]),
              json.dumps(results[f"{name}_max_abs_diff_to_shipped_arrays"]), flush=True)
    (args.out / "gate_remeasure.json").write_text(json.dumps(results, indent=1, default=float))
    card, off, now = (held_out_kinds(results[k]) for k in ("card", "check_off", "as_shipped"))
    lines = ["| kind | card | check off (re-run) | as shipped |", "|---|---|---|---|"]
    for kind in card:
        lines.append(f"| {kind} | {json.dumps(card[kind])} | {json.dumps(off.get(kind))} | "
                     f"{json.dumps(now.get(kind))} |")
    (args.out / "held_out_kinds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
