"""Copy what a held-out run is judged by out of its bundle's card: the leave-one-source-out row
(never the test-split rows), the decision rule, the thresholds and the training summary.

    python docs/experiments/v2.11/heldout_row.py runs/loso211s43-isic2017 \
        docs/experiments/v2.11/loso211s43
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def main(run: Path, out: Path) -> None:
    card = json.loads((run / "bundle" / "card.json").read_text(encoding="utf-8"))
    rows = [r for r in card["cross_source"]["rows"] if r["protocol"] == "leave_one_source_out"]
    out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        doc = {"rows": [row], "decision": card["decision"], "thresholds": card["thresholds"],
               "train_summary": card["training"]["summary"]}
        (out / f"{row['source']}.json").write_text(json.dumps(doc, indent=2) + "\n",
                                                   encoding="utf-8")
        m = row["metrics"]
        print(row["source"], {k: round(v["value"], 4) for k, v in m.items()})
    shutil.copy(run / "train_log.jsonl", out / "train_log.jsonl")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
