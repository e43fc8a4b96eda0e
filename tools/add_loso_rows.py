"""Add leave-one-source-out rows to a bundle's card (``cross_source`` section).

    # score a data folder the bundle never trained on (every image of it is "left out"):
    .venv/bin/python tools/add_loso_rows.py --bundle src/dermsight/assets/default \
        --score-folder ../shared/data/isic2020-sample --trained-on ham10000,isic2017,isic2019

    # copy the LOSO rows of a run trained with the same recipe minus one source:
    .venv/bin/python tools/add_loso_rows.py --bundle src/dermsight/assets/default \
        --from runs/loso-isic2020/bundle

Scoring goes through the serving facade (decode -> preprocess -> ONNX Runtime -> temperature ->
decision rule) with the card's own bootstrap settings; nothing is fitted. Copied rows keep their
``run`` (config, seed, command) and ``trained_on``, so the card says which model produced them.
The card is rewritten and the bundle's integrity manifest refreshed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermsight import Dermsight
from dermsight.bundle import CARD_FILE, write_manifest
from dermsight.evaluate.cross_source import LOSO, add_loso_row, validate_cross_source
from dermsight.evaluate.settings import EvalSettings
from dermsight.io.decode import decode_image
from dermsight.records import Metadata

COMMAND = ".venv/bin/python tools/add_loso_rows.py"


def _folder_frame(model: Dermsight, folder: Path) -> pd.DataFrame:
    meta = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    meta = meta.rename(columns={"age_approx": "age", "anatom_site": "site"})
    known = meta["diagnosis"].isin(model.classes)
    left = meta.loc[~known, "diagnosis"].value_counts()
    if len(left):
        print(f"left out {int(left.sum())} images of classes the model does not have")
    meta = meta[known].reset_index(drop=True)
    probs = []
    for i in range(0, len(meta), 64):
        part = meta.iloc[i:i + 64]
        imgs = [decode_image(folder / "images" / f"{x}.jpg") for x in part["image_id"]]
        metas: list[Metadata | None] = [Metadata.lenient(r.get("age"), r.get("sex"), r.get("site"))
                                         for _, r in part.iterrows()]
        out = model.predict_batch(imgs, metas)
        probs += [[p.probabilities[c] for c in model.classes] for p in out]
    frame = pd.DataFrame(np.array(probs), columns=[f"p_{c}" for c in model.classes])
    frame["label"] = meta["diagnosis"]
    frame["group"] = meta["group_id"]
    frame["source"] = meta["source"] if "source" in meta.columns else folder.name
    frame.attrs["left_out"] = ", ".join(f"{n} {c}" for c, n in left.items())
    return frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--score-folder", type=Path)
    src.add_argument("--from", dest="from_bundle", type=Path)
    ap.add_argument("--trained-on", default="", help="comma-separated training sources")
    a = ap.parse_args()
    card_path = a.bundle / CARD_FILE
    card: dict[str, Any] = json.loads(card_path.read_text())
    section = card.get("cross_source")
    if a.from_bundle is not None:
        other = json.loads((a.from_bundle / CARD_FILE).read_text()).get("cross_source") or {}
        rows = [r for r in other.get("rows", []) if r["protocol"] == LOSO]
        if not rows:
            raise SystemExit(f"{a.from_bundle} has no leave-one-source-out rows")
        if section is None:
            raise SystemExit(f"{a.bundle} has no cross_source section to add rows to")
        replaced = {r["source"] for r in rows}
        section = dict(section)
        section["rows"] = [r for r in section["rows"]
                           if not (r["protocol"] == LOSO and r["source"] in replaced)] + rows
    else:
        model = Dermsight.load(a.bundle)
        test = card["metrics"]["test"]
        trained_on = [s for s in a.trained_on.split(",") if s]
        frame = _folder_frame(model, a.score_folder)
        run = {"config": card.get("name"), "seed": card.get("training", {}).get("seed"),
               "command": f"{COMMAND} --bundle {a.bundle} --score-folder {a.score_folder.name}"}
        settings = EvalSettings(
            refer_threshold=model.card.thresholds.refer,
            offsets=model.card.decision.offsets(model.classes),
            malignant_excluded=tuple(model.card.malignant_excluded),
            n_boot=int(test.get("n_boot", 200)), seed=int(test.get("seed", 0)))
        for source in sorted(frame["source"].unique()):
            section = add_loso_row(
                section, frame, model.classes, str(source), trained_on, run, settings=settings)
            if frame.attrs["left_out"]:
                row = next(r for r in section["rows"]
                           if r["protocol"] == LOSO and r["source"] == str(source))
                extra = (f"images of classes this model does not have were left out "
                         f"({frame.attrs['left_out']})")
                row["note"] = f"{row['note']}; {extra}" if row["note"] else extra
    card["cross_source"] = validate_cross_source(section)
    card_path.write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
    # the report shows the same table: re-rendered only where the rest of it is reproduced
    # exactly from the card (tools/card_tables.py), then the manifest re-sealed
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from card_tables import update_report

    update_report(card, a.bundle)
    write_manifest(a.bundle)
    for r in card["cross_source"]["rows"]:
        if r["protocol"] == LOSO:
            m = {k: (v or {}).get("value") for k, v in r["metrics"].items()}
            print(r["source"], r["n_images"], {k: None if v is None else round(v, 3)
                                               for k, v in m.items()})


if __name__ == "__main__":
    main()
