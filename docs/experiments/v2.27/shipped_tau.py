"""Which τ the by-source criterion would give the **shipped** bundle, on its own validation split
(``configs/default-split.csv``; the test split is not read). The pooled refit must reproduce the
card's τ and UNK margin ("τ chosen by each validation source's balanced accuracy" in
docs/experiments/README.md).

    .venv/bin/python docs/experiments/v2.27/shipped_tau.py \
        --out docs/experiments/v2.27/shipped_tau.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dermsight.bundle import default_bundle_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tau_by_source import load

REPO = Path(__file__).resolve().parents[3]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    s = load(default_bundle_path(), REPO / "configs" / "default.yaml",
             REPO / "configs" / "default-split.csv", None, ("val",))
    doc: dict[str, Any] = {"card": {"tau": s.card["decision"]["tau"],
                                    "margins": s.card["decision"].get("margins")},
                           "n_val": len(s.parts["val"])}
    for name, sources in (("pooled", None), ("by_source", s.parts["val"]["source"].to_numpy(str))):
        rule, curve = s.refit(sources)
        summary = s.summary(rule)
        doc[name] = {"tau": summary.pop("tau"), "margins": summary.pop("margins"),
                     "curve": curve, **summary}
        print(name, {k: v for k, v in doc[name].items() if k != "curve"})
    print("card", doc["card"])
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
