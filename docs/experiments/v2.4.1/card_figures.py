"""Print the card figures the README quotes, in README order, to compare two bundles' cards.

    .venv/bin/python docs/experiments/v2.4.1/card_figures.py BUNDLE/card.json
    (finalize_twice.diff: diff of this on runs/default/bundle-no-debian-negatives and
    runs/default/bundle, finalize run twice on one checkpoint)
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _ci(d: dict[str, Any]) -> str:
    return f"{d['value']:.3f} ({d['lo']:.3f}-{d['hi']:.3f})"


def _pct(d: dict[str, Any]) -> str:
    return f"{100 * d['rate']:.1f}% ({d['k']})"


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        c = json.load(f)
    m = c["metrics"]
    t = m["test"]
    tm, ci = t["metrics"], t["ci"]
    print("version", c["version"], "created", c["created"])
    print("T", round(c["temperature"], 3), "refer", f"{c['thresholds']['refer']:.3f}",
          "monitor", f"{c['thresholds']['monitor']:.3f}", "tau", c["decision"]["tau"],
          "margins", c["decision"].get("margins"))
    print("n test", t["n"], "groups", t["n_groups"])
    for k in ("balanced_accuracy", "mel_auc", "malignant_auc", "refer_sensitivity",
              "refer_specificity", "monitor_sensitivity", "monitor_specificity"):
        print(" ", k, _ci(ci[k]))
    print(f"  ece {tm['ece']:.3f} before {m['test_uncalibrated']['ece']:.3f} "
          f"spec@95 {tm['malignant_spec_at_95sens']:.3f}")
    print("  per-class sens", {k: round(tm[f"sensitivity_{k}"], 3) for k in c["classes"]})
    print(f"  argmax bal acc {m['test_argmax_decision']['balanced_accuracy']:.3f} "
          f"accuracy {tm['accuracy']:.3f}")
    w = m["test_without_metadata"]
    print(f"  no metadata MEL/mal AUC {w['mel_auc']:.3f} {w['malignant_auc']:.3f}")
    bm = c["baseline"]["test"]["metrics"]
    print("  baseline", {k: round(bm[k], 3) for k in ("balanced_accuracy", "mel_auc",
                                                       "malignant_auc")})
    print("  validation", {k: round(v, 4) for k, v in m["validation"].items()})
    for r in c["cross_source"]["rows"]:
        mm = {k: (round(v["value"], 3) if v and v["value"] is not None else None)
              for k, v in r["metrics"].items()}
        print(" XS", r["protocol"], r["source"], r["n_images"], r.get("n_malignant"), mm,
              r["run"]["command"][:90])
    ita = t["by_ita"]
    print("ITA", ita["n_estimable"], ita["n_darker"])
    nf = c["natural_frequencies"]
    print("NF", {k: (v["malignant"], v["n"], v["per_100"]) for k, v in nf["per_tier"].items()})
    gate = c["gate"]
    g = gate["v2_evaluation"]
    print("GATE thresholds", gate["ood_threshold"], gate["v2_threshold"],
          gate["v2_clinical_threshold"])
    for s, d in g["false_reject_test"].items():
        print("  FR", s, f"{d['k']}/{d['n']}", _pct(d), "v1", _pct(g["v1_false_reject_test"][s]),
              "clinical flag", _pct(g["clinical_flag_on_dermoscopic_test"][s]))
    for kind, d in g["held_out_false_accept"].items():
        n = g["new_pictures_false_accept"][kind]
        print("  FA", kind, _pct(d["false_accept"]), "silent", _pct(d["accepted_without_any_flag"]),
              "new", _pct(n["false_accept"]), "silent", _pct(n["accepted_without_any_flag"]),
              "v1", _pct(g["v1_false_accept"][kind]))
    print("  fresh clinical", {k: _pct(v) for k, v in g["clinical_proxy_fresh"].items()})
    tr = c["training"]
    print("TRAIN", tr["summary"], "finalize s", tr["finalize_seconds"], tr["reproduce"])
    print("parity", m["onnx_parity_max_abs_logit_diff"])


if __name__ == "__main__":
    main()
